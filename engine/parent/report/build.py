"""The data of a report: which runs, which arms (X-X, X-Y, hybrid α, multitask, zero-shot),
the confirmatory hypotheses first (engine.parent.report.hypotheses), then the exploratory
tables per dataset, metric, setting and language group (Benjamini-Hochberg within each
table), the per-language deltas, the X×Y matrix, the high/low and seen/unseen interaction
tests, the variance decomposition of every arm, each run's own values, and where the runs
came from, and the learning curve of runs evaluated at several steps.

Everything a report shows is in this one JSON-able document (`report.json`); the Markdown,
CSV, LaTeX, figures, verdict and the TUI's Reports screen all render from it. It holds no
wall-clock time of its own, so the same runs always give the same report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from engine.contract.arms import KIND_ORDER, arm_name, match_arm
from engine.contract.errors import RunError
from engine.contract.layout import SETTINGS, read_json
from engine.contract.spec import spec_diff
from engine.parent.compare import Cell, Comparison, System, compare, group_seeds, language_value, load_run, \
    evaluated_languages, protocol_problem, seed_key, cell_test, unit_matrices
from engine.parent.report import hypotheses as family
from engine.parent.significance import Significance, correct, decompose

BASELINE_KINDS = ("xx", "xy", "multitask")
GROUP_ROWS = {"macro avg": "all", "high": "high", "low": "low", "seen": "seen", "unseen": "unseen"}


@dataclass
class Arm:
    label: str
    kind: str                 # xx | xy | hybrid | multitask | zero-shot | other
    alpha: float | None       # its place on the α axis: X-Y 0, hybrid α, X-X 1
    system: System
    partial: bool


# --- which runs ---------------------------------------------------------------------------------------

def select_runs(store, references: list[str]) -> list[dict]:
    """Runs by grid (the `group` a `--run` of a grid gives its runs), id, prefix or name."""
    chosen: dict[str, dict] = {}
    every = store.all()
    for reference in references:
        members = [run for run in every if run.get("group") == reference]
        for run in members or [store.resolve(reference)]:
            chosen.setdefault(run["id"], run)
    return sorted(chosen.values(), key=lambda run: run.get("created", 0))


def check_selection(runs: list[dict], partial: bool, allow_mixed: bool) -> None:
    missing = [run["id"] for run in runs if run.get("status") == "missing"]
    if missing:
        raise RunError(f"run folders are gone: {', '.join(missing[:3])}")
    unfinished = [run["id"] for run in runs if run.get("status") != "finished"]
    if unfinished and not partial:
        raise RunError(f"{len(unfinished)} of the runs have not finished ({', '.join(unfinished[:3])}"
                       f"{' …' if len(unfinished) > 3 else ''}); add --partial to include what they evaluated, marked")
    encoders = sorted({run.get("encoder") or "?" for run in runs})
    if len(encoders) > 1 and not allow_mixed:
        raise RunError(f"the runs use different encoders ({', '.join(encoders)}); add --allow-mixed to report them together")


def direction_of(spec: dict) -> tuple[str, tuple[str, ...]]:
    """(training dataset, evaluation datasets) of a run."""
    train, evaluation = spec.get("train") or {}, spec.get("eval") or {}
    return str(train.get("dataset")), tuple(evaluation.get("datasets") or ())


def replication_key(spec: dict) -> str:
    """A configuration with its direction left out: the same arm trained on one dataset and
    evaluated on the other, and the other way round."""
    document = {key: value for key, value in spec.items() if key not in ("eval", "data_dir")}
    train = {key: value for key, value in (document.get("train") or {}).items()
             if key not in ("dataset", "languages", "seed")}
    return seed_key({**document, "train": train})


def systems_of(loaded: list) -> list[System]:
    """The runs as arms. Runs of several directions whose evaluation datasets do not overlap (a
    study and its replication the other way round) make one arm per configuration, each dataset
    answered by the runs that evaluated it; otherwise runs group by their seeds."""
    directions = {direction_of(run.spec) for run in loaded}
    evaluated = [set(datasets) for _, datasets in directions]
    disjoint = len(directions) > 1 and sum(map(len, evaluated)) == len(set().union(*evaluated))
    if not disjoint:
        return group_seeds(loaded)
    systems: dict[str, System] = {}
    for run in loaded:
        systems.setdefault(replication_key(run.spec), System([])).runs.append(run)
    return list(systems.values())


def arms_of(runs: list[dict], store) -> list[Arm]:
    loaded = [load_run(store.folder(run["id"])) for run in runs]
    status = {run["id"]: run.get("status") for run in runs}
    arms = []
    for system in systems_of(loaded):
        name = arm_name(system.spec)
        arms.append(Arm(name.label, name.kind, name.alpha, system,
                        any(status[run.id] != "finished" for run in system.runs)))
    labels = [arm.label for arm in arms]
    for arm in arms:                        # two arms with one label: name what differs
        if labels.count(arm.label) > 1:
            differing = spec_diff([other.system.spec for other in arms if other.label == arm.label])
            index = [other for other in arms if other.label == arm.label].index(arm)
            arm.label += " (" + ", ".join(f"{key}={values[index]}" for key, values in differing[:2]) + ")"
    for arm in arms:
        if arm.partial:
            arm.label += " [partial]"
    return sorted(arms, key=lambda arm: (KIND_ORDER[arm.kind], arm.alpha if arm.alpha is not None else 0, arm.label))


def reference_arm(arms: list[Arm], wanted: str | None) -> Arm:
    if wanted:
        label = match_arm(wanted, [arm.label for arm in arms])
        if label is None:
            raise RunError(f"--reference {wanted!r}: no such arm (arms: {', '.join(arm.label for arm in arms)})")
        return next(arm for arm in arms if arm.label == label)
    hybrids = [arm for arm in arms if arm.kind == "hybrid"]
    if hybrids:
        return min(hybrids, key=lambda arm: abs(arm.alpha - 0.5))
    trained = [arm for arm in arms if arm.kind != "zero-shot"]
    return (trained or arms)[0]


# --- the tables ---------------------------------------------------------------------------------------

def cell_json(cell: Cell, seeds: int) -> dict:
    return {"value": cell.value, "sd": cell.sd, "delta": cell.delta, "ci": list(cell.ci) if cell.ci else None,
            "p": cell.p_value, "p_adjusted": cell.p_adjusted, "significant": cell.significant,
            "units": cell.units, "seeds": seeds, "test": cell.kind}


def common_datasets(arms: list[Arm]) -> list[str]:
    """The datasets every arm was evaluated on (by some of its runs: a replication's arm answers
    each direction's dataset with that direction's runs)."""
    complete = [arm for arm in arms if not arm.partial] or arms
    datasets = set.intersection(*({name for run in arm.system.runs for name in run.results} for arm in complete)) \
        if complete else set()
    if not datasets:
        raise RunError("the runs share no evaluation dataset: nothing to report")
    return sorted(datasets)


def dataset_metrics(arms: list[Arm], dataset: str, wanted: list[str] | None) -> list[str]:
    results = next(run.results[dataset] for arm in arms for run in arm.system.evaluated(dataset))
    available = list(results.get("metrics", []))
    if wanted:
        unknown = [metric for metric in wanted if metric not in available and metric != "bias"]
        if unknown:
            raise RunError(f"--metric {unknown[0]}: {dataset} was evaluated with {', '.join(available)}")
        return [metric for metric in wanted if metric in available]
    primary = results.get("primary_metric", available[0])
    extra = [metric for metric in ("map@10", "map_cut@10", "recall@100") if metric in available and metric != primary]
    return [primary, *extra] if dataset.startswith(("hf:miracl", "miracl")) else [primary, *extra[:1]]


def table_of(comparison: Comparison, arms: list[Arm]) -> dict:
    """{setting: {arm label: {row: cell}}} for the settings that have values."""
    tables: dict[str, dict] = {}
    for label, _, cells in comparison.rows:
        row = GROUP_ROWS.get(label, label)
        for (setting, index), cell in cells.items():
            if cell.value is None:
                continue
            arm = arms[index]
            tables.setdefault(setting, {}).setdefault(arm.label, {})[row] = cell_json(cell, len(arm.system.runs))
    return {setting: tables[setting] for setting in SETTINGS if setting in tables}


def cross_matrix(arms: list[Arm], reference: Arm, dataset: str, metric: str, table: dict) -> dict | None:
    """Hybrid minus its best baseline (highest mean cross-lingual value) for every ordered X, Y."""
    baselines = [arm for arm in arms if arm.kind in BASELINE_KINDS and arm.label in table.get("cross", {})]
    if "cross" not in table or not baselines:
        return None
    best = max(baselines, key=lambda arm: table["cross"][arm.label]["all"]["value"])
    languages = next(run.results[dataset]["languages"] for run in reference.system.evaluated(dataset))

    def value(arm: Arm, source: str, target: str) -> float | None:
        values = [run.results[dataset]["per_language"].get(source, {}).get("cross_by_target", {})
                  .get(target, {}).get(metric) for run in arm.system.evaluated(dataset)]
        values = [value for value in values if value is not None and not math.isnan(value)]
        return sum(values) / len(values) if values else None

    matrix = []
    for source in languages:
        row = []
        for target in languages:
            ours, theirs = value(reference, source, target), value(best, source, target)
            row.append(None if source == target or ours is None or theirs is None else ours - theirs)
        matrix.append(row)
    return {"reference": reference.label, "baseline": best.label, "languages": languages, "values": matrix}


def interactions(arms: list[Arm], reference: Arm, dataset: str, metric: str, groups: dict[str, list[str]],
                 test: Significance) -> list[dict]:
    """Does the reference's gain over a baseline differ between high- and low-resource (and between
    seen and unseen) languages? Each run's unit is, per question id both groups have, (its
    first-group unit) - (its second-group unit); the arms are then compared like any cell (both
    variance sources where both arms have seeds). Benjamini-Hochberg over these tests: exploratory."""
    found = []
    for first, second in (("high", "low"), ("seen", "unseen")):
        if first not in groups or second not in groups:
            continue
        for arm in arms:
            if arm.kind not in BASELINE_KINDS:
                continue
            systems = [arm.system, reference.system]
            for setting in SETTINGS:
                (order_a, units_a), (order_b, units_b) = (unit_matrices(systems, dataset, groups[group], setting, metric)
                                                          for group in (first, second))
                common = sorted(set(order_a) & set(order_b))
                if len(common) < 2:
                    continue
                index_a = [order_a.index(qid) for qid in common]
                index_b = [order_b.index(qid) for qid in common]
                base, ours = (units_a[position][:, index_a] - units_b[position][:, index_b] for position in (0, 1))
                p, ci, kind = cell_test(arm.system, base, reference.system, ours, test, with_ci=True)
                gains = [float(units_a[1][:, index_a].mean() - units_a[0][:, index_a].mean()),
                         float(units_b[1][:, index_b].mean() - units_b[0][:, index_b].mean())]
                found.append({"groups": [first, second], "baseline": arm.label, "setting": setting, "gain": gains,
                              "difference": float(ours.mean() - base.mean()), "ci": list(ci) if ci else None,
                              "p": p, "units": len(common), "test": kind})
    tested = [item for item in found if item["p"] is not None]
    for item, p_adjusted in zip(tested, correct([item["p"] for item in tested], test, "bh")):
        item["p_adjusted"] = p_adjusted
    for item in found:
        item.setdefault("p_adjusted", None)
        item["significant"] = item["p_adjusted"] is not None and item["p_adjusted"] < test.level
    return found


def decomposition(arms: list[Arm], dataset: str, metric: str, languages: list[str]) -> dict:
    """{arm: {setting: seed sd, question sd, residual sd, seed share}} of each arm's macro units."""
    found: dict[str, dict] = {}
    for arm in arms:
        for setting in SETTINGS:
            _, (scores,) = unit_matrices([arm.system], dataset, languages, setting, metric)
            parts = decompose(scores) if scores.size else None
            if parts is not None:
                found.setdefault(arm.label, {})[setting] = {"seed_sd": parts.seed, "question_sd": parts.question,
                                                            "residual_sd": parts.residual,
                                                            "seed_share": parts.seed_share, "seeds": parts.seeds,
                                                            "units": parts.units}
    return found


