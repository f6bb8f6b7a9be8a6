"""What the CLI and the TUI both do to runs that are not running here, written once.

`delete_run` removes a run's folder and its index row — only what is the run's: a folder that
is a symbolic link loses the link, never what it points to; a folder that cannot be removed
whole keeps its index row and says why.
"""

from __future__ import annotations

import os
import shutil

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
