"""`python -m engine.train SPEC --run-dir DIR [--resume] [--stop-at-step N]`: one run as a
subprocess (see engine.child.run). An entry point: nothing imports it."""

from engine.child.distributed import exit_process
from engine.child.run import main

if __name__ == "__main__":
    exit_process(main())
