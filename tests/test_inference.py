"""Inference across training seeds: the crossed test against statsmodels' MixedLM, its
false-positive rate on simulated null studies with seed variance (beside the old seed-averaged
test's), power and planning, declared hypotheses, and what bad input gets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.contract.errors import SpecError
from engine.contract.layout import RunFolder, write_json_atomic
from engine.contract.results import write_per_query
from engine.contract.validation import parse_spec
from engine.parent.calibration import Scenario, monte_carlo_error, rates
from engine.parent.power import Components, detectable_effect, power, seeds_needed, units_needed
from engine.parent.significance import Arm, crossed_test
from runs_helpers import env

LANGUAGES = ("ar", "de", "en", "es", "hi", "th")          # high: ar de en es; low: hi th
GROUPS = {"high": ["ar", "de", "en", "es"], "low": ["hi", "th"]}
SETTINGS = ("mono", "cross", "multi")


def crossed_data(seeds: int = 3, units: int = 30, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, units)
    arms = []
    for shift in (0.0, 0.02):
        arms.append(0.5 + shift + base + rng.normal(0, 0.05, units) + rng.normal(0, 0.03, (seeds, 1))
                    + rng.normal(0, 0.1, (seeds, units)))
    return arms[0], arms[1]


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning")
def test_crossed_test_equals_statsmodels_mixedlm_on_a_fixed_data_set():
    """The closed form is the REML fit of y ~ arm + (1|question) + (1|arm:question) + (1|run)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    first, second = crossed_data()
    rows = [{"y": matrix[run, question], "arm": arm, "run": f"{arm}-{run}", "question": question,
             "arm_question": f"{arm}-{question}", "group": 1}
            for arm, matrix in enumerate((first, second)) for run in range(matrix.shape[0])
            for question in range(matrix.shape[1])]
    model = smf.mixedlm("y ~ arm", pd.DataFrame(rows), groups="group", re_formula="0",
                        vc_formula={"question": "0 + C(question)", "arm_question": "0 + C(arm_question)",
                                    "run": "0 + C(run)"})
    fit = model.fit(reml=True, method=["lbfgs"])
    ours = crossed_test(Arm(first), Arm(second))
    components = dict(zip(model.exog_vc.names, fit.vcomp))
    assert ours.delta == pytest.approx(fit.fe_params["arm"], abs=1e-12)
    assert ours.se == pytest.approx(fit.bse_fe["arm"], rel=1e-3)
    assert ours.squares.seed_variance == pytest.approx(components["run"], rel=1e-2)
    assert ours.squares.interaction_variance / 2 == pytest.approx(components["arm_question"], rel=1e-2)
    assert ours.squares.residual == pytest.approx(fit.scale, rel=1e-3)
    assert ours.df < ours.squares.units - 1          # the seeds' few degrees of freedom count


def test_two_fixed_models_reduce_to_the_paired_t_test():
    from scipy import stats

    first, second = crossed_data(seeds=1)
    result = crossed_test(Arm(first, fixed=True), Arm(second, fixed=True))
    assert result.p == pytest.approx(stats.ttest_rel(second[0], first[0]).pvalue)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        crossed_test(Arm(first), Arm(second))


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_false_positive_rate_under_the_null_with_seed_variance(seeds, capsys):
    """500 simulated null studies per seed count: the crossed test keeps its level; the old
    test (per-question scores averaged over seeds) does not."""
    studies = 500
    scenario = Scenario()
    null = rates(scenario, seeds, studies, seed=seeds)
    bound = 0.05 + 2 * monte_carlo_error(0.05, studies)
    assert null["crossed"] <= bound
    assert null["seed-averaged t"] > bound                 # the defect this test exists for
    found = rates(scenario, seeds, 200, effect=0.03, seed=100 + seeds)
    with capsys.disabled():
        print(f"\n{seeds} seeds/arm, {studies} null studies: false positives crossed {null['crossed']:.3f}, "
              f"seed-averaged t {null['seed-averaged t']:.3f}; power at Δ=0.03: crossed {found['crossed']:.2f}")
    assert found["crossed"] > null["crossed"]


