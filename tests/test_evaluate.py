"""Evaluation on real XQuAD-R / MLQA-R slices with a tiny real encoder."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import numpy as np
import pytest

from engine.contract.layout import RunFolder
from engine.contract.results import read_per_query
from engine.child.evaluator import Evaluator
from engine.contract.validation import parse_spec
from runs_helpers import env


@pytest.fixture(scope="module")
def encoder(tiny_model):
    from engine.child.encoder import load_encoder
    from engine.contract.spec import EncoderSpec

    return load_encoder(EncoderSpec(name=str(tiny_model), max_query_length=32, max_passage_length=48))


class CountingEncoder:
    """The real encoder, counting every text it is asked to encode."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.texts: list[tuple[bool, str]] = []

    def encode(self, texts, is_query, *args, **kwargs):
        self.texts += [(is_query, text) for text in texts]
        return self.encoder.encode(texts, is_query, *args, **kwargs)

    def for_inference(self, precision):
        counting = CountingEncoder(self.encoder.for_inference(precision))
        counting.texts = self.texts
        return counting

    def __getattr__(self, name):
        return getattr(self.encoder, name)


def evaluate(encoder, tmp_path, **eval_section):
    spec = parse_spec({"name": "eval-test", "eval": {"datasets": ["xquad-r"], "languages": ["en", "de", "zh"],
                                                     "max_queries": 15, **eval_section}})
    events = []
    assert Evaluator(spec, RunFolder(tmp_path), events.append).run(encoder, step=7)
    return spec, events


def test_every_setting_is_scored_from_one_encoding_per_language(encoder, tmp_path):
    counting = CountingEncoder(encoder)
    spec, events = evaluate(counting, tmp_path, cache=False)
    from engine.child.data.lareqa import load_lareqa

    corpora = load_lareqa("xquad-r", ("en", "de", "zh"), None, 15)
    expected = sum(len(c.questions) + len(c.candidates) for c in corpora.values())
    assert len(counting.texts) == expected  # 3 mono + 6 cross + 3 multi settings, each text once
    results = json.loads((tmp_path / "eval" / "xquad-r" / "results.json").read_text())
    assert results["languages"] == ["en", "de", "zh"] and results["step"] == 7
    for language, row in results["per_language"].items():
        assert set(row["settings"]) == {"mono", "cross", "multi"}
        assert set(row["cross_by_target"]) == {"en", "de", "zh"} - {language}
        cross = np.mean([target["map"] for target in row["cross_by_target"].values()])
        assert row["settings"]["cross"]["map"] == pytest.approx(cross)
        assert row["bias"] is not None and row["bias"] >= 0
    assert set(results["groups"]) == {"high"}  # en, de, zh are Joshi class 5
    assert results["macro"]["mono"]["map"] == pytest.approx(
        np.mean([row["settings"]["mono"]["map"] for row in results["per_language"].values()]))


def test_eval_events_fill_languages_as_they_complete(encoder, tmp_path):
    _, events = evaluate(encoder, tmp_path)
    kinds = [(event.kind, getattr(event, "language", None), tuple(getattr(event, "settings", {})))
             for event in events if event.kind in ("eval", "eval_done")]
    assert kinds[:3] == [("eval", "en", ("mono",)), ("eval", "de", ("mono",)), ("eval", "zh", ("mono",))]
    assert [kind for kind, _, _ in kinds[3:]] == ["eval", "eval", "eval", "eval_done"]
    assert any(event.kind == "eval_progress" for event in events)


def test_trec_files_and_per_query_scores_agree_with_pytrec_eval(encoder, tmp_path):
    pytrec_eval = importlib.import_module("pytrec_eval")
    evaluate(encoder, tmp_path, metrics=["map", "ndcg@10", "recall@10"], trec_depth=5000)  # full rankings
    folder = tmp_path / "eval" / "xquad-r"
    per_query = read_per_query(folder / "per_query.tsv.gz")
    for language in ("en", "de", "zh"):
        for setting in ("mono", "multi"):
            run, qrels = {}, {}
            for line in (folder / "trec" / f"{language}.{setting}.run").read_text().splitlines():
                qid, _, doc, rank, score, _ = line.split()
                run.setdefault(qid, {})[doc] = float(score)
            for line in (folder / "trec" / f"{language}.{setting}.qrels").read_text().splitlines():
                qid, _, doc, relevance = line.split()
                qrels.setdefault(qid, {})[doc] = int(relevance)
            reference = pytrec_eval.RelevanceEvaluator(qrels, {"map", "ndcg_cut.10", "recall.10"}).evaluate(run)
            ours = per_query[(language, setting)]
            assert set(ours) == set(reference)
            for qid, values in reference.items():  # depth 5000: every candidate ranked
                assert ours[qid]["map"] == pytest.approx(values["map"], abs=1e-5)
                assert ours[qid]["ndcg@10"] == pytest.approx(values["ndcg_cut_10"], abs=1e-5)
                assert ours[qid]["recall@10"] == pytest.approx(values["recall_10"], abs=1e-5)


