"""The run queue: launches `python -m engine.train` subprocesses and accounts for each run.

Every run gets its own process group (so a cancel reaches everything it started) and a
slot: one per visible GPU (pinned with CUDA_VISIBLE_DEVICES), or `cpu_slots` CPU slots
sharing the cores. Queued runs start by priority, then submission order. The parent
reads each run's JSON-lines stdout, keeps live progress in memory, and writes the index
only at state transitions (and a batched progress flush every `flush_seconds`).

The runner, not the child, decides the final state from the exit code, the signal and the
last event: finished, failed (with the error or stderr tail), cancelled (the user asked),
interrupted (stopped by someone else, or its parent died): see `final_status`.
Stdlib only: the UI runs this in its event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import RunError
from engine.protocol import Event, parse_event, read_events
from engine.run_record import (ACTIVE, EVENTS_FILE, RESUMABLE, RUN_FILE, SPEC_FILE, STDERR_FILE, git_commit, host,
                               new_run_id, pid_alive, read_json, results_summary, spec_summary,
                               status_from_events, write_json_atomic)
from engine.spec import ExperimentSpec
from engine.store import RunStore

Command = Callable[[Path, bool], list[str]]
EventCallback = Callable[[str, Event], None]
StatusCallback = Callable[[str, dict], None]
STREAM_LIMIT = 16 * 1024 * 1024


def train_command(run_dir: Path, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "engine.train", str(run_dir / SPEC_FILE), "--run-dir", str(run_dir)]
    return command + ["--resume"] if resume else command


def detect_gpus() -> list[str]:
    """GPU ids visible to this machine, without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu for gpu in visible.split(",") if gpu.strip() and gpu.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        output = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in output.stdout.splitlines() if line.strip()] if output.returncode == 0 else []


def final_status(returncode: int, terminal: Event | None, cancel_requested: bool, stderr_tail: str) -> tuple[str, str | None]:
    """(status, error) of a run whose process exited."""
    if terminal is not None and terminal.kind == "finished" and returncode == 0:
        return "finished", None
    if cancel_requested:
        return "cancelled", None
    if returncode < 0:
        return "failed", f"killed by {signal.Signals(-returncode).name}"
    if terminal is not None and terminal.kind == "stopped":
        return "interrupted", f"stopped by {terminal.signal}"
    if terminal is not None and terminal.kind == "failed":
        return "failed", terminal.error
    tail = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else ""
    return "failed", f"exited with code {returncode}" + (f": {tail}" if tail else "")


