"""Runs where researchers already look, against the real libraries, offline: MLflow (a file
store in a temp folder, read back with MlflowClient), W&B (its offline run folder, read back
record by record with wandb's own protobuf), and the Hub's model card (parsed back with
huggingface_hub). A tiny real grid of two seeds trains once with live forwarding to MLflow."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from engine.contract.layout import RunFolder, read_json
from engine.contract.spec import flatten
from runs_helpers import env, tiny_spec, write

pytestmark = pytest.mark.slow

import mlflow  # noqa: E402  (the test extra installs both: a missing one fails here, never skips)
import wandb  # noqa: E402


def hbt(*args, extra_env: dict | None = None, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**env(), "COLUMNS": "200", **(extra_env or {})}, timeout=timeout, cwd=cwd)


def tree_state(root: Path) -> dict[str, str]:
    """Every file under root with a hash of its bytes: what 'nothing changed' compares."""
    return {str(path.relative_to(root)): hashlib.sha1(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_model) -> dict:
    """Two seeds of one configuration, evaluated at step 3 and 6, forwarded live to a local
    MLflow store while they train."""
    root = tmp_path_factory.mktemp("tracked")
    document = tiny_spec(tiny_model, name="tracked", **{"train.checkpoint_every": 0, "train.eval_every": 3,
                                                        "eval.max_queries": 8})
    document["grid"] = {"train.seed": [1, 2]}
    live = root / "live-mlruns"
    result = hbt("--run", write(root / "tracked.json", document), "--runs-dir", root / "runs", "--track", "mlflow",
                 extra_env={"MLFLOW_TRACKING_URI": str(live)}, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" not in result.stderr, result.stderr[-2000:]
    folders = [RunFolder(path) for path in sorted((root / "runs").iterdir()) if (path / "run.json").is_file()]
    assert len(folders) == 2
    return {"root": root, "runs": root / "runs", "live": live, "folders": folders}


def client_of(store: Path):
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return mlflow.MlflowClient(tracking_uri=store.resolve().as_uri())


def runs_in(client, experiment_name: str):
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, [e.name for e in client.search_experiments()]
    return client.search_runs([experiment.experiment_id], max_results=1000)


def by_hbt_id(runs) -> dict[str, object]:
    return {run.data.tags["hbt_tui.run_id"]: run for run in runs if "hbt_tui.run_id" in run.data.tags}


def expected_evaluations(folder: RunFolder) -> dict[tuple[str, int], float]:
    """(key, step) -> value of the numbers the run folder holds for eval/<dataset>/step-N."""
    found = {}
    for dataset in folder.evaluated_datasets():
        for step in folder.evaluated_steps(dataset):
            results = read_json(folder.results(dataset, step))
            for language, row in results["per_language"].items():
                for setting, metrics in row["settings"].items():
                    for metric, value in metrics.items():
                        found[(f"{dataset}/{setting}/{language}/{metric.replace('@', '_at_')}", step)] = value
                found[(f"{dataset}/bias/{language}", step)] = row["bias"]
            for setting, metrics in results["macro"].items():
                for metric, value in metrics.items():
                    found[(f"{dataset}/{setting}/macro/{metric.replace('@', '_at_')}", step)] = value
            for group, row in (results.get("groups") or {}).items():
                for setting in ("mono", "cross", "multi"):
                    for metric, value in row.get(setting, {}).items():
                        found[(f"{dataset}/{setting}/{group}/{metric.replace('@', '_at_')}", step)] = value
    return found


def steps_of(folder: RunFolder) -> dict[int, dict]:
    return {event["step"]: event for event in map(json.loads, folder.events.read_text().splitlines())
            if event.get("event") == "step"}


def history(client, run, key: str) -> dict[int, float]:
    return {metric.step: metric.value for metric in client.get_metric_history(run.info.run_id, key)}


def check_mlflow_run(client, run, folder: RunFolder) -> None:
    """Params, tags, metric histories and artifacts equal what the run folder holds."""
    spec, record = read_json(folder.spec), read_json(folder.record)
    assert run.data.tags["strategy"] == "hybrid" and run.data.tags["alpha"] == "0.5"
    assert run.data.tags["seed"] == str(spec["train"]["seed"])
    assert run.data.tags["grid"] == record["group"] and run.data.tags["executor"] == "local"
    assert run.data.tags["commit"] == str(record.get("git_commit") or "")
    assert run.info.status == "FINISHED"
    params = {key: value if isinstance(value, str) else json.dumps(value)
              for key, value in flatten({k: v for k, v in spec.items() if k not in ("grid", "hypotheses", "description")}).items()}
    assert run.data.params == params
    steps = steps_of(folder)
    assert history(client, run, "train/loss") == pytest.approx({step: event["loss"] for step, event in steps.items()})
    assert sorted(history(client, run, "train/lr")) == sorted(steps)
    evaluations = expected_evaluations(folder)
    assert {step for _, step in evaluations} == {3, 6}
    for (key, step), value in evaluations.items():
        assert history(client, run, key)[step] == pytest.approx(value), key
    for key in {key for key, _ in evaluations}:    # one value per evaluation step, never two
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key
    files = {entry.path for entry in client.list_artifacts(run.info.run_id, "eval/xquad-r")}
    assert {"eval/xquad-r/results.json", "eval/xquad-r/per_query.tsv.gz", "eval/xquad-r/trec"} <= files
    local = Path(client.download_artifacts(run.info.run_id, "eval/xquad-r/results.json", str(folder.path.parent.parent / "dl")))
    assert json.loads(local.read_text()) == read_json(folder.results("xquad-r"))
    trec = {entry.path.rsplit("/", 1)[1] for entry in client.list_artifacts(run.info.run_id, "eval/xquad-r/trec")}
    assert trec == {path.name for path in folder.trec_dir("xquad-r").iterdir()}


def test_live_forwarding_writes_each_run_to_mlflow_while_it_trains(grid):
    client = client_of(grid["live"])
    runs = runs_in(client, read_json(grid["folders"][0].record)["group"])
    tracked = by_hbt_id(runs)
    assert set(tracked) == {folder.id for folder in grid["folders"]}
    parents = [run for run in runs if "hbt_tui.run_id" not in run.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "tracked"       # the configuration both seeds share
    for folder in grid["folders"]:
        assert tracked[folder.id].data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        check_mlflow_run(client, tracked[folder.id], folder)


def test_export_to_mlflow_holds_the_run_folder_and_a_second_export_duplicates_nothing(grid, tmp_path):
    store = tmp_path / "mlruns"
    group = read_json(grid["folders"][0].record)["group"]
    first = hbt("export", "mlflow", group, "--runs-dir", grid["runs"], "--tracking-uri", store)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("exported as MLflow run") == 2
    client = client_of(store)
    runs = runs_in(client, group)
    assert len(runs) == 3                                  # two seeds and their configuration's parent
    for folder in grid["folders"]:
        check_mlflow_run(client, by_hbt_id(runs)[folder.id], folder)
    again = hbt("export", "mlflow", group, "--runs-dir", grid["runs"], "--tracking-uri", store)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("updated as MLflow run") == 2 and "(0 metric values" in again.stdout
    rerun = runs_in(client, group)
    assert len(rerun) == 3
    for folder in grid["folders"]:
        check_mlflow_run(client, by_hbt_id(rerun)[folder.id], folder)
    # one run by its id into the store the live forwarding wrote: found by its tag, not made again
    live = hbt("export", "mlflow", grid["folders"][0].id, "--runs-dir", grid["runs"], "--tracking-uri", grid["live"])
    assert live.returncode == 0 and "updated" in live.stdout, live.stderr
    assert len(runs_in(client_of(grid["live"]), group)) == 3


# --- W&B: the offline run folder, read with wandb's own record format ----------------------------

BLOCK, HEADER = 32768, 7


def wandb_records(path: Path) -> list:
    """The records of a .wandb file: a 7-byte ':W&B' header, then LevelDB-log framing (32 KiB
    blocks; chunks of checksum, length, type) around protobuf `Record`s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, offset, pending = [], HEADER, b""
    while offset + HEADER <= len(data):
        left = BLOCK - offset % BLOCK
        if left < HEADER:                           # a block's tail too small for a chunk header: padding
            offset += left
            continue
        _, length, kind = struct.unpack("<IHB", data[offset:offset + HEADER])
        if kind == 0 and length == 0:
            offset += left
            continue
        chunk = data[offset + HEADER:offset + HEADER + length]
        offset += HEADER + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):                          # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_history(records) -> dict[int, dict[str, float]]:
    rows = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            rows[int(items.pop("_step"))] = {key: value for key, value in items.items() if not key.startswith("_")}
    return rows


