"""Reliability of the runner and the store with real processes and the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.contract.events import read_events
from engine.parent.records import summarise_run_dir
from engine.parent.store import RunStore
from runs_helpers import env, tiny_spec, wait_for, write

pytestmark = pytest.mark.slow


def hbt(*args, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env=env(), timeout=timeout, **kwargs)


def start_hbt(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env())




def run_folders(runs: Path) -> list[Path]:
    return sorted(path for path in runs.iterdir() if path.is_dir())


def record(folder: Path) -> dict:
    try:
        return json.loads((folder / "run.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def steps_done(folder: Path) -> int:
    return sum(1 for event in read_events(folder / "events.jsonl") if event.kind == "step")


def test_four_concurrent_runs_finish_and_the_store_matches_the_folders(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.steps": 4, "train.checkpoint_every": 0})
    document["grid"] = {"sampling.strategy": ["monolingual", "crosslingual", "hybrid", "multitask"]}
    runs = tmp_path / "runs"
    result = hbt("--run", write(tmp_path / "grid.json", document), "--jobs", "4", "--runs-dir", runs, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    reported = json.loads(result.stdout)
    assert sorted(run["name"] for run in reported) == [f"tiny-strategy={s}" for s in
                                                       ("crosslingual", "hybrid", "monolingual", "multitask")]
    assert {run["status"] for run in reported} == {"finished"}
    store = RunStore(runs)
    assert len(store.all()) == 4 == len(run_folders(runs))
    for folder in run_folders(runs):
        from_folder = summarise_run_dir(folder)
        indexed = store.get(folder.name)
        assert indexed["status"] == from_folder["status"] == "finished"
        assert indexed["results"]["xquad-r"]["macro"] == from_folder["results"]["xquad-r"]["macro"]
        assert indexed["git_commit"] == from_folder["git_commit"] and indexed["host"]
        assert record(folder)["started"] < record(folder)["ended"]
    # the four ran at the same time: their processes overlapped
    spans = [(record(f)["started"], record(f)["ended"]) for f in run_folders(runs)]
    assert max(start for start, _ in spans) < min(end for _, end in spans)


def test_kill_9_of_a_child_fails_that_run_with_the_signal_and_the_others_finish(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.checkpoint_every": 0})
    document["grid"] = {"train.steps": [5, 100000, 6]}
    runs = tmp_path / "runs"
    parent = start_hbt("--run", write(tmp_path / "grid.json", document), "--jobs", "3", "--runs-dir", runs)
    long_run = wait_for(lambda: next((f for f in (run_folders(runs) if runs.exists() else [])
                                      if "steps=100000" in f.name and steps_done(f) >= 2), None),
                        what="the long run to train")
    os.kill(record(long_run)["pid"], signal.SIGKILL)
    assert parent.wait(timeout=300) == 1
    store = RunStore(runs)
    statuses = {summary["name"]: summary for summary in store.all()}
    assert statuses["tiny-steps=100000"]["status"] == "failed"
    assert statuses["tiny-steps=100000"]["error"] == "killed by SIGKILL"
    assert statuses["tiny-steps=5"]["status"] == statuses["tiny-steps=6"]["status"] == "finished"


def test_kill_9_of_the_parent_is_reconciled_to_interrupted_and_resume_finishes(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.steps": 150, "train.checkpoint_every": 5})
    runs = tmp_path / "runs"
    parent = start_hbt("--run", write(tmp_path / "spec.json", document), "--runs-dir", runs)
    folder = wait_for(lambda: next((f for f in (run_folders(runs) if runs.exists() else [])
                                    if (f / "checkpoints").exists() and steps_done(f) >= 6), None),
                      what="a checkpoint")
    parent.kill()
    parent.wait()
    child = record(folder)["pid"]
    wait_for(lambda: not Path(f"/proc/{child}").exists() or
             Path(f"/proc/{child}/stat").read_text().split()[2] == "Z", what="the orphaned run to stop")
    assert RunStore(runs).get(folder.name)["status"] == "running"  # as the dead parent left it
    listed = hbt("runs", "--runs-dir", runs, "--json")
    assert listed.returncode == 0
    result = hbt("resume", folder.name, "--runs-dir", runs)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = RunStore(runs).get(folder.name)
    assert summary["status"] == "finished" and summary["step"] == 150
    events = read_events(folder / "events.jsonl")
    resumed = [event for event in events if event.kind == "started"]
    assert len(resumed) == 2 and resumed[1].resumed_from_step > 0
    assert any(event.kind == "stopped" for event in events)  # the orphan checkpointed when its parent died


def test_corrupt_index_is_moved_aside_and_rebuilt_without_loss(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.steps": 2, "train.checkpoint_every": 0})
    document["grid"] = {"train.seed": [1, 2]}
    runs = tmp_path / "runs"
    assert hbt("--run", write(tmp_path / "grid.json", document), "--runs-dir", runs).returncode == 0
    before = {run["id"]: run for run in RunStore(runs).all()}
    (runs / "index.json").write_text('{"runs": {"1": {"id": "x", "status": ')
    listed = hbt("runs", "--runs-dir", runs, "--json")
    assert listed.returncode == 0
    assert "was corrupt" in listed.stdout + listed.stderr
    after = {run["id"]: run for run in RunStore(runs).all()}
    assert set(after) == set(before)
    for run_id, run in before.items():
        assert after[run_id]["status"] == run["status"] == "finished"
        assert after[run_id]["results"] == run["results"]
    assert list(runs.glob("index.json.corrupt-*"))
    rebuilt = hbt("index", "rebuild", "--runs-dir", runs)
    assert rebuilt.returncode == 0 and "2 runs" in rebuilt.stdout


def test_cancel_marks_cancelled_keeps_checkpoint_and_resume_continues(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.steps": 100000, "train.checkpoint_every": 0})
    runs = tmp_path / "runs"
    parent = start_hbt("--run", write(tmp_path / "spec.json", document), "--runs-dir", runs)
    folder = wait_for(lambda: next((f for f in (run_folders(runs) if runs.exists() else [])
                                    if steps_done(f) >= 3), None), what="training")
    result = hbt("cancel", folder.name, "--runs-dir", runs)
    assert result.returncode == 0, result.stderr
    assert parent.wait(timeout=120) == 1
    summary = RunStore(runs).get(folder.name)
    assert summary["status"] == "cancelled"
    assert list((folder / "checkpoints").glob("step-*/trainer_state.json"))  # SIGTERM checkpointed


def test_ctrl_c_cancels_cleanly(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.steps": 100000, "train.checkpoint_every": 0})
    runs = tmp_path / "runs"
    parent = subprocess.Popen([sys.executable, "-m", "engine.cli", "--run", str(write(tmp_path / "s.json", document)),
                               "--runs-dir", str(runs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env())
    folder = wait_for(lambda: next((f for f in (run_folders(runs) if runs.exists() else [])
                                    if steps_done(f) >= 3), None), what="training")
    parent.send_signal(signal.SIGINT)
    assert parent.wait(timeout=120) == 130
    assert RunStore(runs).get(folder.name)["status"] == "cancelled"
    assert list((folder / "checkpoints").glob("step-*"))


def test_bad_input_never_starts_a_process(tmp_path, tiny_model):
    runs = tmp_path / "runs"
    bad = write(tmp_path / "bad.json", {"name": "x", "sampling": {"alpha": 3}})
    result = hbt("--run", bad, "--runs-dir", runs)
    assert result.returncode == 2 and "sampling.alpha: must be in [0, 1], got 3" in result.stderr
    assert not runs.exists()
    grid = tiny_spec(tiny_model)
    grid["grid"] = {"train.batch_size": [8, 1]}
    result = hbt("--run", write(tmp_path / "grid.json", grid), "--runs-dir", runs)
    assert result.returncode == 2 and "train.batch_size: must be in [2, 65536], got 1" in result.stderr
    assert not runs.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = hbt("--run", write(tmp_path / "ok.json", tiny_spec(tiny_model)), "--runs-dir", blocker / "runs")
    assert result.returncode == 2 and result.stderr.startswith("error: runs directory")


def test_unknown_run_and_resume_of_a_finished_run(tmp_path, tiny_model):
    runs = tmp_path / "runs"
    document = tiny_spec(tiny_model, **{"train.steps": 2, "train.checkpoint_every": 0, "eval.at_end": False})
    assert hbt("--run", write(tmp_path / "s.json", document), "--runs-dir", runs).returncode == 0
    for command in (["show", "nope"], ["compare", "nope", "tiny"], ["resume", "nope"], ["cancel", "nope"]):
        result = hbt(*command, "--runs-dir", runs)
        assert result.returncode == 2 and "no run 'nope'" in result.stderr, command
    result = hbt("resume", "tiny", "--runs-dir", runs)
    assert result.returncode == 2 and "is finished; only interrupted, cancelled, failed runs can be resumed" in result.stderr
    result = hbt("cancel", "tiny", "--runs-dir", runs)
    assert result.returncode == 2 and "is finished, not queued or running" in result.stderr


async def test_queue_starts_runs_by_priority_then_submission(tmp_path):
    from engine.child.replay import replay_command
    from engine.parent.runner import Runner
    from engine.contract.validation import parse_spec
    from tui_helpers import FIXTURES

    store = RunStore(tmp_path / "runs")
    runner = Runner(store, cpu_slots=1, gpus=[], command=replay_command(FIXTURES / "hybrid", rate=500))
    first = runner.submit(parse_spec({"name": "first"}))              # takes the only slot at once
    low = runner.submit(parse_spec({"name": "low"}), priority=0)
    high = runner.submit(parse_spec({"name": "high"}), priority=5)
    await runner.wait()
    started = {run_id: store.get(run_id)["started"] for run_id in (first, low, high)}
    assert started[first] < started[high] < started[low]
    assert {store.get(run_id)["status"] for run_id in started} == {"finished"}
