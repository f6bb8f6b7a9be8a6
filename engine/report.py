"""Per-language result tables for the terminal (rich), from an eval results.json.

Rows are query languages, then the group averages (high / low resource) and the macro
average; columns are mono / cross / multi for the chosen metric and the language bias.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from engine.eval_outputs import SETTINGS


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def fmt_bias(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def results_rows(results: dict, metric: str) -> list[tuple[str, list[str], bool]]:
    """(label, cells, is_summary) for each language, group and the macro average."""
    rows = []
    for language in results["languages"]:
        row = results["per_language"].get(language, {})
        settings = row.get("settings", {})
        cells = [fmt(settings.get(setting, {}).get(metric)) for setting in SETTINGS] + [fmt_bias(row.get("bias"))]
        rows.append((language, cells, False))
    for name, group in results.get("groups", {}).items():
        cells = [fmt(group.get(setting, {}).get(metric)) for setting in SETTINGS] + [fmt_bias(group.get("bias"))]
        rows.append((f"{name} ({','.join(group.get('languages', []))})", cells, True))
    macro = results.get("macro", {})
    cells = [fmt(macro.get(setting, {}).get(metric)) for setting in SETTINGS] + [fmt_bias(results.get("bias"))]
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


def print_results(path: str | Path, metric: str | None = None, console: Console | None = None) -> None:
    results = json.loads(Path(path).read_text(encoding="utf-8"))
    (console or Console()).print(results_table(results, metric))