def wandb_summary(records) -> dict[str, object]:
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary


def test_export_to_wandb_writes_an_offline_run_with_the_run_folder_s_history(grid, tmp_path):
    group = read_json(grid["folders"][0].record)["group"]
    home = {"HOME": str(tmp_path / "home"), "WANDB_MODE": "offline"}
    for attempt in (1, 2):                          # a second export replaces the first: one folder per run
        result = hbt("export", "wandb", group, "--runs-dir", grid["runs"], "--dir", tmp_path / "w", extra_env=home)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.count("exported as W&B run") == 2 and "wandb sync" in result.stdout
        offline = sorted((tmp_path / "w" / "wandb").glob("offline-run-*"))
        assert len(offline) == 2, (attempt, offline)
    for folder in grid["folders"]:
        wid = "hbt" + hashlib.sha1(folder.id.encode()).hexdigest()[:20]
        [run_dir] = [path for path in offline if path.name.endswith(wid)]
        records = wandb_records(run_dir / f"run-{wid}.wandb")
        [run_record] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert run_record.project == group and run_record.run_group == "tracked" and run_record.run_id == wid
        config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
        assert config["train.seed"] == str(read_json(folder.spec)["train"]["seed"])
        rows = wandb_history(records)
        steps = steps_of(folder)
        assert {step: row["train/loss"] for step, row in rows.items() if "train/loss" in row} == pytest.approx(
            {step: event["loss"] for step, event in steps.items()})
        for (key, step), value in expected_evaluations(folder).items():
            assert rows[step][key] == pytest.approx(value), key
        summary = wandb_summary(records)
        assert summary["hbt_tui.run_id"] == folder.id
        last = read_json(folder.results("xquad-r"))
        assert summary["xquad-r/multi/macro/map"] == pytest.approx(last["macro"]["multi"]["map"])


