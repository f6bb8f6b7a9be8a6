"""The run queue: launches `python -m engine.train` subprocesses and accounts for each run.

Every run gets its own process group (so a cancel reaches everything it started) and a
slot: one per visible GPU (pinned with CUDA_VISIBLE_DEVICES), or `cpu_slots` CPU slots
sharing the cores. Queued runs start by priority, then submission order. The parent reads
each run's JSON-lines stdout, keeps live progress in memory, and writes the index only at
state transitions (and a batched progress flush every `flush_seconds`).

The runner, not the child, decides the final state from the exit code, the signal and the
last event (`launch.final_status`). It writes that state to the run's own `run.json` first; the
index is a copy that may lag (a failed index write is retried later and never changes an
outcome). Each run names this runner's process as its owner, so other parents on the same
runs directory leave it alone; they ask for a cancel by dropping `cancel.request` into the
run folder, which the owner watches. It imports no torch or training code (the child does):
the UI runs it in its event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import shutil
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING

from engine.contract.errors import RunError
from engine.contract.events import EvalDone, Event, Started, parse_event, read_events
from engine.contract.layout import RunFolder, read_json, write_json_atomic, write_record
from engine.parent.executors import Executor, from_spec
from engine.parent.launch import (
    detect_gpus,
    final_status,
    stderr_tail,
    train_command,
)
from engine.parent.orphans import reconcile_run
from engine.parent.records import (
    ACTIVE,
    RESUMABLE,
    clean_record,
    current_owner,
    git_commit,
    host,
    new_run_id,
    owner_alive,
    owner_of,
    primary_metric,
    process_start,
    results_summary,
    spec_summary,
    status_from_events,
    summarise_run_dir,
)
from engine.parent.live_run import LiveRun, tracked
from engine.parent.store import IndexWriteError, RunStore

if TYPE_CHECKING:
    from engine.contract.spec import ExperimentSpec

Command = Callable[[RunFolder, bool, int], list[str]]   # (folder, resume, devices)
EventCallback = Callable[[str, Event], None]
StatusCallback = Callable[[str, dict], None]
MessageCallback = Callable[[str], None]
REQUEST_POLL_SECONDS = 0.5


class Runner:
    def __init__(self, store: RunStore, *, cpu_slots: int = 1, gpus: list[str] | None = None,
                 command: Command = train_command, on_event: EventCallback | None = None,
                 on_status: StatusCallback | None = None, on_message: MessageCallback | None = None,
                 grace_seconds: float = 20.0, flush_seconds: float = 30.0,
                 spawn: Callable[[Coroutine], object] | None = None, executor: str | None = None,
                 partition: str | None = None, trackers: list[str] | None = None) -> None:
        if cpu_slots < 1:
            raise RunError(f"--jobs must be at least 1, got {cpu_slots}")
        self.store = store
        self.command = command
        self.on_event = on_event or (lambda run_id, event: None)
        self.on_status = on_status or (lambda run_id, summary: None)
        self.on_message = on_message or (lambda text: print(f"warning: {text}", file=sys.stderr))
        self.grace_seconds = grace_seconds
        self.flush_seconds = flush_seconds
        self.trackers = tracked(trackers, self.on_message)
        self.executor: Executor = from_spec(executor, partition, grace_seconds)
        self.executor_spec = self.executor.spec
        # how each run's coroutine is started: an asyncio task by default; the UI passes
        # its own (an app-level worker) so runs outlive any screen
        self.spawn = spawn or self._spawn_task
        remote = self.executor.name != "local"   # a cluster places its jobs: --jobs of them at a time
        gpus = [] if remote else detect_gpus() if gpus is None else gpus
        threads = max(1, (os.cpu_count() or 1) // max(1, cpu_slots))
        self._free_slots: list[dict[str, str]] = (
            [{} for _ in range(cpu_slots)] if remote else
            [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus] if gpus else
            [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)} for _ in range(max(1, cpu_slots))])
        self.slot_count = len(self._free_slots)
        self.cpu_slots = cpu_slots                # as asked (--jobs): what a hand-over passes on
        self.runs: dict[str, LiveRun] = {}
        self.owner = current_owner()
        self._queue: list[tuple[int, int, str]] = []
        self._order = itertools.count()
        self._tasks: set[asyncio.Task] = set()
        self._watching = False
        self._stale: set[str] = set()         # runs whose index row lags their run.json
        self._last_flush = time.monotonic()
        self._git_commit: str | None | bool = False    # looked up at the first submission, not at start-up

    def subscribe(self, on_event: EventCallback, on_status: StatusCallback,
                  spawn: Callable[[Coroutine], object] | None = None) -> None:
        """Where events and status changes go from now on, and how run coroutines start (the UI
        passes an app-level worker, so runs outlive any screen)."""
        self.on_event, self.on_status = on_event, on_status
        if spawn is not None:
            self.spawn = spawn

    # --- submitting ----------------------------------------------------------------------------
    def submit(self, spec: ExperimentSpec, priority: int = 0, group: str | None = None,
               source: str | None = None) -> str:
        """Create the run folder and queue the run; returns its id."""
        run_id = new_run_id(spec.name)
        folder = self.store.folder(run_id)
        if self._git_commit is False:
            self._git_commit = git_commit()
        folder.path.mkdir()
        document = spec.to_dict()
        try:
            write_json_atomic(folder.spec, document, indent=2)
            record = {"id": run_id, "name": spec.name, "status": "queued", "created": time.time(),
                      "priority": priority, "spec_hash": spec.config_hash(), "git_commit": self._git_commit,
                      "host": host(), "group": group, "owner": self.owner, "source": source,
                      "devices": spec.train.devices}
            write_json_atomic(folder.record, record)
        except OSError as error:
            shutil.rmtree(folder.path, ignore_errors=True)  # no half-made folder
            raise RunError(f"cannot create run folder {folder.path}: {error.strerror or error}") from None
        self._index(run_id, lambda: self.store.upsert({**record, **spec_summary(spec.to_dict()),
                                                       "results": {}, "step": 0}))
        self._enqueue(LiveRun(run_id, folder, priority, devices=spec.train.devices, spec=document))
        return run_id

    def resume(self, run_id: str, priority: int = 0) -> None:
        """Queue an interrupted, cancelled or failed run again, from its newest intact checkpoint.
        The claim is made under the index lock, so two parents can never both resume it."""
        folder = self.store.folder(run_id)
        with self.store.lock():
            record = read_json(folder.record)
            if record is None:
                raise RunError(f"no run {run_id!r} in {self.store.runs_dir}")
            status, owner = record.get("status"), owner_of(record)
            if status in ACTIVE and owner_alive(owner):
                where = "this session" if owner["pid"] == os.getpid() else f"another hbt-tui (pid {owner['pid']})"
                raise RunError(f"run {run_id} is already {status} in {where}")
            if status in ACTIVE:
                status = status_from_events(read_events(folder.events), record)
            if status not in RESUMABLE:
                raise RunError(f"run {run_id} is {status}; only {', '.join(RESUMABLE)} runs can be resumed")
            has_checkpoint = folder.has_checkpoint()
            if not has_checkpoint and folder.events.exists():
                # nothing to continue from: start over, keeping the old record beside it
                os.replace(folder.events, folder.path / f"{folder.events.name}.{int(time.time())}")
            write_json_atomic(folder.record, {**record, "status": "queued", "owner": self.owner, "error": None,
                                              "cancel_requested": None, "ended": None})
        folder.cancel_request.unlink(missing_ok=True)
        self._index(run_id, lambda: self.store.update(run_id, status="queued", owner=self.owner, error=None,
                                                      ended=None))
        self.on_status(run_id, self.store.get(run_id) or {})
        devices = clean_record(record).get("devices")
        recorded = isinstance(devices, int) and devices >= 1     # not in a run recorded before `devices` kept it
        spec = self.runs[run_id].spec if run_id in self.runs else None      # a run this runner launched
        if spec is None and (self.trackers is not None or not recorded):
            spec = read_json(folder.spec) or {}    # an earlier parent's run: read once, for the trackers / devices
        if not recorded:
            devices = int(((spec or {}).get("train") or {}).get("devices") or 1)
        self._enqueue(LiveRun(run_id, folder, priority, resume=has_checkpoint, devices=devices, spec=spec))

    def _enqueue(self, run: LiveRun) -> None:
        self.runs[run.id] = run
        heapq.heappush(self._queue, (-run.priority, next(self._order), run.id))
        self._pump()
        if not self._watching:
            self._watching = True
            self.spawn(self._watch_requests())

    # --- scheduling ----------------------------------------------------------------------------
    def _pump(self) -> None:
        """Start queued runs while slots are free. A run over N GPUs (`train.devices`) waits
        for N GPU slots and gets them together; on CPUs it takes one slot, its ranks share it."""
        while self._queue and self._free_slots:
            _, _, run_id = self._queue[0]
            run = self.runs[run_id]
            if run.status != "queued":
                heapq.heappop(self._queue)
                continue
            gpus = self._free_slots[0].get("CUDA_VISIBLE_DEVICES")
            wanted = min(run.devices, self.slot_count) if gpus else 1
            if len(self._free_slots) < wanted:
                return
            heapq.heappop(self._queue)
            taken, self._free_slots = self._free_slots[:wanted], self._free_slots[wanted:]
            slot = {**taken[0], "CUDA_VISIBLE_DEVICES": ",".join(s["CUDA_VISIBLE_DEVICES"] for s in taken)} \
                if gpus else taken[0]
            self.spawn(self._execute(run, slot, taken))

    def _spawn_task(self, coroutine: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _execute(self, run: LiveRun, slot: dict[str, str], taken: list[dict[str, str]]) -> None:
        try:
            try:
                await self._launch(run, slot)
            except OSError as error:  # a launch failure is a failed run, never a crashed parent
                self._finish(run, "failed", f"could not start: {error.strerror or error}", None)
                return
            await self._follow(run)
        finally:
            self._free_slots.extend(taken)
            run.done.set()
            self._pump()

    async def _launch(self, run: LiveRun, slot: dict[str, str]) -> None:
        env = {**os.environ, **slot, "PYTHONUNBUFFERED": "1", "HBT_PARENT_PID": str(os.getpid())}
        run.handle = await self.executor.launch(self.command(run.folder, run.resume, run.devices), env, run.folder,
                                                run.devices)
        self._transition(run.id, "running", pid=run.handle.pid, pgid=run.handle.pid,
                         pid_start=process_start(run.handle.pid) if run.handle.pid else None, parent_pid=os.getpid(),
                         started=time.time(), slot=slot.get("CUDA_VISIBLE_DEVICES") or ("cpu" if slot else "cluster"),
                         executor=self.executor_spec, where=run.handle.where, job_id=run.handle.job_id)

    async def _follow(self, run: LiveRun) -> None:
        assert run.handle is not None
        async for line in run.handle.lines():
            event = parse_event(line)
            if event is not None:
                self._handle(run, event)
        outcome = await run.handle.wait()
        record = read_json(run.folder.record) or {}
        cancelled = run.cancel_requested or bool(record.get("cancel_requested"))
        status, error = final_status(outcome.returncode, run.terminal, cancelled, stderr_tail(run.folder),
                                     outcome.ended_as, outcome.detail)
        self._finish(run, status, error, outcome.returncode)

    def _handle(self, run: LiveRun, event: Event) -> None:
        """The run's state is the fold of its events (engine.parent.run_state); what changes its
        record is written at once, progress in batches."""
        self.on_event(run.id, event)
        if self.trackers is not None:
            self.trackers.on_event(run.folder, event, run.spec)
        run.state.apply(event)
        if isinstance(event, Started):
            self._transition(run.id, "running", device=event.device, total_steps=event.total_steps,
                             versions=event.versions, precision=event.precision, hardware=event.machine or None)
        elif isinstance(event, EvalDone):
            summary = self.store.get(run.id) or {}
            results = dict(summary.get("results") or {})
            results[event.dataset] = results_summary(event.macro, event.groups, event.bias,
                                                     event.primary_metric or primary_metric(run.folder, event.dataset),
                                                     event.precision, event.step)
            self._transition(run.id, "running", results=results, **run.progress)
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush_progress()

    def flush_progress(self) -> None:
        """One batched index write with the progress of every running run."""
        self._last_flush = time.monotonic()
        changes = [(run.id, dict(run.progress)) for run in self.runs.values()
                   if run.status == "running" and run.progress]
        self._index(None, lambda: self.store.update_many(changes))

    def _transition(self, run_id: str, status: str, **fields) -> None:
        """run.json first (the truth), then the index (a copy that may catch up later)."""
        run = self.runs.get(run_id)
        if run is not None:
            run.status = status
        folder = self.store.folder(run_id)
        record = read_json(folder.record) or {"id": run_id}
        record_fields = {key: value for key, value in fields.items() if key not in ("results",)}
        if run is not None:
            run.summary = {**run.summary, **record, **fields, "status": status}
        try:
            write_record(folder.record, {**record, **record_fields, "status": status})
        except OSError as error:
            self.on_message(f"{run_id}: could not record status {status} in {folder.record.name}: "
                            f"{error.strerror or error}")
        self._index(run_id, lambda: self.store.update(run_id, status=status, **fields))
        self.on_status(run_id, self.store.get(run_id) or {})

    def _index(self, run_id: str | None, write: Callable[[], None]) -> None:
        """Write the index; when that fails, remember the run and bring its row back in line
        with its folder at the next write that succeeds."""
        try:
            write()
        except IndexWriteError as error:
            if run_id is not None and run_id not in self._stale:
                self.on_message(str(error))
            if run_id is not None:
                self._stale.add(run_id)
            return
        self._catch_up()

    def _catch_up(self) -> None:
        while self._stale:
            run_id = self._stale.pop()
            summary = summarise_run_dir(self.store.folder(run_id).path)
            if summary is None:
                continue
            try:
                self.store.upsert(summary)
            except IndexWriteError:
                self._stale.add(run_id)
                return

    def _finish(self, run: LiveRun, status: str, error: str | None, returncode: int | None) -> None:
        fields = {"ended": time.time(), "exit_code": returncode, "error": error, **run.progress}
        if status == "failed":
            fields["stderr_tail"] = stderr_tail(run.folder)[-2000:]
        self._transition(run.id, status, **fields)
        run.folder.cancel_request.unlink(missing_ok=True)

    # --- cancelling ----------------------------------------------------------------------------
    async def cancel(self, run_id: str) -> None:
        run = self.runs.get(run_id)
        if run is None or run.status not in ACTIVE:
            raise RunError(f"run {run_id} is not queued or running in this session")
        run.cancel_requested = True
        if run.status == "queued" or run.handle is None:
            self._finish(run, "cancelled", None, None)
            run.done.set()
            return
        record = read_json(run.folder.record) or {}
        write_json_atomic(run.folder.record, {**record, "cancel_requested": True})
        await run.handle.terminate(self.grace_seconds)

    async def cancel_all(self) -> None:
        await asyncio.gather(*(self.cancel(run_id) for run_id, run in list(self.runs.items())
                               if run.status in ACTIVE), return_exceptions=True)

    async def _watch_requests(self) -> None:
        """Act on `cancel.request` files other processes drop into the folders of our runs."""
        try:
            while any(run.status in ACTIVE for run in self.runs.values()):
                for run in list(self.runs.values()):
                    if run.status in ACTIVE and not run.cancel_requested and run.folder.cancel_request.exists():
                        await self.cancel(run.id)
                await asyncio.sleep(REQUEST_POLL_SECONDS)
        finally:
            self._watching = False

    async def wait(self, run_ids: list[str] | None = None) -> None:
        """Until the given runs (default: all of this session's) are no longer queued or running."""
        targets = [self.runs[run_id] for run_id in (run_ids or list(self.runs))]
        await asyncio.gather(*(run.done.wait() for run in targets))
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._catch_up()

    # --- crash recovery ----------------------------------------------------------------------------
    def final_summary(self, run_id: str) -> dict | None:
        """The run as this parent last recorded it: the index, or what it could not write there
        (a full disk), so the final lines never show a stale state."""
        indexed = self.store.get(run_id)
        run = self.runs.get(run_id)
        if run is None or not run.summary:
            return indexed
        return {**(indexed or {}), **{key: run.summary[key] for key in ("status", "error", "ended", "exit_code")
                                      if key in run.summary}}

    def reconcile(self) -> list[str]:
        """Runs left queued or running by a parent that is gone: interrupted (or what their
        own events say). Runs whose owner is alive are never touched."""
        messages = []
        for summary in self.store.all():
            if summary.get("status") not in ACTIVE or summary["id"] in self.runs:
                continue
            run_id = summary["id"]
            message = reconcile_run(self.store, run_id, lambda write, run_id=run_id: self._index(run_id, write))
            if message:
                messages.append(message)
        return messages
