"""`python -m engine.evaluate TARGET [...]`: `hbt-tui evaluate`, a zero-shot evaluation queued
as a run like any other (engine.parent.commands). An entry point: nothing imports it."""

import sys

from engine.parent.commands import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
