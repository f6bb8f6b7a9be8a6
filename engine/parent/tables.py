"""Per-language result tables for the terminal (rich), from an evaluation's results.json.

Rows are query languages, then the group averages (high / low resource) and the macro
average; columns are mono / cross / multi for the chosen metric and the language bias.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.contract.layout import SETTINGS
from engine.contract.text import printable


def plain(value: object, style: str | None = None, newlines: bool = False) -> Text:
    """Text from a spec or a file, for rich: never read as markup, control characters escaped."""
    return Text(printable(value, newlines), style=style or "")


def markup_safe(value: object, newlines: bool = False) -> str:
    """The same, to place inside a markup string of our own (`f"[b]{markup_safe(name)}[/b]"`)."""
    from rich.markup import escape

    return escape(printable(value, newlines))


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def results_rows(results: dict, metric: str, cis: dict | None = None) -> list[tuple[str, list[str], bool]]:
    """(label, cells, is_summary) for each language, group and the macro average; with `cis`
    ({(row, setting): (low, high)}), each value followed by its 95 % confidence interval."""
    cis = cis or {}

    def cells_of(key: str, values: dict, bias: float | None) -> list[str]:
        texts = []
        for setting in SETTINGS:
            text = fmt(values.get(setting, {}).get(metric))
            if (key, setting) in cis:
                low, high = cis[(key, setting)]
                text += f" [{low:.3f}, {high:.3f}]"
            texts.append(text)
        return texts + [fmt(bias, 1)]

    rows = []
    for language in results["languages"]:
        row = results["per_language"].get(language, {})
        rows.append((language, cells_of(language, row.get("settings", {}), row.get("bias")), False))
    for name, group in results.get("groups", {}).items():
        rows.append((f"{name} ({','.join(group.get('languages', []))})", cells_of(name, group, group.get("bias")), True))
    rows.append(("macro avg", cells_of("macro avg", results.get("macro", {}), results.get("bias")), True))
    return rows


def results_table(results: dict, metric: str | None = None, cis: dict | None = None) -> Table:
    metric = metric or results.get("primary_metric", "map")
    seen = " · seen in training" if results.get("seen_in_training") else ""
    ci = " · 95 % CI: bootstrap over questions" if cis else ""
    precision = f" · encoded in {results['precision']}" if results.get("precision") else ""
    table = Table(title=plain(f"{results['dataset']} · {metric}{seen}"), title_justify="left",
                  caption=plain(f"{results.get('run', '')} · step {results.get('step', 0)}{precision}{ci}"),
                  caption_justify="left")
    table.add_column("language")
    for setting in SETTINGS:
        table.add_column(setting, justify="right")
    table.add_column("bias ↓", justify="right")
    for label, cells, summary in results_rows(results, metric, cis):
        table.add_row(plain(label), *cells, style="bold" if summary else None,
                      end_section=label == results["languages"][-1])
    return table


def _delta_text(cell) -> Text:
    if cell.delta is None:
        return Text("")
    colour = "green" if cell.delta > 0 else "red" if cell.delta < 0 else "dim"
    return Text(f"{cell.delta:+.3f}{'*' if cell.significant else ''}", style=colour)


def _value_text(cell) -> str:
    return fmt(cell.value) + (f"±{cell.sd:.3f}" if cell.sd is not None else "")


def comparison_table(comparison, title: str | None = None) -> Table:
    """Systems per language for one metric, with deltas against the baseline. Two systems: the
    second one's values with a delta column per setting; more: side by side. The footnote
    (test, unit, family, correction) is printed under it by `print_comparison`."""
    runs = comparison.runs
    base = runs[comparison.baseline].name
    table = Table(title=plain(title or f"{comparison.dataset} · {comparison.metric} · Δ vs {base}"), title_justify="left")
    table.add_column("language")
    compact = len(runs) == 2
    for setting in comparison.settings:
        if compact:
            table.add_column(setting, justify="right")
            table.add_column("Δ", justify="right")
        else:
            for run in runs:
                table.add_column(plain(f"{setting}\n{run.name[:24]}"), justify="right")
    last_language = max((i for i, (_, summary, _) in enumerate(comparison.rows) if not summary), default=-1)
    for position, (label, summary, cells) in enumerate(comparison.rows):
        rendered = []
        for setting in comparison.settings:
            if compact:
                cell = cells[(setting, 1 - comparison.baseline)]
                rendered += [_value_text(cell), _delta_text(cell)]
                continue
            for index in range(len(runs)):
                cell = cells[(setting, index)]
                rendered.append(Text.assemble(_value_text(cell), " ", _delta_text(cell)))
        table.add_row(plain(label), *rendered, style="bold" if summary else None, end_section=position == last_language)
    return table


def print_comparison(console: Console, comparison, title: str | None = None) -> None:
    console.print(comparison_table(comparison, title))
    console.print(plain(comparison.footnote, style="dim"), soft_wrap=True)


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
            print_comparison(console, compare([baseline, run], dataset))
            continue
        if results.get("step", 0) > 0 and folder.results(dataset, 0).exists():
            before = load_run(folder, step=0)
            print_comparison(console, compare([before, run], dataset),
                             title=f"{dataset} · {results.get('primary_metric', 'map')} · after training vs before (step 0)")


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
