"""What the CLI and the TUI both do to runs that are not running here, written once.

`delete_run` removes a run's folder and its index row — only what is the run's: a folder that
is a symbolic link loses the link, never what it points to; a folder that cannot be removed
whole keeps its index row and says why. `continue_in_background` hands runs this process
stopped to a detached `hbt-tui resume`, which owns them from then on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engine.contract.errors import RunError
from engine.parent.records import ACTIVE
from engine.parent.store import RunStore


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