def test_power_and_planning_are_consistent():
    components = Components(seed=0.01 ** 2, interaction=2 * 0.03 ** 2, residual=0.12 ** 2)
    assert power(components, 3, 100, 0.0, 0.05) == pytest.approx(0.05, abs=0.02)
    assert power(components, 2, 100, 0.02, 0.05) < power(components, 5, 100, 0.02, 0.05) \
        < power(components, 5, 400, 0.02, 0.05)
    detectable = detectable_effect(components, 4, 200, 0.05)
    assert power(components, 4, 200, detectable, 0.05) == pytest.approx(0.8, abs=1e-4)
    needed = seeds_needed(components, 200, 0.02, 0.05)
    assert power(components, needed, 200, 0.02, 0.05) >= 0.8 > power(components, needed - 1, 200, 0.02, 0.05)
    ids = units_needed(components, 6, 0.02, 0.05, 1000)
    assert power(components, 6, ids, 0.02, 0.05) >= 0.8 > power(components, 6, ids - 1, 0.02, 0.05)


def test_a_spec_validates_its_hypotheses():
    document = {"name": "study", "eval": {"datasets": ["xquad-r"], "metrics": ["map", "map@10"]},
                "grid": [{"sampling.strategy": ["monolingual", "hybrid", "multitask"], "train.seed": [1, 2]}],
                "hypotheses": [{"id": "H1", "claim": "hybrid > multitask", "reference": "hybrid alpha=0.5",
                                "baseline": "multitask (full)", "group": "low"}]}
    spec = parse_spec(document)
    assert spec.hypotheses[0].sense == ">" and spec.hypotheses[0].metric == "map@10"
    with pytest.raises(SpecError) as caught:
        parse_spec({**document, "hypotheses": [{**document["hypotheses"][0], "setting": "both", "margin": 0}]})
    assert caught.value.lines() == ["hypotheses[0].setting: must be one of mono, cross, multi; got 'both'",
                                    "hypotheses[0].margin: must be in (0, 1], got 0"]
    document["hypotheses"] += [{"id": "H1", "claim": "x", "reference": "X-Y", "baseline": "X-X", "metric": "ndcg@20",
                                "group": "mid"}]
    with pytest.raises(SpecError) as caught:
        parse_spec(document)
    assert caught.value.lines() == [
        "hypotheses[1].id: must be a unique, non-empty name",
        "hypotheses[1].reference: no arm 'X-Y' in this spec's grid (arms: X-X, hybrid α=0.5, multitask (full))",
        "hypotheses[1].metric: 'ndcg@20' is not evaluated (eval.metrics: map, map@10)",
        "hypotheses[1].group: unknown group 'mid' (groups: all, high, low, seen, unseen, or one language)"]


# --- the report and plan on constructed runs --------------------------------------------------------

ARMS = {"X-X": ({"strategy": "monolingual"}, 0.0), "X-Y": ({"strategy": "crosslingual"}, 0.0),
        "hybrid": ({"strategy": "hybrid", "alpha": 0.5}, 0.06),
        "multitask": ({"strategy": "multitask", "multitask_batch": "full"}, 0.0)}


def write_study(runs: Path, seeds: int = 3, questions: int = 40, hypotheses: list | None = None,
                dataset: str = "xquad-r", train: str = "mlqa-r", group: str = "study", index: bool = True) -> None:
    """Finished runs whose per-query scores are known: every arm alike but hybrid, which is 0.06
    better in the multilingual setting; a seed shifts a run; plus one zero-shot run."""
    rng = np.random.default_rng(0 if dataset == "xquad-r" else 1)
    base = rng.uniform(0.3, 0.7, questions)
    for arm, (sampling, gain) in [*ARMS.items(), ("zero-shot", ({"strategy": "hybrid"}, -0.1))]:
        for seed in range(1, (1 if arm == "zero-shot" else seeds) + 1):
            run_id = f"{group}-{arm}-seed={seed}"
            folder = RunFolder(runs / run_id)
            spec = {"name": run_id, "encoder": {"name": "tiny"}, "sampling": sampling,
                    "train": {"seed": seed, "steps": 0 if arm == "zero-shot" else 10, "dataset": train},
                    "eval": {"datasets": [dataset], "metrics": ["map", "map@10"]}, "hypotheses": hypotheses or []}
            write_json_atomic(folder.spec, spec)
            write_json_atomic(folder.record, {"id": run_id, "name": run_id, "status": "finished", "group": group,
                                              "encoder": "tiny", "created": seed})
            shift = 0.01 * rng.standard_normal()
            rows, per_language = [], {}
            for language in LANGUAGES:
                values = {}
                for setting in SETTINGS:
                    effect = gain if setting == "multi" or arm == "zero-shot" else 0.0
                    scores = np.clip(base + effect + shift + rng.normal(0, 0.08, questions), 0, 1)
                    rows += [(language, setting, f"q{i}", [scores[i], scores[i], 5.0]) for i in range(questions)]
                    values[setting] = {"map": float(scores.mean()), "map@10": float(scores.mean())}
                per_language[language] = {"settings": values, "bias": 5.0}
            write_per_query(folder.per_query(dataset), ["map", "map@10", "bias"], rows)
            groups = {name: {"languages": members} for name, members in GROUPS.items()}
            write_json_atomic(folder.results(dataset), {"dataset": dataset, "languages": list(LANGUAGES),
                                                        "metrics": ["map", "map@10"], "primary_metric": "map",
                                                        "per_language": per_language, "groups": groups})
    if index:
        subprocess.run([sys.executable, "-m", "engine.cli", "index", "rebuild", "--runs-dir", str(runs)], check=True,
                       capture_output=True, env=env())


