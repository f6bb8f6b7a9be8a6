"""Forwarding runs to trackers while they train, from the parent's event stream.

The runner hands every event of its runs to `LiveTrackers.on_event`; each tracker gets the run
at its `started` event, its steps and evaluations as they come, and its artifacts at its end.
A tracker that fails (a server that went away, a package error) is reported once and then left
out for the rest of the session: it never fails, slows or stops a run.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.contract.events import EvalDone, Event, Failed, Finished, Started, Step, Stopped
from engine.contract.layout import RunFolder, read_json
from engine.parent.trackers import require
from engine.parent.trackers.mapping import Metric, evaluation_metrics, tracked_run

ENDED = {Finished: "finished", Failed: "failed", Stopped: "cancelled"}


class LiveTrackers:
    def __init__(self, names: list[str], warn: Callable[[str], None], **options) -> None:
        self.warn = warn
        self.trackers: dict[str, object] = {}
        for name in names:
            try:
                self.trackers[name] = require(name).Live(**options.get(name, {}))
            except Exception as error:           # not installed, unreachable: said once, runs go on
                warn(f"tracker {name}: {error}; runs are not forwarded to it")

    def on_event(self, folder: RunFolder, event: Event, spec: dict | None = None) -> None:
        """`spec`: the run's spec document, as the runner holds it (written for a run it queued,
        read once for one it resumed)."""
        for name, tracker in list(self.trackers.items()):
            try:
                self._forward(tracker, folder, event, spec)
            except Exception as error:
                self.trackers.pop(name, None)
                self.warn(f"tracker {name} failed ({type(error).__name__}: {str(error)[:200]}); "
                          "this session forwards nothing more to it, the runs go on")

    @staticmethod
    def _forward(tracker, folder: RunFolder, event: Event, spec: dict | None) -> None:
        if isinstance(event, Started):
            tracker.started(tracked_run(folder, spec=spec))
        elif isinstance(event, Step):
            tracker.metrics(folder.id, [Metric("train/loss", event.loss, event.step, event.time),
                                        Metric("train/lr", event.lr, event.step, event.time),
                                        Metric("train/samples_per_s", event.samples_per_s, event.step, event.time)])
        elif isinstance(event, EvalDone):
            results = read_json(folder.results(event.dataset, event.step))
            if results:
                tracker.metrics(folder.id, evaluation_metrics(results, event.step))
        elif type(event) in ENDED:
            run = tracked_run(folder, spec=spec)
            run.status = ENDED[type(event)]
            tracker.ended(run)
