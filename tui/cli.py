"""`hbt-tui`: the Textual app when no command is given, the headless engine CLI otherwise.

    hbt-tui [--runs-dir D] [--jobs N] [--open SPEC]   the terminal UI
    hbt-tui --run SPEC | runs | show | compare | ...  headless (see engine.parent.commands)
"""

from __future__ import annotations

import argparse
import sys

HEADLESS_COMMANDS = {"runs", "show", "compare", "resume", "cancel", "delete", "index", "evaluate", "data", "report",
                     "reports", "plan", "cache"}


def pause_collector_for_startup() -> None:
    """Start-up allocates long-lived objects (modules, styles, widgets) in bulk; collecting
    them is wasted work. The collector is paused until the app has drawn its first frame,
    when the survivors are frozen and it resumes (`HbtApp._freeze_startup_objects`)."""
    import gc

    gc.disable()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wants_headless = any(arg in HEADLESS_COMMANDS or arg in ("--run", "-h", "--help") or arg.startswith("--run=")
                         for arg in argv)
    if not wants_headless:
        parser = argparse.ArgumentParser(prog="hbt-tui", add_help=False)
        parser.add_argument("--runs-dir")
        parser.add_argument("--jobs", type=int, default=1)
        parser.add_argument("--open", dest="open_spec", help="open this spec file in Compose")
        known, unknown = parser.parse_known_args(argv)
        if not unknown:
            pause_collector_for_startup()
            from tui.app import run_app

            return run_app(known.runs_dir, known.jobs, known.open_spec)
    from engine.parent.commands import main as headless

    return headless(argv)


if __name__ == "__main__":
    sys.exit(main())
