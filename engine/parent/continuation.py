"""Grids that continue: what a submission adds to a runs directory that already holds some of
its runs.

Each run of the expanded grid is looked up by its name (a grid names its runs after their
values, so the same grid gives the same names) and kept only if its resolved spec — read back
and validated with today's code, so a field added since keeps its default — hashes the same
(seed included). Then:

- finished: skipped, and named as such;
- interrupted or cancelled: resumed from its newest intact checkpoint (from the start when it
  has none) — never restarted from scratch while a checkpoint exists;
- failed: re-run (resumed) only with `retry_failed`, else skipped and named;
- queued or running under a live owner: left to it;
- absent, or present with another spec: started anew.

Guild's `--needed` skips what is done; this also resumes what was cut short. `estimate`
gives the time the rest should take, from the timings of the finished runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.contract.errors import UserError
from engine.contract.layout import read_json
from engine.contract.spec import ExperimentSpec
from engine.contract.validation import parse_spec
from engine.parent.records import ACTIVE, owner_alive, owner_of


@dataclass
class Continuation:
    start: list[ExperimentSpec] = field(default_factory=list)
    resume: list[tuple[ExperimentSpec, dict]] = field(default_factory=list)     # (spec, its run's summary)
    finished: list[tuple[ExperimentSpec, dict]] = field(default_factory=list)
    failed: list[tuple[ExperimentSpec, dict]] = field(default_factory=list)      # kept as they are
    elsewhere: list[tuple[ExperimentSpec, dict]] = field(default_factory=list)   # running in another process

    @property
    def is_continuation(self) -> bool:
        return bool(self.resume or self.finished or self.failed or self.elsewhere)

    @property
    def work(self) -> list[tuple[ExperimentSpec, dict | None]]:
        """What to queue, in order: the new runs (no summary), then the runs to resume."""
        return [(spec, None) for spec in self.start] + list(self.resume)


def _same_spec(summary: dict, spec: ExperimentSpec, store) -> bool:
    document = read_json(store.folder(summary["id"]).spec)
    if document is None:
        return False
    try:
        return parse_spec(document).config_hash() == spec.config_hash()
    except UserError:
        return False


RANK = {"finished": 0, "running": 1, "queued": 1, "interrupted": 2, "cancelled": 2, "failed": 3}


def plan(specs: list[ExperimentSpec], store, retry_failed: bool = False) -> Continuation:
    """Sort the grid's runs into what to start, resume, skip or leave (see the module)."""
    by_name: dict[str, list[dict]] = {}
    for summary in store.all():
        by_name.setdefault(summary.get("name"), []).append(summary)
    found = Continuation()
    for spec in specs:
        matches = sorted((summary for summary in by_name.get(spec.name, ())
                          if summary.get("status") in RANK and _same_spec(summary, spec, store)),
                         key=lambda summary: (RANK[summary["status"]], -summary.get("created", 0)))
        if not matches:
            found.start.append(spec)
            continue
        best = matches[0]
        status = best["status"]
        if status == "finished":
            found.finished.append((spec, best))
        elif status in ACTIVE and owner_alive(owner_of(best)):
            found.elsewhere.append((spec, best))
        elif status == "failed" and not retry_failed:
            found.failed.append((spec, best))
        else:
            found.resume.append((spec, best))
    return found


def _duration(summary: dict) -> float | None:
    started, ended = summary.get("started"), summary.get("ended")
    return ended - started if isinstance(started, (int, float)) and isinstance(ended, (int, float)) else None


def estimate(continuation: Continuation, jobs: int) -> float | None:
    """Seconds the rest should take with `jobs` at once: the finished runs' mean duration for each
    run to start, less the share a resumed run already did (None without finished runs)."""
    durations = [seconds for _, summary in continuation.finished if (seconds := _duration(summary)) is not None]
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    work = mean * len(continuation.start)
    for _, summary in continuation.resume:
        step, total = summary.get("step") or 0, summary.get("total_steps") or 0
        work += mean * (1 - min(step / total, 1.0) if total else 1.0)
    return work / max(jobs, 1)
