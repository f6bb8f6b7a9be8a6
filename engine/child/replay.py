"""`python -m engine.replay SOURCE_RUN --run-dir DIR [--rate N]`: replay a recorded run.

Prints the events of `SOURCE_RUN/events.jsonl` as a live run would (to stdout and to
`DIR/events.jsonl`), at `--rate` events per second (default: the recorded timing, capped
at 1 s per gap), and copies the source's evaluation files into DIR so the replayed run can
be browsed and compared like the original. Stdlib only: it speaks the same protocol as
`engine.child.run` and honours SIGTERM the same way, so the runner and the UI cannot tell the
difference. Used by the UI tests, the benchmarks, and for demos without a model.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import sys
import time
from pathlib import Path

from engine.contract.events import EvalDone, EventWriter, Finished, Started, Step, Stopped, open_event_log, read_events
from engine.contract.layout import EVAL_DIR, EVENTS_FILE, RunFolder


def replay_command(source: Path, rate: float | None = None, repeat_steps: int = 0):
    """A runner `command` that replays `source` instead of training."""
    def command(folder: RunFolder, resume: bool, devices: int = 1) -> list[str]:
        arguments = [sys.executable, "-m", "engine.replay", str(source), "--run-dir", str(folder.path)]
        if rate:
            arguments += ["--rate", str(rate)]
        if repeat_steps:
            arguments += ["--repeat-steps", str(repeat_steps)]
        return arguments

    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.replay", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a run folder (or an events.jsonl file) to replay")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--rate", type=float, help="events per second (default: as recorded)")
    parser.add_argument("--repeat-steps", type=int, default=0, help="emit this many step events (load tests)")
    args = parser.parse_args(argv)
    source_dir = args.source if args.source.is_dir() else args.source.parent
    events = read_events(source_dir / EVENTS_FILE)
    if not events:
        print(f"error: {source_dir / EVENTS_FILE}: no events to replay", file=sys.stderr)
        return 2
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    with open_event_log(RunFolder(args.run_dir).events) as log:
        writer = EventWriter(log, sys.stdout)
        for event, gap in _schedule(events, args.repeat_steps):
            if stopped:
                writer.emit(Stopped(step=getattr(event, "step", 0), signal="SIGTERM"))
                return 128 + signal.SIGTERM
            if isinstance(event, (EvalDone, Finished)):
                _copy_eval(source_dir, args.run_dir)
            writer.emit(dataclasses.replace(event, time=time.time()))
            _pause(gap, args.rate)
    return 0 if isinstance(events[-1], Finished) else 1


def _schedule(events: list, repeat_steps: int):
    """(event, recorded gap to the next one), with the steps stretched to `repeat_steps` if asked."""
    gaps = [later.time - event.time for event, later in zip(events, events[1:])] + [0.0]
    steps = [event for event in events if isinstance(event, Step)]
    if not repeat_steps or not steps:
        yield from zip(events, gaps)
        return
    first = events[0]
    yield (dataclasses.replace(first, total_steps=repeat_steps) if isinstance(first, Started) else first), 0.0
    for number in range(1, repeat_steps + 1):
        yield dataclasses.replace(steps[(number - 1) % len(steps)], step=number, total_steps=repeat_steps), 0.0
    yield from ((event, 0.0) for event in events[1:] if not isinstance(event, Step))


def _pause(gap: float, rate: float | None) -> None:
    time.sleep(1.0 / rate if rate else min(max(gap, 0.0), 1.0))


def _copy_eval(source: Path, target: Path) -> None:
    if (source / EVAL_DIR).is_dir() and not (target / EVAL_DIR).exists():
        shutil.copytree(source / EVAL_DIR, target / EVAL_DIR)


if __name__ == "__main__":
    sys.exit(main())
