"""Comparing runs: per language side by side, deltas against a baseline, significance
(engine.parent.significance), confidence intervals, and the config fields that differ. Used by
`hbt-tui compare`, `show`, the report and the TUI.

Runs that differ only in `train.seed` are one system (an arm): its values are the mean ± sd
over seeds. Two systems that each have >= 2 seeds (or are the untrained encoder, which has no
seeds) are compared as methods, with questions and seeds as crossed random factors; where a
trained system has a single run the cell compares these two models with the question-level
test, and says so. A row's value is the mean over its languages of the per-language values
(what results.json calls the macro and group averages), for every system alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import numpy as np

from engine.contract.layout import SETTINGS, RunFolder, read_json
from engine.contract.results import read_per_query
from engine.contract.spec import IGNORED_IN_DIFF, spec_diff
from engine.parent.significance import (Arm, Significance, correct, crossed_test, mean_ci, paired_p,
                                        question_units)


@dataclass
class RunResults:
    id: str
    name: str
    folder: RunFolder
    spec: dict
    results: dict[str, dict]                      # dataset -> results.json
    step: int | None = None                       # read the per-query scores of this earlier evaluation
    _per_query: dict[str, dict] = field(default_factory=dict)

    def per_query(self, dataset: str) -> dict:
        if dataset not in self._per_query:
            path = self.folder.per_query(dataset, self.step)
            self._per_query[dataset] = read_per_query(path) if path.exists() else {}
        return self._per_query[dataset]


def load_run(folder: RunFolder, step: int | None = None) -> RunResults:
    """A run's latest results per dataset (or those of one earlier evaluation step)."""
    spec = read_json(folder.spec) or {}
    results = {dataset: loaded for dataset in folder.evaluated_datasets()
               if (loaded := read_json(folder.results(dataset, step)))}
    name = spec.get("name", folder.id) + (f" @ step {step}" if step is not None else "")
    return RunResults(folder.id if step is None else f"{folder.id}@{step}", name, folder, spec, results, step)


# --- systems: runs that differ only in their seed ---------------------------------------------------

@dataclass
class System:
    """One configuration: one run, or its seed replicates."""

    runs: list[RunResults]

    @property
    def name(self) -> str:
        first = self.runs[0].name
        if len(self.runs) == 1:
            return first
        stem = first.split("-seed=")[0] if "-seed=" in first else first
        return f"{stem} ({len(self.runs)} seeds)"

    @property
    def id(self) -> str:
        return ",".join(run.id for run in self.runs)

    @property
    def spec(self) -> dict:
        return self.runs[0].spec

    @property
    def fixed(self) -> bool:
        """The untrained encoder (a zero-shot run, or a run's step-0 evaluation): one
        deterministic model, whatever its seed."""
        return all(run.step == 0 or run.spec.get("train", {}).get("steps") == 0 for run in self.runs)

    def has(self, dataset: str) -> bool:
        """Some run of it was evaluated on `dataset` (an arm of a replication study holds runs of
        both directions, each evaluated on its own dataset)."""
        return any(dataset in run.results for run in self.runs)

    def evaluated(self, dataset: str) -> list[RunResults]:
        return [run for run in self.runs if dataset in run.results]

    def run_scores(self, dataset: str, language: str, setting: str, metric: str) -> list[dict[str, float]]:
        """{question id: score} of each run evaluated on `dataset` (NaN scores left out)."""
        tables = [run.per_query(dataset).get((language, setting), {}) for run in self.runs if dataset in run.results]
        return [{qid: row[metric] for qid, row in table.items() if not math.isnan(row.get(metric, math.nan))}
                for table in tables]

    def scores(self, dataset: str, language: str, setting: str, metric: str) -> dict[str, float]:
        """{question id: score}, averaged over seeds (questions every seed answered)."""
        tables = self.run_scores(dataset, language, setting, metric)
        if not tables or not all(tables):
            return {}
        common = set.intersection(*(set(table) for table in tables))
        return {qid: sum(table[qid] for table in tables) / len(tables) for qid in common}


