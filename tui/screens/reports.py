"""Past reports and comparisons: the list (what was compared, when, the headline delta), and one
of them opened again — its tables and verdict (report.md) beside the α sweep and the
per-language deltas drawn in the terminal (plotext). Files are read in a thread worker."""

from __future__ import annotations

import json
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Markdown, Static

from engine.contract.layout import REPORT_DATA_FILE, REPORT_FILE, report_folder
from engine.contract.text import printable
from engine.parent.tables import plain
from tui.messages import ReportLoaded

SETTING_NAMES = {"mono": "monolingual", "cross": "cross-lingual", "multi": "multilingual"}


class ReportsScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("enter", "open", "Open"),
                Binding("question_mark", "app.help", "Help")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="reports-title")
        yield DataTable(id="reports-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#reports-table", DataTable)
        for key, label, width in (("when", "when", 16), ("kind", "kind", 7), ("title", "what", 48),
                                  ("headline", "headline", 60)):
            table.add_column(label, key=key, width=width)
        records = self.app.store.reports()
        for record in records:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.get("created", 0)))
            table.add_row(when, plain(record.get("kind", "")), plain(record.get("title", "")),
                          plain(record.get("headline") or "", "bold"), key=record["id"])
        self.query_one("#reports-title", Static).update(
            f" {len(records)} saved reports and comparisons · enter opens one · `hbt-tui report` makes one")
        table.focus()

    @on(DataTable.RowSelected, "#reports-table")
    def selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(ReportScreen(str(event.row_key.value)))

    def action_open(self) -> None:
        table = self.query_one("#reports-table", DataTable)
        if table.row_count:
            self.app.push_screen(ReportScreen(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)))


class ReportScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("t", "next_dataset", "Dataset"),
                Binding("question_mark", "app.help", "Help")]

    def __init__(self, report_id: str) -> None:
        super().__init__()
        self.report_id = report_id
        self.data: dict | None = None
        self.dataset: str | None = None
        self.drawn = False                 # the plots hold the loaded data (for tests and snapshots)

    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot

        yield Header()
        with Horizontal(id="report-body"):
            yield Markdown("loading …", id="report-text")
            with Vertical(id="report-plots"):
                yield PlotextPlot(id="report-sweep")
                yield PlotextPlot(id="report-gains")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="report")
    def load(self) -> None:
        folder = report_folder(self.app.store.runs_dir, self.report_id)
        text = (folder / REPORT_FILE).read_text(encoding="utf-8")
        data = json.loads((folder / REPORT_DATA_FILE).read_text(encoding="utf-8"))
        self.post_message(ReportLoaded(self.report_id, text, data))

    async def on_report_loaded(self, message: ReportLoaded) -> None:
        self.data = message.data
        self.dataset = next(iter(message.data["datasets"]), None)
        await self.query_one("#report-text", Markdown).update(printable(message.text, newlines=True))
        self.draw()

    def action_next_dataset(self) -> None:
        if self.data and self.dataset:
            datasets = list(self.data["datasets"])
            self.dataset = datasets[(datasets.index(self.dataset) + 1) % len(datasets)]
            self.draw()

    def draw(self) -> None:
        sweep, gains = self.query_one("#report-sweep"), self.query_one("#report-gains")
        for plot in (sweep, gains):
            plot.plt.clear_figure()
        if self.data.get("kind") == "compare":
            self.draw_comparison(gains)
            sweep.display = False
        else:
            sweep.display = self.draw_sweep(sweep)
            self.draw_gains(gains)
        sweep.refresh()
        gains.refresh()
        self.drawn = True

    def draw_sweep(self, plot) -> bool:
        from engine.parent.report.figures import alpha_points

        section = self.data["datasets"][self.dataset]
        metric = section["metrics"][0]
        drawn = False
        for setting, marker in zip(section["tables"][metric], ("dot", "hd", "braille")):
            points = alpha_points(self.data, section, metric, setting)
            if len(points) >= 2:
                plot.plt.plot([p[0] for p in points], [p[1] for p in points], label=SETTING_NAMES[setting],
                              marker=marker)
                drawn = True
        plot.plt.title(printable(f"{self.dataset} · {metric} against α (0 = X-Y, 1 = X-X)"))
        plot.plt.xlabel("α")
        return drawn

    def draw_gains(self, plot) -> None:
        from engine.parent.report.figures import language_gains

        section = self.data["datasets"][self.dataset]
        metric = section["metrics"][0]
        setting = "multi" if "multi" in section["tables"][metric] else next(iter(section["tables"][metric]))
        gains = language_gains(self.data, section, metric, setting)
        baseline = next((name for name in gains if name.startswith("X-X")), next(iter(gains), None))
        if baseline is None:
            return
        values = gains[baseline]
        plot.plt.bar([printable(f"{language}{'*' if significant else ''}") for language, _, significant in values],
                     [gain for _, gain, _ in values])
        plot.plt.title(printable(f"{self.data['reference']} minus {baseline}, {SETTING_NAMES[setting]} {metric} "
                                 "(* significant)"))

    def draw_comparison(self, plot) -> None:
        section = self.data["datasets"][self.dataset]
        deltas = section["deltas"]
        setting = "multi" if "multi" in deltas else next(iter(deltas), None)
        if setting is None:
            return
        system, values = next(iter(deltas[setting].items()))
        plot.plt.bar([printable(f"{language}{'*' if cell['significant'] else ''}") for language, cell in values.items()],
                     [cell["delta"] for cell in values.values()])
        plot.plt.title(printable(f"{system} minus {section['baseline']}, {SETTING_NAMES[setting]} {section['metric']} "
                                 "(* significant)"))
