"""A store of recorded runs and a runner that replays them: the UI tests' world."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.child.replay import replay_command
from engine.parent.runner import Runner
from engine.parent.store import RunStore
from tui.app import create_app

FIXTURES = Path(__file__).parent / "fixtures" / "recorded"


def recorded_store(root: Path, runs: dict[str, str] | None = None) -> RunStore:
    """A runs folder holding copies of recorded runs under fixed ids (stable snapshots)."""
    runs = runs or {"hybrid-run": "hybrid", "mono-run": "monolingual", "failed-run": "failure"}
    runs_dir = root / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(runs_dir)
    for run_id, fixture in runs.items():
        shutil.copytree(FIXTURES / fixture, runs_dir / run_id)
    store.rebuild()
    return store


def grouped_store(root: Path) -> RunStore:
    """A runs folder with one grid: hybrid and X-X, two seeds each (copies of recorded runs
    renamed as a grid names its runs), and one run outside the grid."""
    import json

    runs_dir = root / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    for strategy, fixture in (("hybrid", "hybrid"), ("monolingual", "monolingual")):
        for seed in (1, 2):
            run_id = f"grid-{strategy}-{seed}"
            shutil.copytree(FIXTURES / fixture, runs_dir / run_id)
            spec_path = runs_dir / run_id / "spec.json"
            spec = json.loads(spec_path.read_text())
            name = f"study-strategy={strategy}-seed={seed}"
            spec_path.write_text(json.dumps({**spec, "name": name, "train": {**spec.get("train", {}), "seed": seed}}))
            (runs_dir / run_id / "run.json").write_text(json.dumps(
                {"id": run_id, "name": name, "status": "finished", "group": "study", "created": 1795600000.0 + seed,
                 "started": 1795600000.0 + seed, "ended": 1795600090.0 + 7 * seed}))
    shutil.copytree(FIXTURES / "failure", runs_dir / "lone-run")
    store = RunStore(runs_dir)          # it indexes the folders it finds (and says so: not in a snapshot)
    store.messages.clear()
    return store


def replay_app(root: Path, source: str = "hybrid", rate: float | None = 200.0, runs: dict | None = None,
               store: RunStore | None = None, **options):
    store = store or recorded_store(root, runs)
    runner = Runner(store, cpu_slots=2, gpus=[], command=replay_command(FIXTURES / source, rate=rate),
                    grace_seconds=5)
    options.setdefault("experiments_dir", root / "experiments")
    options.setdefault("exports_dir", root / "exports")
    return create_app(store, runner, **options)


async def wait_until(pilot, predicate, tries: int = 2400) -> None:
    """Let the app process messages until `predicate()` holds (no fixed sleeps; the number of
    tries only bounds a failing test, generously, so a loaded machine never fails it)."""
    for _ in range(tries):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")
