"""Signalling a run's process group only while it is provably the one we started.

A pid in a run record outlives its process: after the child exits, the kernel can hand the
same number to any unrelated program. So a recorded pid is signalled only when the process
that holds it now started at the recorded time (`/proc/<pid>/stat`, field 22), it leads its own
process group (runs are started with `start_new_session`), and — where the OS has them — a
pidfd is held across the check and the signal, so the check and the signal name one process.
Anything else is left alone with a note saying why. The parent's own children need no proof:
until the parent reaps them their pids cannot be reused.

`terminate` / `terminate_now` are the one SIGTERM → grace → SIGKILL routine, async for the
runner and blocking for start-up reconciliation.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.parent.records import host, pid_alive, process_start


@dataclass
class ProcessGroup:
    """A process group led by `pid`; `start` is the leader's start time when the group must be
    proven to be ours before each signal (None: our own unreaped child)."""

    pid: int
    start: int | None = None
    pidfd: int | None = None

    def is_ours(self) -> bool:
        if self.start is None:
            return True
        return pid_alive(self.pid) and process_start(self.pid) == self.start

    def alive(self) -> bool:
        return pid_alive(self.pid) and self.is_ours()

    def send(self, signum: int) -> bool:
        """Signal the group if it is still ours; False when it is gone (or no longer ours)."""
        if not self.is_ours():
            return False
        try:
            if self.pidfd is not None:           # still that very process? (fails once it has exited)
                signal.pidfd_send_signal(self.pidfd, 0)
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def recorded_group(record: dict) -> tuple[ProcessGroup | None, str | None]:
    """The run's process group from its record, if it is provably still the run's: (group, None),
    or (None, a note saying why it is left alone), or (None, None) when there is nothing to stop."""
    pid, start = record.get("pid"), record.get("pid_start")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return None, None
    if record.get("host") not in (None, host()):
        return None, f"pid {pid} is on {record['host']}, not this host: left alone"
    if not pid_alive(pid):
        return None, None
    if not isinstance(start, int):
        return None, f"pid {pid} is alive but the record has no start time to prove it is the run's: left alone"
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return None, None                    # it exited meanwhile
    group = ProcessGroup(pid, start, pidfd)
    now = process_start(pid)
    try:
        leader = os.getpgid(pid) == pid
    except ProcessLookupError:
        leader = False
    if now != start or not leader:
        group.close()
        what = "started at another time" if now != start else "does not lead its own process group"
        return None, f"pid {pid} now belongs to another process ({what}): left alone"
    return group, None


def _termination(group: ProcessGroup, grace_seconds: float, exited: Callable[[], bool]) -> Iterator[float]:
    """SIGTERM (the run checkpoints), pauses while it has time, SIGKILL if it is still there."""
    if not group.send(signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_seconds
    while not exited() and time.monotonic() < deadline:
        yield 0.1
    if not exited():
        group.send(signal.SIGKILL)


async def terminate(group: ProcessGroup, grace_seconds: float, exited: Callable[[], bool] | None = None) -> None:
    for pause in _termination(group, grace_seconds, exited or (lambda: not group.alive())):
        await asyncio.sleep(pause)


def terminate_now(group: ProcessGroup, grace_seconds: float = 10.0) -> None:
    """For orphans found at start-up: the same routine, blocking (no event loop yet)."""
    for pause in _termination(group, grace_seconds, lambda: not group.alive()):
        time.sleep(pause)
