"""The Runs screen: every run with status, progress and key metrics, updated live, a grid's
runs grouped (tui.run_groups: the grid, then one row per configuration with the mean ± sd
of its seeds, then the seeds; enter opens a group or a run).

Rows are keyed (run id, `group:…`, `config:…`) and cells change with `update_cell`; only a
new filter, sort order (reactive: `watch_filter_text`, `watch_sort_key`) or an opened group
rebuilds the table. The filter is `RunFilter`, the same rule as `hbt-tui runs --filter`.
Space marks runs (a group's or configuration's: all of them) for comparison.
"""

from __future__ import annotations


from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from engine.contract.errors import UserError
from engine.contract.events import Step
from engine.contract.arms import alpha_text
from engine.contract.layout import SETTINGS
from engine.contract.text import printable
from engine.parent.records import ACTIVE, RunFilter, primary_results, where_label
from engine.parent.tables import plain
from tui.keys import HELP, RUN_ACTIONS, hidden
from tui.messages import RunEventReceived, RunStatusChanged, RunView
from tui.run_groups import Row, build_rows
from tui.screens.confirm import ConfirmScreen
from tui.widgets.cells import (STATUS_ICON, duration, duration_text, mean_sd, number, progress_text, size_text,
                               status_text, when)

# what matters most comes first, so 80 columns show status, name, progress and the three scores
COLUMNS = (("mark", " "), ("status", "status"), ("name", "name"), ("progress", "progress"), ("mono", "mono"),
           ("cross", "cross"), ("multi", "multi"), ("bias", "bias"), ("loss", "loss"), ("seed", "seed"),
           ("created", "created"), ("duration", "duration"), ("strategy", "strategy"), ("alpha", "α"),
           ("where", "where"), ("id", "id"))
WIDTHS = {"mark": 1, "status": 12, "progress": 11, "mono": 11, "cross": 11, "multi": 11, "bias": 10, "loss": 6,
          "seed": 8, "created": 11, "duration": 8, "strategy": 12, "alpha": 4, "where": 12, "id": 40}
NAME_WIDTH = (20, 70)                 # as wide as the longest name shown, within these bounds
SORTS = ("created", "name", "status", "strategy", "seed", "step", "duration", *SETTINGS, "bias")
class DeleteAsked(Message):
    def __init__(self, run_id: str, name: str, size: int) -> None:
        super().__init__()
        self.run_id, self.name, self.size = run_id, name, size


class RunDeleted(Message):
    def __init__(self, run_id: str, error: str | None, done: str = "") -> None:
        super().__init__()
        self.run_id, self.error, self.done = run_id, error, done