def hbt(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**env(), "COLUMNS": "200"}, timeout=300)


DECLARED = [{"id": "H1", "claim": "hybrid > X-X (multilingual)", "reference": "hybrid α=0.5", "baseline": "X-X",
             "metric": "map", "setting": "multi"},
            {"id": "H2", "claim": "hybrid > multitask (low, mono)", "reference": "hybrid α=0.5",
             "baseline": "multitask (full)", "setting": "mono", "group": "low"}]


@pytest.fixture(scope="module")
def declared_study(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("declared") / "runs"
    write_study(runs, hypotheses=DECLARED)
    return runs


def test_report_opens_with_the_declared_hypotheses(declared_study, tmp_path):
    out = tmp_path / "out"
    result = hbt("report", "study", "--runs-dir", declared_study, "--out", out)
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "report.json").read_text())
    family = data["hypotheses"]
    assert family["source"] == "declared" and [item["id"] for item in family["items"]] == ["H1", "H2"]
    first, second = family["items"]
    assert first["kind"] == "methods" and first["seeds"] == [3, 3] and first["units"] == 40
    assert first["delta"] == pytest.approx(0.06, abs=0.02) and first["verdict"] == "supported"
    assert first["ci"][0] < first["delta"] < first["ci"][1] and 0 <= first["seed_share"] <= 1
    assert second["verdict"] == "not significant" and 0 < second["power"] < 1
    from statsmodels.stats.multitest import multipletests

    raw = [item["p"] for item in family["items"]]
    assert [item["p_adjusted"] for item in family["items"]] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    markdown = (out / "report.md").read_text()
    body = markdown.split("\n", 2)[2]
    assert body.startswith("## The answer")
    answer = body.split("## Exploratory tables")[0]
    assert "| H1 | hybrid > X-X (multilingual) |" in answer and "**supported**" in answer
    verdict = answer.split("### Verdict")[1].strip().splitlines()
    assert 1 <= len(verdict) <= 10 and verdict[1].startswith("- H1 supported")
    assert "Benjamini-Hochberg within each table" in markdown and "## Appendix: every claim, exploratory" in markdown
    section = data["datasets"]["xquad-r"]
    assert section["footnotes"]["map"].startswith("* p < 0.05, Benjamini-Hochberg-corrected over the")
    assert "questions × training seeds" in section["footnotes"]["map"]
    assert set(section["decomposition"]["map"]["X-X"]) == {"mono", "cross", "multi"}
    per_run = section["per_run"]["hybrid α=0.5"]
    assert sorted(per_run) == ["study-hybrid-seed=1", "study-hybrid-seed=2", "study-hybrid-seed=3"]
    one = json.loads((declared_study / "study-hybrid-seed=1" / "eval" / "xquad-r" / "results.json").read_text())
    assert per_run["study-hybrid-seed=1"]["en"]["multi"]["map"] == \
        pytest.approx(one["per_language"]["en"]["settings"]["multi"]["map"])
    assert "H1" in result.stdout and "supported" in result.stdout


def test_without_declared_hypotheses_the_default_family_is_used(tmp_path):
    runs = tmp_path / "runs"
    write_study(runs)
    result = hbt("report", "study", "--runs-dir", runs, "--json")
    assert result.returncode == 0, result.stderr
    saved = next((runs / ".reports").iterdir())
    family = json.loads((saved / "report.json").read_text())["hypotheses"]
    assert family["source"] == "default"
    assert [item["id"] for item in family["items"]] == [*(f"Q{i}" for i in range(1, 7)), "P1", "P2", "P3"]
    assert {(item["group"], item["setting"]) for item in family["items"][:6]} == \
        {(group, setting) for group in ("high", "low") for setting in SETTINGS}
    assert family["items"][6]["direction"] == ">=" and family["items"][6]["metric"] == "map"