def seed_key(spec: dict) -> str:
    """What identifies a configuration: the spec without its names and its seed."""
    config = {key: value for key, value in spec.items() if key not in IGNORED_IN_DIFF}
    train = dict(config.get("train", {}))
    train.pop("seed", None)
    return json.dumps({**config, "train": train}, sort_keys=True)


def group_seeds(runs: list[RunResults]) -> list[System]:
    """Runs grouped by configuration, in the order their first run was given."""
    systems: dict[str, System] = {}
    for run in runs:
        key = seed_key(run.spec) if run.step is None else f"{run.id}"
        systems.setdefault(key, System([])).runs.append(run)
    return list(systems.values())


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def language_value(results: dict, language: str, setting: str, metric: str) -> float | None:
    """One language's value in a results.json; `bias` (language bias, multilingual setting only)
    is a metric like the others here, lower being better."""
    row = results.get("per_language", {}).get(language, {})
    if metric == "bias":
        return _number(row.get("bias")) if setting == "multi" else None
    return _number(row.get("settings", {}).get(setting, {}).get(metric))


# --- the comparison ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    value: float | None
    sd: float | None = None                     # over seeds
    delta: float | None = None
    p_value: float | None = None                # raw
    p_adjusted: float | None = None             # after the family's correction
    ci: tuple[float, float] | None = None       # of the delta
    units: int = 0                              # questions (or queries) the test paired
    level: float = 0.05
    kind: str | None = None                     # methods (questions x seeds) | models (questions)
    seeds: tuple[int, int] | None = None        # runs of (baseline, this system)

    @property
    def significant(self) -> bool:
        return self.p_adjusted is not None and self.p_adjusted < self.level


@dataclass
class Comparison:
    dataset: str
    metric: str
    settings: tuple[str, ...]
    runs: list[System]                                        # the compared systems (one per seed group)
    rows: list[tuple[str, bool, dict[tuple[str, int], Cell]]]  # (label, is_summary, {(setting, system): cell})
    diff: list[tuple[str, list]]
    test: Significance = field(default_factory=Significance)
    family: int = 0
    baseline: int = 0
    seen_in_training: bool = False
    family_name: str = "cells of this comparison"
    dropped: list[str] = field(default_factory=list)      # languages only some systems were evaluated on
    mixed_protocols: str | None = None                     # why they would not compare, when compared anyway

    @property
    def kinds(self) -> set[str]:
        return {cell.kind for _, _, cells in self.rows for cell in cells.values() if cell.kind}

    @property
    def footnote(self) -> str:
        text = self.test.footnote(self.family, self.kinds, self.family_name,
                                  any(len(system.runs) > 1 for system in self.runs))
        if self.seen_in_training:
            text += f"; {self.dataset} was seen in training (eval.allow_train_overlap)"
        precisions = sorted({(run.results.get(self.dataset) or {}).get("precision") or "fp32"
                             for system in self.runs for run in system.runs})
        if len(precisions) > 1:   # bf16 encoding moves macro scores by up to ~0.001: say so
            text += f"; encoded in {' and '.join(precisions)}"
        if self.dropped:
            text += (f"; compared on the {len(self.rows_languages)} languages every run was evaluated on — "
                     f"left out: {', '.join(self.dropped)}")
        if self.mixed_protocols:
            text += f"; compared anyway, as asked — {self.mixed_protocols}"
        return text

    @property
    def rows_languages(self) -> list[str]:
        return [label for label, summary, _ in self.rows if not summary]


def protocol_problem(systems: list[System], dataset: str, languages: list[str] | None = None) -> str | None:
    """Why these systems' results on a MIRACL dataset cannot be compared (their protocol
    fingerprints differ on the languages compared), or None; other datasets have none."""
    from engine.contract.miracl_protocol import fingerprint_of, mismatch

    if not dataset.startswith(("miracl", "hf:miracl")):
        return None
    return mismatch([(run.name, fingerprint_of(run.results[dataset])) for system in systems
                     for run in system.evaluated(dataset)], languages)


