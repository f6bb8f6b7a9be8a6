"""`python -m engine.train SPEC --run-dir DIR [--resume]`: train one dual encoder.

stdout carries only JSON-lines events (engine.protocol), also appended to
DIR/events.jsonl; logs go to stderr. SIGTERM/SIGINT make the loop checkpoint, emit a
`stopped` event and exit cleanly (code 128 + signal). Bad input (spec, data, model path,
run directory) is caught before the run directory is touched: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EXIT_USER_ERROR, RunError, UserError
from engine.protocol import EventWriter, Failed
from engine.spec import ExperimentSpec, load_spec

log = logging.getLogger("hbt.train")
EVENTS_FILE = "events.jsonl"
SPEC_FILE = "spec.json"
MODEL_DIR = "model"


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it between steps (and evaluation between batches)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.exit_code = 0

    def install(self) -> StopFlag:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.reason = signal.Signals(signum).name
        self.exit_code = 128 + signum

    def follow_parent(self) -> StopFlag:
        """When started by the runner, stop (checkpoint and exit) if the parent dies."""
        parent = os.environ.get("HBT_PARENT_PID")
        if not parent or not sys.platform.startswith("linux"):
            return self
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return self
        if os.getppid() != int(parent):  # the parent died before prctl took effect
            self._handle(signal.SIGTERM, None)
        return self

    def request(self, reason: str) -> None:
        self.reason = reason

    @property
    def requested(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True)
class Args:
    spec: ExperimentSpec
    run_dir: Path
    resume: bool
    stop_at_step: int | None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine.train", description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", help="spec JSON (default with --resume: DIR/spec.json)")
    parser.add_argument("--run-dir", required=True, type=Path, help="folder for events, checkpoints, results")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in DIR")
    parser.add_argument("--stop-at-step", type=int, help="checkpoint and stop cleanly after this step")
    return parser.parse_args(argv)


def preflight(namespace: argparse.Namespace) -> Args:
    """Every check that can fail on the user's input, before anything is written."""
    from engine.data.preflight import check_runnable

    run_dir: Path = namespace.run_dir
    spec_path = namespace.spec or (run_dir / SPEC_FILE if namespace.resume else None)
    if spec_path is None:
        raise RunError("give a SPEC file (or --resume to continue the run in --run-dir)")
    spec = load_spec(spec_path)
    if spec.grid:
        raise RunError(f"{spec_path}: the spec has a grid; run it with `hbt-tui --run` to expand it")
    check_runnable(spec)
    _check_run_dir(run_dir, namespace.resume)
    return Args(spec, run_dir, namespace.resume, namespace.stop_at_step)


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    from engine.checkpoint import latest_checkpoint

    if resume:
        if latest_checkpoint(run_dir) is None:
            raise RunError(f"{run_dir}: no checkpoint to resume from")
        return
    if (run_dir / EVENTS_FILE).exists():
        raise RunError(f"{run_dir}: already holds a run (events.jsonl exists); use --resume or a new --run-dir")
    existing = next((parent for parent in [run_dir, *run_dir.parents] if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RunError(f"{run_dir}: {existing} is not a directory")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"{run_dir}: cannot create the run directory ({existing} is not writable)")


def main(argv: list[str] | None = None) -> int:
    from engine.runtime import setup_logging

    setup_logging()
    try:
        args = preflight(_parse_args(argv))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        if not (args.run_dir / SPEC_FILE).exists():
            (args.run_dir / SPEC_FILE).write_text(args.spec.to_json(), encoding="utf-8")
    except OSError as error:
        print(f"error: cannot create run directory {args.run_dir}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USER_ERROR
    stop = StopFlag().install().follow_parent()
    with open(args.run_dir / EVENTS_FILE, "a", encoding="utf-8") as events_log:
        writer = EventWriter(events_log, sys.stdout)
        try:
            from engine.loop import train

            train(args, writer, stop)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            writer.emit(Failed(error=str(error)))
            return EXIT_USER_ERROR
        except Exception as error:  # the run failed: say why, then exit non-zero
            tail = "".join(traceback.format_exc().splitlines(keepends=True)[-20:])
            log.error("run failed: %s", error)
            print(tail, file=sys.stderr)
            writer.emit(Failed(error=f"{type(error).__name__}: {error}", traceback=tail))
            return 1
    return stop.exit_code if stop.requested else 0


def total_steps(spec: ExperimentSpec, steps_per_epoch: int) -> int:
    if spec.train.steps is not None:
        return spec.train.steps
    epochs = spec.train.epochs if spec.train.epochs is not None else 1.0
    return max(1, math.ceil(epochs * steps_per_epoch))


if __name__ == "__main__":
    sys.exit(main())