def test_plan_sizes_the_study_from_the_pilot(declared_study):
    result = hbt("plan", "study", "--runs-dir", declared_study, "--effect", "0.02", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert [row["id"] for row in found["rows"]] == ["H1", "H2"] and found["level"] == pytest.approx(0.025)
    second = found["rows"][1]
    assert second["seeds"] == 3 and second["units"] == 40 and found["available"] == 1190
    assert second["seeds_needed"] is None or second["seeds_needed"] >= 2
    shown = hbt("plan", "study", "--runs-dir", declared_study, "--budget-hours", "4")
    assert shown.returncode == 0, shown.stderr
    assert "seeds needed" in shown.stdout and "cheapest design with power >= 0.8" in shown.stdout


@pytest.mark.parametrize("hypothesis, message", [
    ({"baseline": "X-Y (one pair per batch)"}, "hypothesis H9: baseline 'X-Y (one pair per batch)' is not an arm of "
                                               "these runs"),
    ({"metric": "ndcg@10"}, "hypothesis H9: metric 'ndcg@10' was not evaluated on xquad-r (metrics: map, map@10)"),
    ({"group": "seen"}, "hypothesis H9: group 'seen' is not defined on xquad-r (groups: all, high, low, or a language)"),
    ({"setting": "sideways"}, "hypotheses[0].setting: must be one of mono, cross, multi; got 'sideways'"),
])
def test_bad_hypotheses_are_one_error_line_and_write_nothing(declared_study, tmp_path, hypothesis, message):
    path = tmp_path / "family.json"
    path.write_text(json.dumps([{"id": "H9", "claim": "c", "reference": "hybrid α=0.5", "baseline": "X-X",
                                 **hypothesis}]))
    before = sorted(p.name for p in (declared_study / ".reports").iterdir()) \
        if (declared_study / ".reports").exists() else []
    for command in ("report", "plan"):
        result = hbt(command, "study", "--runs-dir", declared_study, "--hypotheses", path, "--out", tmp_path / "x") \
            if command == "report" else hbt(command, "study", "--runs-dir", declared_study, "--hypotheses", path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    after = sorted(p.name for p in (declared_study / ".reports").iterdir()) \
        if (declared_study / ".reports").exists() else []
    assert after == before


def test_an_empty_family_and_a_single_seed_pilot_are_refused(tmp_path):
    runs = tmp_path / "runs"
    write_study(runs, seeds=1)
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    refused = hbt("report", "study", "--runs-dir", runs, "--hypotheses", empty)
    assert refused.returncode == 2 and "the family is empty" in refused.stderr
    single = hbt("plan", "study", "--runs-dir", runs)
    assert single.returncode == 2 and "plan needs seed variance: arm" in single.stderr
    assert "has a single run" in single.stderr
    report = hbt("report", "study", "--runs-dir", runs)
    assert report.returncode == 0, report.stderr
    saved = next((runs / ".reports").iterdir())
    family = json.loads((saved / "report.json").read_text())["hypotheses"]
    assert {item["kind"] for item in family["items"]} == {"models"}
    assert all(item["verdict"] in ("models differ (one seed per arm)", "no difference between these models")
               for item in family["items"])
    text = (saved / "report.md").read_text()
    assert "compare these models only" in text and "**supported**" not in text


def test_a_study_and_its_replication_the_other_way_round_are_answered_side_by_side(tmp_path):
    runs = tmp_path / "runs"
    write_study(runs, group="forward", index=False)
    write_study(runs, group="reverse", dataset="mlqa-r", train="xquad-r")
    result = hbt("report", "forward", "reverse", "--runs-dir", runs, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [arm["label"] for arm in data["arms"]] == ["X-X", "X-Y", "hybrid α=0.5", "multitask (full)", "zero-shot"]
    assert all(len(arm["runs"]) == (2 if arm["label"] == "zero-shot" else 6) for arm in data["arms"])
    family = data["hypotheses"]
    assert family["datasets"] == ["mlqa-r", "xquad-r"] and len(family["items"]) == 2 * 9
    for dataset in family["datasets"]:          # Holm within each direction
        from statsmodels.stats.multitest import multipletests

        items = [item for item in family["items"] if item["dataset"] == dataset]
        assert all(item["seeds"] == [3, 3] for item in items)
        assert [item["p_adjusted"] for item in items] == \
            pytest.approx(list(multipletests([item["p"] for item in items], method="holm")[1]))
    markdown = (tmp_path / "out" / "report.md").read_text()
    answer = markdown.split("## Exploratory tables")[0]
    assert "### Both directions" in answer and "| mlqa-r: Δ [95 % CI] | p | verdict | xquad-r: Δ [95 % CI]" in answer
    assert "The directions agree on " in answer
    assert set(data["datasets"]) == {"mlqa-r", "xquad-r"}