def stderr_tail(run_dir: Path, lines: int = 20) -> str:
    try:
        with open(run_dir / STDERR_FILE, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            return b"\n".join(handle.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


@dataclass
class LiveRun:
    """What the parent knows about a run it manages."""

    id: str
    run_dir: Path
    priority: int = 0
    resume: bool = False
    status: str = "queued"
    process: asyncio.subprocess.Process | None = None
    cancel_requested: bool = False
    terminal: Event | None = None
    progress: dict = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Runner:
    def __init__(self, store: RunStore, *, cpu_slots: int = 1, gpus: list[str] | None = None,
                 command: Command = train_command, on_event: EventCallback | None = None,
                 on_status: StatusCallback | None = None, grace_seconds: float = 20.0,
                 flush_seconds: float = 30.0, spawn: Callable[[Coroutine], object] | None = None) -> None:
        self.store = store
        self.command = command
        self.on_event = on_event or (lambda run_id, event: None)
        self.on_status = on_status or (lambda run_id, summary: None)
        self.grace_seconds = grace_seconds
        self.flush_seconds = flush_seconds
        # how each run's coroutine is started: an asyncio task by default; the UI passes
        # its own (an app-level worker) so runs outlive any screen
        self.spawn = spawn or self._spawn_task
        gpus = detect_gpus() if gpus is None else gpus
        threads = max(1, (os.cpu_count() or 1) // max(1, cpu_slots))
        self._free_slots: list[dict[str, str]] = (
            [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus] if gpus else
            [{"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)} for _ in range(max(1, cpu_slots))])
        self.slot_count = len(self._free_slots)
        self.runs: dict[str, LiveRun] = {}
        self._queue: list[tuple[int, int, str]] = []
        self._order = itertools.count()
        self._tasks: set[asyncio.Task] = set()
        self._last_flush = time.monotonic()
        self._git_commit = git_commit()

    # --- submitting ----------------------------------------------------------------------------
    def submit(self, spec: ExperimentSpec, priority: int = 0, group: str | None = None) -> str:
        """Create the run folder and queue the run; returns its id."""
        run_id = new_run_id(spec.name)
        run_dir = self.store.runs_dir / run_id
        run_dir.mkdir()
        (run_dir / SPEC_FILE).write_text(spec.to_json(), encoding="utf-8")
        record = {"id": run_id, "name": spec.name, "status": "queued", "created": time.time(), "priority": priority,
                  "spec_hash": spec.config_hash(), "git_commit": self._git_commit, "host": host(), "group": group}
        write_json_atomic(run_dir / RUN_FILE, record)
        self.store.upsert({**record, **spec_summary(spec.to_dict()), "results": {}, "step": 0})
        self._enqueue(LiveRun(run_id, run_dir, priority))
        return run_id

    def resume(self, run_id: str, priority: int = 0) -> None:
        """Queue an interrupted, cancelled or failed run again, from its newest checkpoint."""
        summary = self.store.get(run_id)
        if summary is None:
            raise RunError(f"no run {run_id!r}")
        if summary["status"] not in RESUMABLE:
            raise RunError(f"run {run_id} is {summary['status']}; only {', '.join(RESUMABLE)} runs can be resumed")
        run_dir = self.store.runs_dir / run_id
        has_checkpoint = any((run_dir / "checkpoints").glob("step-*/trainer_state.json"))
        if not has_checkpoint and (run_dir / EVENTS_FILE).exists():
            # nothing to continue from: start over, keeping the old record beside it
            os.replace(run_dir / EVENTS_FILE, run_dir / f"{EVENTS_FILE}.{int(time.time())}")
        self._transition(run_id, "queued", error=None, cancel_requested=False, ended=None)
        self._enqueue(LiveRun(run_id, run_dir, priority, resume=has_checkpoint))

    def _enqueue(self, run: LiveRun) -> None:
        self.runs[run.id] = run
        heapq.heappush(self._queue, (-run.priority, next(self._order), run.id))
        self._pump()

    # --- scheduling ----------------------------------------------------------------------------
    def _pump(self) -> None:
        while self._queue and self._free_slots:
            _, _, run_id = heapq.heappop(self._queue)
            run = self.runs[run_id]
            if run.status != "queued":
                continue
            slot = self._free_slots.pop(0)
            self.spawn(self._execute(run, slot))

    def _spawn_task(self, coroutine: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _execute(self, run: LiveRun, slot: dict[str, str]) -> None:
        try:
            await self._run_process(run, slot)
        except Exception as error:  # a launch failure is a failed run, never a crashed parent
            self._finish(run, "failed", f"could not start: {error}", None)
        finally:
            self._free_slots.append(slot)
            run.done.set()
            self._pump()

    async def _run_process(self, run: LiveRun, slot: dict[str, str]) -> None:
        env = {**os.environ, **slot, "PYTHONUNBUFFERED": "1", "HBT_PARENT_PID": str(os.getpid())}
        with open(run.run_dir / STDERR_FILE, "ab") as stderr:
            run.process = await asyncio.create_subprocess_exec(
                *self.command(run.run_dir, run.resume), stdout=asyncio.subprocess.PIPE, stderr=stderr,
                start_new_session=True, env=env, limit=STREAM_LIMIT)
        pid = run.process.pid
        self._transition(run.id, "running", pid=pid, pgid=pid, parent_pid=os.getpid(), started=time.time(),
                         slot=slot.get("CUDA_VISIBLE_DEVICES") or "cpu")
        assert run.process.stdout is not None
        async for line in run.process.stdout:
            event = parse_event(line)
            if event is not None:
                self._handle(run, event)
        returncode = await run.process.wait()
        record = read_json(run.run_dir / RUN_FILE) or {}
        cancelled = run.cancel_requested or bool(record.get("cancel_requested"))
        status, error = final_status(returncode, run.terminal, cancelled, stderr_tail(run.run_dir))
        self._finish(run, status, error, returncode)

    def _handle(self, run: LiveRun, event: Event) -> None:
        self.on_event(run.id, event)
        if event.kind == "step":
            run.progress.update(step=event.step, total_steps=event.total_steps, loss=event.loss,
                                samples_per_s=event.samples_per_s)
        elif event.kind == "started":
            run.progress.update(total_steps=event.total_steps, step=event.resumed_from_step)
            self._transition(run.id, "running", device=event.device, total_steps=event.total_steps,
                             versions=event.versions, precision=event.precision)
        elif event.kind == "eval_done":
            from engine.run_record import primary_metric

            summary = self.store.get(run.id) or {}
            results = dict(summary.get("results") or {})
            results[event.dataset] = results_summary(event.macro, event.groups, event.bias,
                                                     primary_metric(run.run_dir, event.dataset))
            self._transition(run.id, "running", results=results, **run.progress)
        elif event.kind in ("finished", "failed", "stopped"):
            run.terminal = event
        if time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush_progress()

    def flush_progress(self) -> None:
        """One batched index write with the progress of every running run."""
        self._last_flush = time.monotonic()
        self.store.update_many((run.id, dict(run.progress)) for run in self.runs.values()
                               if run.status == "running" and run.progress)

    def _transition(self, run_id: str, status: str, **fields) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            run.status = status
        run_dir = self.store.runs_dir / run_id
        record = read_json(run_dir / RUN_FILE) or {"id": run_id}
        record_fields = {key: value for key, value in fields.items() if key not in ("results",)}
        write_json_atomic(run_dir / RUN_FILE, {**record, **record_fields, "status": status})
        self.store.update(run_id, status=status, **fields)
        self.on_status(run_id, self.store.get(run_id) or {})

    def _finish(self, run: LiveRun, status: str, error: str | None, returncode: int | None) -> None:
        fields = {"ended": time.time(), "exit_code": returncode, "error": error, **run.progress}
        if status == "failed":
            fields["stderr_tail"] = stderr_tail(run.run_dir)[-2000:]
        self._transition(run.id, status, **fields)

    # --- cancelling ----------------------------------------------------------------------------
    async def cancel(self, run_id: str) -> None:
        run = self.runs.get(run_id)
        if run is None or run.status not in ACTIVE:
            raise RunError(f"run {run_id} is not queued or running in this session")
        run.cancel_requested = True
        if run.status == "queued" or run.process is None:
            self._transition(run_id, "cancelled", ended=time.time())
            run.done.set()
            return
        record = read_json(run.run_dir / RUN_FILE) or {}
        write_json_atomic(run.run_dir / RUN_FILE, {**record, "cancel_requested": True})
        await terminate_group(run.process.pid, self.grace_seconds, lambda: run.process.returncode is not None)

    async def cancel_all(self) -> None:
        await asyncio.gather(*(self.cancel(run_id) for run_id, run in list(self.runs.items())
                               if run.status in ACTIVE), return_exceptions=True)

    async def wait(self, run_ids: list[str] | None = None) -> None:
        """Until the given runs (default: all of this session's) are no longer queued or running."""
        targets = [self.runs[run_id] for run_id in (run_ids or list(self.runs))]
        await asyncio.gather(*(run.done.wait() for run in targets))
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- crash recovery ----------------------------------------------------------------------------
    def reconcile(self) -> list[str]:
        """Runs left queued or running by a parent that is gone: interrupted (or what their
        own events say). Runs owned by another live parent are left alone."""
        messages = []
        for summary in self.store.all():
            if summary.get("status") not in ACTIVE or summary["id"] in self.runs:
                continue
            parent = summary.get("parent_pid")
            if parent and parent != os.getpid() and pid_alive(parent):
                continue
            run_dir = self.store.runs_dir / summary["id"]
            if pid_alive(summary.get("pid")):
                kill_group_now(summary["pid"])
            record = read_json(run_dir / RUN_FILE) or {}
            status = status_from_events(read_events(run_dir / EVENTS_FILE), {**record, "pid": None})
            write_json_atomic(run_dir / RUN_FILE, {**record, "status": status})
            self.store.update(summary["id"], status=status, error=f"its parent process {parent} ended"
                              if status == "interrupted" else summary.get("error"))
            messages.append(f"{summary['id']}: was {summary['status']} when its parent ended; now {status}")
        return messages


async def terminate_group(pgid: int, grace_seconds: float, exited: Callable[[], bool]) -> None:
    """SIGTERM to the process group, then SIGKILL if it is still there after the grace period."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while not exited() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if not exited():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_group_now(pgid: int, grace_seconds: float = 10.0) -> None:
    """For orphans found at start-up: SIGTERM, wait, SIGKILL (blocking, no event loop yet)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while pid_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
