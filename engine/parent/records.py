"""What a run folder records about its run, who owns it, and the index summary derived from it.

`run.json` is written by the parent that owns the run (the source of truth for its state);
`events.jsonl` by the run itself. `summarise_run_dir` rebuilds an index summary from these
files alone, so the index can always be thrown away.

Every run, queued ones included, names its owner: the parent process (pid, its start time
in clock ticks, host) that queued it and will account for it. Another parent never touches a
run whose owner is alive; the start time tells a live owner from a recycled pid.
Stdlib only.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.contract.events import TERMINAL_EVENTS, EvalDone, Failed, Finished, read_events
from engine.contract.layout import RunFolder, is_run_id, read_json

STATUSES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
RESUMABLE = ("interrupted", "cancelled", "failed")
MISSING = "missing"          # shown for an indexed run whose folder is gone; never stored
DAMAGED = "damaged"          # a run folder whose files cannot be read as a run: listed with the reason
# what each field of a run record may hold; a field of another type (a hand-edited file) is dropped
RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "status": (str,), "created": (int, float), "started": (int, float), "ended": (int, float),
    "priority": (int,), "spec_hash": (str,), "git_commit": (str,), "host": (str,), "group": (str,),
    "owner": (dict,), "pid": (int,), "pgid": (int,), "pid_start": (int,), "parent_pid": (int,), "slot": (str,),
    "executor": (str,), "where": (str,), "job_id": (str, int), "device": (str,), "total_steps": (int,),
    "step": (int,), "loss": (int, float), "samples_per_s": (int, float), "precision": (str,),
    "exit_code": (int,), "error": (str,), "stderr_tail": (str,), "cancel_requested": (bool,), "versions": (dict,),
    "hardware": (dict,), "partial": (bool,), "source": (str,), "devices": (int,)}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def new_run_id(name: str) -> str:
    slug = "".join(c if c.isalnum() or c in "._=-" else "-" for c in name)[:48].strip("-.") or "run"
    return f"{slug}-{time.strftime('%y%m%d-%H%M%S')}-{os.urandom(2).hex()}"


def git_commit() -> str | None:
    try:
        output = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5)
        if output.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return output.stdout.strip() + ("-dirty" if dirty else "")


def host() -> str:
    return os.uname().nodename


# --- owners ----------------------------------------------------------------------------------------

def process_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot), or None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, after the command name


def current_owner() -> dict:
    return {"pid": os.getpid(), "start": process_start(os.getpid()), "host": host()}


def owner_of(record: dict) -> dict | None:
    """The owner a run record names (older records only knew the parent's pid)."""
    owner = record.get("owner")
    if isinstance(owner, dict) and isinstance(owner.get("pid"), int):
        return owner
    parent = record.get("parent_pid")
    return {"pid": parent} if isinstance(parent, int) else None


def owner_alive(owner: dict | None) -> bool:
    """Whether the owning parent still runs. An owner on another host cannot be checked from
    here and counts as alive: only its own host may reconcile it."""
    if not owner:
        return False
    if owner.get("host") not in (None, host()):
        return True
    if not pid_alive(owner["pid"]):
        return False
    started = owner.get("start")
    return started is None or process_start(owner["pid"]) in (None, started)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


# --- index summaries ---------------------------------------------------------------------------------

def where_label(run: dict, with_job: bool = False) -> str:
    """Where a run runs, short: `local`, `ray 10.0.0.5:8265`, `slurm 4711`, `submitit 123`
    (`with_job`: a Ray run's job id too)."""
    executor = run.get("executor") or "local"
    if executor.startswith("ray://"):
        return f"ray {executor[len('ray://'):]}" + (f" job {run['job_id']}" if with_job and run.get("job_id") else "")
    if executor in ("slurm", "submitit-local"):
        return f"{'slurm' if executor == 'slurm' else 'submitit'} {run.get('job_id') or ''}".strip()
    return executor


def _section(spec: dict, name: str) -> dict:
    value = spec.get(name)
    return value if isinstance(value, dict) else {}


def _scalar(value: Any, kinds: tuple[type, ...] = (str,)) -> Any:
    return value if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds) else None


def _strings(value: Any) -> list[str] | None:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else None


def spec_summary(spec: dict) -> dict:
    """The spec fields the index keeps for listing and filtering (a field of the wrong type: none)."""
    sampling, train, evaluation = _section(spec, "sampling"), _section(spec, "train"), _section(spec, "eval")
    strings = _strings
    return {"name": _scalar(spec.get("name")) or "", "tags": strings(spec.get("tags")) or [],
            "encoder": _scalar(_section(spec, "encoder").get("name")), "strategy": _scalar(sampling.get("strategy")),
            "alpha": _scalar(sampling.get("alpha"), (int, float)), "seed": _scalar(train.get("seed"), (int,)),
            "train_dataset": _scalar(train.get("dataset")), "train_languages": strings(train.get("languages")),
            "eval_datasets": strings(evaluation.get("datasets")) or [], "baseline": _scalar(spec.get("baseline"))}


def clean_record(record: dict) -> dict:
    """The fields of a run record that have the type they should (others dropped)."""
    return {key: value for key, value in record.items()
            if key not in RECORD_TYPES or value is None or (isinstance(value, RECORD_TYPES[key])
                                                             and not (isinstance(value, bool) and bool not in RECORD_TYPES[key]))}


def _rounded(value: float | None) -> float | None:
    return None if value is None or value != value else round(float(value), 4)


