"""Per-language result tables for the terminal (rich), from an evaluation's results.json.

Rows are query languages, then the group averages (high / low resource) and the macro
average; columns are mono / cross / multi for the chosen metric and the language bias.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from engine.contract.layout import SETTINGS


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def results_rows(results: dict, metric: str) -> list[tuple[str, list[str], bool]]:
    """(label, cells, is_summary) for each language, group and the macro average."""
    rows = []
    for language in results["languages"]:
        row = results["per_language"].get(language, {})
        settings = row.get("settings", {})
        cells = [fmt(settings.get(setting, {}).get(metric)) for setting in SETTINGS] + [fmt(row.get("bias"), 1)]
        rows.append((language, cells, False))
    for name, group in results.get("groups", {}).items():
        cells = [fmt(group.get(setting, {}).get(metric)) for setting in SETTINGS] + [fmt(group.get("bias"), 1)]
        rows.append((f"{name} ({','.join(group.get('languages', []))})", cells, True))
    macro = results.get("macro", {})
    cells = [fmt(macro.get(setting, {}).get(metric)) for setting in SETTINGS] + [fmt(results.get("bias"), 1)]
    rows.append(("macro avg", cells, True))
    return rows


def results_table(results: dict, metric: str | None = None) -> Table:
    metric = metric or results.get("primary_metric", "map")
    table = Table(title=f"{results['dataset']} · {metric}", title_justify="left",
                  caption=f"{results.get('run', '')} · step {results.get('step', 0)}", caption_justify="left")
    table.add_column("language")
    for setting in SETTINGS:
        table.add_column(setting, justify="right")
    table.add_column("bias ↓", justify="right")
    for label, cells, summary in results_rows(results, metric):
        table.add_row(label, *cells, style="bold" if summary else None, end_section=label == results["languages"][-1])
    return table


def _delta_text(cell) -> str:
    if cell.delta is None:
        return ""
    colour = "green" if cell.delta > 0 else "red" if cell.delta < 0 else "dim"
    return f"[{colour}]{cell.delta:+.3f}{'*' if cell.significant else ''}[/]"


def comparison_table(comparison, title: str | None = None) -> Table:
    """Runs per language for one metric, with deltas against the first run. Two runs: the
    second run's values with a delta column per setting; more: side by side."""
    runs = comparison.runs
    table = Table(title=title or f"{comparison.dataset} · {comparison.metric} · Δ vs {runs[0].name}",
                  title_justify="left", caption="* p < 0.05 (paired t-test over queries)",
                  caption_justify="left")
    table.add_column("language")
    compact = len(runs) == 2
    for setting in comparison.settings:
        if compact:
            table.add_column(setting, justify="right")
            table.add_column("Δ", justify="right")
        else:
            for run in runs:
                table.add_column(f"{setting}\n{run.name[:24]}", justify="right")
    last_language = max((i for i, (_, summary, _) in enumerate(comparison.rows) if not summary), default=-1)
    for position, (label, summary, cells) in enumerate(comparison.rows):
        rendered = []
        for setting in comparison.settings:
            if compact:
                cell = cells[(setting, 1)]
                rendered += [fmt(cell.value), _delta_text(cell)]
                continue
            for index in range(len(runs)):
                cell = cells[(setting, index)]
                rendered.append(f"{fmt(cell.value)} {_delta_text(cell)}".strip())
        table.add_row(label, *rendered, style="bold" if summary else None, end_section=position == last_language)
    return table


def print_run_results(store, summary: dict, console: Console) -> None:
    """A finished run's tables: each dataset, with deltas against the spec's baseline run
    (or against the run's own step-0 evaluation when it has one)."""
    from engine.parent.compare import compare, load_run

    folder = store.folder(summary["id"])
    run = load_run(folder)
    baseline = _baseline(store, summary)
    for dataset, results in run.results.items():
        console.print(results_table(results))
        if baseline is not None and dataset in baseline.results:
            console.print(comparison_table(compare([baseline, run], dataset)))
            continue
        if results.get("step", 0) > 0 and folder.results(dataset, 0).exists():
            before = load_run(folder, step=0)
            console.print(comparison_table(compare([before, run], dataset),
                                           title=f"{dataset} · {results.get('primary_metric', 'map')} · "
                                                 "after training vs before (step 0)"))


def _baseline(store, summary: dict):
    from engine.contract.errors import RunError
    from engine.parent.compare import load_run

    reference = summary.get("baseline")
    if not reference:
        return None
    try:
        found = store.resolve(reference)
    except RunError:
        return None
    if found["id"] == summary["id"] or found.get("status") != "finished":
        return None
    return load_run(store.folder(found["id"]))
