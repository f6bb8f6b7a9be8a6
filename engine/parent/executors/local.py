"""Local runs: a subprocess of this parent in its own process group, stopped by signalling the
group (SIGTERM first, so the run checkpoints; SIGKILL after the grace period)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable

from engine.contract.layout import RunFolder
from engine.parent.executors.base import Outcome
from engine.parent.records import pid_alive

STREAM_LIMIT = 16 * 1024 * 1024     # the longest event line a local run may print


class LocalHandle:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.job_id = None
        self.where = f"local (pid {process.pid})"

    def lines(self) -> AsyncIterator[bytes]:
        assert self.process.stdout is not None
        return self.process.stdout.__aiter__()

    async def wait(self) -> Outcome:
        return Outcome(await self.process.wait())

    async def terminate(self, grace_seconds: float) -> None:
        await terminate_group(self.pid, grace_seconds, lambda: self.process.returncode is not None)


class LocalExecutor:
    name = "local"
    spec = "local"

    def check(self) -> None:
        return None

    async def launch(self, command: list[str], env: dict[str, str], folder: RunFolder,
                     devices: int = 1) -> LocalHandle:   # local GPUs are the runner's slots
        with open(folder.stderr, "ab") as stderr:
            process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                                                           start_new_session=True, env=env, limit=STREAM_LIMIT)
        return LocalHandle(process)

    def stop_orphan(self, record: dict) -> None:
        if pid_alive(record.get("pid")):
            kill_group_now(record["pid"])


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
