"""The Runs screen: every run with status, progress and key metrics, updated live.

Rows are keyed by run id and cells change with `update_cell`; only a new filter or sort
order (reactive: `watch_filter_text`, `watch_sort_key`) rebuilds the table. The filter is
`RunFilter`, the same rule as `hbt-tui runs --filter`. Space marks runs for comparison.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from engine.contract.errors import UserError
from engine.parent.records import ACTIVE, RunFilter, primary_results, where_label
from engine.parent.tables import markup_safe, plain
from tui.messages import RunEventReceived, RunStatusChanged, RunView
from tui.screens.confirm import ConfirmScreen
from tui.widgets.cells import number

# what matters most comes first, so 80 columns show status, progress and the three scores
COLUMNS = (("mark", " ", 1), ("status", "status", 11), ("name", "name", 20), ("progress", "progress", 12),
           ("mono", "mono", 5), ("cross", "cross", 5), ("multi", "multi", 5), ("bias", "bias", 5),
           ("loss", "loss", 6), ("strategy", "strategy", 12), ("alpha", "α", 4), ("where", "where", 12),
           ("id", "id", 40))
SORTS = ("created", "name", "status", "strategy", "mono", "cross", "multi", "bias")
STATUS_STYLE = {"queued": "cyan", "running": "bold yellow", "finished": "green", "failed": "bold red",
                "cancelled": "magenta", "interrupted": "dark_orange", "missing": "dim red"}
STATUS_ICON = {"queued": "◌", "running": "▶", "finished": "✔", "failed": "✘", "cancelled": "■",
               "interrupted": "⏸", "missing": "?"}


def status_text(status: str) -> Text:
    return plain(f"{STATUS_ICON.get(status, ' ')} {status}", STATUS_STYLE.get(status, ""))


def progress_text(step: int | None, total: int | None) -> Text:
    if not total:
        return Text(f"{step or 0}/?", style="dim")
    filled = int(round(min(1.0, (step or 0) / total) * 4))
    text = Text()
    text.append("━" * filled, style="green")
    text.append("━" * (4 - filled), style="grey37")
    text.append(f" {step or 0}/{total}")
    return text


class RunsScreen(RunView, Screen):
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("n", "compose", "New"),
        Binding("space", "mark", "Mark"),
        Binding("m", "compare", "Compare"),
        Binding("c", "cancel", "Cancel"),
        Binding("r", "resume", "Resume"),
        Binding("d", "delete", "Delete"),
        Binding("s", "sort", "Sort"),
        Binding("slash", "filter", "Filter"),
        Binding("R", "app.reports", "Reports"),
        Binding("question_mark", "app.help", "Help"),
    ]

    REFRESH_SECONDS = 0.1  # step updates are batched: at most 10 table refreshes a second
    filter_text: reactive[str] = reactive("", init=False)
    sort_key: reactive[str] = reactive("created", init=False)

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[str] = []
        self.pending_steps: dict[str, float] = {}   # run id -> emission time of its newest step
        self.cells_updated = None                   # optional hook(run_id, event_time), for benchmarks

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="runs-bar"):
            yield Input(placeholder="filter: text, status:failed, strategy:hybrid (/ to focus)", id="runs-filter")
            yield Static("", id="runs-count")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        self.rebuild()
        table.focus()
        self.index_stamp = self.app.store.stamp()
        self.set_interval(2.0, self.follow_index)
        self.set_interval(self.REFRESH_SECONDS, self.flush_steps)

    # --- building the table -------------------------------------------------------------------
    def watch_filter_text(self) -> None:
        self.rebuild()

    def watch_sort_key(self) -> None:
        self.rebuild()

    def visible_runs(self) -> list[dict]:
        run_filter = RunFilter.parse(self.filter_text)
        runs = [run for run in self.app.store.all() if run_filter.matches(run)]
        reverse = self.sort_key in ("created", "mono", "cross", "multi")
        return sorted(runs, key=lambda run: self._sort_value(run), reverse=reverse)

    def _sort_value(self, run: dict):
        if self.sort_key in ("mono", "cross", "multi", "bias"):
            results = primary_results(run)[1]
            value = results.get("bias") if self.sort_key == "bias" else results.get("macro", {}).get(self.sort_key)
            return value if value is not None else (-1 if self.sort_key != "bias" else 1e12)
        return run.get(self.sort_key) or ""

    FIRST_ROWS = 48    # a tall terminal's worth; the rest follow after the first frame
    CHUNK_ROWS = 300

    def rebuild(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        cursor = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value if table.row_count else None
        table.clear()
        runs = self.visible_runs()
        self.generation = getattr(self, "generation", 0) + 1
        self._add_rows(runs, 0, self.FIRST_ROWS, self.generation)
        if cursor is not None and cursor in table.rows:
            table.move_cursor(row=table.get_row_index(cursor))
        total = len(self.app.store.all()) if self.filter_text else len(runs)
        self.query_one("#runs-count", Static).update(f" {len(runs)}/{total} runs · sort: {self.sort_key}")

    def _add_rows(self, runs: list[dict], start: int, count: int, generation: int) -> None:
        """Add runs[start:start+count], then schedule the next chunk (a newer rebuild wins)."""
        if generation != self.generation:
            return
        table = self.query_one("#runs-table", DataTable)
        for run in runs[start:start + count]:
            if run["id"] not in table.rows:
                table.add_row(*self.cells(run), key=run["id"])
        if start + count < len(runs):
            self.call_after_refresh(self._add_rows, runs, start + count, self.CHUNK_ROWS, generation)

    def cells(self, run: dict) -> list:
        live = self.app.live.get(run["id"])
        _, results = primary_results(run)
        macro = results.get("macro", {})
        step = live.step if live and run.get("status") == "running" else run.get("step")
        total = (live.total_steps if live and live.total_steps is not None else None) or run.get("total_steps")
        loss = live.loss if live and live.loss is not None else run.get("loss")
        alpha = f"{run['alpha']:g}" if run.get("strategy") == "hybrid" and run.get("alpha") is not None else ""
        return [Text("●" if run["id"] in self.marked else " ", style="bold cyan"), status_text(run.get("status", "?")),
                plain(run.get("name", "")), progress_text(step, total), number(macro.get("mono")),
                number(macro.get("cross")), number(macro.get("multi")), number(results.get("bias"), 1), number(loss),
                plain(run.get("strategy") or ""), plain(alpha), plain(where_label(run)), plain(run["id"], "dim")]

    def refresh_row(self, run_id: str) -> None:
        table = self.query_one("#runs-table", DataTable)
        summary = self.app.store.get(run_id)
        if summary is None:
            return
        if run_id not in table.rows:
            self.rebuild()
            return
        self.update_cells(summary)

    def update_cells(self, summary: dict) -> None:
        """Change only the cells of this run that differ from its summary."""
        table = self.query_one("#runs-table", DataTable)
        for (key, _, _), value in zip(COLUMNS, self.cells(summary)):
            if table.get_cell(summary["id"], key) != value:
                table.update_cell(summary["id"], key, value)

    # --- live updates (called by the app) --------------------------------------------------------
    def run_event(self, message: RunEventReceived) -> None:
        if message.event.kind == "step":
            self.pending_steps[message.run_id] = message.event.time

    def flush_steps(self) -> None:
        """Show the newest progress and loss of every run that stepped since the last flush."""
        if not self.pending_steps:
            return
        table = self.query_one("#runs-table", DataTable)
        pending, self.pending_steps = self.pending_steps, {}
        for run_id, event_time in pending.items():
            live = self.app.live.get(run_id)
            if run_id not in table.rows or live is None:
                continue
            table.update_cell(run_id, "progress", progress_text(live.step, live.total_steps))
            table.update_cell(run_id, "loss", number(live.loss))
            if self.cells_updated is not None:
                self.cells_updated(run_id, event_time)

    def run_status(self, message: RunStatusChanged) -> None:
        self.refresh_row(message.run_id)

    def runs_rebuilt(self) -> None:
        self.rebuild()

    def follow_index(self) -> None:
        """What other processes did on this runs directory (another TUI, a `--run`, a `cancel`):
        new runs appear, changed ones update; and a run whose folder vanished shows as missing."""
        stamp = self.app.store.stamp()
        if stamp != self.index_stamp:
            self.index_stamp = stamp
            table = self.query_one("#runs-table", DataTable)
            runs = self.visible_runs()
            if {run["id"] for run in runs} != {str(key.value) for key in table.rows}:
                self.rebuild()
            else:
                for run in runs:
                    self.update_cells(run)
        self.check_missing()

    def check_missing(self) -> None:
        """Runs whose folder vanished behind our back show as missing (never a crash)."""
        table = self.query_one("#runs-table", DataTable)
        present = self.app.store.folder_names()
        for run_id in list(table.rows):
            if str(run_id.value) not in present:
                table.update_cell(run_id, "status", status_text("missing"))

    # --- actions ----------------------------------------------------------------------------------
    def current_id(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(DataTable.RowSelected, "#runs-table")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        run_id = self.current_id()
        if run_id:
            self.app.open_run(run_id)

    def action_compose(self) -> None:
        self.app.action_compose()

    def action_mark(self) -> None:
        run_id = self.current_id()
        if run_id is None:
            return
        if run_id in self.marked:
            self.marked.remove(run_id)
        else:
            self.marked.append(run_id)
        self.refresh_row(run_id)
        table = self.query_one("#runs-table", DataTable)
        table.action_cursor_down()

    def action_compare(self) -> None:
        chosen = list(self.marked)
        if len(chosen) < 2:
            self.notify("Mark two or more runs with space, then press m.", severity="warning")
            return
        self.app.open_compare(chosen)

    def action_cancel(self) -> None:
        run_id = self.current_id()
        if run_id:
            self.app.cancel_run(run_id)

    def action_resume(self) -> None:
        run_id = self.current_id()
        if run_id:
            self.app.resume_run(run_id)

    def action_delete(self) -> None:
        run_id = self.current_id()
        summary = self.app.store.get(run_id) if run_id else None
        if summary is None:
            return
        if summary.get("status") in ACTIVE:
            self.notify(f"{run_id} is {markup_safe(summary['status'])}: cancel it first.", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                from engine.parent.run_service import delete_run

                try:
                    done = delete_run(self.app.store, run_id)
                except UserError as error:
                    self.notify(str(error), severity="error")
                    return
                if run_id in self.marked:
                    self.marked.remove(run_id)
                self.rebuild()
                self.notify(done[0].upper() + done[1:] + ".")

        self.app.push_screen(ConfirmScreen(f"Delete run {summary.get('name')} and its folder?\n{run_id}"), confirmed)

    def action_sort(self) -> None:
        self.sort_key = SORTS[(SORTS.index(self.sort_key) + 1) % len(SORTS)]

    def action_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    @on(Input.Changed, "#runs-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    @on(Input.Submitted, "#runs-filter")
    def filter_done(self) -> None:
        self.query_one("#runs-table", DataTable).focus()

