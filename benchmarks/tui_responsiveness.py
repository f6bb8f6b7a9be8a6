"""UI responsiveness (printed, not asserted).

    python benchmarks/tui_responsiveness.py [--runs 1000] [--streams 8] [--rate 20] [--seconds 10]

1. Start-up: a fresh interpreter imports the app and renders the Runs screen of a store
   holding 1,000 runs; time from interpreter start to the first rendered frame.
2. Under load: 8 replayed runs (real subprocesses, real runner) each streaming step
   events at 20/s into the running app, Runs screen and one run's detail screen open;
   once all 8 stream (launching them is measured by neither figure): the longest
   event-loop pause (a 10 ms ticker's worst lateness) and the lag from an event's
   emission in the child to its cell changing in the Runs table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STARTUP_SCRIPT = """
import time
started = time.perf_counter()
import sys
sys.path.insert(0, {root!r})
from tui.cli import pause_collector_for_startup   # what `hbt-tui` does first
pause_collector_for_startup()
from tui.app import run_app
from tui.screens.runs import RunsScreen
import asyncio
async def measure(pilot):
    app = pilot.app
    while not isinstance(app.screen, RunsScreen) or not app.screen.query_one("#runs-table").row_count:
        await asyncio.sleep(0.001)
    rendered = asyncio.Event()
    app.screen.call_after_refresh(rendered.set)  # after the frame that shows the rows
    await rendered.wait()
    first = time.perf_counter() - started
    await pilot.pause()
    print("FIRST_FRAME_S", first, app.screen.query_one("#runs-table").row_count)
    app.exit()
run_app({runs!r}, headless=True, size=(160, 50), auto_pilot=measure)
"""


def make_store(folder: Path, count: int) -> Path:
    from benchmarks.store_scale import synthetic_summary, write_run_folders
    from engine.contract.layout import INDEX_FILE
    from engine.parent import store as store_module

    rng = random.Random(0)
    runs_dir = folder / "runs"
    runs_dir.mkdir()
    summaries = {str(i + 1): synthetic_summary(i, rng) for i in range(count)}
    write_run_folders(runs_dir, list(summaries.values()))
    (runs_dir / INDEX_FILE).write_bytes(store_module._dumps({"runs": summaries}))
    return runs_dir


def measure_startup(count: int, folder: Path) -> tuple[float, int]:
    folder.mkdir(parents=True, exist_ok=True)
    runs_dir = make_store(folder, count)
    output = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT.format(root=str(ROOT), runs=str(runs_dir))],
                            capture_output=True, text=True, timeout=120)
    line = next((l for l in output.stdout.splitlines() if l.startswith("FIRST_FRAME_S")), None)
    if line is None:
        raise SystemExit(output.stderr[-2000:])
    _, seconds, rows = line.split()
    return float(seconds), int(rows)


def measure_load(streams: int, rate: float, seconds: float, folder: Path) -> dict:
    from benchmarks.store_scale import write_step_source
    from engine.child.replay import replay_command
    from engine.parent.runner import Runner
    from engine.contract.validation import parse_spec
    from engine.parent.store import RunStore
    from tui.app import create_app
    from tui.screens.runs import RunsScreen

    source = write_step_source(folder / "source")
    store = RunStore(folder / "load-runs")
    runner = Runner(store, cpu_slots=streams, gpus=[],
                    command=replay_command(source, rate=rate, repeat_steps=int(rate * seconds)))
    app = create_app(store, runner)
    lags: list[float] = []
    pauses: list[float] = []

    async def run() -> None:
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, RunsScreen)
            # called right after a run's progress cell changed, with the emission time of its step
            screen.cells_updated = lambda run_id, event_time: lags.append(time.time() - event_time)
            ids = [runner.submit(parse_spec({"name": f"load-{i}"})) for i in range(streams)]
            app.open_run(ids[0])
            # measure the steady state: every run streaming, the detail screen open
            while not all(app.live.get(run_id) and app.live[run_id].step > 0 for run_id in ids):
                await pilot.pause(0.01)
            lags.clear()
            ticking = True

            async def ticker() -> None:
                while ticking:
                    before = time.perf_counter()
                    await asyncio.sleep(0.01)
                    pauses.append(time.perf_counter() - before - 0.01)

            tick = asyncio.get_running_loop().create_task(ticker())
            await runner.wait(ids)
            ticking = False
            await tick
            await pilot.pause()

    asyncio.run(run())
    lags.sort()
    return {"events": len(lags), "max_pause_ms": 1000 * max(pauses), "p99_pause_ms":
            1000 * sorted(pauses)[int(0.99 * (len(pauses) - 1))], "median_lag_ms": 1000 * statistics.median(lags),
            "p99_lag_ms": 1000 * lags[int(0.99 * (len(lags) - 1))], "max_lag_ms": 1000 * lags[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--starts", type=int, default=5, help="fresh interpreters timed for the start-up figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        starts = [measure_startup(args.runs, Path(folder) / f"start-{attempt}") for attempt in range(args.starts)]
    seconds = sorted(first for first, _ in starts)
    print(f"\nstart-up to the first rendered Runs screen ({starts[0][1]:,} runs in the store), {args.starts} fresh "
          f"interpreters: median {1000 * statistics.median(seconds):.0f} ms, range {1000 * seconds[0]:.0f}-"
          f"{1000 * seconds[-1]:.0f} ms (target < 400 ms; includes the interpreter's imports)")
    with tempfile.TemporaryDirectory() as folder:
        load = measure_load(args.streams, args.rate, args.seconds, Path(folder))
    print(f"{args.streams} replayed runs x {args.rate:g} step events/s for {args.seconds:g} s "
          f"({load['events']:,} batched cell updates of the Runs table):")
    print(f"  longest event-loop pause {load['max_pause_ms']:.0f} ms (p99 {load['p99_pause_ms']:.0f} ms; "
          f"target < 50 ms)")
    print(f"  event -> table cell lag: median {load['median_lag_ms']:.0f} ms, p99 {load['p99_lag_ms']:.0f} ms, "
          f"max {load['max_lag_ms']:.0f} ms (target < 250 ms)")


if __name__ == "__main__":
    main()
