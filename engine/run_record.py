"""What a run folder records about its run, and the index summary derived from it.

    runs/<id>/spec.json      the resolved spec
    runs/<id>/run.json       written by the parent: id, status, timings, host, git commit,
                             spec hash, pid / process group, exit code, error
    runs/<id>/events.jsonl   written by the run itself
    runs/<id>/stderr.log     the run's log (saved by the parent)

`summarise_run_dir` rebuilds an index summary from these files alone, so the index can
always be thrown away. Stdlib only.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from engine.protocol import read_events

RUN_FILE = "run.json"
SPEC_FILE = "spec.json"
EVENTS_FILE = "events.jsonl"
STDERR_FILE = "stderr.log"
STATUSES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
RESUMABLE = ("interrupted", "cancelled", "failed")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def new_run_id(name: str) -> str:
    slug = "".join(c if c.isalnum() or c in "._=-" else "-" for c in name)[:48].strip("-") or "run"
    return f"{slug}-{time.strftime('%y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def git_commit() -> str | None:
    try:
        output = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if output.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return output.stdout.strip() + ("-dirty" if dirty else "")


def host() -> str:
    return socket.gethostname()


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def write_json_atomic(path: Path, value: Any) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=1), encoding="utf-8")
    os.replace(temporary, path)


def spec_summary(spec: dict) -> dict:
    """The spec fields the index keeps for listing and filtering."""
    sampling, train = spec.get("sampling", {}), spec.get("train", {})
    return {"name": spec.get("name", ""), "tags": list(spec.get("tags", [])), "encoder": spec.get("encoder", {}).get("name"),
            "strategy": sampling.get("strategy"), "alpha": sampling.get("alpha"), "seed": train.get("seed"),
            "train_dataset": train.get("dataset"), "train_languages": train.get("languages"),
            "eval_datasets": list(spec.get("eval", {}).get("datasets", [])), "baseline": spec.get("baseline")}


def _rounded(value: float | None) -> float | None:
    return None if value is None or value != value else round(float(value), 4)


def results_summary(macro: dict, groups: dict, bias: float | None, primary: str) -> dict:
    """What the index keeps of an evaluation: the primary metric's macro and group averages
    per setting, and the bias (the per-language detail stays in the run folder)."""
    def per_setting(values: dict) -> dict:
        return {setting: _rounded(metrics.get(primary)) for setting, metrics in values.items()
                if isinstance(metrics, dict)}

    return {"primary": primary, "macro": per_setting(macro), "bias": _rounded(bias),
            "groups": {name: per_setting(group) for name, group in groups.items()}}


def primary_results(summary: dict) -> tuple[str, dict]:
    """(dataset, index results) of the run's first evaluation dataset, or ("", {})."""
    return next(iter((summary.get("results") or {}).items()), ("", {}))


def primary_metric(run_dir: Path, dataset: str, default: str = "map") -> str:
    results = read_json(run_dir / "eval" / dataset / "results.json")
    return results.get("primary_metric", default) if results else default


def summarise_run_dir(run_dir: Path) -> dict | None:
    """An index summary from the files of one run folder (None if it is not a run)."""
    spec = read_json(run_dir / SPEC_FILE)
    record = read_json(run_dir / RUN_FILE) or {}
    if spec is None or not ((run_dir / EVENTS_FILE).exists() or record):
        return None
    events = read_events(run_dir / EVENTS_FILE)
    summary = {"id": record.get("id", run_dir.name), **spec_summary(spec), "results": {}, "step": 0,
               "total_steps": None, "loss": None}
    summary.update({key: record[key] for key in record if key not in ("id",)})
    for event in events:
        if event.kind == "started":
            summary.update(total_steps=event.total_steps, device=event.device, started=summary.get("started") or event.time)
        elif event.kind == "step":
            summary.update(step=event.step, loss=event.loss)
        elif event.kind == "eval_done":
            summary["results"][event.dataset] = results_summary(event.macro, event.groups, event.bias,
                                                                primary_metric(run_dir, event.dataset))
    summary.setdefault("created", (events[0].time if events else (run_dir / SPEC_FILE).stat().st_mtime))
    status = record.get("status")
    if status not in STATUSES or status in ACTIVE:
        status = status_from_events(events, record)
    summary["status"] = status
    if status != "running" and events and not summary.get("ended"):
        summary["ended"] = events[-1].time
    last_failure = next((event for event in reversed(events) if event.kind == "failed"), None)
    if status == "failed" and last_failure and not summary.get("error"):
        summary["error"] = last_failure.error
    return summary


def status_from_events(events: list, record: dict) -> str:
    """The status a run's own record implies when no live parent owns it."""
    terminal = next((event for event in reversed(events) if event.kind in ("finished", "failed", "stopped")), None)
    if terminal is None:
        return "running" if pid_alive(record.get("pid")) and pid_alive(record.get("parent_pid")) else "interrupted"
    if terminal.kind == "finished":
        return "finished"
    if terminal.kind == "failed":
        return "failed"
    return "cancelled" if record.get("cancel_requested") else "interrupted"


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