# --- the model card -----------------------------------------------------------------------------

def test_every_saved_model_has_a_model_card_the_hub_parses(grid):
    from huggingface_hub import ModelCard, metadata_load

    folder = grid["folders"][0]
    path = folder.model / "README.md"
    card = ModelCard.load(path)
    results = read_json(folder.results("xquad-r"))
    expected = {(language, setting, metric): value for language, row in results["per_language"].items()
                for setting, metrics in row["settings"].items() for metric, value in metrics.items()}
    expected |= {("macro", setting, metric): value for setting, metrics in results["macro"].items()
                 for metric, value in metrics.items()}
    found = {(result.dataset_config, result.dataset_split.split(" ")[0], result.metric_type): result.metric_value
             for result in card.data.eval_results}
    assert found == pytest.approx(expected)
    assert {result.dataset_type for result in card.data.eval_results} == {"xquad-r"}
    meta = metadata_load(path)
    [index] = meta["model-index"]
    assert sum(len(result["metrics"]) for result in index["results"]) == len(expected)
    assert meta["base_model"] == read_json(folder.spec)["encoder"]["name"]
    assert meta["library_name"] == "sentence-transformers" and "hbt-tui" in meta["tags"]
    assert meta["license"] == "cc-by-nc-4.0" and meta["datasets"] == ["mlqa-r"]
    text = path.read_text(encoding="utf-8")
    assert "SentenceTransformer(" in text and "hybrid batches" in text and "α = 0.5" in text
    assert json.dumps(read_json(folder.spec), indent=1, ensure_ascii=False) in text


# --- bad input: one line, exit 2, nothing in the runs directory changed -----------------------------

