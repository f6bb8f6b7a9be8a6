"""JSON-lines events between a run subprocess and its parent.

A run prints one event per line on stdout, flushed, and appends the same line to
`<run>/events.jsonl`. Every event carries the protocol version `v`, its type `event`
and a wall-clock `time`. `parse_event(line)` returns the event or None for anything
that is not a well-formed event (a stray print, a truncated last line): never raises.
Stdlib only: the UI reads these.
"""

from __future__ import annotations

import functools
import json
import time
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, ClassVar

from engine.contract.layout import repair_torn_line

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> str:
        payload = {"v": PROTOCOL_VERSION, "event": self.kind, **asdict(self)}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Notice(Event):
    """Something the user should see while nothing else reports: "loading model …", which
    checkpoint a resume used, a cache that could not be written."""

    kind: ClassVar[str] = "notice"
    message: str
    level: str = "info"          # info | warning
    step: int = 0


@dataclass(frozen=True)
class Started(Event):
    """The run is set up and about to train (or evaluate): where it runs, in what precision,
    how many steps, and from which step a resume goes on."""

    kind: ClassVar[str] = "started"
    run_name: str
    pid: int
    device: str
    precision: str
    total_steps: int
    parameters: int
    trainable_parameters: int
    resumed_from_step: int = 0
    seed: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    world_size: int = 1                 # processes of one data-parallel run
    machine: dict[str, Any] = field(default_factory=dict)   # cpu model, matmul flags, cores, threads, gpu


@dataclass(frozen=True)
class Step(Event):
    """One optimizer step done: its loss (and each objective's), learning rate and speed."""

    kind: ClassVar[str] = "step"
    step: int
    total_steps: int
    loss: float
    lr: float
    samples_per_s: float
    tokens_per_s: float
    batch_kind: str = ""
    losses: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalProgress(Event):
    """Encoding progress inside an evaluation (texts done out of total)."""

    kind: ClassVar[str] = "eval_progress"
    step: int
    dataset: str
    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class Eval(Event):
    """Results for one query language of one dataset, as soon as they are scored.

    `settings` maps mono / cross / multi to {metric: value}; `cross_by_target` maps each
    target language to its metrics; `bias` is the mean language bias (None where the
    dataset has no parallel candidates)."""

    kind: ClassVar[str] = "eval"
    step: int
    dataset: str
    language: str
    settings: dict[str, dict[str, float]]
    cross_by_target: dict[str, dict[str, float]] = field(default_factory=dict)
    bias: float | None = None
    queries: int = 0


@dataclass(frozen=True)
class EvalDone(Event):
    """A dataset's evaluation finished: macro averages over languages and groups."""

    kind: ClassVar[str] = "eval_done"
    step: int
    dataset: str
    macro: dict[str, dict[str, float]]
    groups: dict[str, dict[str, dict[str, float]]]
    bias: float | None
    results_path: str
    seconds: float = 0.0
    encode_seconds: float = 0.0
    primary_metric: str = ""
    precision: str = ""                 # the encoder's precision for this evaluation (fp32, bf16, fp16)
    cached: int = 0                     # encodings reused from the embedding cache


@dataclass(frozen=True)
class Checkpoint(Event):
    """A checkpoint was written at `step` (a resume starts from the newest intact one)."""

    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str


@dataclass(frozen=True)
class Finished(Event):
    """Training and the final evaluation are done; `model_path` holds the saved model."""

    kind: ClassVar[str] = "finished"
    step: int
    seconds: float
    model_path: str = ""


@dataclass(frozen=True)
class Stopped(Event):
    """The run received SIGTERM/SIGINT, checkpointed and exited cleanly."""

    kind: ClassVar[str] = "stopped"
    step: int
    signal: str
    checkpoint: str = ""


@dataclass(frozen=True)
class Failed(Event):
    """The run stopped on an error: one line for the user, the traceback for the log."""

    kind: ClassVar[str] = "failed"
    error: str
    traceback: str = ""
    step: int = 0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (Notice, Started, Step, EvalProgress, Eval, EvalDone, Checkpoint, Finished, Stopped,
                              Failed)
}
TERMINAL_EVENTS = (Finished, Stopped, Failed)      # the events a run ends with


def _fits(value: Any, hint: Any) -> bool:
    """Whether a decoded JSON value has the shape a field's type hint asks for: scalars exactly,
    mappings by their keys (and their values where those are numbers)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in arguments)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is dict:     # a mapping of numbers is checked through; deeper ones hold more than their hint says
        scalar = arguments[1] in (int, float, str)
        return isinstance(value, dict) and all(isinstance(key, str) and (not scalar or value_fits(item, arguments[1]))
                                               for key, item in value.items())
    return True


def value_fits(value: Any, hint: Any) -> bool:
    """A number in a mapping of numbers may also be null (a metric that could not be computed)."""
    return value is None or _fits(value, hint)


@functools.cache
def _hints(cls: type[Event]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def parse_event(line: str | bytes) -> Event | None:
    """The event on one line, or None for garbage — a stray print, a torn line, or fields of
    the wrong type (a hand-edited file) — never raises."""
    try:
        payload = json.loads(line)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(payload, dict) or payload.get("v") != PROTOCOL_VERSION:
        return None
    cls = EVENT_TYPES.get(payload.get("event")) if isinstance(payload.get("event"), str) else None
    if cls is None:
        return None
    hints = _hints(cls)
    values = {item.name: payload[item.name] for item in fields(cls) if item.name in payload}
    if not all(_fits(value, hints[name]) for name, value in values.items()):
        return None
    try:
        return cls(**values)
    except TypeError:
        return None


def read_events(path: Any) -> list[Event]:
    """All well-formed events of an events.jsonl file (missing file: none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [event for line in handle if (event := parse_event(line)) is not None]
    except FileNotFoundError:
        return []


def open_event_log(path: Path) -> IO[str]:
    """events.jsonl opened for appending, a torn last line (a writer killed mid-line) cut first."""
    repair_torn_line(path)
    return open(path, "a", encoding="utf-8")


class EventWriter:
    """Emits events to stdout (for the parent) and to events.jsonl (the record). A record that
    cannot be written (disk full) never stops the stream: the parent still hears every event."""

    def __init__(self, log: IO[str] | None, stream: IO[str] | None) -> None:
        self._log = log
        self._stream = stream
        self.log_error: OSError | None = None

    def emit(self, event: Event) -> None:
        line = event.to_json() + "\n"
        if self._log is not None and self.log_error is None:
            try:
                self._log.write(line)
                self._log.flush()
            except OSError as error:
                self.log_error = error
        if self._stream is not None:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                # the parent is gone: keep the record on disk, stop talking to the pipe
                self._stream = None
