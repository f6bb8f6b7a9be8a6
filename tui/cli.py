"""`hbt-tui`: the Textual app with no arguments, the headless engine CLI otherwise."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        from tui.app import run_app

        return run_app()
    from engine.cli import main as headless

    return headless(argv)


if __name__ == "__main__":
    sys.exit(main())
