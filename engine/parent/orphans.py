"""Runs this process does not own: runs whose parent is gone (reconciled at start-up to what
their folder says) and a cancel asked of a run another parent owns (through
`cancel.request`, which that owner acts on)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

from engine.contract.errors import RunError
from engine.contract.events import Failed, read_events
from engine.contract.layout import read_json, write_json_atomic, write_record
from engine.parent.executors import from_spec
from engine.parent.process_groups import recorded_group, terminate
from engine.parent.records import (
    ACTIVE,
    RESUMABLE,
    current_owner,
    owner_alive,
    owner_of,
    status_from_events,
)
from engine.parent.store import RunStore


def reconcile_run(store: RunStore, run_id: str, index: Callable[[Callable[[], None]], None]) -> str | None:
    """A run the index says is queued or running: left alone while its owner lives; otherwise
    its job is stopped (it checkpoints) and it becomes interrupted, or what its own events say.
    `index` writes the index (the caller retries a failed write). Returns what changed."""
    folder = store.folder(run_id)
    record = read_json(folder.record) or {}
    if record.get("status") in ACTIVE and owner_alive(owner_of(record)):
        return None
    note = None
    if record.get("status") in ACTIVE:  # an orphan still training: it checkpoints and stops
        try:
            note = from_spec(record.get("executor") or "local").stop_orphan(record)
        except RunError:
            pass
    with store.lock():  # look again: another parent may have claimed it meanwhile
        record = read_json(folder.record) or {}
        owner = owner_of(record)
        if record.get("status") in ACTIVE and owner_alive(owner):
            return None
        previous = record.get("status")
        events = read_events(folder.events)
        status = previous if previous in RESUMABLE + ("finished",) else status_from_events(events, record)
        error = record.get("error")
        if status == "failed" and not error:        # the run said why; its parent could not record it
            error = next((event.error for event in reversed(events) if isinstance(event, Failed)), None)
        if status == "interrupted" and previous in ACTIVE:
            error = f"its parent process {owner['pid'] if owner else '?'} ended"
        try:
            write_record(folder.record, {**record, "status": status, "error": error})
        except OSError:
            pass
    index(lambda: store.update(run_id, status=status, error=error))
    suffix = f" ({note})" if note else ""
    if previous in ACTIVE:
        return f"{run_id}: was {previous} when its parent ended; now {status}{suffix}"
    return f"{run_id}: the index said it was active; its folder says {status}{suffix}"


async def cancel_elsewhere(store: RunStore, run_id: str, grace_seconds: float = 20.0,
                           timeout: float = 300.0) -> str:
    """Cancel a run this process does not own. A live owner is asked through `cancel.request`
    and acts itself; a run with no live owner is stopped and recorded here. Returns the status."""
    folder = store.folder(run_id)
    record = read_json(folder.record) or {}
    owner = owner_of(record)
    if record.get("status") not in ACTIVE:
        raise RunError(f"run {run_id} is {record.get('status')}, not queued or running")
    if owner_alive(owner):
        write_json_atomic(folder.cancel_request, {"by": current_owner(), "time": time.time()})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = (read_json(folder.record) or {}).get("status")
            if status not in ACTIVE:
                return str(status)
            if not owner_alive(owner):
                break
            await asyncio.sleep(0.2)
        else:
            raise RunError(f"run {run_id}: its owner (pid {owner['pid']}) did not stop it within {timeout:.0f} s")
    with store.lock():
        record = read_json(folder.record) or {}
        write_json_atomic(folder.record, {**record, "cancel_requested": True})
    group, note = recorded_group(record)
    if note:
        print(f"note: {run_id}: {note}", file=sys.stderr)
    if group is not None:
        try:
            await terminate(group, grace_seconds)
        finally:
            group.close()
    with store.lock():
        record = read_json(folder.record) or {}
        if record.get("status") in ACTIVE:
            record = {**record, "status": "cancelled", "ended": time.time()}
            write_json_atomic(folder.record, record)
    folder.cancel_request.unlink(missing_ok=True)
    store.update(run_id, status=record["status"], ended=record.get("ended"))
    return str(record["status"])
