"""The real training subprocess on a tiny model and real data slices."""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys

import pytest

from engine.contract.events import read_events
from runs_helpers import env, events_of, run_train, started, step_losses, tiny_spec, write

pytestmark = pytest.mark.slow


def test_end_to_end_event_stream_checkpoint_and_model(tmp_path, tiny_model):
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model))
    result = run_train(spec, "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    streamed = events_of(result.stdout)
    notices = [event.message for event in streamed if event.kind == "notice"]
    assert any(message.startswith("loading model") for message in notices)  # said while it prepares
    events = [event for event in streamed if event.kind != "notice"]
    kinds = [event.kind for event in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in events if e.kind == "checkpoint"] == [3, 6]
    assert kinds.index("eval_done") > kinds.index("checkpoint")
    steps = [e for e in events if e.kind == "step"]
    assert all(e.loss > 0 and e.samples_per_s > 0 and e.tokens_per_s > 0 for e in steps)
    assert steps[0].batch_kind.split(":")[0] in ("mono", "cross")
    assert all(e.lr >= 0 for e in steps) and steps[-1].lr < steps[0].lr  # linear decay
    final_evals = [e for e in events if e.kind == "eval" and "multi" in e.settings]
    assert {e.language for e in final_evals} == {"en", "de", "zh"}
    assert all(set(e.settings) == {"mono", "cross", "multi"} for e in final_evals)
    # the record on disk is the stream
    assert [e.to_json() for e in read_events(tmp_path / "run" / "events.jsonl")] == [e.to_json() for e in streamed]
    checkpoint = tmp_path / "run" / "checkpoints" / "step-000006"
    for name in ("model/config.json", "model/model.safetensors", "model/tokenizer.json", "training_state.pt",
                 "trainer_state.json", "spec.json"):
        assert (checkpoint / name).is_file(), name
    assert json.loads((checkpoint / "trainer_state.json").read_text())["step"] == 6
    assert json.loads((checkpoint / "spec.json").read_text())["name"] == "tiny"
    results = json.loads((tmp_path / "run" / "eval" / "xquad-r" / "results.json").read_text())
    assert results["languages"] == ["en", "de", "zh"] and results["step"] == 6


def test_final_model_loads_with_plain_transformers_and_sentence_transformers(tmp_path, tiny_model):
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, **{"train.steps": 2, "train.checkpoint_every": 0,
                                                                  "eval.at_end": False}))
    result = run_train(spec, "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    model_dir = tmp_path / "run" / "model"
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir)
    output = model(**tokenizer(["query: hello"], return_tensors="pt"))
    assert output.last_hidden_state.shape[-1] == 64
    sentence_transformers = importlib.import_module("sentence_transformers")
    encoder = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
    embedding = encoder.encode(["hello"], prompt_name="query")
    assert embedding.shape == (1, 64) and abs(float((embedding**2).sum()) - 1) < 1e-4


def test_resume_gives_the_same_losses_as_a_straight_run(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.steps": 10, "train.checkpoint_every": 0, "eval.at_end": False,
                                        "loss.hard_negatives": 1})
    spec = write(tmp_path / "spec.json", document)
    straight = run_train(spec, "--run-dir", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = run_train(spec, "--run-dir", tmp_path / "split", "--stop-at-step", "5")
    assert first.returncode == 0, first.stderr[-3000:]
    assert events_of(first.stdout)[-1].kind == "stopped"
    second = run_train("--resume", "--run-dir", tmp_path / "split")
    assert second.returncode == 0, second.stderr[-3000:]
    assert started(events_of(second.stdout)).resumed_from_step == 5
    expected = step_losses(events_of(straight.stdout))
    resumed = {**step_losses(events_of(first.stdout)), **step_losses(events_of(second.stdout))}
    assert sorted(resumed) == list(range(1, 11))
    for step, loss in expected.items():
        assert abs(resumed[step] - loss) <= 1e-6, (step, resumed[step], loss)


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path, tiny_model):
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, **{"train.steps": 100000,
                                                                  "train.checkpoint_every": 0}))
    process = subprocess.Popen([sys.executable, "-m", "engine.train", str(spec), "--run-dir", str(tmp_path / "run")],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env())
    for line in process.stdout:
        if '"event":"step"' in line and '"step":3,' in line:
            break
    process.send_signal(signal.SIGTERM)
    rest = process.stdout.read()
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    last = events_of(rest)[-1]
    assert last.kind == "stopped" and last.signal == "SIGTERM"
    assert (tmp_path / "run" / "checkpoints" / f"step-{last.step:06d}" / "trainer_state.json").is_file()


BAD_INPUTS = {
    "malformed JSON": ('{"name": "x",', "malformed JSON"),
    "unknown key": ({"name": "x", "sampling": {"alhpa": 0.5}}, "sampling.alhpa: unknown field"),
    "bad value": ({"name": "x", "sampling": {"alpha": 1.5}}, "sampling.alpha: must be in [0, 1], got 1.5"),
    "unknown language": ({"name": "x", "train": {"languages": ["en", "xx"]}},
                         "train.languages[1]: mlqa-r has no language 'xx'"),
    "missing model": ({"name": "x", "encoder": {"name": "./no/such/model"}}, "encoder path './no/such/model' does not"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_run_directory(tmp_path, case):
    content, message = BAD_INPUTS[case]
    spec = tmp_path / "spec.json"
    spec.write_text(content if isinstance(content, str) else json.dumps(content))
    result = run_train(spec, "--run-dir", tmp_path / "run")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "run").exists()
    assert result.stdout == ""


def test_missing_data_and_unwritable_run_dir(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()  # a data folder without the dataset
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, data_dir=str(tmp_path / "empty")))
    variables = env()
    variables["HBT_DATA_DIR"] = str(tmp_path / "empty")
    result = subprocess.run([sys.executable, "-m", "engine.train", str(spec), "--run-dir", str(tmp_path / "run")],
                            capture_output=True, text=True, env=variables)
    assert result.returncode == 2 and "dataset 'mlqa-r' not found" in result.stderr
    assert not (tmp_path / "run").exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    good = write(tmp_path / "good.json", tiny_spec(tiny_model))
    result = run_train(good, "--run-dir", blocker / "run")
    assert result.returncode == 2 and "is not a directory" in result.stderr
    result = run_train(good, "--run-dir", "/proc/hbt-run")
    assert result.returncode == 2 and "cannot create run directory /proc/hbt-run" in result.stderr


def test_two_step_smoke_run_on_the_bundled_encoder(tmp_path):
    document = {"name": "bundled-smoke",
                "encoder": {"freeze_word_embeddings": True, "max_query_length": 32, "max_passage_length": 48},
                "train": {"languages": ["en", "de"], "max_questions": 40, "batch_size": 4, "steps": 2},
                "eval": {"datasets": ["xquad-r"], "languages": ["en", "de"], "max_queries": 6,
                         "trec_runs": "none"}}
    result = run_train(write(tmp_path / "spec.json", document), "--run-dir", tmp_path / "run", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    events = events_of(result.stdout)
    assert started(events).parameters > 100_000_000  # e5-small: 117.5 M
    assert started(events).trainable_parameters < started(events).parameters  # word embeddings frozen
    assert [e.step for e in events if e.kind == "step"] == [1, 2]
    assert events[-1].kind == "finished"
