"""`python -m engine.replay SOURCE --run-dir DIR [--rate N]`: replay a recorded run as if it
were training (engine.child.replay). An entry point: nothing imports it."""

import sys

from engine.child.replay import main

if __name__ == "__main__":
    sys.exit(main())
