"""`hbt-tui`: one command line, the terminal UI its default command.

    hbt-tui [--runs-dir D] [--jobs N] [--open SPEC]   the terminal UI
    hbt-tui --run SPEC | runs | show | compare | ...  headless (engine.parent.commands)

One parser (engine.parent.commands.build_parser) reads every argument; a word is a command only
in the command's place, so `hbt-tui --runs-dir runs` opens the UI on the folder `runs`.
"""

from __future__ import annotations

import argparse
import sys


def pause_collector_for_startup() -> None:
    """Start-up allocates long-lived objects (modules, styles, widgets) in bulk; collecting
    them is wasted work. The collector is paused until the app has drawn its first frame,
    when the survivors are frozen and it resumes (`HbtApp._freeze_startup_objects`)."""
    import gc

    gc.disable()


def open_tui(args: argparse.Namespace) -> int:
    from tui.app import run_app

    return run_app(args.runs_dir, args.jobs, args.open_spec)


def main(argv: list[str] | None = None) -> int:
    pause_collector_for_startup()     # a headless command turns it back on (engine.parent.commands.main)
    from engine.parent.commands import main as commands

    return commands(sys.argv[1:] if argv is None else argv, default=open_tui)


if __name__ == "__main__":
    sys.exit(main())