def evaluated_languages(systems: list[System], dataset: str) -> tuple[list[str], list[str]]:
    """(the languages every system was evaluated on, those only some were): a comparison is made
    on the first alone, so a macro average never mixes language sets."""
    every: list[str] = []
    sets = []
    for system in systems:
        found: set[str] = set()
        for run in system.evaluated(dataset):
            languages = run.results[dataset].get("languages", [])
            every += [language for language in languages if language not in every]
            found |= set(languages)
        sets.append(found)
    common = [language for language in every if all(language in found for found in sets)]
    return common, [language for language in every if language not in common]


def _plan(systems: list[System], dataset: str) -> list[tuple[str, bool, list[str]]]:
    languages, _ = evaluated_languages([system for system in systems if system.has(dataset)], dataset)
    groups: dict[str, list[str]] = {}
    for system in systems:
        for run in system.evaluated(dataset):
            for name, group in run.results[dataset].get("groups", {}).items():
                groups.setdefault(name, list(group.get("languages", [])))
    plan = [(language, False, [language]) for language in languages]
    plan += [(name, True, kept) for name, members in groups.items()
             if (kept := [lang for lang in members if lang in languages])]
    return plan + [("macro avg", True, languages)]


def _row_value(system: System, dataset: str, members: list[str], setting: str, metric: str) -> tuple[float | None, float | None]:
    """Mean over seeds (and sd) of the mean over the row's languages."""
    per_seed = []
    for run in system.runs:
        values = [language_value(run.results.get(dataset, {}), lang, setting, metric) for lang in members]
        values = [value for value in values if value is not None]
        if values:
            per_seed.append(sum(values) / len(values))
    if not per_seed:
        return None, None
    mean = sum(per_seed) / len(per_seed)
    sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None
    return mean, sd


def unit_matrices(systems: list[System], dataset: str, members: list[str], setting: str,
                  metric: str) -> tuple[list[str], list[np.ndarray]]:
    """The units of a row for each system as a (runs, units) matrix in one question-id order:
    a language's queries, or question ids averaged over the row's languages, each language
    restricted to the questions every run of every system answered."""
    per_system = [{language: system.run_scores(dataset, language, setting, metric) for language in members}
                  for system in systems]
    common = {}
    for language in members:
        tables = [table for scores in per_system for table in scores[language]]
        common[language] = set.intersection(*(set(table) for table in tables)) if tables and all(tables) else set()
    matrices, order = [], None
    for system, scores in zip(systems, per_system):
        rows = []
        for position in range(len(scores[members[0]])):
            kept = {language: {qid: scores[language][position][qid] for qid in common[language]}
                    for language in members}
            rows.append(kept[members[0]] if len(members) == 1 else question_units(kept))
        order = order if order is not None else sorted(rows[0]) if rows else []
        matrices.append(np.array([[row[qid] for qid in order] for row in rows], dtype=np.float64)
                        .reshape(len(rows), len(order)))
    return order or [], matrices


def cell_test(base: System, first: np.ndarray, other: System, second: np.ndarray, test: Significance,
               with_ci: bool) -> tuple[float | None, tuple[float, float] | None, str]:
    """(p, CI of the delta, kind) for a cell's unit matrices: the crossed test when both systems
    stand for their methods, else the question-level test of these two models."""
    if first.shape[1] < 2:
        return None, None, "models"
    if all(system.fixed or scores.shape[0] >= 2 for system, scores in ((base, first), (other, second))) \
            and not (base.fixed and other.fixed):
        result = crossed_test(Arm(first, base.fixed), Arm(second, other.fixed), test.confidence)
        return (result.p, result.ci, "methods") if result else (None, None, "methods")
    a, b = first.mean(0), second.mean(0)
    return paired_p(a, b, test), mean_ci(b - a, test) if with_ci else None, "models"