def per_run(arms: list[Arm], dataset: str, metrics: list[str], groups: dict[str, list[str]],
            languages: list[str]) -> dict:
    """{arm: {run id: {row: {setting: {metric: value}}}}}: each run's own per-language and group
    values, so any seed-level statistic can be recomputed from report.json alone."""
    rows = {**{language: [language] for language in languages}, **groups, "all": languages}
    found: dict[str, dict] = {}
    for arm in arms:
        for run in arm.system.runs:
            results = run.results.get(dataset)
            if not results:
                continue
            values: dict = {}
            for row, members in rows.items():
                for setting in SETTINGS:
                    for metric in [*metrics, "bias"]:
                        numbers = [language_value(results, language, setting, metric) for language in members]
                        numbers = [number for number in numbers if number is not None]
                        if numbers:
                            values.setdefault(row, {}).setdefault(setting, {})[metric] = sum(numbers) / len(numbers)
            found.setdefault(arm.label, {})[run.id] = values
    return found


def learning_curve(arms: list[Arm], dataset: str, metric: str) -> dict:
    """{arm: {step: {setting: mean over the arm's runs}}}: the macro `metric` at every step the runs
    evaluated (`train.eval_every`), when some arm was evaluated at two or more steps (a learning-curve
    pilot); empty otherwise."""
    found: dict[str, dict] = {}
    for arm in arms:
        values: dict[int, dict[str, list[float]]] = {}
        for run in arm.system.runs:
            for step in run.folder.evaluated_steps(dataset):
                macro = (read_json(run.folder.results(dataset, step)) or {}).get("macro") or {}
                for setting in SETTINGS:
                    value = (macro.get(setting) or {}).get(metric)
                    if value is not None:
                        values.setdefault(step, {}).setdefault(setting, []).append(value)
        if values:
            found[arm.label] = {str(step): {setting: {"value": sum(numbers) / len(numbers), "runs": len(numbers)}
                                            for setting, numbers in settings.items()}
                                for step, settings in sorted(values.items())}
    return found if any(len(steps) >= 2 for steps in found.values()) else {}


