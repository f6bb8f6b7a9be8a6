"""Two or more runs side by side per language: deltas against a chosen baseline, coloured
by sign and marked where the difference is significant over queries; group averages; the
config fields that differ; export to Markdown, CSV and LaTeX.

Loading per-query scores and testing every cell runs in a thread worker, which only posts
a `ComparisonReady` message; the handler owns the table. The baseline, metric and dataset
are reactive: changing one (`b`, `m`, `t`) starts a new comparison."""

from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from engine.parent.compare import Comparison, MixedProtocols, compare, load_run
from engine.parent.compare_formats import FORMATS
from engine.parent.tables import markup_safe, plain
from engine.contract.layout import SETTINGS, write_atomic
from tui.keys import BACK, HELP


class ComparisonReady(Message):
    """A finished comparison, with what it was computed from (the handler keeps it)."""

    def __init__(self, comparison: Comparison | None, runs: list, datasets: list[str], metrics: list[str],
                 error: str | None = None) -> None:
        super().__init__()
        self.comparison = comparison
        self.runs = runs
        self.datasets = datasets
        self.metrics = metrics
        self.error = error


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def cell_text(cell) -> Text:
    if cell.value is None:
        return Text("–", style="dim")
    text = Text(f"{cell.value:.3f}" + (f"±{cell.sd:.3f}" if cell.sd is not None else ""))
    if cell.delta is not None:
        style = "green" if cell.delta > 0 else "red" if cell.delta < 0 else "dim"
        text.append(f" {cell.delta:+.3f}", style=style + (" bold" if cell.significant else ""))
        text.append("*" if cell.significant else " ", style=style)
    return text


def fill_table(table: DataTable, columns: list[tuple[str, str]], rows: list[tuple[str, list[Text]]],
               fit_width: int | None = None) -> None:
    """Columns sized from their content here, not measured later on an idle pass: the table's
    layout is complete as soon as it is filled (what a screenshot or a user sees next). With
    `fit_width`, the widest columns give way until the table fits it, and their cells wrap onto
    more lines instead of being cut."""
    table.clear(columns=True)
    widths = [max([len(label)] + [cells[position].cell_len for _, cells in rows])
              for position, (_, label) in enumerate(columns)]
    wrap = False
    if fit_width is not None:
        room = fit_width - 2 * table.cell_padding * len(columns) - 1        # the padding and a scrollbar
        while sum(widths) > room and max(widths) > 12:
            widest = widths.index(max(widths))
            widths[widest] = max(12, widths[widest] - (sum(widths) - room))
            wrap = True
    for (key, label), width in zip(columns, widths):
        table.add_column(label, key=key, width=width)
    for key, cells in rows:
        table.add_row(*cells, key=key, height=None if wrap else 1)


