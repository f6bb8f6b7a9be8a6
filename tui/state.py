"""What the UI knows about a run between index writes: progress, the loss curve, the
evaluation cells filled so far and a tail of the event log. Built from a run's
events.jsonl when a screen opens it, then kept current by the events the runner reports.
Message handlers own this state; nothing else writes it."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from engine.contract.events import Event, read_events
from engine.contract.layout import RunFolder


@dataclass
class EvalCells:
    """The latest evaluation of one dataset: cells per language as they arrive."""

    step: int = -1
    settings: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # language -> setting -> metrics
    bias: dict[str, float | None] = field(default_factory=dict)
    macro: dict[str, dict[str, float]] = field(default_factory=dict)
    groups: dict[str, dict] = field(default_factory=dict)
    overall_bias: float | None = None
    done: bool = False
    progress: str = ""


@dataclass
class RunLive:
    step: int = 0
    total_steps: int | None = None
    loss: float | None = None
    samples_per_s: float | None = None
    losses: deque = field(default_factory=lambda: deque(maxlen=5000))
    evals: dict[str, EvalCells] = field(default_factory=dict)
    log: deque = field(default_factory=lambda: deque(maxlen=300))
    error: str | None = None
    preparing: str | None = None          # "loading model …" until the run has started
    updated: float = field(default_factory=time.monotonic)

    def apply(self, event: Event) -> None:
        self.updated = time.monotonic()
        if event.kind == "step":
            self.step, self.total_steps, self.loss = event.step, event.total_steps, event.loss
            self.samples_per_s = event.samples_per_s
            self.losses.append(event.loss)
            return
        if event.kind == "notice":
            self.preparing = event.message if event.level == "info" else self.preparing
        elif event.kind == "started":
            self.total_steps = event.total_steps
            self.step = max(self.step, event.resumed_from_step)
            self.preparing = None
        elif event.kind == "eval_progress":
            self._cells(event.dataset, event.step).progress = f"{event.stage} {event.done}/{event.total or '?'}"
            return
        elif event.kind == "eval":
            cells = self._cells(event.dataset, event.step)
            cells.settings.setdefault(event.language, {}).update(event.settings)
            if event.bias is not None:
                cells.bias[event.language] = event.bias
        elif event.kind == "eval_done":
            cells = self._cells(event.dataset, event.step)
            cells.macro, cells.groups, cells.overall_bias, cells.done = event.macro, event.groups, event.bias, True
            cells.progress = ""
        elif event.kind == "failed":
            self.error = event.error
        self.log.append(describe(event))

    def _cells(self, dataset: str, step: int) -> EvalCells:
        cells = self.evals.get(dataset)
        if cells is None or step != cells.step:
            cells = self.evals[dataset] = EvalCells(step=step)
        return cells


def describe(event: Event) -> str:
    """One line of the event log."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.time))
    if event.kind == "notice":
        return f"{clock} {'warning: ' if event.level == 'warning' else ''}{event.message}"
    if event.kind == "started":
        return f"{clock} started on {event.device} ({event.precision}), {event.total_steps} steps"
    if event.kind == "eval":
        parts = ", ".join(f"{setting} {metrics.get('map', next(iter(metrics.values()), 0)):.3f}"
                          for setting, metrics in event.settings.items())
        return f"{clock} eval {event.dataset} {event.language} (step {event.step}): {parts}"
    if event.kind == "eval_done":
        return f"{clock} eval {event.dataset} done in {event.seconds:.0f} s (step {event.step})"
    if event.kind == "checkpoint":
        return f"{clock} checkpoint at step {event.step}"
    if event.kind == "finished":
        return f"{clock} finished at step {event.step} in {event.seconds:.0f} s"
    if event.kind == "stopped":
        return f"{clock} stopped by {event.signal} at step {event.step}"
    if event.kind == "failed":
        return f"{clock} FAILED: {event.error}"
    return f"{clock} {event.kind}"


def live_from_folder(folder: RunFolder) -> RunLive:
    live = RunLive()
    for event in read_events(folder.events):
        live.apply(event)
    return live
