"""The data of a report: which runs, which arms (X-X, X-Y, hybrid α, multitask, zero-shot),
their tables per dataset, metric, setting and language group, the per-language deltas, the
X×Y matrix, the high/low and seen/unseen interaction tests, and where the runs came from.

Everything a report shows is in this one JSON-able document (`report.json`); the Markdown,
CSV, LaTeX, figures, verdict and the TUI's Reports screen all render from it. It holds no
wall-clock time of its own, so the same runs always give the same report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.contract.errors import RunError
from engine.contract.layout import SETTINGS, read_json
from engine.contract.spec import spec_diff
from engine.parent.compare import Cell, Comparison, System, compare, group_seeds, load_run, unit_scores
from engine.parent.significance import Significance, correct, mean_ci, paired_p

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


def arm_of(system: System) -> tuple[str, str, float | None]:
    spec = system.spec
    sampling, train = spec.get("sampling", {}), spec.get("train", {})
    strategy = sampling.get("strategy", "hybrid")
    if train.get("steps") == 0:
        return "zero-shot", "zero-shot", None
    if strategy == "monolingual":
        return "X-X", "xx", 1.0
    if strategy == "crosslingual":
        return ("X-Y" if sampling.get("cross_batch", "mixed") == "mixed" else "X-Y (one pair per batch)"), "xy", 0.0
    if strategy == "hybrid":
        alpha = float(sampling.get("alpha", 0.5))
        return f"hybrid α={alpha:g}", "hybrid", alpha
    if strategy == "multitask":
        return f"multitask ({sampling.get('multitask_batch', 'full')})", "multitask", None
    return strategy, "other", None


def arms_of(runs: list[dict], store) -> list[Arm]:
    loaded = [load_run(store.folder(run["id"])) for run in runs]
    status = {run["id"]: run.get("status") for run in runs}
    arms = []
    for system in group_seeds(loaded):
        label, kind, alpha = arm_of(system)
        arms.append(Arm(label, kind, alpha, system, any(status[run.id] != "finished" for run in system.runs)))
    labels = [arm.label for arm in arms]
    for arm in arms:                        # two arms with one label: name what differs
        if labels.count(arm.label) > 1:
            differing = spec_diff([other.system.spec for other in arms if other.label == arm.label])
            index = [other for other in arms if other.label == arm.label].index(arm)
            arm.label += " (" + ", ".join(f"{key}={values[index]}" for key, values in differing[:2]) + ")"
    for arm in arms:
        if arm.partial:
            arm.label += " [partial]"
    order = {"xx": 0, "xy": 1, "hybrid": 2, "multitask": 3, "zero-shot": 4, "other": 5}
    return sorted(arms, key=lambda arm: (order[arm.kind], arm.alpha if arm.alpha is not None else 0, arm.label))


def reference_arm(arms: list[Arm], wanted: str | None) -> Arm:
    if wanted:
        found = [arm for arm in arms if arm.label == wanted or arm.label.startswith(wanted)]
        if not found:
            raise RunError(f"--reference {wanted!r}: no such arm (arms: {', '.join(arm.label for arm in arms)})")
        return found[0]
    hybrids = [arm for arm in arms if arm.kind == "hybrid"]
    if hybrids:
        return min(hybrids, key=lambda arm: abs(arm.alpha - 0.5))
    trained = [arm for arm in arms if arm.kind != "zero-shot"]
    return (trained or arms)[0]


# --- the tables ---------------------------------------------------------------------------------------

def cell_json(cell: Cell, seeds: int) -> dict:
    return {"value": cell.value, "sd": cell.sd, "delta": cell.delta, "ci": list(cell.ci) if cell.ci else None,
            "p": cell.p_value, "p_adjusted": cell.p_adjusted, "significant": cell.significant,
            "units": cell.units, "seeds": seeds}


def common_datasets(arms: list[Arm]) -> list[str]:
    complete = [run for arm in arms if not arm.partial for run in arm.system.runs] or \
        [run for arm in arms for run in arm.system.runs]
    datasets = set.intersection(*(set(run.results) for run in complete)) if complete else set()
    if not datasets:
        raise RunError("the runs share no evaluation dataset: nothing to report")
    return sorted(datasets)


def dataset_metrics(arms: list[Arm], dataset: str, wanted: list[str] | None) -> list[str]:
    results = next(run.results[dataset] for arm in arms for run in arm.system.runs if dataset in run.results)
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
    languages = next(run.results[dataset]["languages"] for run in reference.system.runs)

    def value(arm: Arm, source: str, target: str) -> float | None:
        values = [run.results[dataset]["per_language"].get(source, {}).get("cross_by_target", {})
                  .get(target, {}).get(metric) for run in arm.system.runs]
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
    """Does hybrid's gain over a baseline differ between high- and low-resource (and between
    seen and unseen) languages? Per question id: (gain in the first group) - (gain in the
    second), paired over the question ids both groups have; Holm over these tests."""
    found = []
    for first, second in (("high", "low"), ("seen", "unseen")):
        if first not in groups or second not in groups:
            continue
        for arm in arms:
            if arm.kind not in BASELINE_KINDS:
                continue
            for setting in SETTINGS:
                gains = []
                for group in (first, second):
                    base, ours = unit_scores(arm.system, reference.system, dataset, groups[group], setting, metric)
                    gains.append({qid: ours[qid] - base[qid] for qid in ours})
                common = sorted(gains[0].keys() & gains[1].keys())
                if len(common) < 2:
                    continue
                a = np.array([gains[1][qid] for qid in common])
                b = np.array([gains[0][qid] for qid in common])
                found.append({"groups": [first, second], "baseline": arm.label, "setting": setting,
                              "gain": [float(np.mean(b)), float(np.mean(a))], "difference": float(np.mean(b - a)),
                              "ci": list(mean_ci(b - a, test) or ()) or None, "p": paired_p(a, b, test),
                              "units": len(common)})
    adjusted = correct([item["p"] for item in found], test)
    for item, p_adjusted in zip(found, adjusted):
        item["p_adjusted"] = p_adjusted
        item["significant"] = p_adjusted < test.alpha
    return found


def dataset_section(arms: list[Arm], reference: Arm, dataset: str, metrics: list[str], test: Significance) -> dict:
    runs = [run for arm in arms for run in arm.system.runs]
    baseline = arms.index(reference)
    section: dict = {"dataset": dataset, "metrics": metrics, "tables": {}, "footnotes": {}, "family": {},
                     "cross_matrix": None, "interactions": {}, "bias": None}
    first = next(run.results[dataset] for run in runs if dataset in run.results)
    section["languages"] = list(first["languages"])
    section["groups"] = {name: group.get("languages", []) for name, group in first.get("groups", {}).items()}
    section["seen_in_training"] = any(run.results.get(dataset, {}).get("seen_in_training") for run in runs)
    for metric in metrics:
        comparison = compare(runs, dataset, metric, SETTINGS, baseline, test, with_ci=True)
        section["tables"][metric] = table_of(comparison, arms)
        section["footnotes"][metric] = comparison.footnote
        section["family"][metric] = comparison.family
        section["interactions"][metric] = interactions(arms, reference, dataset, metric, section["groups"], test)
        if metric == metrics[0]:
            section["cross_matrix"] = cross_matrix(arms, reference, dataset, metric, section["tables"][metric])
    if any(run.results[dataset]["per_language"].get(lang, {}).get("bias") is not None
           for run in runs if dataset in run.results for lang in section["languages"]):
        comparison = compare(runs, dataset, "bias", ("multi",), baseline, test, with_ci=True)
        section["bias"] = table_of(comparison, arms).get("multi")
        section["footnotes"]["bias"] = comparison.footnote
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
                         "ended": record.get("ended")})
    starts = [run["started"] for run in runs if run["started"]]
    ends = [run["ended"] for run in runs if run["ended"]]
    return {"runs": runs, "specs": {arm.label: arm.system.spec for arm in arms},
            "commits": sorted({run["git_commit"] for run in runs if run["git_commit"]}),
            "wall_seconds": (max(ends) - min(starts)) if starts and ends else None,
            "run_seconds": sum(run["ended"] - run["started"] for run in runs if run["started"] and run["ended"])}


def build(store, references: list[str], *, metrics: list[str] | None = None, reference: str | None = None,
          partial: bool = False, allow_mixed: bool = False, test: Significance | None = None,
          title: str | None = None) -> dict:
    test = test or Significance()
    runs = select_runs(store, references)
    check_selection(runs, partial, allow_mixed)
    arms = [arm for arm in arms_of([run for run in runs if partial or run.get("status") == "finished"], store)
            if any(run.results for run in arm.system.runs)]
    if not arms:
        raise RunError("none of these runs has evaluation results")
    chosen = reference_arm(arms, reference)
    datasets = common_datasets(arms)
    return {"title": title or f"Study: {', '.join(references)}", "selection": references,
            "reference": chosen.label, "test": {"test": test.test, "correction": test.correction,
                                                 "permutations": test.permutations, "seed": test.seed,
                                                 "alpha": test.alpha, "confidence": test.confidence},
            "arms": [{"label": arm.label, "kind": arm.kind, "alpha": arm.alpha, "partial": arm.partial,
                      "runs": [run.id for run in arm.system.runs]} for arm in arms],
            "datasets": {dataset: dataset_section(arms, chosen, dataset, dataset_metrics(arms, dataset, metrics), test)
                         for dataset in datasets},
            "provenance": provenance(arms, store)}
