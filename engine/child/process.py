"""The run subprocess's own plumbing: its log on stderr, stop signals, following its parent,
and telling a full disk from other failures. Stdlib only, so bad input is refused before
torch is imported."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import sys
from pathlib import Path


def setup_logging() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


class StopFlag:
    """Set by SIGTERM/SIGINT, and by SIGUSR2 (Slurm's warning before a time limit or a
    preemption); the loop checks it between steps (and evaluation between batches)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.exit_code = 0

    def install(self) -> StopFlag:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.reason = signal.Signals(signum).name
        self.exit_code = 128 + signum

    def follow_parent(self) -> StopFlag:
        """When started by the runner, stop (checkpoint and exit) if the parent dies. A rank
        under torchrun follows torchrun (its parent); an orphaned torchrun is stopped by the
        next hbt-tui that reconciles the run (it signals the run's whole process group)."""
        parent = os.environ.get("HBT_PARENT_PID")
        if not parent or not sys.platform.startswith("linux"):
            return self
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return self
        if "LOCAL_RANK" not in os.environ and os.getppid() != int(parent):  # died before prctl took effect
            self._handle(signal.SIGTERM, None)
        return self

    def request(self, reason: str) -> None:
        self.reason = reason

    @property
    def requested(self) -> bool:
        return self.reason is not None


class DiskFull(OSError):
    """A write ran out of space; what was half-written has been removed."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.ENOSPC, f"no space left on device (writing {what})")

    def __str__(self) -> str:
        return self.strerror or "no space left on device"


def is_disk_full(error: BaseException, where: Path) -> bool:
    """Whether a failed write was a full disk. torch and safetensors wrap ENOSPC in their own
    exception types, so the free space left is asked too."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "No space left" in str(error) or "StorageFull" in str(error):
        return True
    try:
        return shutil.disk_usage(where).free < 1024 * 1024
    except OSError:
        return False
