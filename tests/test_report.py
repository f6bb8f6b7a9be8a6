"""`hbt-tui report` on real runs: a grid of four strategies x two seeds plus a zero-shot
reference, trained on a tiny model and evaluated on an XQuAD-R slice and on MIRACL-layout
files this test writes (two languages, one high- and one low-resource). Tables, verdict,
figures and files are checked for content; bad input is refused with nothing half-written."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.contract.layout import RunFolder, read_json
from engine.parent.store import RunStore
from runs_helpers import env, tiny_spec, write
from test_miracl import write_miracl

pytestmark = pytest.mark.slow

EN_DOCS = [("1#0", "Nairobi", "Nairobi is the capital of Kenya."), ("1#1", "Nairobi", "It has four million people."),
           ("2#0", "Kilimanjaro", "Kilimanjaro is the highest mountain in Africa."),
           ("3#0", "Dodoma", "Dodoma is the capital of Tanzania."), ("4#0", "Lake Victoria", "A large lake in Africa.")]
EN_TOPICS = [("e1", "What is the capital of Kenya?"), ("e2", "Which is Africa's highest mountain?"),
             ("e3", "What is the capital of Tanzania?"), ("e4", "Which large lake lies in Africa?")]
EN_QRELS = [("e1", "1#0", 1), ("e2", "2#0", 1), ("e3", "3#0", 1), ("e4", "4#0", 1), ("e1", "1#1", 0)]


def hbt(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**env(), "COLUMNS": "200"}, timeout=timeout)


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_model, data_dir) -> Path:
    """A finished grid: 4 strategies x 2 seeds, and a zero-shot run (9 real runs), evaluated at
    step 2 and at the end (step 3): a learning curve."""
    root = tmp_path_factory.mktemp("study")
    data = root / "data"
    data.mkdir()
    for dataset in ("xquad-r", "mlqa-r"):
        (data / dataset).symlink_to(data_dir / dataset)
    write_miracl(data, "sw")
    write_miracl(data, "en", docs=EN_DOCS, topics=EN_TOPICS, qrels=EN_QRELS)
    document = tiny_spec(tiny_model, name="mini", data_dir=str(data),
                         **{"train.steps": 3, "train.eval_every": 2, "train.languages": None, "train.checkpoint_every": 0,
                            "eval.datasets": ["xquad-r", "miracl"], "eval.languages": None, "eval.max_queries": 8})
    document["grid"] = [{"sampling.strategy": ["monolingual", "crosslingual", "hybrid", "multitask"],
                         "train.seed": [1, 2]}, {"train.steps": [0]}]
    result = hbt("--run", write(root / "mini.json", document), "--jobs", "2", "--runs-dir", root / "runs")
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def report_of(study: Path, *arguments) -> subprocess.CompletedProcess:
    return hbt("report", "mini", "--runs-dir", study / "runs", *arguments)


def test_report_tables_verdict_figures_and_files(study, tmp_path):
    out = tmp_path / "report"
    result = report_of(study, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "report.json").read_text())
    assert [arm["label"] for arm in data["arms"]] == ["X-X", "X-Y", "hybrid α=0.5", "multitask (full)", "zero-shot"]
    assert data["reference"] == "hybrid α=0.5"
    xquad = data["datasets"]["xquad-r"]
    assert xquad["metrics"] == ["map", "map@20"] or xquad["metrics"][0] == "map"
    # a value is the mean over seeds of each run's macro average; its sd is over seeds
    store = RunStore(study / "runs")
    runs = [run for run in store.all() if run["strategy"] == "monolingual"]
    macros = [read_json(RunFolder(study / "runs" / run["id"]).results("xquad-r"))["macro"]["mono"]["map"]
              for run in runs]
    cell = xquad["tables"]["map"]["mono"]["X-X"]["all"]
    assert cell["value"] == pytest.approx(np.mean(macros)) and cell["sd"] == pytest.approx(np.std(macros, ddof=1))
    assert cell["seeds"] == 2 and cell["units"] == 8 and cell["ci"][0] <= cell["delta"] <= cell["ci"][1]
    assert set(xquad["tables"]["map"]["mono"]["X-X"]) >= {"all", "high", "low", "seen", "unseen", "en", "zh"}
    # the learning curve: each evaluated step's macro value, the mean over the arm's runs
    curve = xquad["learning_curve"]["X-X"]
    assert list(curve) == ["2", "3"] and curve["3"]["mono"] == {"value": pytest.approx(cell["value"]), "runs": 2}
    at_two = [read_json(RunFolder(study / "runs" / run["id"]).results("xquad-r", 2))["macro"]["mono"]["map"]
              for run in runs]
    assert curve["2"]["mono"]["value"] == pytest.approx(np.mean(at_two))
    assert list(xquad["learning_curve"]["zero-shot"]) == ["0"]
    assert "delta" not in xquad["tables"]["map"]["mono"]["hybrid α=0.5"]["all"] or \
        xquad["tables"]["map"]["mono"]["hybrid α=0.5"]["all"]["delta"] is None          # the reference itself
    assert xquad["bias"]["X-X"]["all"]["value"] > 0
    assert xquad["cross_matrix"]["reference"] == "hybrid α=0.5"
    assert len(xquad["cross_matrix"]["values"]) == len(xquad["languages"]) == 11
    assert {item["groups"][0] for item in xquad["interactions"]["map"]} == {"high", "seen"}
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Study: mini\n\n## The answer\n")
    family = data["hypotheses"]
    assert family["source"] == "default" and [item["id"] for item in family["items"]][-3:] == ["P1", "P2", "P3"]
    assert all(item["kind"] == "methods" and item["seeds"] == [2, 2] for item in family["items"])
    answer = markdown.split("## Exploratory tables")[0]
    assert all(f"| {item['id']} | {item['claim']} |" in answer for item in family["items"])
    verdict = markdown.split("## Appendix: every claim, exploratory")[1].split("\n## ")[0]
    for claim in ("hybrid α=0.5 beats X-X in multilingual retrieval on xquad-r",
                  "hybrid α=0.5 has lower language bias than X-X on xquad-r",
                  "hybrid α=0.5 vs multitask (full) in multilingual retrieval on xquad-r",
                  "hybrid α=0.5's gain over X-X in multilingual retrieval, high vs low on xquad-r",
                  "hybrid α=0.5 matches X-X in monolingual MIRACL retrieval on miracl"):
        line = next(line for line in verdict.splitlines() if claim in line)
        assert line.startswith(("- **supported**", "- **not supported**", "- **not significant**",
                                "- **differs**", "- **not significantly different**",
                                "- **hybrid α=0.5 better**", "- **hybrid α=0.5 worse**")), line
        assert "after correction" in line
    xquad_text = markdown.split("\n## xquad-r\n")[1]
    x_x = next(line for line in xquad_text.splitlines() if line.startswith("| X-X | 2 |"))  # first table: mono map
    assert f"{cell['value']:.3f} ± {cell['sd']:.3f} ({cell['delta']:+.3f}" in x_x
    assert "### learning curve · macro map" in xquad_text and "| X-X | mono | " in xquad_text
    assert "## Reproducing this report" in markdown and "`hbt-tui report mini`" in markdown
    readme = (out / "README.md").read_text()                 # how to make it again, into the folder asked for
    assert f"hbt-tui report mini --out {out} --force" in readme and "--executor slurm" in readme
    figures = sorted(path.name for path in (out / "figures").iterdir())
    assert figures == ["alpha-sweep-miracl-ndcg-10.png", "alpha-sweep-xquad-r-map.png", "cross-matrix-xquad-r.png",
                       "language-bias-xquad-r.png", "language-gains-miracl-ndcg-10.png",
                       "language-gains-xquad-r-map.png", "learning-curve-miracl-ndcg-10.png",
                       "learning-curve-xquad-r-map.png"]
    import matplotlib.image

    for name in figures:
        image = matplotlib.image.imread(out / "figures" / name)
        assert image.shape[0] > 200 and image.shape[1] > 300 and image[..., :3].std() > 0.05, name
        assert f"(figures/{name})" in markdown
    rows = list(csv.DictReader(io.StringIO((out / "tables.csv").read_text())))
    row = next(r for r in rows if r["dataset"] == "xquad-r" and r["metric"] == "map" and r["setting"] == "mono"
               and r["row"] == "all" and r["arm"] == "X-X")
    assert float(row["value"]) == pytest.approx(cell["value"], abs=1e-6) and row["reference"] == "hybrid α=0.5"
    latex = (out / "tables.tex").read_text()
    tables = sum(len(section["tables"][metric]) for section in data["datasets"].values() for metric in section["metrics"])
    assert latex.count(r"\toprule") == latex.count(r"\bottomrule") == tables + 1 == 7 and r"X-X & " in latex  # + hypotheses


def test_the_miracl_section_has_its_metrics_and_both_groups(study, tmp_path):
    result = report_of(study, "--out", tmp_path / "report")
    assert result.returncode == 0, result.stderr[-2000:]
    miracl = json.loads((tmp_path / "report" / "report.json").read_text())["datasets"]["miracl"]
    assert miracl["metrics"] == ["ndcg@10", "map_cut@10", "recall@100"]
    assert miracl["groups"]["high"] == ["en"] and miracl["groups"]["low"] == ["sw"]
    assert list(miracl["tables"]["ndcg@10"]) == ["mono"]                    # MIRACL is monolingual
    assert set(miracl["tables"]["recall@100"]["mono"]["X-X"]) >= {"all", "high", "low", "en", "sw"}
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "### monolingual retrieval · recall@100" in markdown.split("## miracl")[1]


def test_the_same_runs_give_the_same_report(study, tmp_path):
    """Twice from the same runs: the same bytes (the second into folders that do not exist yet,
    as `--out docs/study` in a fresh clone)."""
    for out in (tmp_path / "first", tmp_path / "docs" / "study" / "second"):
        assert report_of(study, "--out", out).returncode == 0
    for file in ("report.md", "tables.csv", "tables.tex", "report.json"):
        second = tmp_path / "docs" / "study" / "second" / file
        assert (tmp_path / "first" / file).read_bytes() == second.read_bytes(), file


def test_reports_are_kept_and_listed(study):
    assert report_of(study).returncode == 0
    listed = json.loads(hbt("reports", "--json", "--runs-dir", study / "runs").stdout)
    report = next(record for record in listed if record["kind"] == "report")
    assert report["title"] == "Study: mini" and report["headline"].startswith("hybrid α=0.5 vs X-X: xquad-r multi map")
    assert (study / "runs" / ".reports" / report["id"] / "report.md").is_file()
    store = RunStore(study / "runs")
    ids = [run["id"] for run in store.all() if run["strategy"] in ("monolingual", "hybrid") and run["seed"] == 1]
    compared = hbt("compare", *ids, "--runs-dir", study / "runs")
    assert compared.returncode == 0
    listed = json.loads(hbt("reports", "--json", "--runs-dir", study / "runs").stdout)
    assert [record["kind"] for record in listed].count("compare") == 1   # asking again replaces, never piles up
    assert hbt("compare", *ids, "--runs-dir", study / "runs").returncode == 0
    assert [record["kind"] for record in json.loads(hbt("reports", "--json", "--runs-dir", study / "runs").stdout)
            ].count("compare") == 1


def test_bad_report_input_is_refused_and_nothing_is_half_written(study, tmp_path):
    runs = study / "runs"
    existing = tmp_path / "exists"
    existing.mkdir()
    refused = report_of(study, "--out", existing)
    assert refused.returncode == 2 and "exists; add --force" in refused.stderr
    assert list(existing.iterdir()) == []
    store = RunStore(runs)
    xquad_only = tmp_path / "runs"
    shutil.copytree(runs, xquad_only, ignore=shutil.ignore_patterns(".reports", "index.json"))
    first, second = sorted(run["id"] for run in store.all())[:2]
    shutil.rmtree(xquad_only / first / "eval" / "miracl")
    shutil.rmtree(xquad_only / second / "eval" / "xquad-r")
    disjoint = hbt("report", first, second, "--runs-dir", xquad_only)
    assert disjoint.returncode == 2 and "share no evaluation dataset" in disjoint.stderr
    record = RunFolder(xquad_only / first).record
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "interrupted"}))
    (xquad_only / "index.json").unlink()                       # edited by hand: let the index catch up
    partial = hbt("report", "mini", "--runs-dir", xquad_only, "--out", tmp_path / "partial")
    assert partial.returncode == 2 and "have not finished" in partial.stderr and "--partial" in partial.stderr
    assert not (tmp_path / "partial").exists()
    spec = RunFolder(xquad_only / second).spec
    spec.write_text(json.dumps({**json.loads(spec.read_text()), "encoder": {"name": "other-encoder"}}))
    (xquad_only / "index.json").unlink()
    mixed = hbt("report", "mini", "--partial", "--runs-dir", xquad_only)
    assert mixed.returncode == 2 and "different encoders" in mixed.stderr and "--allow-mixed" in mixed.stderr
    allowed = hbt("report", "mini", "--partial", "--allow-mixed", "--runs-dir", xquad_only, "--out", tmp_path / "ok")
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert "[partial]" in (tmp_path / "ok" / "report.md").read_text()
