"""`python -m engine.replay SOURCE --run-dir DIR [--rate N]`: replay a recorded run as if it
were training (engine.parent.replay). An entry point: nothing imports it."""

import sys

from engine.parent.replay import main

if __name__ == "__main__":
    sys.exit(main())
