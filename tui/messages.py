"""Messages between the runner (through the app) and the screens: small dataclasses named
as facts. Step messages replace an unprocessed step of the same run, so a fast training
loop can never flood the UI."""

from __future__ import annotations

from textual.message import Message

from engine.contract.events import Event


class RunEventReceived(Message):
    """An event from a run's stream (any kind but step)."""

    def __init__(self, run_id: str, event: Event) -> None:
        super().__init__()
        self.run_id = run_id
        self.event = event


class StepReceived(RunEventReceived):
    """A training step; a newer one for the same run supersedes it while queued."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StepReceived) and message.run_id == self.run_id


class RunStatusChanged(Message):
    """A run changed state (queued, running, finished, ...); `summary` is its index row."""

    def __init__(self, run_id: str, summary: dict) -> None:
        super().__init__()
        self.run_id = run_id
        self.summary = summary
