"""Messages between the runner (through the app), workers and the screens: small classes
named as facts. Step messages replace an unprocessed step of the same run, so a fast
training loop can never flood the UI. `RunView` is the protocol a screen implements to be
told about runs; the app tells every such screen on its stack, and no other."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from engine.contract.events import Event, Step


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


def event_message(run_id: str, event: Event) -> RunEventReceived:
    """The message that carries `event`: a step's may be superseded, the others never."""
    return StepReceived(run_id, event) if isinstance(event, Step) else RunEventReceived(run_id, event)


class RunStatusChanged(Message):
    """A run changed state (queued, running, finished, ...); `summary` is its index row."""

    def __init__(self, run_id: str, summary: dict) -> None:
        super().__init__()
        self.run_id = run_id
        self.summary = summary


class RunsPrepared(Message):
    """A submission passed every check (in a worker thread) and can be queued."""

    def __init__(self, prepared: Any, requester: object | None = None) -> None:
        super().__init__()
        self.prepared = prepared
        self.requester = requester


class RunsRefused(Message):
    """A submission the pre-queue check refused (its one line), for the screen that asked."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ResultsLoaded(Message):
    """A run's results.json for one dataset, read off the UI thread (None: not there yet)."""

    def __init__(self, run_id: str, dataset: str, results: dict | None) -> None:
        super().__init__()
        self.run_id = run_id
        self.dataset = dataset
        self.results = results


class ReportLoaded(Message):
    """A saved report's Markdown and data, read off the UI thread."""

    def __init__(self, report_id: str, text: str, data: dict) -> None:
        super().__init__()
        self.report_id = report_id
        self.text = text
        self.data = data


class RunView:
    """What a screen that shows runs live implements; the app calls these for every run
    message, on every screen in the stack that is a RunView. The defaults ignore them."""

    def run_event(self, message: RunEventReceived) -> None:
        """A run reported an event (steps arrive as StepReceived)."""

    def run_status(self, message: RunStatusChanged) -> None:
        """A run changed state."""

    def runs_rebuilt(self) -> None:
        """The index was rebuilt from the run folders: show it again."""