class CompareScreen(Screen):
    BINDINGS = [
        BACK,
        Binding("b", "next_baseline", "Base"),           # "Baseline" cut ^q off the footer at 80 columns
        Binding("m", "next_metric", "Metric"),
        Binding("t", "next_dataset", "Dataset"),
        Binding("e", "export", "Export"),
        Binding("s", "save", "Save"),
        Binding("x", "mixed_protocols", "Mixed protocols", show=False),   # MIRACL results of other protocols
        HELP,
    ]

    baseline: reactive[int] = reactive(0, init=False)
    metric: reactive[str | None] = reactive(None, init=False)
    dataset: reactive[str | None] = reactive(None, init=False)
    mixed: reactive[bool] = reactive(False, init=False)      # compare MIRACL results of different protocols

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = run_ids
        self.runs = []
        self.datasets: list[str] = []
        self.metrics: list[str] = []
        self.comparison: Comparison | None = None
        self.rendered: Comparison | None = None     # the comparison whose tables are laid out on screen

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("loading…", id="compare-title")
        yield DataTable(id="compare-table", zebra_stripes=True, cursor_type="row")
        yield Static("", id="compare-footnote")
        yield Static("config fields that differ", id="compare-diff-title")
        yield DataTable(id="compare-diff", cursor_type="none")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load()

    def watch_baseline(self) -> None:
        self.load()

    def watch_metric(self) -> None:
        self.load()

    def watch_dataset(self) -> None:
        self.load()

    def watch_mixed(self) -> None:
        self.load()

    def load(self) -> None:
        self.run_worker_compare(list(self.runs), self.dataset, self.metric, self.baseline, self.mixed)

    @work(thread=True, exclusive=True, group="compare")
    def run_worker_compare(self, runs: list, dataset: str | None, metric: str | None, baseline: int,
                           mixed: bool = False) -> None:
        """Read the runs' results and per-query scores and test every cell (off the UI thread)."""
        datasets: list[str] = []
        try:
            if not runs:
                runs = [load_run(self.app.store.folder(run_id)) for run_id in self.run_ids]
            datasets = sorted({name for run in runs for name in run.results})
            if not datasets:
                raise ValueError("none of these runs has evaluation results yet")
            dataset = dataset if dataset in datasets else datasets[0]
            results = next(run.results[dataset] for run in runs if dataset in run.results)
            metrics = list(results.get("metrics", ["map"]))
            metric = metric if metric in metrics else results.get("primary_metric", metrics[0])
            comparison = compare(runs, dataset, metric, SETTINGS, baseline, with_ci=True, allow_mixed_protocols=mixed)
            self.post_message(ComparisonReady(comparison, runs, datasets, metrics))
        except MixedProtocols as error:
            self.post_message(ComparisonReady(None, runs, datasets, [], str(MixedProtocols(error.problem, "x"))))
        except (ValueError, OSError) as error:
            self.post_message(ComparisonReady(None, runs, datasets, [], str(error)))

    def on_comparison_ready(self, message: ComparisonReady) -> None:
        title = self.query_one("#compare-title", Static)
        self.runs, self.datasets = message.runs, message.datasets
        if message.comparison is None:
            title.update(f"[red]{markup_safe(message.error)}[/]")
            return
        self.comparison = comparison = message.comparison
        self.metrics = message.metrics
        self.set_reactive(CompareScreen.dataset, comparison.dataset)   # what was computed: no new load
        self.set_reactive(CompareScreen.metric, comparison.metric)
        legend = "   ".join(f"[b]{LETTERS[i]}[/b] {markup_safe(run.name)}" +
                           (" [i](baseline)[/i]" if i == self.baseline else "") for i, run in enumerate(comparison.runs))
        title.update(f"[b]{markup_safe(comparison.dataset)}[/b] · {markup_safe(comparison.metric)} · Δ vs "
                     f"{LETTERS[self.baseline]}   [dim]green better · red worse[/]\n{legend}")
        self.query_one("#compare-footnote", Static).update(plain(comparison.footnote))
        columns = [("language", "language")] + [(f"{setting}:{index}", f"{setting} {LETTERS[index]}")
                                                for setting in comparison.settings
                                                for index in range(len(comparison.runs))]
        rows = [(label, [plain(label, "bold" if summary else "")]
                 + [cell_text(cells[(setting, index)]) for setting in comparison.settings
                    for index in range(len(comparison.runs))])
                for label, summary, cells in comparison.rows]
        fill_table(self.query_one("#compare-table", DataTable), columns, rows)
        diff_rows = [(key, [plain(key)] + [plain(value) for value in values]) for key, values in comparison.diff]
        fill_table(self.query_one("#compare-diff", DataTable),
                   [("field", "field")] + [(str(index), LETTERS[index]) for index in range(len(comparison.runs))],
                   diff_rows or [("same", [Text("(identical configurations)")] + [Text("")] * len(comparison.runs))])
        self.call_after_refresh(self._laid_out, comparison)

    def _laid_out(self, comparison: Comparison) -> None:
        self.rendered = comparison

    # --- actions ---------------------------------------------------------------------------------
    def action_next_baseline(self) -> None:
        if self.comparison is not None:
            self.baseline = (self.baseline + 1) % len(self.comparison.runs)

    def action_next_metric(self) -> None:
        if self.metrics:
            self.metric = self.metrics[(self.metrics.index(self.metric) + 1) % len(self.metrics)]

    def action_next_dataset(self) -> None:
        if self.datasets:
            self.dataset = self.datasets[(self.datasets.index(self.dataset) + 1) % len(self.datasets)]

    def action_mixed_protocols(self) -> None:
        self.mixed = not self.mixed

    def action_export(self) -> None:
        if self.comparison is not None:
            self.export(self.comparison)

    def action_save(self) -> None:
        """Keep this comparison in the Reports list (only when asked, or exported: never per key)."""
        if self.comparison is not None:
            self.save(self.comparison)

    @work(thread=True, exclusive=True, group="save", exit_on_error=False)
    def save(self, comparison: Comparison) -> None:
        from engine.parent.report.saved import save_comparison

        saved = save_comparison(self.app.store, [comparison])
        self.app.call_from_thread(self.notify, f"Saved to the Reports list ({saved.name}).", timeout=6)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export(self, shown: Comparison) -> None:
        """Markdown, CSV and LaTeX of the comparison on screen, with 95 % CIs (a bootstrap: off
        the UI thread), under new names: nothing is overwritten."""
        comparison = compare([run for system in shown.runs for run in system.runs], shown.dataset, shown.metric,
                             shown.settings, shown.baseline, shown.test, with_ci=True,
                             allow_mixed_protocols=shown.mixed_protocols is not None)
        folder = Path(self.app.exports_dir)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"compare-{comparison.dataset}-{comparison.metric}-{time.strftime('%Y%m%d-%H%M%S')}"
        number = 1
        while any((folder / f"{stem}{suffix}").exists() for suffix in (".md", ".csv", ".tex")):
            number += 1
            stem = f"{stem.rsplit('~', 1)[0]}~{number}"
        written = []
        for extension, render in (("md", FORMATS["md"]), ("csv", FORMATS["csv"]), ("tex", FORMATS["latex"])):
            path = folder / f"{stem}.{extension}"
            write_atomic(path, render(comparison).encode("utf-8"))
            written.append(path)
        from engine.parent.report.saved import save_comparison

        save_comparison(self.app.store, [comparison])         # an export is kept in the Reports list too
        self.app.call_from_thread(self.notify, "Exported " + markup_safe(", ".join(str(path) for path in written)),
                                  timeout=8)