def section_frame(arms: list[Arm], dataset: str) -> dict:
    """What a dataset's evaluation was: its languages, groups, metrics, and whether it was seen in training."""
    runs = [run for arm in arms for run in arm.system.runs if dataset in run.results]
    first = runs[0].results[dataset]
    return {"dataset": dataset, "languages": list(first["languages"]), "evaluated": list(first.get("metrics", [])),
            "groups": {name: group.get("languages", []) for name, group in first.get("groups", {}).items()},
            "seen_in_training": any(run.results[dataset].get("seen_in_training") for run in runs)}


def dataset_section(arms: list[Arm], reference: Arm, dataset: str, metrics: list[str], test: Significance) -> dict:
    """The exploratory part of one dataset: tables (BH within each setting's table), interactions,
    bias, the X×Y matrix, the variance decomposition and each run's values."""
    runs = [run for arm in arms for run in arm.system.runs]
    baseline = arms.index(reference)
    exploratory = replace(test, correction="bh")
    section: dict = {**section_frame(arms, dataset), "metrics": metrics, "tables": {}, "footnotes": {}, "family": {},
                     "cross_matrix": None, "interactions": {}, "bias": None, "decomposition": {}}
    systems = [arm.system for arm in arms]
    for metric in metrics:
        comparison = compare(runs, dataset, metric, SETTINGS, baseline, exploratory, with_ci=True, family="setting",
                             systems=systems, allow_mixed_protocols=True)     # build() checked them once
        section["tables"][metric] = table_of(comparison, arms)
        section["footnotes"][metric] = comparison.footnote
        section["family"][metric] = comparison.family
        section["interactions"][metric] = interactions(arms, reference, dataset, metric, section["groups"], test)
        section["decomposition"][metric] = decomposition(arms, dataset, metric, section["languages"])
        if metric == metrics[0]:
            section["cross_matrix"] = cross_matrix(arms, reference, dataset, metric, section["tables"][metric])
    if any(run.results[dataset]["per_language"].get(lang, {}).get("bias") is not None
           for run in runs if dataset in run.results for lang in section["languages"]):
        comparison = compare(runs, dataset, "bias", ("multi",), baseline, exploratory, with_ci=True, family="setting",
                             systems=systems)
        section["bias"] = table_of(comparison, arms).get("multi")
        section["footnotes"]["bias"] = comparison.footnote
    section["per_run"] = per_run(arms, dataset, metrics, section["groups"], section["languages"])
    section["learning_curve"] = learning_curve(arms, dataset, metrics[0])
    return section


