"""What the runner keeps of each run it manages (`LiveRun`: its slot needs, spec, process,
state as the fold of its events, what it last recorded), and which live trackers its events
go to (`tracked`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.contract.events import Event
from engine.contract.layout import RunFolder
from engine.parent.executors import Handle
from engine.parent.run_state import RunState


@dataclass
class LiveRun:
    """What the parent knows about a run it manages."""

    id: str
    folder: RunFolder
    priority: int = 0
    resume: bool = False
    devices: int = 1                                      # train.devices: processes (ranks) of the run
    spec: dict | None = None                              # its spec document (written, or read on resume)
    status: str = "queued"
    handle: Handle | None = None
    cancel_requested: bool = False
    state: RunState = field(default_factory=RunState)     # the fold of its events
    summary: dict = field(default_factory=dict)           # what this parent last recorded (if a write failed)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def terminal(self) -> Event | None:
        return self.state.terminal

    @property
    def progress(self) -> dict:
        """What the index keeps of a running run's progress (nothing before its first event)."""
        state = self.state
        if state.started is None and not state.losses:
            return {}
        found = {"step": state.step, "total_steps": state.total_steps}
        if state.losses:
            found.update(loss=state.loss, samples_per_s=state.samples_per_s)
        return found


def tracked(names: list[str] | None, warn: Callable[[str], None]):
    """The live trackers runs are forwarded to: `names` (`--track`), else ./hbt-tui.json's
    `trackers` (none: None, and no tracker package is imported)."""
    from engine.parent.executors import config

    names = names if names is not None else list(config().get("trackers") or [])
    if not names:
        return None
    from engine.parent.trackers.live import LiveTrackers

    return LiveTrackers(names, warn)
