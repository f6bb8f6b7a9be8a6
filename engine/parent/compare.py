"""Comparing runs: per-language side by side, deltas against a baseline, significance over
queries, and the config fields that differ. Used by `hbt-tui compare` and the TUI.

Significance is a two-sided paired t-test on the per-query scores of the queries both
runs answered (the test Sakai recommends for IR; Urbano et al., SIGIR 2019, find it as
reliable as permutation tests at these sample sizes); a difference is marked at
p < 0.05, uncorrected for the number of cells. Group and macro rows pool the per-query
scores of their languages.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

from engine.contract.layout import SETTINGS, RunFolder, read_json
from engine.contract.results import read_per_query
from engine.contract.spec import spec_diff

ALPHA = 0.05


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


def paired_t_test(first: np.ndarray, second: np.ndarray) -> float:
    """Two-sided p-value that the mean paired difference is zero."""
    differences = np.asarray(second, dtype=np.float64) - np.asarray(first, dtype=np.float64)
    count = len(differences)
    if count < 2:
        return 1.0
    mean, spread = differences.mean(), differences.std(ddof=1)
    if spread == 0:
        return 1.0 if mean == 0 else 0.0
    from scipy.special import stdtr  # Student's t CDF; imported only when a test is asked for

    t_value = mean / (spread / np.sqrt(count))
    return float(2 * stdtr(count - 1, -abs(t_value)))


@dataclass(frozen=True)
class Cell:
    value: float | None
    delta: float | None = None
    p_value: float | None = None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


@dataclass
class Comparison:
    dataset: str
    metric: str
    settings: tuple[str, ...]
    runs: list[RunResults]
    rows: list[tuple[str, bool, dict[tuple[str, int], Cell]]]   # (label, is_summary, {(setting, run): cell})
    diff: list[tuple[str, list]]


def _value(results: dict, label: str, setting: str, metric: str, kind: str) -> float | None:
    if kind == "language":
        source = results.get("per_language", {}).get(label, {}).get("settings", {})
    elif kind == "group":
        source = results.get("groups", {}).get(label, {})
    else:
        source = results.get("macro", {})
    value = source.get(setting, {}).get(metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _paired(first: RunResults, second: RunResults, dataset: str, languages: list[str], setting: str,
            metric: str) -> float | None:
    a, b = [], []
    for language in languages:
        left = first.per_query(dataset).get((language, setting), {})
        right = second.per_query(dataset).get((language, setting), {})
        for qid in left.keys() & right.keys():
            if metric in left[qid] and metric in right[qid]:
                a.append(left[qid][metric])
                b.append(right[qid][metric])
    return paired_t_test(np.array(a), np.array(b)) if a else None


def compare(runs: list[RunResults], dataset: str, metric: str | None = None,
            settings: tuple[str, ...] = SETTINGS, baseline: int = 0) -> Comparison:
    with_data = [run for run in runs if dataset in run.results]
    if not with_data:
        raise ValueError(f"none of the runs has results on {dataset}")
    metric = metric or with_data[0].results[dataset].get("primary_metric", "map")
    languages: list[str] = []
    for run in with_data:
        languages += [lang for lang in run.results[dataset]["languages"] if lang not in languages]
    groups: dict[str, list[str]] = {}
    for run in with_data:
        for name, group in run.results[dataset].get("groups", {}).items():
            groups.setdefault(name, group.get("languages", []))
    rows = []
    plan = [(lang, False, "language", [lang]) for lang in languages]
    plan += [(name, True, "group", members) for name, members in groups.items()]
    plan += [("macro avg", True, "macro", languages)]
    base = runs[baseline]
    for label, summary, kind, members in plan:
        cells = {}
        for setting in settings:
            base_value = _value(base.results.get(dataset, {}), label, setting, metric, kind)
            for index, run in enumerate(runs):
                value = _value(run.results.get(dataset, {}), label, setting, metric, kind)
                if index == baseline or value is None or base_value is None:
                    cells[(setting, index)] = Cell(value)
                    continue
                p_value = _paired(base, run, dataset, members, setting, metric)
                cells[(setting, index)] = Cell(value, value - base_value, p_value)
        rows.append((label, summary, cells))
    return Comparison(dataset, metric, settings, runs, rows, spec_diff([run.spec for run in runs]))


# --- text formats --------------------------------------------------------------------------------

def _text(cell: Cell, mark: str = "*") -> str:
    if cell.value is None:
        return "–"
    if cell.delta is None:
        return f"{cell.value:.3f}"
    return f"{cell.value:.3f} ({cell.delta:+.3f}{mark if cell.significant else ''})"


def _header(comparison: Comparison) -> list[str]:
    return ["language"] + [f"{setting}:{run.name}" for setting in comparison.settings
                           for run in comparison.runs]


def _body(comparison: Comparison, mark: str = "*") -> list[list[str]]:
    return [[label] + [_text(cells[(setting, index)], mark) for setting in comparison.settings
                       for index in range(len(comparison.runs))] for label, _, cells in comparison.rows]


def to_csv(comparison: Comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "setting", "run", "run_id", comparison.metric, "delta", "p_value"])
    for label, _, cells in comparison.rows:
        for (setting, index), cell in cells.items():
            run = comparison.runs[index]
            writer.writerow([label, setting, run.name, run.id, "" if cell.value is None else f"{cell.value:.6f}",
                             "" if cell.delta is None else f"{cell.delta:.6f}",
                             "" if cell.p_value is None else f"{cell.p_value:.4f}"])
    return buffer.getvalue()


def to_markdown(comparison: Comparison) -> str:
    header = _header(comparison)
    lines = [f"**{comparison.dataset} · {comparison.metric}** (Δ vs {comparison.runs[0].name}; "
             f"* p < {ALPHA}, paired t-test over queries)", "",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _body(comparison)]
    if comparison.diff:
        lines += ["", "| field | " + " | ".join(run.name for run in comparison.runs) + " |",
                  "|---|" + "---|" * len(comparison.runs)]
        lines += [f"| {key} | " + " | ".join(json.dumps(value) for value in values) + " |"
                  for key, values in comparison.diff]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char, replacement in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                              ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, replacement)
    return text


def to_latex(comparison: Comparison) -> str:
    header = _header(comparison)
    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(_latex_escape(cell) for cell in header) + r" \\", r"\midrule"]
    for (label, summary, _), row in zip(comparison.rows, _body(comparison, mark="$^{*}$")):
        if summary and not lines[-1].startswith(r"\midrule"):
            lines.append(r"\midrule")
        cells = [_latex_escape(row[0])] + [cell.replace("–", "--") for cell in row[1:]]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}",
              f"% {comparison.dataset}, {comparison.metric}; * p < {ALPHA}, paired t-test over queries"]
    return "\n".join(lines) + "\n"


FORMATS = {"md": to_markdown, "csv": to_csv, "latex": to_latex}