class RunsScreen(RunView, Screen):
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("n", "compose", "New"),
        Binding("space", "mark", "Mark"),
        Binding("m", "compare", "Compare"),
        *RUN_ACTIONS,
        hidden("d", "delete", "Delete"),
        hidden("s", "sort", "Sort"),
        Binding("slash", "filter", "Filter"),
        Binding("R", "app.reports", "Reports"),
        HELP,
    ]

    REFRESH_SECONDS = 0.1  # step updates are batched: at most 10 table refreshes a second
    filter_text: reactive[str] = reactive("", init=False)
    sort_key: reactive[str] = reactive("created", init=False)

    def __init__(self) -> None:
        super().__init__()
        self.marked: list[str] = []
        self.pending_steps: dict[str, float] = {}   # run id -> emission time of its newest step
        self.cells_updated = None                   # optional hook(run_id, event_time), for benchmarks
        self.__init_rows()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="runs-bar"):
            yield Input(placeholder="filter: text, status:failed, strategy:hybrid (/ to focus)", id="runs-filter")
            yield Static("", id="runs-count")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def __init_rows(self) -> None:
        self.expanded: set[str] = set()
        self.name_width = 0
        self.rows: list[Row] = []
        self.row_of: dict[str, Row] = {}

    def on_mount(self) -> None:
        self.rebuild()
        self.query_one("#runs-table", DataTable).focus()
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
        reverse = self.sort_key in ("created", *SETTINGS, "duration", "step")
        return sorted(runs, key=lambda run: self._sort_value(run), reverse=reverse)

    def _sort_value(self, run: dict):
        if self.sort_key in (*SETTINGS, "bias"):
            results = primary_results(run)[1]
            value = results.get("bias") if self.sort_key == "bias" else results.get("macro", {}).get(self.sort_key)
            return value if value is not None else (-1 if self.sort_key != "bias" else 1e12)
        if self.sort_key == "duration":
            return duration(run) or 0.0
        value = run.get(self.sort_key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value or "")

    FIRST_ROWS = 48    # a tall terminal's worth; the rest follow after the first frame
    CHUNK_ROWS = 300

    def rebuild(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        cursor = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value if table.row_count else None
        runs = self.visible_runs()
        self.rows = build_rows(runs, self.expanded)
        self.row_of = {row.key: row for row in self.rows}
        width = min(max([NAME_WIDTH[0]] + [len(printable(row.name)) + 2 * row.depth + 2 for row in self.rows]),
                    NAME_WIDTH[1])
        if width != self.name_width or not table.columns:
            table.clear(columns=True)
            self.name_width = width
            for key, label in COLUMNS:
                table.add_column(label, key=key, width=width if key == "name" else WIDTHS[key])
        else:
            table.clear()
        self.generation = getattr(self, "generation", 0) + 1
        self._add_rows(self.rows, 0, self.FIRST_ROWS, self.generation)
        if cursor is not None and cursor in table.rows:
            table.move_cursor(row=table.get_row_index(cursor))
        total = len(self.app.store.all()) if self.filter_text else len(runs)
        grids = sum(row.kind == "group" for row in self.rows)
        self.query_one("#runs-count", Static).update(
            plain(f" {len(runs)}/{total} runs" + (f" · {grids} grid{'s' if grids != 1 else ''}" if grids else "")
                  + f" · sort: {self.sort_key}"))
        self.query_one("#runs-filter", Input).placeholder = (
            "filter: text, status:failed, strategy:hybrid, seed:2 (/ to focus)" if total else
            "no runs yet: press n to compose one (or `hbt-tui --run SPEC` in a shell)")

    def _add_rows(self, rows: list[Row], start: int, count: int, generation: int) -> None:
        """Add rows[start:start+count], then schedule the next chunk (a newer rebuild wins)."""
        if generation != self.generation:
            return
        table = self.query_one("#runs-table", DataTable)
        for row in rows[start:start + count]:
            if row.key not in table.rows:
                table.add_row(*self.cells(row), key=row.key)
        if start + count < len(rows):
            self.call_after_refresh(self._add_rows, rows, start + count, self.CHUNK_ROWS, generation)

    def cells(self, row: Row) -> list:
        if row.kind == "run":
            return self.run_cells(row.run, row.depth)
        counts = row.status_counts()
        status = " ".join(f"{STATUS_ICON.get(name, '?')}{count}" for name, count in sorted(counts.items()))
        scores = row.scores()
        opened = row.key in self.expanded
        label = f"{'  ' * row.depth}{'▾' if opened else '▸'} {row.name}"
        seeds = f"{len(row.runs)} seeds" if row.kind == "config" else f"{row.children} cfg"
        created = min((run.get("created") or 0 for run in row.runs), default=None)
        strategies = sorted({str(run.get("strategy") or "") for run in row.runs})
        marked = all(run["id"] in self.marked for run in row.runs)
        return [Text("●" if marked else " ", style="bold cyan"), plain(status), plain(label, "bold"),
                plain(f"{len(row.runs)} runs", "dim"), *(mean_sd(scores[setting]) for setting in SETTINGS),
                mean_sd(scores["bias"], 1), Text(""), plain(seeds, "dim"), when(created),
                duration_text(sum(duration(run) or 0 for run in row.runs) or None),
                plain(strategies[0] if len(strategies) == 1 else f"{len(strategies)} kinds"), Text(""), Text(""),
                plain(row.key, "dim")]

    def run_cells(self, run: dict, depth: int = 0) -> list:
        live = self.app.live.get(run["id"])
        _, results = primary_results(run)
        macro = results.get("macro", {})
        step = live.step if live and run.get("status") == "running" else run.get("step")
        total = (live.total_steps if live and live.total_steps is not None else None) or run.get("total_steps")
        loss = live.loss if live and live.loss is not None else run.get("loss")
        alpha = alpha_text(run.get("strategy"), run.get("alpha"))
        scores = [number(macro.get(setting)) for setting in SETTINGS]
        evaluated_at = results.get("step")
        if macro and run.get("status") != "finished" and evaluated_at is not None and evaluated_at != total:
            scores = [Text.assemble(score, (f" @{evaluated_at}", "dim")) for score in scores]   # not the final scores
        seed = run.get("seed")
        return [Text("●" if run["id"] in self.marked else " ", style="bold cyan"), status_text(run.get("status", "?")),
                plain(f"{'  ' * depth}{run.get('name', '')}"), progress_text(step, total), *scores,
                number(results.get("bias"), 1), number(loss), plain("" if seed is None else seed),
                when(run.get("created")), duration_text(duration(run)), plain(run.get("strategy") or ""),
                plain(alpha), plain(where_label(run)), plain(run["id"], "dim")]

    def refresh_row(self, run_id: str) -> None:
        summary = self.app.store.get(run_id)
        if summary is None:
            return
        if not any(run["id"] == run_id for row in self.rows for run in row.runs):
            self.rebuild()
            return
        self.update_cells(summary)

    def update_cells(self, summary: dict) -> None:
        """Change only the cells that differ: the run's row (if shown) and the group and
        configuration rows it belongs to."""
        try:
            table = self.query_one("#runs-table", DataTable)
        except NoMatches:           # a status that arrives while the screen is being taken down
            return
        for row in self.rows:
            if not any(run["id"] == summary["id"] for run in row.runs):
                continue
            row.runs = [summary if run["id"] == summary["id"] else run for run in row.runs]
            if row.key not in table.rows:
                continue
            for (key, _), value in zip(COLUMNS, self.cells(row)):
                if table.get_cell(row.key, key) != value:
                    table.update_cell(row.key, key, value)

    # --- live updates (called by the app) --------------------------------------------------------
    def run_event(self, message: RunEventReceived) -> None:
        if isinstance(message.event, Step):
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
            runs = self.visible_runs()
            if {run["id"] for run in runs} != {run["id"] for row in self.rows for run in row.runs}:
                self.rebuild()
            else:
                for run in runs:
                    self.update_cells(run)
        self.check_missing()

    def check_missing(self) -> None:
        """Runs whose folder vanished behind our back show as missing (never a crash)."""
        table = self.query_one("#runs-table", DataTable)
        present = self.app.store.folder_names()
        for row in self.rows:
            if row.kind == "run" and row.key in table.rows and row.key not in present:
                table.update_cell(row.key, "status", status_text("missing"))

    # --- actions ----------------------------------------------------------------------------------
    def current_row(self) -> Row | None:
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        return self.row_of.get(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def current_id(self) -> str | None:
        """The run under the cursor (None on a group or configuration row)."""
        row = self.current_row()
        return row.key if row is not None and row.kind == "run" else None

    @on(DataTable.RowSelected, "#runs-table")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """A run opens; a grid or a configuration opens (or closes) in place."""
        row = self.current_row()
        if row is None:
            return
        if row.kind == "run":
            self.app.open_run(row.key)
            return
        self.expanded.symmetric_difference_update({row.key})
        self.rebuild()

    def action_compose(self) -> None:
        self.app.action_compose()

    def action_mark(self) -> None:
        row = self.current_row()
        if row is None:
            return
        ids = [run["id"] for run in row.runs]
        if all(run_id in self.marked for run_id in ids):
            self.marked = [run_id for run_id in self.marked if run_id not in ids]
        else:
            self.marked += [run_id for run_id in ids if run_id not in self.marked]
        for run_id in ids:
            self.refresh_row(run_id)
        self.query_one("#runs-table", DataTable).action_cursor_down()

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
            self.notify(f"{run_id} is {summary['status']}: cancel it first.", severity="warning")
            return
        self.measure(run_id, summary.get("name") or run_id)

    @work(thread=True, exclusive=True, group="delete", exit_on_error=False)
    def measure(self, run_id: str, name: str) -> None:
        """The folder's size first (a big run takes a while to walk), then the question."""
        from engine.parent.run_service import folder_bytes

        size = folder_bytes(self.app.store, run_id)
        self.post_message(DeleteAsked(run_id, name, size))

    def on_delete_asked(self, message: DeleteAsked) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self.delete(message.run_id)

        self.app.push_screen(ConfirmScreen(f"Delete run {message.name} and its folder ({size_text(message.size)})?\n"
                                           f"{message.run_id}"), confirmed)

    @work(thread=True, exclusive=True, group="delete", exit_on_error=False)
    def delete(self, run_id: str) -> None:
        """Off the UI thread: removing gigabytes takes seconds; the screen stays live meanwhile."""
        try:
            done = self.app.service.delete(run_id)
        except UserError as error:
            self.post_message(RunDeleted(run_id, str(error)))
            return
        self.post_message(RunDeleted(run_id, None, done))

    def on_run_deleted(self, message: RunDeleted) -> None:
        if message.error:
            self.notify(message.error, severity="error")
            return
        if message.run_id in self.marked:
            self.marked.remove(message.run_id)
        self.rebuild()
        self.notify(message.done[0].upper() + message.done[1:] + ".")

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

