"""Runs in Weights & Biases, through `wandb`: offline by default (`wandb sync DIR/wandb/offline-*`
uploads later), online when the user is logged in and asks (`--online`, or WANDB_MODE=online).

A grid is a project (a run outside any grid goes to `hbt-tui`), the seeds of one configuration
a group; the W&B run id is derived from hbt-tui's run id, so exporting again is the same run —
and its earlier offline folder is replaced, so a sync uploads it once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from engine.contract.errors import RunError
from engine.parent.trackers.mapping import ID_TAG, TrackedRun, has_evaluation

DEFAULT_PROJECT = "hbt-tui"
EXIT = {"finished": 0, "failed": 1, "cancelled": 130, "interrupted": 130}


def wandb_id(run_id: str) -> str:
    """A W&B run id (letters and digits only) that is the same for the same hbt-tui run."""
    return "hbt" + hashlib.sha1(run_id.encode()).hexdigest()[:20]


def mode(online: bool) -> str:
    if not online and os.environ.get("WANDB_MODE") != "online":
        return "offline"
    if not (os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").is_file()):
        raise RunError("W&B online needs a login (`wandb login` or WANDB_API_KEY); without --online runs are "
                       "written offline and `wandb sync` uploads them later")
    return "online"


def start(run: TrackedRun, directory: Path, how: str):
    import wandb

    for earlier in (directory / "wandb").glob(f"offline-run-*-{wandb_id(run.id)}"):   # ours: named by its id
        shutil.rmtree(earlier, ignore_errors=True)
    return wandb.init(mode=how, dir=str(directory), project=run.group or DEFAULT_PROJECT, name=run.name,
                      id=wandb_id(run.id), group=run.configuration, job_type="train", config=run.params,
                      tags=[value for key, value in run.tags.items() if key in ("strategy", "grid") and value],
                      notes=" ".join(filter(None, [run.tags.get("mlflow.note.content"), f"({ID_TAG}={run.id})"])), resume="allow", reinit="create_new",
                      settings=wandb.Settings(silent=True, console="off", save_code=False, x_disable_stats=True))


def log_all(handle, run: TrackedRun) -> None:
    """Every metric, one history row per step (W&B's steps only go up), and the last value of each
    in the summary."""
    by_step: dict[int, dict[str, float]] = {}
    for metric in run.metrics:
        by_step.setdefault(metric.step, {})[metric.key] = metric.value
    for step in sorted(by_step):
        handle.log(by_step[step], step=step)
    for key, value in run.tags.items():
        handle.summary[key] = value


def export(runs: list[TrackedRun], directory: Path | None = None, online: bool = False) -> list[str]:
    directory = Path(directory or os.environ.get("WANDB_DIR") or ".").resolve()
    how = mode(online)
    directory.mkdir(parents=True, exist_ok=True)
    done = []
    for run in runs:
        handle = start(run, directory, how)
        try:
            log_all(handle, run)
        finally:
            handle.finish(exit_code=EXIT.get(run.status, 0))
        where = f"{directory / 'wandb'} (offline: `wandb sync` uploads it)" if how == "offline" else "W&B"
        done.append(f"{run.id}: exported as W&B run {wandb_id(run.id)} in {where}"
                    + ("" if has_evaluation(run) else " (no evaluation yet)"))
    return done


class Live:
    """A run forwarded while it trains (offline unless WANDB_MODE=online)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory or os.environ.get("WANDB_DIR") or ".").resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.how = mode(os.environ.get("WANDB_MODE") == "online")
        self.handles: dict[str, object] = {}

    def started(self, run: TrackedRun) -> None:
        self.handles[run.id] = start(run, self.directory, self.how)

    def metrics(self, run_id: str, metrics) -> None:
        handle = self.handles.get(run_id)
        if handle is None:
            return
        by_step: dict[int, dict[str, float]] = {}
        for metric in metrics:
            by_step.setdefault(metric.step, {})[metric.key] = metric.value
        for step in sorted(by_step):
            handle.log(by_step[step], step=step)

    def flush(self) -> None:
        return None

    def ended(self, run: TrackedRun) -> None:
        handle = self.handles.pop(run.id, None)
        if handle is not None:
            handle.finish(exit_code=EXIT.get(run.status, 0))
