"""One fold of a run's event stream: what its events say about it.

`RunState.apply(event)` is the only place a run's events become its state — step, loss,
throughput, ETA, the evaluations cell by cell, how it ended — and the runner, the headless
output, the index rebuild and the TUI all use it, so a run looks the same whoever started it.
Events are dispatched by their class, not by a `kind` string. `EventTail` reads a run's
events.jsonl as it grows (only the new bytes), so a process can follow runs it does not own.

Stdlib only (the TUI imports it at start-up).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from engine.contract.events import (Checkpoint, Eval, EvalDone, EvalProgress, Event, Failed, Finished, Notice,
                                    Started, Step, Stopped, TERMINAL_EVENTS, parse_event)


@dataclass
class EvalCells:
    """One evaluation of one dataset: cells per language as they arrive."""

    step: int = -1
    settings: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # language -> setting -> metrics
    bias: dict[str, float | None] = field(default_factory=dict)
    macro: dict[str, dict[str, float]] = field(default_factory=dict)
    groups: dict[str, dict] = field(default_factory=dict)
    overall_bias: float | None = None
    done: bool = False
    progress: str = ""
    primary_metric: str = ""
    seconds: float = 0.0


@dataclass
class RunState:
    step: int = 0
    total_steps: int | None = None
    loss: float | None = None
    samples_per_s: float | None = None
    lr: float | None = None
    losses: deque = field(default_factory=lambda: deque(maxlen=5000))
    evals: dict[str, EvalCells] = field(default_factory=dict)            # the latest evaluation per dataset
    history: dict[str, list[EvalCells]] = field(default_factory=dict)    # every finished evaluation per dataset
    log: deque = field(default_factory=lambda: deque(maxlen=300))
    device: str | None = None
    precision: str | None = None
    started: float | None = None
    ended: float | None = None
    terminal: Event | None = None         # finished / stopped / failed, the last one seen
    error: str | None = None
    preparing: str | None = None          # "loading model …" until the run has started
    updated: float = field(default_factory=time.monotonic)
    _first_step: tuple[float, int] | None = None
    _last_step: tuple[float, int] | None = None

    # --- the fold ---------------------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        self.updated = time.monotonic()
        handler = HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)
        if not isinstance(event, (Step, EvalProgress)):
            self.log.append(describe(event))

    def _step(self, event: Step) -> None:
        self.step, self.total_steps, self.loss = event.step, event.total_steps, event.loss
        self.samples_per_s, self.lr = event.samples_per_s, event.lr
        self.losses.append(event.loss)
        if self._first_step is None:
            self._first_step = (event.time, event.step)
        self._last_step = (event.time, event.step)

    def _notice(self, event: Notice) -> None:
        if event.level == "info" and self.started is None:
            self.preparing = event.message

    def _started(self, event: Started) -> None:
        self.total_steps = event.total_steps
        self.step = max(self.step, event.resumed_from_step)
        self.device, self.precision = event.device, event.precision
        self.started = self.started or event.time
        self.preparing = None
        self._first_step = None           # a resumed run: time its own steps
        self.terminal, self.error, self.ended = None, None, None

    def _eval_progress(self, event: EvalProgress) -> None:
        self.cells(event.dataset, event.step).progress = f"{event.stage} {event.done}/{event.total or '?'}"

    def _eval(self, event: Eval) -> None:
        cells = self.cells(event.dataset, event.step)
        cells.settings.setdefault(event.language, {}).update(event.settings)
        if event.bias is not None:
            cells.bias[event.language] = event.bias

    def _eval_done(self, event: EvalDone) -> None:
        cells = self.cells(event.dataset, event.step)
        cells.macro, cells.groups, cells.overall_bias, cells.done = event.macro, event.groups, event.bias, True
        cells.progress, cells.primary_metric, cells.seconds = "", event.primary_metric, event.seconds
        history = self.history.setdefault(event.dataset, [])
        history[:] = [earlier for earlier in history if earlier.step != event.step] + [cells]

    def _ended(self, event: Finished | Stopped | Failed) -> None:
        self.terminal, self.ended = event, event.time
        if isinstance(event, Failed):
            self.error = event.error

    def cells(self, dataset: str, step: int) -> EvalCells:
        cells = self.evals.get(dataset)
        if cells is None or step != cells.step:
            cells = self.evals[dataset] = EvalCells(step=step)
        return cells

    # --- what it implies ----------------------------------------------------------------------------
    def eta_seconds(self) -> float | None:
        """The time the remaining steps take at the pace of the steps seen so far."""
        if self._first_step is None or self._last_step is None or not self.total_steps:
            return None
        (first_time, first_step), (last_time, last_step) = self._first_step, self._last_step
        if last_step <= first_step:
            return None
        return (last_time - first_time) / (last_step - first_step) * max(self.total_steps - last_step, 0)


HANDLERS = {Step: RunState._step, Notice: RunState._notice, Started: RunState._started,
            EvalProgress: RunState._eval_progress, Eval: RunState._eval, EvalDone: RunState._eval_done,
            **dict.fromkeys(TERMINAL_EVENTS, RunState._ended)}


def describe(event: Event) -> str:
    """One line of the event log."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.time))
    if isinstance(event, Notice):
        return f"{clock} {'warning: ' if event.level == 'warning' else ''}{event.message}"
    if isinstance(event, Started):
        return f"{clock} started on {event.device} ({event.precision}), {event.total_steps} steps"
    if isinstance(event, Eval):
        parts = ", ".join(f"{setting} {metrics.get('map', next(iter(metrics.values()), 0)):.3f}"
                          for setting, metrics in event.settings.items())
        return f"{clock} eval {event.dataset} {event.language} (step {event.step}): {parts}"
    if isinstance(event, EvalDone):
        return f"{clock} eval {event.dataset} done in {event.seconds:.0f} s (step {event.step})"
    if isinstance(event, Checkpoint):
        return f"{clock} checkpoint at step {event.step}"
    if isinstance(event, Finished):
        return f"{clock} finished at step {event.step} in {event.seconds:.0f} s"
    if isinstance(event, Stopped):
        return f"{clock} stopped by {event.signal} at step {event.step}"
    if isinstance(event, Failed):
        return f"{clock} FAILED: {event.error}"
    return f"{clock} {event.kind}"


class EventTail:
    """A run's events.jsonl read as it grows: each call returns the events appended since the
    last one (a line still being written waits for its newline)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self._partial = b""

    def read_new(self) -> list[Event]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, 2)
                size = handle.tell()
                if size < self.offset:              # cut or replaced (a resume that restarted): from the top
                    self.offset, self._partial = 0, b""
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        return [event for line in lines if (event := parse_event(line)) is not None]


def state_of(path: Path) -> tuple[RunState, EventTail]:
    """A run's state from its events so far, and the tail that keeps it current."""
    state, tail = RunState(), EventTail(path)
    for event in tail.read_new():
        state.apply(event)
    return state, tail


def fold(events: list[Event]) -> RunState:
    state = RunState()
    for event in events:
        state.apply(event)
    return state

