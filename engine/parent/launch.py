"""How a run is started and how its end is judged: the training command (under torchrun for
`train.devices` > 1), the GPUs this machine shows, and the final state from the exit code,
the last event and the cluster's verdict (`final_status`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from engine.contract.events import Event, Failed, Finished, Stopped
from engine.contract.layout import RunFolder


def train_command(folder: RunFolder, resume: bool, devices: int = 1) -> list[str]:
    """`python -m engine.train`, under torchrun (one process per device) when the spec asks
    for `train.devices` > 1."""
    command = ["-m", "engine.train", str(folder.spec), "--run-dir", str(folder.path)] + (["--resume"] if resume else [])
    if devices > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}", *command]
    return [sys.executable, *command]


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


def final_status(returncode: int | None, terminal: Event | None, cancel_requested: bool, stderr_tail: str,
                 ended_as: str | None = None, detail: str = "") -> tuple[str, str | None]:
    """(status, error) of a run whose process exited (`ended_as`: the cluster's verdict on a job
    that ended around it: `ray job stop`, scancel, a time limit)."""
    if isinstance(terminal, Finished) and returncode in (0, None):
        return "finished", None
    if cancel_requested:
        return "cancelled", None
    if ended_as is not None:   # SIGTERM reached the run first, so it checkpointed
        return ended_as, detail or f"{ended_as} by the cluster"
    returncode = 1 if returncode is None else returncode
    if returncode < 0:
        return "failed", f"killed by {signal.Signals(-returncode).name}"
    if isinstance(terminal, Stopped):
        return "interrupted", f"stopped by {terminal.signal}"
    if isinstance(terminal, Failed):
        return "failed", terminal.error
    tail = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else ""
    return "failed", f"exited with code {returncode}" + (f": {tail}" if tail else "")


def stderr_tail(folder: RunFolder, lines: int = 20) -> str:
    try:
        with open(folder.stderr, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            return b"\n".join(handle.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except OSError:
        return ""