BLOCKER = """
import importlib.util
import sys
BLOCKED = {%r}
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Blocked())
# asked whether it is installed (accelerate asks so of wandb), it is not: as for a package that is absent
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if name.split(".")[0] in BLOCKED else _find_spec(name, package)
"""


def without(tmp_path: Path, package: str) -> dict:
    """An environment where `package` cannot be imported (a real interpreter, a real finder)."""
    site = tmp_path / f"no-{package}"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER % package)
    return {"PYTHONPATH": f"{site}{os.pathsep}{env()['PYTHONPATH']}"}


def one_line_error(result, *words) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout[-1000:], result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]


def test_bad_export_and_push_input_is_one_line_and_changes_nothing(grid, tmp_path, tiny_model):
    runs, folder = grid["runs"], grid["folders"][0]
    before = tree_state(runs)
    one_line_error(hbt("export", "mlflow", folder.id, "--runs-dir", runs, "--tracking-uri", "http://127.0.0.1:9"),
                   "cannot reach the server", "127.0.0.1:9")
    one_line_error(hbt("export", "mlflow", folder.id, "--runs-dir", runs, extra_env=without(tmp_path, "mlflow")),
                   "hbt-tui[tracking]", "mlflow")
    one_line_error(hbt("export", "wandb", folder.id, "--runs-dir", runs, "--online",
                       extra_env={"HOME": str(tmp_path), "WANDB_API_KEY": ""}), "wandb login")
    one_line_error(hbt("export", "mlflow", "no-such-run", "--runs-dir", runs, "--tracking-uri", tmp_path / "m"),
                   "no-such-run")
    one_line_error(hbt("push", folder.id, "not/a/valid/repo id", "--runs-dir", runs), "not a Hub repo id")
    logged_out = {"HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": ""}
    one_line_error(hbt("push", folder.id, "someone/model", "--runs-dir", runs, extra_env=logged_out), "not logged in")
    offline = {"HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_" + "x" * 34, "HF_ENDPOINT": "http://127.0.0.1:9"}
    one_line_error(hbt("push", folder.id, "someone/model", "--runs-dir", runs, extra_env=offline), "cannot be reached")
    assert tree_state(runs) == before

    # a run that has not been evaluated: refused by export and push
    bare_runs = tmp_path / "bare"
    document = tiny_spec(tiny_model, name="bare", **{"train.steps": 2, "train.checkpoint_every": 0, "eval.at_end": False})
    trained = hbt("--run", write(tmp_path / "bare.json", document), "--runs-dir", bare_runs)
    assert trained.returncode == 0, trained.stderr[-2000:]
    before = tree_state(bare_runs)
    one_line_error(hbt("export", "mlflow", "bare", "--runs-dir", bare_runs, "--tracking-uri", tmp_path / "m2"),
                   "no evaluation")
    one_line_error(hbt("push", "bare", "someone/model", "--runs-dir", bare_runs), "no evaluation")
    assert tree_state(bare_runs) == before
    assert not (tmp_path / "m2").exists()


def test_a_live_tracker_that_cannot_work_warns_once_and_the_run_finishes(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, name="untracked", **{"train.steps": 2, "train.checkpoint_every": 0,
                                                          "eval.max_queries": 4})
    spec = write(tmp_path / "untracked.json", document)
    (tmp_path / "hbt-tui.json").write_text(json.dumps({"trackers": ["mlflow", "wandb"]}))
    result = hbt("--run", spec, "--runs-dir", tmp_path / "runs", cwd=tmp_path,
                 extra_env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", **without(tmp_path, "wandb")})
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr[-3000:]
    assert "mlflow" in warnings[0] and "cannot reach" in warnings[0]
    assert "wandb" in warnings[1] and "hbt-tui[tracking]" in warnings[1]
    [folder] = [RunFolder(path) for path in (tmp_path / "runs").iterdir() if (path / "run.json").is_file()]
    assert read_json(folder.record)["status"] == "finished"
    with gzip.open(folder.per_query("xquad-r"), "rt") as handle:
        assert handle.readline()
