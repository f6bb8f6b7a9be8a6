"""What a user or an attacker can do to a runs directory, and what must survive it: several
parents at once, checkpoints that could run code, run ids that point elsewhere, an index that
lies, torn files, full disks, and bad input of every kind. Real processes, real files."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.contract.events import parse_event, read_events
from engine.contract.layout import RunFolder
from engine.parent.store import RunStore
from runs_helpers import env, events_of, run_train, small_filesystem, started, tiny_spec, wait_for, write
from tui_helpers import FIXTURES, recorded_store

pytestmark = pytest.mark.slow


def hbt(*args, timeout: float = 600, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**env(), "COLUMNS": "200", **(extra_env or {})}, timeout=timeout)


def start_hbt(*args, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *map(str, args)], stdout=stdout,
                            stderr=subprocess.PIPE, text=True, env={**env(), "COLUMNS": "200"})




def folders(runs: Path) -> list[RunFolder]:
    return sorted((RunFolder(path) for path in runs.iterdir() if path.is_dir()), key=lambda f: f.id) \
        if runs.exists() else []


def record(folder: RunFolder) -> dict:
    try:
        return json.loads(folder.record.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def kinds(folder: RunFolder) -> list[str]:
    return [event.kind for event in read_events(folder.events)]


def quick(model: Path, **overrides) -> dict:
    return tiny_spec(model, **{"train.steps": 2, "train.checkpoint_every": 0, **overrides})


# --- several parents, one runs directory -------------------------------------------------------------

def test_two_parents_with_grids_on_one_runs_directory(tmp_path, tiny_model):
    runs = tmp_path / "runs"
    first, second = quick(tiny_model, name="first"), quick(tiny_model, name="second")
    first["grid"] = {"train.seed": [1, 2, 3]}
    second["grid"] = {"sampling.strategy": ["monolingual", "crosslingual", "multitask"]}
    parents = [start_hbt("--run", write(tmp_path / f"{name}.json", document), "--runs-dir", runs, "--json",
                         stdout=subprocess.PIPE)
               for name, document in (("first", first), ("second", second))]
    outputs = [parent.communicate(timeout=600) for parent in parents]
    assert [parent.returncode for parent in parents] == [0, 0], [err[-2000:] for _, err in outputs]
    reported = [run for stdout, _ in outputs for run in json.loads(stdout)]
    assert len(reported) == 6 and {run["status"] for run in reported} == {"finished"}
    store = RunStore(runs)
    assert not store.messages                      # nothing had to be repaired
    assert {run["id"] for run in store.all()} == {folder.id for folder in folders(runs)}
    for folder in folders(runs):
        assert kinds(folder).count("started") == 1, folder.id      # no run trained twice
        assert store.get(folder.id)["status"] == record(folder)["status"] == "finished"
    owners = {record(folder)["owner"]["pid"] for folder in folders(runs)}
    assert owners == {parent.pid for parent in parents}


def test_cancel_reaches_the_parent_that_owns_the_run(tmp_path, tiny_model):
    runs = tmp_path / "runs"
    document = quick(tiny_model, name="owned")
    document["grid"] = {"train.steps": [100000, 2]}
    owner = start_hbt("--run", write(tmp_path / "grid.json", document), "--runs-dir", runs)
    long_run = wait_for(lambda: next((f for f in folders(runs) if "steps=100000" in f.id
                                      and kinds(f).count("step") >= 2), None), what="the first run to train")
    queued = next(folder for folder in folders(runs) if "steps=2" in folder.id)
    assert record(queued)["status"] == "queued" and record(queued)["owner"]["pid"] == owner.pid
    result = hbt("cancel", queued.id, "--runs-dir", runs)
    assert result.returncode == 0, result.stderr
    assert record(queued)["status"] == "cancelled" and "started" not in kinds(queued)
    result = hbt("cancel", long_run.id, "--runs-dir", runs)
    assert result.returncode == 0, result.stderr
    assert owner.wait(timeout=300) == 1
    store = RunStore(runs)
    assert store.get(queued.id)["status"] == "cancelled"           # never started afterwards
    assert "started" not in kinds(queued)
    assert store.get(long_run.id)["status"] == "cancelled"
    assert long_run.has_checkpoint()                                # SIGTERM checkpointed it


def test_a_second_parent_leaves_a_live_parents_queued_runs_alone(tmp_path, tiny_model):
    runs = tmp_path / "runs"
    document = quick(tiny_model, name="slow")
    document["grid"] = {"train.steps": [100000, 2]}
    owner = start_hbt("--run", write(tmp_path / "grid.json", document), "--runs-dir", runs)
    wait_for(lambda: any(kinds(f).count("step") >= 1 for f in folders(runs)), what="training")
    listed = hbt("runs", "--runs-dir", runs, "--json")              # a second parent opens the directory
    assert listed.returncode == 0
    assert sorted(run["status"] for run in json.loads(listed.stdout)) == ["queued", "running"]
    resumed = hbt("resume", next(f.id for f in folders(runs) if "steps=2" in f.id), "--runs-dir", runs)
    assert resumed.returncode == 2 and "is already queued in another hbt-tui" in resumed.stderr
    owner.send_signal(signal.SIGINT)
    assert owner.wait(timeout=300) == 130


# --- no code from data, no path outside the runs directory ------------------------------------------

class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_in_a_checkpoint_is_refused_and_never_run(tmp_path, tiny_model):
    import torch

    from engine.child.checkpoint import write_checksums

    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, **{"train.steps": 6, "train.checkpoint_every": 0,
                                                                  "eval.at_end": False}))
    assert run_train(spec, "--run-dir", tmp_path / "run", "--stop-at-step", "3").returncode == 0
    checkpoint = RunFolder(tmp_path / "run").checkpoint(3)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Payload(marker), "scheduler": {}, "scaler": {}, "rng": {}},
               checkpoint / "training_state.pt", pickle_protocol=2)
    write_checksums(checkpoint)  # the attacker fixed the checksums too: only the loader stands in the way
    result = run_train("--resume", "--run-dir", tmp_path / "run")
    assert result.returncode == 2
    assert "refused to unpickle it (it could run code)" in result.stderr
    assert not marker.exists()


def test_a_run_id_never_reaches_outside_the_runs_directory(tmp_path):
    store = recorded_store(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    folder = store.folder("failed-run")
    folder.record.write_text(json.dumps({"id": "../victim", "status": "failed", "name": "evil"}))
    rebuilt = hbt("index", "rebuild", "--runs-dir", store.runs_dir)
    assert rebuilt.returncode == 0
    assert {run["id"] for run in RunStore(store.runs_dir).all()} == {"hybrid-run", "mono-run", "failed-run"}
    refused = hbt("delete", "../victim", "--yes", "--runs-dir", store.runs_dir)
    assert refused.returncode == 2 and "no run '../victim'" in refused.stderr
    index = json.loads((store.runs_dir / "index.json").read_text())
    index["runs"]["1"]["id"] = "../victim"                          # an index edited by hand
    (store.runs_dir / "index.json").write_text(json.dumps(index))
    deleted = hbt("delete", "failed-run", "--yes", "--runs-dir", store.runs_dir)
    assert deleted.returncode == 0, deleted.stderr
    assert "is not a plain folder name" in deleted.stderr           # the index was rebuilt from folders
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not folder.exists()


# --- the index never hides a run ---------------------------------------------------------------------

@pytest.mark.parametrize("content,message", [(b"", "was empty; rebuilt 3 runs"), (b"{}", "was empty; rebuilt 3 runs"),
                                             (b'{"runs": {}}', "was empty; rebuilt 3 runs")])
def test_an_empty_index_is_rebuilt_from_the_folders(tmp_path, content, message):
    store = recorded_store(tmp_path)
    (store.runs_dir / "index.json").write_bytes(content)
    listed = hbt("runs", "--runs-dir", store.runs_dir, "--json")
    assert listed.returncode == 0
    assert message in listed.stderr
    assert {run["id"] for run in json.loads(listed.stdout)} == {"hybrid-run", "mono-run", "failed-run"}


def test_an_index_missing_folders_adds_them_and_a_missing_folder_shows_as_missing(tmp_path):
    store = recorded_store(tmp_path)
    store.remove("mono-run")
    store.remove("failed-run")
    listed = hbt("runs", "--runs-dir", store.runs_dir, "--json")
    assert "lacked 2 run folders; added them" in listed.stderr
    assert len(json.loads(listed.stdout)) == 3
    shutil.rmtree(store.runs_dir / "hybrid-run")
    listed = json.loads(hbt("runs", "--runs-dir", store.runs_dir, "--json").stdout)
    gone = next(run for run in listed if run["id"] == "hybrid-run")
    assert gone["status"] == "missing" and gone["results"] == {}  # never the stale scores
    shown = hbt("show", "hybrid-run", "--runs-dir", store.runs_dir)
    assert shown.returncode == 0 and "missing" in shown.stdout and "macro avg" not in shown.stdout


def test_a_rebuild_that_cannot_be_written_leaves_the_old_index(tmp_path):
    store = recorded_store(tmp_path)
    before = (store.runs_dir / "index.json").read_bytes()
    spec = store.folder("mono-run").spec
    document = json.loads(spec.read_text())
    document["train"]["seed"] = 2**70                               # edited by hand: no validator saw it
    spec.write_text(json.dumps(document))
    result = hbt("index", "rebuild", "--runs-dir", store.runs_dir)
    assert result.returncode == 2 and "could not be written" in result.stderr
    assert (store.runs_dir / "index.json").read_bytes() == before
    assert not list(store.runs_dir.glob(".*.tmp"))


# --- faults end in the right state -------------------------------------------------------------------

def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.steps": 8, "train.checkpoint_every": 2, "eval.at_end": False})
    spec = write(tmp_path / "spec.json", document)
    assert run_train(spec, "--run-dir", tmp_path / "run", "--stop-at-step", "5").returncode == 0
    folder = RunFolder(tmp_path / "run")
    assert [path.name for path in folder.checkpoints()] == ["step-000004", "step-000005"]
    weights = folder.checkpoint(5) / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF                                              # one flipped byte
    weights.write_bytes(bytes(data))
    result = run_train("--resume", "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]
    events = events_of(result.stdout)
    notices = [event.message for event in events if event.kind == "notice"]
    assert "skipped checkpoint step-000005: model/model.safetensors does not match its checksum" in notices
    assert "resuming from step-000004 (step 4)" in notices
    assert started(events).resumed_from_step == 4
    assert [event.step for event in events if event.kind == "step"] == [5, 6, 7, 8]


def test_a_torn_last_event_line_is_cut_before_appending(tmp_path, tiny_model):
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, **{"train.steps": 4, "train.checkpoint_every": 0,
                                                                  "eval.at_end": False}))
    assert run_train(spec, "--run-dir", tmp_path / "run", "--stop-at-step", "2").returncode == 0
    events_file = RunFolder(tmp_path / "run").events
    whole = events_file.read_text()
    with open(events_file, "a") as handle:
        handle.write('{"v":1,"event":"step","time":1.0,"st')        # a writer killed mid-line
    assert run_train("--resume", "--run-dir", tmp_path / "run").returncode == 0
    lines = events_file.read_text().splitlines()
    assert events_file.read_text().startswith(whole)
    assert all(parse_event(line) is not None for line in lines)     # nothing glued onto the torn line
    assert [event.kind for event in map(parse_event, lines)].count("started") == 2


async def test_an_index_write_failure_never_changes_a_runs_outcome(tmp_path, monkeypatch):
    from engine.contract.validation import parse_spec
    from engine.parent import store as store_module
    from engine.child.replay import replay_command
    from engine.parent.runner import Runner

    store = RunStore(tmp_path / "runs")
    messages = []
    runner = Runner(store, cpu_slots=1, gpus=[], command=replay_command(FIXTURES / "hybrid", rate=400),
                    on_message=messages.append)
    run_id = runner.submit(parse_spec({"name": "disk"}))
    real_write = store_module.write_atomic

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_module, "write_atomic", full_disk)
    await runner.wait([run_id])
    folder = store.folder(run_id)
    assert record(folder)["status"] == "finished"                  # the truth is in the run folder
    assert store.get(run_id)["status"] in ("queued", "running")     # the index lags behind
    assert any("could not be written (No space left on device)" in message for message in messages)
    monkeypatch.setattr(store_module, "write_atomic", real_write)
    runner.flush_progress()                                         # the next write that succeeds catches up
    assert store.get(run_id)["status"] == "finished"
    assert store.get(run_id)["results"]["xquad-r"]["macro"]


@pytest.fixture
def small_disk(tmp_path):
    with small_filesystem(tmp_path / "small-disk", "4m") as mount:
        yield mount


def test_a_full_disk_fails_the_run_cleanly(tmp_path, tiny_model, small_disk):
    runs = small_disk / "runs"
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, **{"train.steps": 4, "train.checkpoint_every": 1}))
    result = hbt("--run", spec, "--runs-dir", runs, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    (folder,) = folders(runs)
    assert record(folder)["status"] == "failed"
    assert "no space left on device" in record(folder)["error"]
    assert RunStore(runs).get(folder.id)["status"] == "failed"
    leftovers = [path for path in runs.rglob("*") if path.name.endswith(".tmp") or path.name.startswith(".staging")]
    assert leftovers == []


# --- nothing overwritten silently ----------------------------------------------------------------------

def test_compare_output_never_overwrites_a_file(tmp_path):
    store = recorded_store(tmp_path)
    target = tmp_path / "table.md"
    target.write_text("my notes")
    arguments = ("compare", "hybrid-run", "mono-run", "--format", "md", "--runs-dir", store.runs_dir)
    refused = hbt(*arguments, "--output", target)
    assert refused.returncode == 2 and "the file exists; add --force" in refused.stderr
    assert target.read_text() == "my notes"
    spec = store.folder("mono-run").spec
    before = spec.read_text()
    assert hbt(*arguments, "--output", spec).returncode == 2 and spec.read_text() == before
    missing = hbt(*arguments, "--output", tmp_path / "no" / "such" / "t.md")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    forced = hbt(*arguments, "--output", target, "--force")
    assert forced.returncode == 0 and target.read_text().startswith("**xquad-r · map**")


# --- every bad input refused before anything starts --------------------------------------------------------

def bad_specs(model: Path) -> dict[str, tuple[object, str]]:
    deep = {"name": "deep", "tags": [[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]}
    return {
        "NaN": ('{"name": "x", "sampling": {"alpha": NaN}}', "sampling.alpha: must be a finite number, got NaN"),
        "Infinity": ('{"name": "x", "sampling": {"strategy": "multitask", "mono_weight": Infinity}}',
                     "sampling.mono_weight: must be a finite number, got Infinity"),
        "huge int": ('{"name": "x", "train": {"seed": 1180591620717411303424}}', "train.seed: must be a 64-bit integer"),
        "deep": (deep, "nested more than 16 levels deep"),
        "very deep": ("[" * 100000 + "]" * 100000, "malformed JSON: nested too deeply"),
        "duplicate key": ('{"name": "x", "sampling": {"alpha": 0.2, "alpha": 0.9}}',
                          "sampling.alpha: duplicate key"),
        "too long": (quick(model, **{"encoder.max_query_length": 600}),
                     "encoder.max_query_length: 600 is longer than"),
        "no eval languages": (quick(model, **{"eval.languages": []}), "eval.languages: must list at least one language"),
        "no eval datasets": (quick(model, **{"eval.datasets": []}), "eval.datasets: must list at least one dataset"),
        "unknown baseline": (quick(model, baseline="nobody"), "baseline: no run 'nobody'"),
        "data_dir is a file": (quick(model, data_dir=str(model / "config.json")), "is not a directory"),
        "batch larger than the data": (quick(model, **{"train.batch_size": 5000}),
                                       "train.batch_size: no language has enough"),
        "cuda on a CPU": (quick(model, **{"train.device": "cuda"}), "train.device: 'cuda' was asked for"),
        "fp16 on a CPU": (quick(model, **{"train.precision": "fp16"}), "train.precision: fp16 needs a CUDA device"),
        "hub offline": (quick(model, **{"encoder.name": "xlm-roberta-base"}),
                        "'xlm-roberta-base' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
    }


@pytest.mark.parametrize("case", ["NaN", "Infinity", "huge int", "deep", "very deep", "duplicate key", "too long",
                                  "no eval languages", "no eval datasets", "unknown baseline", "data_dir is a file",
                                  "batch larger than the data", "cuda on a CPU", "fp16 on a CPU", "hub offline"])
def test_bad_input_is_refused_before_any_run_folder_exists(tmp_path, tiny_model, case):
    content, message = bad_specs(tiny_model)[case]
    spec = tmp_path / "spec.json"
    spec.write_text(content if isinstance(content, str) else json.dumps(content))
    runs = tmp_path / "runs"
    for mode in ((), ("--dry-run",)):
        result = hbt("--run", spec, "--runs-dir", runs, *mode)
        assert result.returncode == 2, (mode, result.stderr)
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert folders(runs) == []


def test_an_unreachable_hub_fails_within_seconds(tmp_path, tiny_model):
    spec = write(tmp_path / "spec.json", quick(tiny_model, **{"encoder.name": "xlm-roberta-base"}))
    started_at = time.monotonic()
    result = hbt("--run", spec, "--runs-dir", tmp_path / "runs",
                 extra_env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert result.returncode == 2 and "cannot be reached" in result.stderr
    assert time.monotonic() - started_at < 30   # a bound for a failure, not a speed claim: the hub client alone retries for 23 s


def test_jobs_and_grid_limits(tmp_path, tiny_model):
    spec = write(tmp_path / "spec.json", quick(tiny_model))
    result = hbt("--run", spec, "--jobs", "0", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "argument --jobs: must be in [1, 1024], got 0" in result.stderr
    huge = quick(tiny_model)
    huge["grid"] = {"train.seed": list(range(100)), "train.lr": [1e-4 * (i + 1) for i in range(100)]}
    result = hbt("--run", write(tmp_path / "huge.json", huge), "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "the grid expands to 10000 runs (more than 200); add --yes" in result.stderr
    assert folders(tmp_path / "runs") == []


def test_dry_run_lists_the_runs_and_starts_nothing(tmp_path, tiny_model):
    document = quick(tiny_model)
    document["grid"] = {"sampling.strategy": ["monolingual", "hybrid"], "train.seed": [1, 2]}
    result = hbt("--run", write(tmp_path / "grid.json", document), "--dry-run", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    assert "4 runs would be created (dry run: nothing was started)" in result.stdout
    for name in ("tiny-strategy=monolingual-seed=1", "tiny-strategy=hybrid-seed=2"):
        assert name in result.stdout
    assert "sampling.strategy" in result.stdout and "train.seed" in result.stdout
    assert "model (512 positions)" in result.stdout
    assert folders(tmp_path / "runs") == []


def test_ctrl_c_during_submission_stops_cleanly(tmp_path, tiny_model):
    runs = tmp_path / "runs"
    document = quick(tiny_model)
    document["grid"] = {"train.seed": list(range(150))}
    parent = start_hbt("--run", write(tmp_path / "grid.json", document), "--runs-dir", runs)
    wait_for(lambda: folders(runs), what="the first run folder")
    parent.send_signal(signal.SIGINT)
    assert parent.wait(timeout=300) == 130
    created = folders(runs)
    store = RunStore(runs)
    assert {run["id"] for run in store.all()} == {folder.id for folder in created}
    assert {record(folder)["status"] for folder in created} <= {"cancelled", "finished"}
    assert {run["status"] for run in store.all()} <= {"cancelled", "finished"}


# --- readable output when not a terminal --------------------------------------------------------------

def test_plain_lines_when_not_a_terminal_and_pure_json_with_json(tmp_path, tiny_model):
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, **{"train.steps": 4, "train.checkpoint_every": 0}))
    result = hbt("--run", spec, "--runs-dir", tmp_path / "runs", "--log-every", "2")
    assert result.returncode == 0, result.stderr
    lines = [line.split(" ", 1)[1] for line in result.stdout.splitlines() if line[:2].isdigit()]
    assert lines[0].startswith("tiny: queued (tiny-")
    assert "tiny: running" in lines
    assert any(line.startswith("tiny: loading model") for line in lines)
    steps = [line for line in lines if line.startswith("tiny: step ")]
    assert [line.split()[2] for line in steps] == ["2/4", "4/4"]
    assert all("loss" in line and "samples/s" in line and "ETA" in line for line in steps)
    assert any(line.startswith("tiny: eval xquad-r at step 4: map mono") for line in lines)
    assert lines.index("tiny: finished") > lines.index("tiny: running")
    as_json = hbt("--run", spec, "--runs-dir", tmp_path / "runs-json", "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)[0]["status"] == "finished"     # stdout is one JSON document
