"""Past reports and comparisons: the list (what was compared, when, the headline delta), and one
of them opened again — its tables and verdict (report.md) beside the α sweep and the
per-language deltas drawn in the terminal (plotext). Files are read in a thread worker."""

from __future__ import annotations

import json
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Markdown, Static

from engine.contract.layout import REPORT_DATA_FILE, REPORT_FILE, SETTING_NAMES, report_folder
from engine.contract.text import printable
from engine.parent.tables import plain
from tui.keys import BACK, HELP
from tui.messages import ReportLoaded



def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def narrow_tables(markdown: str, width: int) -> str:
    """`markdown` with every table wider than `width` columns written as one bullet per row
    (`**header** value · …`, empty cells left out): Textual's Markdown squeezes a wide table
    into columns of "…" cells, a list wraps and stays readable."""
    lines, out, index = markdown.splitlines(), [], 0
    while index < len(lines):
        line = lines[index]
        if not line.lstrip().startswith("|") or index + 1 >= len(lines) or not set(lines[index + 1].strip()) <= set("|-: "):
            out.append(line)
            index += 1
            continue
        end = index + 2
        while end < len(lines) and lines[end].lstrip().startswith("|"):
            end += 1
        header, body = _cells(line), [_cells(row) for row in lines[index + 2:end]]
        natural = sum(max([len(header[column])] + [len(row[column]) for row in body if column < len(row)]) + 3
                      for column in range(len(header)))
        if natural <= width:
            out.extend(lines[index:end])
        else:
            out.extend("- " + " · ".join(f"**{name}** {value}" if name else value
                                         for name, value in zip(header, row) if value) for row in body)
        index = end
    return "\n".join(out)


class ReportsScreen(Screen):
    BINDINGS = [BACK, Binding("enter", "open", "Open"),
                Binding("d", "delete", "Delete"), HELP]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="reports-title")
        yield DataTable(id="reports-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.index_stamp = None
        self.refresh_list()
        self.set_interval(2.0, self.follow_index)
        self.query_one("#reports-table", DataTable).focus()

    def on_screen_resume(self) -> None:
        self.refresh_list()

    def on_resize(self) -> None:      # the columns fit the new width
        self.refresh_list()

    def follow_index(self) -> None:
        """Reports another process saves (a `hbt-tui report` in another shell) appear."""
        if self.app.store.stamp() != self.index_stamp:
            self.refresh_list()

    def refresh_list(self) -> None:
        """The saved reports, newest first; columns as wide as what they hold (nothing cut)."""
        from tui.screens.compare import fill_table

        self.index_stamp = self.app.store.stamp()
        table = self.query_one("#reports-table", DataTable)
        current = self.current_id()
        records = self.app.store.reports()
        rows = [(record["id"], [plain(time.strftime("%Y-%m-%d %H:%M", time.localtime(record.get("created", 0)))),
                                plain(record.get("kind", "")), plain(record.get("title", "")),
                                plain(record.get("headline") or "", "bold")]) for record in records]
        fill_table(table, [("when", "when"), ("kind", "kind"), ("title", "what"), ("headline", "headline")], rows,
                   fit_width=self.app.size.width)
        if current is not None and current in {record["id"] for record in records}:
            table.move_cursor(row=table.get_row_index(current))
        self.query_one("#reports-title", Static).update(
            f" {len(records)} saved reports and comparisons · enter opens one · d deletes one · "
            "`hbt-tui report` makes one")

    def current_id(self) -> str | None:
        table = self.query_one("#reports-table", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    @on(DataTable.RowSelected, "#reports-table")
    def selected(self, event: DataTable.RowSelected) -> None:
        self.app.push_screen(ReportScreen(str(event.row_key.value)))

    def action_open(self) -> None:
        report_id = self.current_id()
        if report_id:
            self.app.push_screen(ReportScreen(report_id))

    def action_delete(self) -> None:
        from tui.screens.confirm import ConfirmScreen

        report_id = self.current_id()
        if report_id is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.store.remove_report(report_id)
                self.refresh_list()
                self.notify(f"Deleted the saved {report_id}.")

        self.app.push_screen(ConfirmScreen(f"Delete the saved report {report_id}?\n(its runs are kept)"), confirmed)


class ReportScreen(Screen):
    BINDINGS = [BACK, Binding("t", "next_dataset", "Dataset"),
                HELP]

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
            with VerticalScroll(id="report-text", can_focus=True):      # keys and the wheel scroll it
                yield Markdown("loading …", id="report-markdown")
            with Vertical(id="report-plots"):    # titles as labels: plotext drops a title wider than its plot
                yield Static("", id="report-sweep-title", classes="plot-title")
                yield PlotextPlot(id="report-sweep")
                yield Static("", id="report-gains-title", classes="plot-title")
                yield PlotextPlot(id="report-gains")
        yield Footer(compact=True)

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
        self.text = message.text
        self.dataset = next(iter(message.data["datasets"]), None)
        await self.show_text()
        self.query_one("#report-text").focus()
        self.draw()

    async def show_text(self) -> None:
        pane = self.query_one("#report-text")
        self.shown_width = pane.size.width
        await self.query_one("#report-markdown", Markdown).update(
            printable(narrow_tables(self.text, max(20, self.shown_width - 4)), newlines=True))

    async def on_resize(self) -> None:
        if getattr(self, "text", None) is not None and self.query_one("#report-text").size.width != self.shown_width:
            await self.show_text()

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
        self.query_one("#report-sweep-title").display = sweep.display
        sweep.refresh()
        gains.refresh()
        self.drawn = True

    def draw_sweep(self, plot) -> bool:
        from engine.parent.report.figures import alpha_points

        section = self.data["datasets"][self.dataset]
        metric = section["metrics"][0]
        drawn = False
        legend = []
        for setting, marker, colour, sign in zip(section["tables"][metric], ("dot", "hd", "braille"),
                                                 ("cyan", "orange", "magenta"), ("•", "▞", "⣿")):
            points = alpha_points(self.data, section, metric, setting)
            if len(points) >= 2:       # the legend goes in the title: plotext's box would cover the lines
                plot.plt.plot([p[0] for p in points], [p[1] for p in points], marker=marker, color=colour)
                legend.append(f"{sign} {setting}")
                drawn = True
        self.title_of("sweep", f"{self.dataset} · {metric} against α (0 = X-Y, 1 = X-X): {'  '.join(legend)}")
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
        self.title_of("gains", f"{self.data['reference']} minus {baseline}, {SETTING_NAMES[setting]} {metric} "
                               "(* significant)")

    def draw_comparison(self, plot) -> None:
        section = self.data["datasets"][self.dataset]
        deltas = section["deltas"]
        setting = "multi" if "multi" in deltas else next(iter(deltas), None)
        if setting is None:
            return
        system, values = next(iter(deltas[setting].items()))
        plot.plt.bar([printable(f"{language}{'*' if cell['significant'] else ''}") for language, cell in values.items()],
                     [cell["delta"] for cell in values.values()])
        self.title_of("gains", f"{system} minus {section['baseline']}, {SETTING_NAMES[setting]} {section['metric']} "
                               "(* significant)")

    def title_of(self, plot: str, text: str) -> None:
        self.query_one(f"#report-{plot}-title", Static).update(plain(text, "bold"))
