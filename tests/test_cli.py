"""The headless commands on a store of recorded runs (no training needed)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

from runs_helpers import env
from tui_helpers import recorded_store


def hbt(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**env(), "COLUMNS": "160"}, timeout=120)


def test_runs_lists_and_filters(tmp_path):
    store = recorded_store(tmp_path)
    listed = json.loads(hbt("runs", "--runs-dir", store.runs_dir, "--json").stdout)
    assert {run["id"] for run in listed} == {"hybrid-run", "mono-run", "failed-run"}
    failed = json.loads(hbt("runs", "--status", "failed", "--runs-dir", store.runs_dir, "--json").stdout)
    assert [run["id"] for run in failed] == ["failed-run"]
    table = hbt("runs", "--strategy", "monolingual", "--runs-dir", store.runs_dir)
    assert table.returncode == 0 and "mono-run" in table.stdout and "hybrid-run" not in table.stdout


def test_show_prints_tables_and_the_failure(tmp_path):
    store = recorded_store(tmp_path)
    shown = hbt("show", "hybrid", "--runs-dir", store.runs_dir)  # a unique id prefix
    assert shown.returncode == 0
    assert "macro avg" in shown.stdout and "bias" in shown.stdout and "hybrid-run" in shown.stdout
    failed = hbt("show", "failed-run", "--runs-dir", store.runs_dir)
    assert "no language has enough distinct monolingual training pairs" in failed.stdout


def test_compare_formats_agree(tmp_path):
    store = recorded_store(tmp_path)
    results = {run: json.loads((store.runs_dir / run / "eval" / "xquad-r" / "results.json").read_text())
               for run in ("hybrid-run", "mono-run")}
    csv_text = hbt("compare", "hybrid-run", "mono-run", "--format", "csv", "--runs-dir", store.runs_dir).stdout
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    macro_multi = next(row for row in rows if row["row"] == "macro avg" and row["setting"] == "multi"
                       and row["run_id"] == "mono-run")
    expected = results["mono-run"]["macro"]["multi"]["map"] - results["hybrid-run"]["macro"]["multi"]["map"]
    assert abs(float(macro_multi["delta"]) - expected) < 1e-6
    assert 0 <= float(macro_multi["p_value"]) <= 1
    markdown = hbt("compare", "hybrid-run", "mono-run", "--format", "md", "--runs-dir", store.runs_dir).stdout
    assert "| sampling.strategy |" in markdown and "**xquad-r · map**" in markdown
    latex_file = tmp_path / "table.tex"
    latex = hbt("compare", "hybrid-run", "mono-run", "--format", "latex", "--metric", "ndcg@10",
                "--output", latex_file, "--runs-dir", store.runs_dir)
    assert latex.returncode == 0
    text = latex_file.read_text()
    assert text.startswith("\\begin{tabular}") and "\\bottomrule" in text and "ndcg@10" in text
    table = hbt("compare", "hybrid-run", "mono-run", "--runs-dir", store.runs_dir)
    assert "config fields that differ" in table.stdout and "sampling.strategy" in table.stdout


def test_delete_needs_confirmation(tmp_path):
    store = recorded_store(tmp_path)
    refused = hbt("delete", "failed-run", "--runs-dir", store.runs_dir)
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    assert (store.runs_dir / "failed-run").exists()
    done = hbt("delete", "failed-run", "--yes", "--runs-dir", store.runs_dir)
    assert done.returncode == 0 and not (store.runs_dir / "failed-run").exists()
    listed = json.loads(hbt("runs", "--runs-dir", store.runs_dir, "--json").stdout)
    assert "failed-run" not in {run["id"] for run in listed}


def test_a_word_is_a_command_only_in_the_command_place(tmp_path, monkeypatch):
    """`hbt-tui --runs-dir runs` opens the UI on the folder `runs` (it printed the headless usage);
    `hbt-tui runs` lists runs."""
    import tui.cli

    opened = []
    monkeypatch.setattr(tui.cli, "open_tui", lambda args: opened.append((args.runs_dir, args.jobs, args.open_spec)) or 0)
    for folder in ("runs", "report", "data", "index"):
        assert tui.cli.main(["--runs-dir", folder]) == 0
    assert tui.cli.main(["--jobs", "2", "--open", "experiments/quickstart.json"]) == 0
    assert opened == [("runs", 1, None), ("report", 1, None), ("data", 1, None), ("index", 1, None),
                      (None, 2, "experiments/quickstart.json")]
    store = recorded_store(tmp_path)
    listed = subprocess.run([sys.executable, "-c", "import sys, tui.cli; sys.exit(tui.cli.main())", "runs",
                             "--runs-dir", str(store.runs_dir), "--json"], capture_output=True, text=True, env=env(),
                            timeout=120)
    assert listed.returncode == 0 and {run["id"] for run in json.loads(listed.stdout)} >= {"hybrid-run", "mono-run"}
    assert opened[-1] == (None, 2, "experiments/quickstart.json")     # the subprocess never opened a UI


def test_runs_keeps_a_grid_runs_whole_id_at_80_columns(tmp_path):
    long_id = "study-mlqa-to-xquad-seed=6-strategy=multitask-mu-261202-000640-def1"
    store = recorded_store(tmp_path, {long_id: "hybrid"})
    listed = subprocess.run([sys.executable, "-m", "engine.cli", "runs", "--runs-dir", str(store.runs_dir)],
                            capture_output=True, text=True, env={**env(), "COLUMNS": "80"}, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert any(long_id in line for line in listed.stdout.splitlines())
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80