def results_summary(macro: dict, groups: dict, bias: float | None, primary: str, precision: str = "",
                    step: int | None = None) -> dict:
    """What the index keeps of an evaluation: the primary metric's macro and group averages
    per setting, the bias, and the step it was made at (the per-language detail stays in the
    run folder)."""
    def per_setting(values: dict) -> dict:
        return {setting: _rounded(metrics.get(primary)) for setting, metrics in values.items()
                if isinstance(metrics, dict)}

    return {"primary": primary, "macro": per_setting(macro), "bias": _rounded(bias),
            "groups": {name: per_setting(group) for name, group in groups.items()},
            **({"precision": precision} if precision else {}), **({"step": step} if step is not None else {})}


def primary_results(summary: dict) -> tuple[str, dict]:
    """(dataset, index results) of the run's first evaluation dataset, or ("", {})."""
    return next(iter((summary.get("results") or {}).items()), ("", {}))


def primary_metric(folder: RunFolder, dataset: str, default: str = "map") -> str:
    results = read_json(folder.results(dataset))
    return results.get("primary_metric", default) if results else default


def summarise_run_dir(run_dir: Path) -> dict | None:
    """An index summary from the files of one run folder (None if it is not a run). The id is
    always the folder's own name, whatever run.json claims."""
    folder = RunFolder(run_dir)
    if not is_run_id(folder.id):
        return None
    spec = read_json(folder.spec)
    record = clean_record(read_json(folder.record) or {})
    if not (folder.events.exists() or record or folder.record.exists()):
        return None                                  # not a run folder (never was)
    if spec is None:
        return damaged_summary(folder, record, f"{folder.spec.name} is missing or not a JSON object")
    if folder.record.exists() and read_json(folder.record) is None:
        return damaged_summary(folder, record, f"{folder.record.name} is not a JSON object")
    from engine.parent.run_state import fold

    events = read_events(folder.events)
    state = fold(events)
    summary = {"id": folder.id, **spec_summary(spec), "results": {}, "step": 0, "total_steps": None, "loss": None}
    summary.update({key: value for key, value in record.items() if key != "id"})
    summary.update(step=state.step, total_steps=state.total_steps, loss=state.loss)
    if state.started is not None:
        summary.update(device=state.device, started=summary.get("started") or state.started)
    for dataset, history in state.history.items():
        cells = history[-1]
        precision = next((event.precision for event in reversed(events)
                          if isinstance(event, EvalDone) and event.dataset == dataset), "")
        summary["results"][dataset] = results_summary(cells.macro, cells.groups, cells.overall_bias,
                                                      cells.primary_metric or primary_metric(folder, dataset), precision,
                                                      cells.step)
    summary.setdefault("created", (events[0].time if events else folder.spec.stat().st_mtime))
    status = record.get("status")
    if status not in STATUSES or (status in ACTIVE and not owner_alive(owner_of(record))):
        status = status_from_events(events, record)
    summary["status"] = status
    if status not in ACTIVE and events and not summary.get("ended"):
        summary["ended"] = events[-1].time
    last_failure = next((event for event in reversed(events) if isinstance(event, Failed)), None)
    if status == "failed" and last_failure and not summary.get("error"):
        summary["error"] = last_failure.error
    return summary


def damaged_summary(folder: RunFolder, record: dict, reason: str) -> dict:
    """The index row of a folder that cannot be read as a run: listed, with the reason, so the
    rest of the runs directory keeps working and nothing is dropped silently."""
    created = record.get("created")
    if created is None:
        try:
            created = folder.path.stat().st_mtime
        except OSError:
            created = 0.0
    return {"id": folder.id, "name": record.get("name") or folder.id, "status": DAMAGED, "error": reason,
            "created": created, "results": {}, "step": 0, "total_steps": None, "loss": None, "tags": [],
            "eval_datasets": []}


def status_from_events(events: list, record: dict) -> str:
    """The status a run's own files imply when no live parent owns it."""
    terminal = next((event for event in reversed(events) if isinstance(event, TERMINAL_EVENTS)), None)
    if terminal is None:
        return "cancelled" if record.get("cancel_requested") else "interrupted"
    if isinstance(terminal, Finished):
        return "finished"
    if isinstance(terminal, Failed):
        return "failed"
    return "cancelled" if record.get("cancel_requested") else "interrupted"


# --- filtering -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunFilter:
    """The one rule for choosing runs, shared by `hbt-tui runs` and the Runs screen.

    `status:` and `strategy:` match a prefix (`status:fail`), `tag:` one whole tag, any other
    field of a run's summary by `field:value` its value's prefix (`seed:2`, `group:study`,
    `train_dataset:mlqa`), and every other word must appear in the run's name, id or encoder.
    All parts must match."""

    status: str | None = None
    strategy: str | None = None
    tag: str | None = None
    words: tuple[str, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> RunFilter:
        known: dict[str, str] = {}
        words, fields = [], []
        for term in text.lower().split():
            key, _, value = term.partition(":")
            if value and key in ("status", "strategy", "tag"):
                known[key] = value
            elif value and key.replace("_", "").isalpha():
                fields.append((key, value))
            else:
                words.append(term)
        return cls(words=tuple(words), fields=tuple(fields), **known)

    def matches(self, run: dict) -> bool:
        if self.status and not str(run.get("status", "")).lower().startswith(self.status.lower()):
            return False
        if self.strategy and not str(run.get("strategy") or "").lower().startswith(self.strategy.lower()):
            return False
        if self.tag and self.tag.lower() not in {str(tag).lower() for tag in run.get("tags") or ()}:
            return False
        for key, value in self.fields:
            if not str(run.get(key, "")).lower().startswith(value.lower()):
                return False
        haystack = f"{run.get('name', '')} {run.get('id', '')} {run.get('encoder') or ''}".lower()
        return all(word.lower() in haystack for word in self.words)
