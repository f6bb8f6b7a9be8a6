"""One run as a subprocess: check the input, then train and evaluate (or only evaluate).

stdout carries only JSON-lines events (engine.contract.events), also appended to the run's
events.jsonl; logs go to stderr. SIGTERM/SIGINT make the loop checkpoint, emit a `stopped`
event and exit cleanly (code 128 + signal). Bad input (spec, data, model, run directory) is
caught before the run directory is touched: one line, exit code 2. A full disk ends the run
as failed with "no space left on device", its half-written files removed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path

from engine.child.process import DiskFull, StopFlag, is_disk_full, setup_logging
from engine.contract.errors import EXIT_USER_ERROR, RunError, UserError
from engine.contract.events import EventWriter, Failed, open_event_log
from engine.contract.layout import RunFolder, write_json_atomic
from engine.contract.validation import load_spec

log = logging.getLogger("hbt.train")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine.train", description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", help="spec JSON (default with --resume: DIR/spec.json)")
    parser.add_argument("--run-dir", required=True, type=Path, help="folder for events, checkpoints, results")
    parser.add_argument("--resume", action="store_true", help="continue from the newest intact checkpoint in DIR")
    parser.add_argument("--stop-at-step", type=int, help="checkpoint and stop cleanly after this step")
    return parser.parse_args(argv)


def checked_run_args(namespace: argparse.Namespace):
    """Every check that can fail on the user's input, before anything is written."""
    from engine.child.loop import RunArgs
    from engine.child.preflight import check_runnable

    folder = RunFolder(namespace.run_dir)
    spec_path = namespace.spec or (folder.spec if namespace.resume else None)
    if spec_path is None:
        raise RunError("give a SPEC file (or --resume to continue the run in --run-dir)")
    spec = load_spec(spec_path)
    if spec.grid:
        raise RunError(f"{spec_path}: the spec has a grid; run it with `hbt-tui --run` to expand it")
    check_runnable(spec)
    _check_run_dir(folder, namespace.resume)
    return RunArgs(spec, folder, namespace.resume, namespace.stop_at_step)


def _check_run_dir(folder: RunFolder, resume: bool) -> None:
    if resume:
        if not folder.has_checkpoint():
            raise RunError(f"{folder.path}: no checkpoint to resume from")
        return
    if folder.events.exists() and int(os.environ.get("RANK", 0)) == 0:   # rank 0 may have started it already
        raise RunError(f"{folder.path}: already holds a run (events.jsonl exists); use --resume or a new --run-dir")
    existing = next((parent for parent in [folder.path, *folder.path.parents] if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RunError(f"{folder.path}: {existing} is not a directory")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"{folder.path}: cannot create the run directory ({existing} is not writable)")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    try:
        args = checked_run_args(_parse_args(argv))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    folder = args.folder
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
        if not folder.spec.exists():
            write_json_atomic(folder.spec, args.spec.to_dict(), indent=2)
    except OSError as error:
        print(f"error: cannot create run directory {folder.path}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USER_ERROR
    stop = StopFlag().install().follow_parent()
    main_rank = int(os.environ.get("RANK", 0)) == 0        # under torchrun, rank 0 alone reports and writes
    with open_event_log(folder.events) if main_rank else contextlib.nullcontext() as events_log:
        writer = EventWriter(events_log, sys.stdout if main_rank else None)
        try:
            from engine.child.loop import run

            run(args, writer, stop)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            writer.emit(Failed(error=str(error)))
            return EXIT_USER_ERROR
        except Exception as error:  # the run failed: say why (the event first: the log may be on a full disk)
            tail = "".join(traceback.format_exc().splitlines(keepends=True)[-20:])
            if isinstance(error, DiskFull) or is_disk_full(error, folder.path):
                message = str(error) if isinstance(error, DiskFull) else "no space left on device"
            else:
                message = f"{type(error).__name__}: {error}"
            writer.emit(Failed(error=message, traceback=tail))
            with contextlib.suppress(OSError):
                print(tail, file=sys.stderr)
                log.error("run failed: %s", message)
            return 1
    return stop.exit_code if stop.requested else 0
