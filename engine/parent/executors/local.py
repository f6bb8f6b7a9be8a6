"""Local runs: a subprocess of this parent in its own process group, stopped by signalling the
group (SIGTERM first, so the run checkpoints; SIGKILL after the grace period). A run of a parent
that is gone is stopped only while its recorded pid is provably still it
(engine.parent.process_groups)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from engine.contract.layout import RunFolder
from engine.parent.executors.base import Outcome
from engine.parent.process_groups import ProcessGroup, recorded_group, terminate, terminate_now

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
        # our own child: until we reap it, its pid (and group) cannot belong to anyone else
        await terminate(ProcessGroup(self.pid), grace_seconds, lambda: self.process.returncode is not None)


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

    def stop_orphan(self, record: dict) -> str | None:
        """Stop the recorded process group if it is provably the run's; else say why not."""
        group, note = recorded_group(record)
        if group is not None:
            try:
                terminate_now(group)
            finally:
                group.close()
        return note