class MixedProtocols(ValueError):
    """MIRACL results of different protocols or pools: `problem` says how they differ; the text
    names the command line's way to compare them anyway (a screen names its own key)."""

    def __init__(self, problem: str, anyway: str = "--allow-mixed-protocols") -> None:
        super().__init__(f"{problem} ({anyway} compares them anyway)")
        self.problem = problem


def compare(runs: list[RunResults], dataset: str, metric: str | None = None,
            settings: tuple[str, ...] = SETTINGS, baseline: int = 0, test: Significance | None = None,
            with_ci: bool = False, family: str = "comparison", systems: list[System] | None = None,
            allow_mixed_protocols: bool = False) -> Comparison:
    """Every row x setting x system against the baseline system (the runs grouped by their seeds,
    or `systems` as given: a report's arms). The family the correction runs over is the whole
    comparison, or (`family="setting"`, a report's exploratory tables) each setting's table on its own."""
    test = test or Significance()
    systems = systems if systems is not None else group_seeds(runs)
    with_data = [system for system in systems if system.has(dataset)]
    if not with_data:
        raise ValueError(f"none of the runs has results on {dataset}")
    metric = metric or with_data[0].evaluated(dataset)[0].results[dataset].get("primary_metric", "map")
    common, dropped = evaluated_languages(with_data, dataset)     # a system without results shows as empty
    if not common:
        raise ValueError(f"the runs share no language evaluated on {dataset}: nothing to compare")
    problem = protocol_problem(with_data, dataset, common)
    if problem and not allow_mixed_protocols:
        raise MixedProtocols(problem)
    base = systems[baseline]
    rows, tested = [], []
    for label, summary, members in _plan(systems, dataset):
        cells: dict[tuple[str, int], Cell] = {}
        for setting in settings:
            base_value, _ = _row_value(base, dataset, members, setting, metric)
            for index, system in enumerate(systems):
                value, sd = _row_value(system, dataset, members, setting, metric)
                if index == baseline or value is None or base_value is None:
                    cells[(setting, index)] = Cell(value, sd, level=test.level)
                    continue
                order, (first, second) = unit_matrices([base, system], dataset, members, setting, metric)
                p_value, ci, kind = cell_test(base, first, system, second, test, with_ci)
                cells[(setting, index)] = Cell(value, sd, value - base_value, p_value, None, ci, len(order),
                                               test.level, kind, (first.shape[0], second.shape[0]))
                if p_value is not None:
                    tested.append((len(rows), setting, index))
        rows.append((label, summary, cells))
    groups = [[item for item in tested if item[1] == setting] for setting in settings] if family == "setting" \
        else [tested]
    for members in groups:
        adjusted = correct([rows[row][2][(setting, index)].p_value for row, setting, index in members], test)
        for (row, setting, index), p_adjusted in zip(members, adjusted):
            rows[row][2][(setting, index)] = replace(rows[row][2][(setting, index)], p_adjusted=p_adjusted)
    seen = any(run.results.get(dataset, {}).get("seen_in_training") for system in systems for run in system.runs)
    largest = max((len(members) for members in groups), default=0)
    return Comparison(dataset, metric, settings, systems, rows, spec_diff([system.spec for system in systems]),
                      test, largest if family == "setting" else len(tested), baseline, seen,
                      "cells of this comparison" if family == "comparison" else
                      "cells of each setting's table (exploratory)", dropped, problem)


def value_cis(run: RunResults, dataset: str, metric: str, test: Significance | None = None) -> dict[tuple[str, str], tuple[float, float]]:
    """{(row label, setting): CI of the row's value} for one run (`show --ci`): a bootstrap
    over its queries (language rows) or question units (group and macro rows)."""
    test = test or Significance()
    system = System([run])
    intervals = {}
    for label, _, members in _plan([system], dataset):
        for setting in SETTINGS:
            scores = {language: system.scores(dataset, language, setting, metric) for language in members}
            units = scores[members[0]] if len(members) == 1 else question_units(scores)
            ci = mean_ci(np.array(list(units.values())), test) if units else None
            if ci is not None:
                intervals[(label, setting)] = ci
    return intervals
