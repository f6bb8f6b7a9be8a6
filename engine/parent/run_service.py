"""The parent-side run service: what the CLI and the TUI do to runs, written once.

`RunService` is the one way both reach the runner: queue (a grid's new runs, and the
interrupted ones it resumes), run a grid's work to its end (`run_grid`: Ctrl-C or a
submission refused midway cancels what was queued, every run checkpointing), cancel (a run of
this process, or one another process owns — its owner is asked), resume, wait, delete, hand
runs over to a background process, and what is going on here (`active`, `here`). The runs
directory and its index: `runs_dir_of`, `open_store`.

`delete_run` removes a run's folder and its index row — only what is the run's: a folder that
is a symbolic link loses the link, never what it points to; a folder that cannot be removed
whole keeps its index row and says why. `continue_in_background` hands runs this process
stopped to a detached `hbt-tui resume`, which owns them from then on.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.contract.errors import RunError, UserError
from engine.parent.records import ACTIVE
from engine.parent.store import RunStore

if TYPE_CHECKING:
    from engine.contract.events import Event
    from engine.contract.spec import ExperimentSpec
    from engine.parent.runner import Runner

DEFAULT_RUNS_DIR = "runs"
GRACE_SECONDS = 20.0


def runs_dir_of(args) -> Path:
    """The runs directory a command names (`--runs-dir`), else $HBT_RUNS_DIR, else ./runs."""
    return resolve_runs_dir(getattr(args, "runs_dir", None))


def resolve_runs_dir(given: str | Path | None) -> Path:
    """`given`, else $HBT_RUNS_DIR, else ./runs."""
    return Path(given or os.environ.get("HBT_RUNS_DIR") or DEFAULT_RUNS_DIR)


def open_store(runs_dir: Path) -> RunStore:
    """The index of a runs directory; what it had to repair is said on stderr, one plain line each."""
    store = RunStore(runs_dir)
    for message in store.messages:
        print(f"note: {message}", file=sys.stderr)
    return store


@dataclass
class GridOutcome:
    """What became of a grid's work: the runs queued (in order), the error that refused a
    submission midway (a full disk: the queued runs were cancelled, with checkpoints), and
    whether the user interrupted it."""

    run_ids: list[str]
    failure: UserError | None = None
    interrupted: bool = False


class RunService:
    """Runs of one runs directory, as this process acts on them (the runner underneath starts
    and follows the processes; nothing else touches it)."""

    def __init__(self, store: RunStore, runner: Runner | None = None) -> None:
        self.store = store
        self._made: Runner | None = runner
        self.interrupted = False

    @property
    def _runner(self) -> Runner:
        """The runner, made the first time one is needed (deleting or cancelling another
        process's run needs none)."""
        if self._made is None:
            from engine.parent.runner import Runner

            self._made = Runner(self.store)
        return self._made

    @classmethod
    def start(cls, store: RunStore, jobs: int = 1, **options) -> RunService:
        """A service with its own runner (`options`: the Runner's: on_event, on_status,
        executor, partition, trackers, …); RunError for a bad --jobs or executor."""
        from engine.parent.runner import Runner

        return cls(store, Runner(store, cpu_slots=jobs, **options))

    def follow(self, on_event: Callable[[str, Event], None], on_status: Callable[[str, dict], None],
               spawn: Callable[[Coroutine], object] | None = None) -> None:
        """Where the runs' events and status changes go, and how their watchers are started."""
        self._runner.subscribe(on_event, on_status, spawn)

    # --- what is going on here ---------------------------------------------------------------------
    @property
    def jobs(self) -> int:
        return self._runner.cpu_slots

    @property
    def grace_seconds(self) -> float:
        """How long a cancelled run has to checkpoint before it is killed."""
        return self._made.grace_seconds if self._made is not None else GRACE_SECONDS

    def _runs(self) -> dict:
        return self._made.runs if self._made is not None else {}

    def here(self, run_id: str) -> bool:
        """Whether this process runs (or ran) `run_id`: its events come from its own process."""
        return run_id in self._runs()

    def status_here(self, run_id: str) -> str | None:
        run = self._runs().get(run_id)
        return run.status if run is not None else None

    def active(self) -> list[str]:
        """This process's runs that are queued or running."""
        return [run.id for run in self._runs().values() if run.status in ACTIVE]

    def reconcile(self) -> list[str]:
        return self._runner.reconcile()

    def final_summary(self, run_id: str) -> dict | None:
        return self._runner.final_summary(run_id)

    # --- acting on runs -----------------------------------------------------------------------------
    def submit(self, spec: ExperimentSpec, priority: int = 0, group: str | None = None,
               source: str | None = None) -> str:
        return self._runner.submit(spec, priority=priority, group=group, source=source)

    def resume(self, run_id: str, priority: int = 0) -> None:
        self._runner.resume(run_id, priority=priority)

    def queue(self, spec: ExperimentSpec, summary: dict | None, *, priority: int = 0, group: str | None = None,
              source: str | None = None) -> str:
        """One run a grid still needs (engine.parent.continuation): a new one (`summary` None) or
        an interrupted one resumed from its checkpoint; its id."""
        if summary is None:
            return self.submit(spec, priority, group, source)
        self.resume(summary["id"], priority)
        return summary["id"]

    async def run_grid(self, work: Iterable[tuple[ExperimentSpec, dict | None]], *, priority: int = 0,
                       group: str | None = None, source: str | None = None,
                       on_queued: Callable[[str, str], None] | None = None) -> GridOutcome:
        """Queue a grid's work (engine.parent.continuation: new runs, and interrupted ones
        resumed) and wait until every queued run has ended. `on_queued(run_id, name)` as each
        is queued. A submission refused midway (UserError: a full disk) or `interrupt()` stops
        the queuing and cancels what was queued; nothing queued is lost."""
        outcome = GridOutcome([])
        for spec, summary in work:
            if self.interrupted:
                break
            try:
                run_id = self.queue(spec, summary, priority=priority, group=group, source=source)
            except UserError as error:
                outcome.failure = error
                break
            outcome.run_ids.append(run_id)
            if on_queued is not None:
                on_queued(run_id, spec.name)
            await asyncio.sleep(0)  # let Ctrl-C in between submissions
        if self.interrupted or outcome.failure is not None:
            await self.cancel_all()
        await self.wait(outcome.run_ids)
        outcome.interrupted = self.interrupted
        return outcome

    def interrupt(self) -> bool:
        """Ctrl-C (from a running event loop): stop queuing and cancel this process's runs (they
        checkpoint and stop). False when it was already asked."""
        if self.interrupted:
            return False
        self.interrupted = True
        self._cancelling = asyncio.get_running_loop().create_task(self.cancel_all())   # held: a task is weakly kept
        return True

    async def cancel(self, run_id: str) -> str:
        """Cancel a run of this process (it checkpoints and stops), or ask the process that owns
        it; what became of it, in words."""
        if self.status_here(run_id) in ACTIVE:
            await self._runner.cancel(run_id)
            return "cancelled"
        from engine.parent.orphans import cancel_elsewhere

        summary = self.store.get(run_id)
        if summary is None or summary.get("status") not in ACTIVE:
            raise RunError(f"{run_id} is not queued or running")
        return await cancel_elsewhere(self.store, run_id, self.grace_seconds)

    async def cancel_all(self) -> None:
        await self._runner.cancel_all()

    async def wait(self, run_ids: list[str] | None = None) -> None:
        await self._runner.wait(run_ids)

    def delete(self, run_id: str) -> str:
        return delete_run(self.store, run_id)

    def continue_in_background(self, run_ids: list[str]) -> tuple[int, Path]:
        return continue_in_background(self.store, run_ids, self.jobs)


def folder_bytes(store: RunStore, run_id: str) -> int:
    """The size of a run's folder on disk (links not followed: a linked folder is the link)."""
    total = 0
    for root, _, files in os.walk(store.folder(run_id).path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def delete_run(store: RunStore, run_id: str) -> str:
    """Remove a finished (or failed, cancelled, …) run; returns what was done, in one line."""
    store.check_writable()
    summary = store.get(run_id)
    if summary is None:
        raise RunError(f"no run {run_id!r} in {store.runs_dir}")
    if summary.get("status") in ACTIVE:
        raise RunError(f"run {run_id} is {summary['status']}; cancel it first")
    path = store.folder(run_id).path
    if path.is_symlink():
        target = os.readlink(path)
        path.unlink()
        store.remove(run_id)
        return f"deleted {run_id}: removed the link {path} (what it points to, {target}, is left as it is)"
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise RunError(f"could not delete {path}: {error.strerror or error}; the run stays in the index") from None
    store.remove(run_id)
    return f"deleted {run_id}"


def continue_in_background(store: RunStore, run_ids: list[str], jobs: int) -> tuple[int, Path]:
    """Runs this process has stopped (they checkpointed) continue in a detached process, in its
    own session, so it outlives the terminal: `hbt-tui resume RUN… --jobs N`, which claims them
    under the index lock and owns them from then on; any hbt-tui follows them as runs another
    process owns. Returns its pid and the file its output goes to."""
    log = store.runs_dir / ".background" / f"resume-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        log.parent.mkdir(exist_ok=True)
        with open(log, "ab") as output:
            process = subprocess.Popen([sys.executable, "-m", "engine.cli", "resume", *run_ids,
                                        "--runs-dir", str(store.runs_dir), "--jobs", str(jobs)],
                                       stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
    except OSError as error:
        raise RunError(f"could not start the background process: {error.strerror or error}; "
                       f"`hbt-tui resume` continues the runs") from None
    return process.pid, log