# --- provenance -----------------------------------------------------------------------------------------

def provenance(arms: list[Arm], store) -> dict:
    runs = []
    for arm in arms:
        for run in arm.system.runs:
            record = read_json(run.folder.record) or {}
            runs.append({"id": run.id, "arm": arm.label, "seed": run.spec.get("train", {}).get("seed"),
                         "status": record.get("status"), "spec_hash": record.get("spec_hash"),
                         "git_commit": record.get("git_commit"), "host": record.get("host"),
                         "device": record.get("device"), "versions": record.get("versions") or {},
                         "hardware": record.get("hardware"), "started": record.get("started"),
                         "source": record.get("source"), "group": record.get("group"),
                         "precision": record.get("precision"),
                         "ended": record.get("ended")})
    starts = [run["started"] for run in runs if run["started"]]
    ends = [run["ended"] for run in runs if run["ended"]]
    return {"runs": runs, "specs": {arm.label: arm.system.spec for arm in arms},
            "commits": sorted({run["git_commit"] for run in runs if run["git_commit"]}),
            "wall_seconds": (max(ends) - min(starts)) if starts and ends else None,
            "run_seconds": sum(run["ended"] - run["started"] for run in runs if run["started"] and run["ended"])}


def build(store, references: list[str], *, metrics: list[str] | None = None, reference: str | None = None,
          partial: bool = False, allow_mixed: bool = False, test: Significance | None = None,
          title: str | None = None, hypotheses: list | None = None, effect: float = family.DEFAULT_EFFECT,
          allow_mixed_protocols: bool = False) -> dict:
    """The whole report as one JSON-able document. `hypotheses` (validated specs) replaces the
    family the runs declare; neither: the default family."""
    test = test or Significance()
    runs = select_runs(store, references)
    check_selection(runs, partial, allow_mixed)
    arms = [arm for arm in arms_of([run for run in runs if partial or run.get("status") == "finished"], store)
            if any(run.results for run in arm.system.runs)]
    if not arms:
        raise RunError("none of these runs has evaluation results")
    chosen = reference_arm(arms, reference)
    declared = hypotheses if hypotheses is not None else family.declared(arms)
    datasets = common_datasets(arms)
    for dataset in datasets if not allow_mixed_protocols else ():
        systems = [arm.system for arm in arms if arm.system.has(dataset)]
        problem = protocol_problem(systems, dataset, evaluated_languages(systems, dataset)[0])
        if problem:
            raise RunError(f"{problem}; add --allow-mixed-protocols to report them together")
    sections = {dataset: dataset_section(arms, chosen, dataset, dataset_metrics(arms, dataset, metrics), test)
                for dataset in datasets}
    return {"title": title or f"Study: {', '.join(references)}", "selection": references,
            "reference": chosen.label, "test": {"test": test.test, "correction": test.correction,
                                                 "permutations": test.permutations, "seed": test.seed,
                                                 "level": test.level, "confidence": test.confidence},
            "hypotheses": family.evaluate(arms, sections, chosen.label, test, declared, effect),
            "arms": [{"label": arm.label, "kind": arm.kind, "alpha": arm.alpha, "partial": arm.partial,
                      "fixed": arm.system.fixed, "runs": [run.id for run in arm.system.runs]} for arm in arms],
            "datasets": sections, "provenance": provenance(arms, store)}
