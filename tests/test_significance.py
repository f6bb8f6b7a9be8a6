"""Significance that holds: scipy's tests on question units, Holm over the family, bootstrap
CIs, seed groups, on constructed data whose right answers are known."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from engine.contract.layout import RunFolder, write_json_atomic
from engine.contract.results import write_per_query
from engine.parent.compare import compare, load_run
from engine.parent.significance import Arm, Significance, correct, crossed_test, paired_p, question_units
from runs_helpers import env

LANGUAGES = ("ar", "de", "en", "es", "hi", "zh")


def write_run(runs: Path, run_id: str, scores: dict[str, dict[str, float]], *, strategy: str = "hybrid",
              seed: int = 1) -> RunFolder:
    """A finished run folder whose per-query `map` scores are `scores` ({language: {qid: value}})."""
    folder = RunFolder(runs / run_id)
    write_json_atomic(folder.spec, {"name": run_id.split("@")[0], "sampling": {"strategy": strategy},
                                    "train": {"seed": seed}})
    write_json_atomic(folder.record, {"status": "finished"})
    rows = [(language, setting, qid, [value]) for language, per_question in scores.items()
            for setting in ("mono", "cross", "multi") for qid, value in per_question.items()]
    write_per_query(folder.per_query("xquad-r"), ["map"], rows)
    per_language = {language: {"settings": {setting: {"map": float(np.mean(list(values.values())))}
                                            for setting in ("mono", "cross", "multi")}}
                    for language, values in scores.items()}
    write_json_atomic(folder.results("xquad-r"), {"dataset": "xquad-r", "languages": list(scores),
                                                  "metrics": ["map"], "primary_metric": "map",
                                                  "per_language": per_language, "groups": {}})
    return folder


def test_paired_tests_agree_with_scipy():
    rng = np.random.default_rng(3)
    first = rng.uniform(0, 1, 200)
    second = np.clip(first + rng.normal(0.02, 0.1, 200), 0, 1)
    assert paired_p(first, second, Significance()) == pytest.approx(stats.ttest_rel(second, first).pvalue)
    settings = Significance(test="permutation", permutations=20_000, seed=11)
    expected = stats.permutation_test((first, second), lambda x, y, axis: np.mean(y - x, axis=axis),
                                      permutation_type="samples", vectorized=True, n_resamples=20_000,
                                      random_state=11).pvalue
    assert paired_p(first, second, settings) == pytest.approx(expected)
    assert paired_p(first, second, settings) == pytest.approx(paired_p(first, second, Significance()), abs=0.02)


def test_holm_and_benjamini_hochberg_match_a_hand_computed_example():
    p_values = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max
    assert correct(p_values, Significance()) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: times 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02, 0.04, 0.04 -> running min from the largest
    assert correct(p_values, Significance(correction="bh")) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert correct(p_values, Significance(correction="none")) == p_values


def test_question_units_average_to_the_macro_of_per_language_means():
    scores = {"en": {"q1": 1.0, "q2": 0.5, "q3": 0.0}, "de": {"q1": 0.25, "q3": 0.75}}  # MLQA-like: de lacks q2
    units = question_units(scores)
    macro = np.mean([np.mean(list(values.values())) for values in scores.values()])
    assert np.mean(list(units.values())) == pytest.approx(macro)
    assert set(units) == {"q1", "q2", "q3"}


def translated_effects(questions: int = 40) -> tuple[dict, dict]:
    """Two systems whose difference is a property of the question, shared by its translations."""
    rng = np.random.default_rng(7)
    base = rng.uniform(0.2, 0.8, questions)
    effect = 0.02 + 0.1 * rng.standard_normal(questions)               # one effect per question
    first, second = {}, {}
    for language in LANGUAGES:
        noise = 0.005 * rng.standard_normal(questions)                  # translations differ a little
        first[language] = {f"q{i}": float(base[i]) for i in range(questions)}
        second[language] = {f"q{i}": float(base[i] + effect[i] + noise[i]) for i in range(questions)}
    return first, second


def test_pooling_translations_gives_significance_that_question_units_do_not(tmp_path):
    first, second = translated_effects()
    pooled_first = np.array([first[lang][qid] for lang in LANGUAGES for qid in first[lang]])
    pooled_second = np.array([second[lang][qid] for lang in LANGUAGES for qid in first[lang]])
    assert stats.ttest_rel(pooled_second, pooled_first).pvalue < 0.05      # the old macro test: "significant"
    runs = [load_run(write_run(tmp_path, "a", first, strategy="monolingual")),
            load_run(write_run(tmp_path, "b", second, strategy="hybrid"))]
    comparison = compare(runs, "xquad-r", "map")
    macro = next(cells for label, _, cells in comparison.rows if label == "macro avg")[("mono", 1)]
    units_first = [np.mean([first[lang][f"q{i}"] for lang in LANGUAGES]) for i in range(40)]
    units_second = [np.mean([second[lang][f"q{i}"] for lang in LANGUAGES]) for i in range(40)]
    assert macro.units == 40
    assert macro.p_value == pytest.approx(stats.ttest_rel(units_second, units_first).pvalue)
    assert macro.p_value > 0.05 and not macro.significant                  # 40 questions, not 240 queries
    assert macro.delta == pytest.approx(np.mean(units_second) - np.mean(units_first))   # shown = tested


def test_seed_groups_show_mean_and_sd_and_test_questions_and_seeds_together(tmp_path):
    rng = np.random.default_rng(1)
    runs = []
    per_seed = {}
    for strategy, shift in (("monolingual", 0.0), ("hybrid", 0.05)):
        for seed in (1, 2, 3):
            seed_shift = 0.03 * rng.standard_normal()
            scores = {lang: {f"q{i}": float(np.clip(0.5 + shift + seed_shift + 0.2 * rng.standard_normal(), 0, 1))
                             for i in range(30)} for lang in ("en", "de")}
            per_seed[(strategy, seed)] = scores
            runs.append(load_run(write_run(tmp_path, f"{strategy}-seed={seed}", scores, strategy=strategy, seed=seed)))
    comparison = compare(runs, "xquad-r", "map")
    assert [system.name for system in comparison.runs] == ["monolingual (3 seeds)", "hybrid (3 seeds)"]
    en = next(cells for label, _, cells in comparison.rows if label == "en")[("mono", 1)]
    seed_means = [np.mean(list(per_seed[("hybrid", seed)]["en"].values())) for seed in (1, 2, 3)]
    assert en.value == pytest.approx(np.mean(seed_means))
    assert en.sd == pytest.approx(np.std(seed_means, ddof=1))
    matrices = [np.array([[per_seed[(strategy, seed)]["en"][f"q{i}"] for i in range(30)] for seed in (1, 2, 3)])
                for strategy in ("monolingual", "hybrid")]
    expected = crossed_test(Arm(matrices[0]), Arm(matrices[1]))
    assert en.kind == "methods" and en.seeds == (3, 3)
    assert en.p_value == pytest.approx(expected.p) and en.ci == pytest.approx(expected.ci)
    averaged = [matrix.mean(0) for matrix in matrices]           # the old test: seeds averaged away
    assert en.p_value > stats.ttest_rel(averaged[1], averaged[0]).pvalue
    assert comparison.family == 3 * 3          # en, de, macro avg x mono, cross, multi
    assert all(cell.p_adjusted >= cell.p_value for _, _, cells in comparison.rows
               for cell in cells.values() if cell.p_value is not None)
    assert "Holm-corrected over the 9 cells" in comparison.footnote
    assert "units are questions × training seeds" in comparison.footnote
    assert "means ± sd over seeds" in comparison.footnote and "compares these trained models" not in comparison.footnote


def test_single_runs_compare_models_and_say_so(tmp_path):
    first, second = translated_effects()
    runs = [load_run(write_run(tmp_path, "a", first, strategy="monolingual")),
            load_run(write_run(tmp_path, "b", second, strategy="hybrid"))]
    comparison = compare(runs, "xquad-r", "map")
    cells = [cell for _, _, row in comparison.rows for cell in row.values() if cell.delta is not None]
    assert {cell.kind for cell in cells} == {"models"}
    assert "units are questions, paired t-test — it compares these trained models, not their methods" \
        in comparison.footnote and "training seeds" not in comparison.footnote


def hbt(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**env(), "COLUMNS": "200"}, timeout=120)


def test_compare_exports_cis_and_refuses_bad_test_options(tmp_path):
    first, second = translated_effects(20)
    runs = tmp_path / "runs"
    write_run(runs, "a", first, strategy="monolingual")
    write_run(runs, "b", second, strategy="hybrid")
    exported = hbt("compare", "a", "b", "--format", "csv", "--runs-dir", runs)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    macro = next(row for row in rows if row["row"] == "macro avg" and row["setting"] == "mono" and row["run_id"] == "b")
    assert float(macro["ci_low"]) < float(macro["delta"]) < float(macro["ci_high"])
    assert macro["units"] == "20" and macro["correction"] == "holm" and macro["family"] == "21"
    markdown = hbt("compare", "a", "b", "--format", "md", "--test", "permutation", "--runs-dir", runs).stdout
    assert "paired randomisation test (10,000 permutations, seed 0)" in markdown and "[" in markdown
    for arguments, message in ((["--permutations", "500"], "--permutations must be at least 1,000, got 500"),
                               (["--require-seeds"], "has a single run; mean ± sd over seeds needs at least 2")):
        refused = hbt("compare", "a", "b", *arguments, "--runs-dir", runs)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    shown = hbt("show", "b", "--ci", "--runs-dir", runs)
    assert shown.returncode == 0 and "95 % CI" in shown.stdout


def test_results_files_keep_their_precision(tmp_path):
    from engine.contract.results import read_per_query, write_trec

    write_trec(tmp_path, "x.mono", ["q"], [["d1", "d2"]], [[np.float32(0.123456789), np.float32(0.123456701)]],
               {"q": ["d1"]}, "tag")
    scores = [line.split()[4] for line in (tmp_path / "x.mono.run").read_text().splitlines()]
    assert scores[0] != scores[1]              # 6 decimals made these two a tie
    write_per_query(tmp_path / "pq.tsv.gz", ["map"], [("en", "mono", "q", [1 / 3])])
    assert read_per_query(tmp_path / "pq.tsv.gz")[("en", "mono")]["q"]["map"] == pytest.approx(1 / 3, abs=1e-9)
    assert json.loads(json.dumps(1 / 3)) == 1 / 3


def test_runs_over_different_languages_are_compared_on_the_common_ones(tmp_path):
    first, second = translated_effects(20)
    wider = {**second, "vi": {qid: 0.9 for qid in second["en"]}}              # one more language
    runs = [load_run(write_run(tmp_path, "a", first, strategy="monolingual")),
            load_run(write_run(tmp_path, "b", wider, strategy="hybrid"))]
    comparison = compare(runs, "xquad-r", "map")
    assert [label for label, summary, _ in comparison.rows if not summary] == list(LANGUAGES)
    assert comparison.dropped == ["vi"]
    assert "compared on the 6 languages every run was evaluated on — left out: vi" in comparison.footnote
    macro = next(cells for label, _, cells in comparison.rows if label == "macro avg")[("mono", 1)]
    per_language = [np.mean(list(second[lang].values())) - np.mean(list(first[lang].values())) for lang in LANGUAGES]
    assert macro.delta == pytest.approx(np.mean(per_language))
    elsewhere = load_run(write_run(tmp_path / "other", "c", {"vi": wider["vi"]}, strategy="hybrid"))
    with pytest.raises(ValueError, match="share no language evaluated on xquad-r"):
        compare([runs[0], elsewhere], "xquad-r", "map")
