"""Grids that continue, with the real runner: a grid run twice trains nothing the second time,
an interrupted grid resumes its runs from their checkpoints, a failed run is re-run only when
asked, and --dry-run says all of it with the time that remains."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.contract.events import read_events
from engine.contract.layout import RunFolder
from runs_helpers import env, tiny_spec, wait_for, write

pytestmark = pytest.mark.slow


def hbt(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**env(), "COLUMNS": "200"}, timeout=timeout)


def grid_spec(tmp_path: Path, model: Path, steps: int = 2) -> Path:
    document = tiny_spec(model, **{"train.steps": steps, "train.checkpoint_every": 2, "eval.max_queries": 6})
    document["name"] = "cont"
    document["grid"] = {"train.seed": [1, 2]}
    return write(tmp_path / "grid.json", document)


def run_folders(runs: Path) -> list[RunFolder]:
    return sorted((RunFolder(path) for path in runs.iterdir() if path.is_dir() and not path.name.startswith(".")),
                  key=lambda folder: folder.id)


def test_a_grid_run_twice_trains_nothing_the_second_time(tmp_path, tiny_model):
    runs, spec = tmp_path / "runs", grid_spec(tmp_path, tiny_model)
    first = hbt("--run", spec, "--runs-dir", runs)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {folder.id: folder.events.read_bytes() for folder in run_folders(runs)}
    assert len(before) == 2
    plan = hbt("--run", spec, "--runs-dir", runs, "--dry-run")
    assert plan.returncode == 0 and "0 runs would be created" in plan.stdout
    assert "2 already finished: skipped:" in plan.stdout
    second = hbt("--run", spec, "--runs-dir", runs)
    assert second.returncode == 0, second.stderr[-2000:]
    assert {folder.id: folder.events.read_bytes() for folder in run_folders(runs)} == before
    assert second.stderr.count("already finished: skipped") == 2
    assert "nothing to do: 2 of the 2 runs already finished" in second.stderr
    changed = json.loads(grid_spec(tmp_path, tiny_model).read_text())
    changed["train"]["lr"] = 2e-3                      # another spec under the same names: new runs
    third = hbt("--run", write(tmp_path / "changed.json", changed), "--runs-dir", runs, "--dry-run")
    assert "2 runs would be created" in third.stdout and "already finished" not in third.stdout


def test_an_interrupted_grid_resumes_its_runs_from_their_checkpoints(tmp_path, tiny_model):
    runs, spec = tmp_path / "runs", grid_spec(tmp_path, tiny_model, steps=30)
    parent = subprocess.Popen([sys.executable, "-m", "engine.cli", "--run", str(spec), "--runs-dir", str(runs)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())

    def checkpointed() -> bool:
        folders = run_folders(runs) if runs.exists() else []
        return bool(folders) and any(folder.has_checkpoint() for folder in folders)

    wait_for(checkpointed, what="a checkpoint", every=0.05)
    parent.send_signal(signal.SIGINT)
    parent.communicate(timeout=300)
    stopped = {folder.id: json.loads(folder.record.read_text())["status"] for folder in run_folders(runs)}
    assert set(stopped.values()) <= {"cancelled", "interrupted"}, stopped
    resumable = [folder for folder in run_folders(runs) if folder.has_checkpoint()]
    plan = hbt("--run", spec, "--runs-dir", runs, "--dry-run")
    assert "0 runs would be created" in plan.stdout and "2 would be resumed from their checkpoints" in plan.stdout
    again = hbt("--run", spec, "--runs-dir", runs)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(stopped) == [folder.id for folder in run_folders(runs)]        # the same runs, no new ones
    for folder in resumable:
        started = [event for event in read_events(folder.events) if event.kind == "started"]
        assert started[-1].resumed_from_step > 0
        assert json.loads(folder.record.read_text())["status"] == "finished"


def test_a_failed_run_is_re_run_only_with_retry_failed(tmp_path, tiny_model):
    runs, spec = tmp_path / "runs", grid_spec(tmp_path, tiny_model)
    assert hbt("--run", spec, "--runs-dir", runs).returncode == 0
    failed = run_folders(runs)[0]
    record = json.loads(failed.record.read_text())
    failed.record.write_text(json.dumps({**record, "status": "failed", "error": "made to fail"}))
    assert hbt("index", "rebuild", "--runs-dir", runs).returncode == 0
    kept = hbt("--run", spec, "--runs-dir", runs)
    assert kept.returncode == 1 and "failed: kept as it is (--retry-failed re-runs it)" in kept.stderr
    assert json.loads(failed.record.read_text())["status"] == "failed"
    plan = hbt("--run", spec, "--runs-dir", runs, "--dry-run", "--retry-failed")
    assert "1 would be resumed from their checkpoints" in plan.stdout
    assert "estimated time of what remains:" in plan.stdout and "the mean of 1 finished runs" in plan.stdout
    retried = hbt("--run", spec, "--runs-dir", runs, "--retry-failed")
    assert retried.returncode == 0, retried.stderr[-2000:]
    assert json.loads(failed.record.read_text())["status"] == "finished"
    assert len(run_folders(runs)) == 2