def test_mlqa_cross_lingual_counts_only_queries_with_a_translation(encoder, tmp_path):
    spec = parse_spec({"name": "mlqa", "train": {"steps": 0}, "eval": {"datasets": ["mlqa-r"],
                                                                        "languages": ["de", "es", "en"],
                                                                        "max_queries": 20}})
    assert Evaluator(spec, RunFolder(tmp_path), lambda event: None).run(encoder, 0)
    results = json.loads((tmp_path / "eval" / "mlqa-r" / "results.json").read_text())
    per_query = read_per_query(tmp_path / "eval" / "mlqa-r" / "per_query.tsv.gz")
    # a slice is 20 question ids; every MLQA-R id has English, German holds those it has
    assert results["per_language"]["en"]["queries"] == 20
    assert 0 < len(per_query[("de", "mono")]) < 20
    assert set(per_query[("de", "mono")]) <= set(per_query[("en", "mono")])
    assert set(per_query[("de", "cross")]) == set(per_query[("de", "mono")])   # each has its English version


def test_command_line_zero_shot_prints_the_table(tiny_model, tmp_path):
    runs = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "engine.cli", "evaluate", str(tiny_model), "--languages", "en", "de",
                             "--max-queries", "8", "--runs-dir", str(runs)],
                            capture_output=True, text=True, env={**env(), "COLUMNS": "160"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for word in ("mono", "cross", "multi", "bias", "en", "de", "macro avg"):
        assert word in result.stdout
    (folder,) = [path for path in runs.iterdir() if path.is_dir()]
    events = (folder / "events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["event"] == "finished"
    # a run like any other: in the index, nameable as a baseline, comparable
    cli = [sys.executable, "-m", "engine.cli"]
    listed = json.loads(subprocess.run([*cli, "runs", "--json", "--runs-dir", str(runs)], capture_output=True,
                                       text=True, env=env()).stdout)
    assert [(run["id"], run["name"], run["status"]) for run in listed] == [(folder.name, "zero-shot-tiny-model0",
                                                                            "finished")]
    spec = tmp_path / "with-baseline.json"
    spec.write_text(json.dumps({"name": "vs-zero-shot", "baseline": "zero-shot-tiny-model0",
                                "encoder": {"name": str(tiny_model)}, "train": {"steps": 2, "languages": ["en", "de"]},
                                "eval": {"languages": ["en", "de"], "max_queries": 8}}))
    planned = subprocess.run([*cli, "--run", str(spec), "--dry-run", "--runs-dir", str(runs)], capture_output=True,
                             text=True, env=env())
    assert planned.returncode == 0, planned.stderr
    compared = subprocess.run([*cli, "compare", "zero-shot-tiny-model0", folder.name, "--format", "csv",
                               "--runs-dir", str(runs)], capture_output=True, text=True, env=env())
    assert compared.returncode == 0 and "macro avg" in compared.stdout


@pytest.mark.parametrize("arguments,message", [
    (["--datasets", "squad"], "eval.datasets[0]: unknown evaluation dataset 'squad'"),
    (["--languages", "en", "xx"], "eval.languages[1]: xquad-r has no language 'xx'"),
    (["--data-dir", "/nonexistent"], "data_dir: /nonexistent does not exist"),
])
def test_command_line_bad_input(tiny_model, tmp_path, arguments, message):
    variables = env()
    if "--data-dir" in arguments:
        variables["HBT_DATA_DIR"] = "/nonexistent"
    result = subprocess.run([sys.executable, "-m", "engine.cli", "evaluate", str(tiny_model), *arguments,
                             "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, env=variables)
    assert result.returncode == 2 and message in result.stderr
    assert not [path for path in (tmp_path / "runs").glob("*") if path.is_dir()]


def test_seen_and_unseen_languages_are_groups_and_overlap_is_marked(encoder, tmp_path):
    spec = parse_spec({"name": "seen", "train": {"languages": ["en", "de"]},
                       "eval": {"datasets": ["xquad-r"], "languages": ["en", "de", "zh"], "max_queries": 8}})
    assert Evaluator(spec, RunFolder(tmp_path / "a"), lambda event: None).run(encoder, 3)
    results = json.loads((tmp_path / "a" / "eval" / "xquad-r" / "results.json").read_text())
    assert results["groups"]["seen"]["languages"] == ["en", "de"]
    assert results["groups"]["unseen"]["languages"] == ["zh"]
    assert results["groups"]["unseen"]["mono"]["map"] == results["per_language"]["zh"]["settings"]["mono"]["map"]
    assert results["seen_in_training"] is False
    overlap = parse_spec({"name": "overlap", "train": {"dataset": "xquad-r", "languages": ["en", "de"]},
                          "eval": {"datasets": ["xquad-r"], "languages": ["en", "de"], "max_queries": 8,
                                   "allow_train_overlap": True}})
    assert Evaluator(overlap, RunFolder(tmp_path / "b"), lambda event: None).run(encoder, 3)
    marked = json.loads((tmp_path / "b" / "eval" / "xquad-r" / "results.json").read_text())
    assert marked["seen_in_training"] is True
    from rich.console import Console

    from engine.parent.tables import results_table

    console = Console(width=200, record=True)
    console.print(results_table(marked))
    assert "xquad-r · map · seen in training" in console.export_text()


def test_per_query_files_carry_each_querys_language_bias(encoder, tmp_path):
    evaluate(encoder, tmp_path)
    results = json.loads((tmp_path / "eval" / "xquad-r" / "results.json").read_text())
    per_query = read_per_query(tmp_path / "eval" / "xquad-r" / "per_query.tsv.gz")
    for language in ("en", "de", "zh"):
        biases = [row["bias"] for row in per_query[(language, "multi")].values()]
        assert np.nanmean(biases) == pytest.approx(results["per_language"][language]["bias"])
        assert all(np.isnan(row["bias"]) for row in per_query[(language, "mono")].values())
