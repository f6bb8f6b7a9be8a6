"""What every executor provides (the runner sees only this), and what the remote ones share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from engine.contract.layout import RunFolder
from engine.parent.records import PROJECT_ROOT   # what a cluster job runs (Ray uploads it; Slurm's cwd)

__all__ = ["PROJECT_ROOT", "Executor", "Handle", "Outcome", "remote_env"]


@dataclass
class Outcome:
    returncode: int | None            # negative: killed by that signal; None: the job ended before the run
    ended_as: str | None = None       # the cluster's verdict on such a job: cancelled (Ray STOPPED, Slurm
    detail: str = ""                  # CANCELLED) or interrupted (Slurm TIMEOUT, PREEMPTED)


class Handle(Protocol):
    where: str                        # shown in the TUI and the CLI
    pid: int | None                   # a local process group, when there is one
    job_id: str | None

    def lines(self) -> AsyncIterator[bytes]: ...
    async def wait(self) -> Outcome: ...
    async def terminate(self, grace_seconds: float) -> None: ...


class Executor(Protocol):
    name: str

    def check(self) -> None: ...                       # reachable, or a RunError (before any folder exists)
    async def launch(self, command: list[str], env: dict[str, str], folder: RunFolder,
                     devices: int = 1) -> Handle: ...           # devices: GPUs the run asks for (train.devices)
    def stop_orphan(self, record: dict) -> str | None: ...  # a run whose parent died: stop its job (or say why not)


def remote_env(env: dict[str, str]) -> dict[str, str]:
    """A job on a cluster outlives no parent process of ours: it does not follow our pid."""
    return {key: value for key, value in env.items() if key != "HBT_PARENT_PID"}
