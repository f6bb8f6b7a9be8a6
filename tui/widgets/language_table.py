"""The per-language results table: rows are languages, then group averages and the macro
average; columns are mono / cross / multi for one metric, and language bias.

Rows and columns have stable keys, so a live evaluation changes single cells with
`update_cell` as its events arrive; nothing is rebuilt while a run reports."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from engine.contract.layout import SETTINGS
from engine.parent.run_state import EvalCells
from engine.parent.tables import plain
from tui.widgets.cells import number

PENDING = Text("·", style="dim")


class LanguageTable(DataTable):
    DEFAULT_CSS = """
    LanguageTable { height: auto; max-height: 20; }
    """

    def __init__(self, metric: str = "map", **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.metric = metric
        self.languages: list[str] = []
        self.groups: dict[str, list[str]] = {}

    def on_mount(self) -> None:
        self.add_column("language", key="language", width=13)
        for setting in SETTINGS:
            self.add_column(setting, key=setting, width=6)
        self.add_column("bias ↓", key="bias", width=6)

    def set_layout(self, languages: list[str], groups: dict[str, list[str]]) -> None:
        """(Re)create the rows: only when the set of languages changes."""
        if languages == self.languages and groups == self.groups:
            return
        self.clear()
        self.languages, self.groups = list(languages), {k: list(v) for k, v in groups.items()}
        for language in languages:
            self.add_row(plain(language), *([PENDING] * 4), key=language)
        for name, members in groups.items():
            label = f"{name} · {len(members)} lang{'s' if len(members) != 1 else ''}"
            self.add_row(plain(label, "bold"), *([PENDING] * 4), key=f"group:{name}")
        self.add_row(Text("macro avg", style="bold"), *([PENDING] * 4), key="macro")

    def clear_values(self) -> None:
        for row in list(self.rows):
            for column in SETTINGS + ("bias",):
                self._set(row.value, column, PENDING)

    def show_cells(self, cells: EvalCells, languages: list[str], groups: dict[str, list[str]]) -> None:
        """Bring every cell in line with `cells` (changes only the cells that differ)."""
        self.set_layout(languages, groups)
        for language in self.languages:
            settings = cells.settings.get(language, {})
            for setting in SETTINGS:
                if setting in settings:
                    self._set(language, setting, number(settings[setting].get(self.metric)))
            if language in cells.bias:
                self._set(language, "bias", number(cells.bias[language], 1))
        if cells.done:
            for name in self.groups:
                group = cells.groups.get(name, {})
                for setting in SETTINGS:
                    self._set(f"group:{name}", setting, number(group.get(setting, {}).get(self.metric)))
                self._set(f"group:{name}", "bias", number(group.get("bias"), 1))
            for setting in SETTINGS:
                self._set("macro", setting, number(cells.macro.get(setting, {}).get(self.metric)))
            self._set("macro", "bias", number(cells.overall_bias, 1))

    def show_deltas(self, comparison) -> None:
        """Each cell's Δ against an earlier evaluation (engine.parent.compare), green better, red
        worse, `*` where the test says so; the cells keep their widths (the value is dropped)."""
        keys = {**{language: language for language in self.languages}, **{name: f"group:{name}" for name in self.groups},
                "macro avg": "macro"}
        for label, _, cells in comparison.rows:
            row = keys.get(label)
            if row is None or row not in self.rows:
                continue
            for setting in SETTINGS:
                cell = cells.get((setting, 1))
                if cell is None or cell.delta is None:
                    continue
                style = "green" if cell.delta > 0 else "red" if cell.delta < 0 else "dim"
                self._set(row, setting, Text(f"{cell.delta:+.3f}{'*' if cell.significant else ''}", style=style))

    def _set(self, row: str, column: str, value: Text) -> None:
        if self.get_cell(row, column) != value:
            self.update_cell(row, column, value)
