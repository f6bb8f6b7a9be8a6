"""A comparison (engine.parent.compare) as text: CSV (one line per cell, with its test), a
Markdown table, a LaTeX tabular. `hbt-tui compare --format`, the TUI's export and the saved
comparisons write these."""

from __future__ import annotations

import csv
import io
import json

from engine.parent.compare import Cell, Comparison


def _value_text(cell: Cell) -> str:
    return f"{cell.value:.3f}" + (f" ± {cell.sd:.3f}" if cell.sd is not None else "")


def _text(cell: Cell, mark: str = "*") -> str:
    if cell.value is None:
        return "–"
    if cell.delta is None:
        return _value_text(cell)
    ci = f" [{cell.ci[0]:+.3f}, {cell.ci[1]:+.3f}]" if cell.ci else ""
    return f"{_value_text(cell)} ({cell.delta:+.3f}{mark if cell.significant else ''}{ci})"


def _header(comparison: Comparison) -> list[str]:
    return ["language"] + [f"{setting}:{system.name}" for setting in comparison.settings
                           for system in comparison.runs]


def _body(comparison: Comparison, mark: str = "*") -> list[list[str]]:
    return [[label] + [_text(cells[(setting, index)], mark) for setting in comparison.settings
                       for index in range(len(comparison.runs))] for label, _, cells in comparison.rows]


def _number_text(value: float | None, digits: int = 6) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_csv(comparison: Comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "setting", "system", "run_id", "seeds", comparison.metric, "sd", "delta", "ci_low",
                     "ci_high", "p_value", "p_adjusted", "significant", "units", "test", "correction", "family"])
    for label, _, cells in comparison.rows:
        for (setting, index), cell in cells.items():
            system = comparison.runs[index]
            writer.writerow([label, setting, system.name, system.id, len(system.runs), _number_text(cell.value),
                             _number_text(cell.sd), _number_text(cell.delta),
                             _number_text(cell.ci[0] if cell.ci else None), _number_text(cell.ci[1] if cell.ci else None),
                             _number_text(cell.p_value, 6), _number_text(cell.p_adjusted, 6),
                             "" if cell.delta is None else str(cell.significant).lower(), cell.units or "",
                             comparison.test.test, comparison.test.correction, comparison.family])
    return buffer.getvalue()


def to_markdown(comparison: Comparison) -> str:
    header = _header(comparison)
    lines = [f"**{comparison.dataset} · {comparison.metric}** (Δ vs {comparison.runs[comparison.baseline].name}, "
             "95 % CI in brackets)", "",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _body(comparison)]
    lines += ["", comparison.footnote]
    if comparison.diff:
        lines += ["", "| field | " + " | ".join(system.name for system in comparison.runs) + " |",
                  "|---|" + "---|" * len(comparison.runs)]
        lines += [f"| {key} | " + " | ".join(json.dumps(value) for value in values) + " |"
                  for key, values in comparison.diff]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    for char, replacement in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                              ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$"),
                              ("Δ", r"$\Delta$")):
        text = text.replace(char, replacement)
    return text


def to_latex(comparison: Comparison) -> str:
    header = _header(comparison)
    lines = [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(latex_escape(cell) for cell in header) + r" \\", r"\midrule"]
    for (label, summary, _), row in zip(comparison.rows, _body(comparison, mark="*")):
        if summary and not lines[-1].startswith(r"\midrule"):
            lines.append(r"\midrule")
        cells = [latex_escape(row[0])] + [latex_escape(cell).replace("*", "$^{*}$").replace("–", "--")
                                          for cell in row[1:]]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", f"% {comparison.dataset}, {comparison.metric}; {comparison.footnote}"]
    return "\n".join(lines) + "\n"


FORMATS = {"md": to_markdown, "csv": to_csv, "latex": to_latex}
