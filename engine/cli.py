"""`python -m engine.cli ...`: the headless commands of `hbt-tui` (engine.parent.commands).
An entry point: nothing imports it."""

import sys

from engine.parent.commands import main

if __name__ == "__main__":
    sys.exit(main())
