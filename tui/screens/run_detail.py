"""One run, as a tracker shows it: the per-language table filling cell by cell as eval events
arrive (or, with `v`, each cell's Δ against an earlier evaluation, tested), the evaluation
history, samples/s and ETA, the loss curve, the event log or the run's configuration (`k`),
and the stderr tail when the run failed.

The metric and dataset shown are reactive (`watch_metric`, `watch_dataset` redraw the
table). A dataset's results.json is read in a thread worker, when the screen opens and when
that dataset's evaluation is done (`eval_done`), never on the UI thread."""

from __future__ import annotations

import json

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from engine.contract import catalog
from engine.contract.events import Eval, EvalDone, EvalProgress, Notice, Started, Step
from engine.contract.arms import alpha_text
from engine.contract.layout import SETTINGS, read_json
from engine.contract.text import printable
from engine.parent.records import where_label
from engine.parent.run_state import EvalCells
from engine.parent.tables import markup_safe, plain
from tui.keys import BACK, HELP, RUN_ACTIONS
from tui.messages import ResultsLoaded, RunEventReceived, RunStatusChanged, RunView
from tui.widgets.cells import size_text, status_text
from tui.widgets.language_table import LanguageTable
from tui.widgets.tail_log import TailLog


def table_layout(spec: dict, dataset: str, results: dict | None, cells: EvalCells) -> tuple[list[str], dict]:
    """Languages and groups of a dataset's table, known before any result arrives."""
    evaluation = spec.get("eval", {})
    if results:
        languages = list(results["languages"])
    elif evaluation.get("languages"):
        languages = list(evaluation["languages"])
    elif dataset in catalog.LAREQA_DATASETS:
        languages = list(catalog.LAREQA_DATASETS[dataset])
    else:
        languages = sorted(cells.settings)
    if results and results.get("groups"):
        groups = {name: group.get("languages", []) for name, group in results["groups"].items()}
    else:
        groups = catalog.groups_for(languages, evaluation.get("groups"))
    return languages, {name: list(members) for name, members in groups.items() if members}


def cells_from_results(results: dict) -> EvalCells:
    cells = EvalCells(step=results.get("step", 0), done=True, macro=results.get("macro", {}),
                      groups=results.get("groups", {}), overall_bias=results.get("bias"))
    for language, row in results.get("per_language", {}).items():
        cells.settings[language] = dict(row.get("settings", {}))
        cells.bias[language] = row.get("bias")
    return cells


class FolderMeasured(Message):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size


class VersusReady(Message):
    """This run's latest evaluation compared with an earlier one, ready to show."""

    def __init__(self, comparison, step: int) -> None:
        super().__init__()
        self.comparison = comparison
        self.step = step


class RunDetailScreen(RunView, Screen):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (130, "-wide")]   # below 130 columns the log spans the width
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]        # and on a short terminal it keeps 4 lines
    BINDINGS = [
        BACK,
        Binding("m", "next_metric", "Metric"),
        Binding("t", "next_dataset", "Dataset"),
        Binding("v", "next_versus", "Δ vs step"),
        Binding("k", "config", "Config"),
        *RUN_ACTIONS,
        HELP,
    ]

    metric: reactive[str] = reactive("map", init=False)
    dataset: reactive[str | None] = reactive(None, init=False)
    versus: reactive[int | None] = reactive(None, init=False)      # the earlier evaluation step Δ is against

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.folder = None
        self.spec: dict = {}
        self.datasets: list[str] = []
        self.metrics: list[str] = ["map"]
        self.results: dict[str, dict | None] = {}      # dataset -> results.json, as last read
        self.log_length = 0
        self.table_key: tuple[str | None, int] | None = None
        self.steps_pending = False
        self.folder_size: int | None = None      # bytes on disk, measured off the UI thread

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="detail-header")
        from tui.widgets.loss_chart import LossChart

        with Grid(id="detail-body"):   # wide: table | chart over log; narrow: table | chart, log below both
            with Vertical(id="detail-left"):
                yield Static("", id="detail-table-title")
                yield LanguageTable(id="detail-table")
                yield Static("", id="detail-eval-progress")
                yield Static("", id="detail-history")
            with Vertical(id="detail-chart"):
                yield Static("loss", id="detail-loss-title")
                yield LossChart(id="detail-loss")
            with Vertical(id="detail-side"):
                yield TailLog(id="detail-log", max_lines=300)
                yield Static("", id="detail-config")
        yield Static("", id="detail-stderr")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        summary = self.app.store.get(self.run_id) or {"id": self.run_id, "name": self.run_id, "status": "missing"}
        folder = self.app.store.folder(self.run_id)
        if not folder.exists():
            self.query_one("#detail-header", Static).update(
                f"[b]{markup_safe(summary.get('name'))}[/b]  {markup_safe(self.run_id)}\n"
                f"[red]The run folder is missing: {markup_safe(folder.path)}[/]")
            return
        self.folder = folder
        self.spec = read_json(folder.spec) or {}
        evaluation = self.spec.get("eval", {})
        self.datasets = list(evaluation.get("datasets", [])) or sorted(self.app.ensure_live(self.run_id).evals)
        self.metrics = list(evaluation.get("metrics", ["map"]))
        self.set_reactive(RunDetailScreen.metric, evaluation.get("primary_metric", self.metrics[0]))
        self.set_reactive(RunDetailScreen.dataset, self.datasets[0] if self.datasets else None)
        self.refresh_all(summary)
        for dataset in self.datasets:
            self.load_results(dataset)
        self.query_one("#detail-config", Static).update(config_text(self.spec))
        self.query_one("#detail-config", Static).display = False
        self.set_interval(0.25, self.flush_steps)
        self.measure_folder()

    @work(thread=True, exclusive=True, group="measure")
    def measure_folder(self) -> None:
        from engine.parent.run_service import folder_bytes

        self.post_message(FolderMeasured(folder_bytes(self.app.store, self.run_id)))

    def on_folder_measured(self, message: FolderMeasured) -> None:
        self.folder_size = message.size
        self.update_header(self.app.store.get(self.run_id) or {})

    # --- state -----------------------------------------------------------------------------------
    def watch_metric(self) -> None:
        self.update_table()

    def watch_dataset(self) -> None:
        self.versus = None
        self.update_table()

    def watch_versus(self) -> None:
        self.update_table()

    @work(thread=True, exclusive=True, group="versus")
    def compare_with(self, dataset: str, metric: str, step: int) -> None:
        """This run's latest evaluation against its evaluation at `step`, per cell, tested (off the UI thread)."""
        from engine.parent.compare import compare, load_run

        try:
            comparison = compare([load_run(self.folder, step=step), load_run(self.folder)], dataset, metric)
        except ValueError as error:         # nothing to compare (no common language, other protocols)
            self.app.call_from_thread(self.notify, f"Δ vs step {step}: {error}", severity="warning")
            return
        self.post_message(VersusReady(comparison, step))

    def on_versus_ready(self, message: VersusReady) -> None:
        comparison, step = message.comparison, message.step
        if self.versus != step or comparison.dataset != self.dataset or comparison.metric != self.metric:
            return
        self.query_one("#detail-table", LanguageTable).show_deltas(comparison)
        self.query_one("#detail-eval-progress", Static).update(plain(comparison.footnote, "dim"), layout=False)

    @work(thread=True, group="results")
    def load_results(self, dataset: str) -> None:
        self.post_message(ResultsLoaded(self.run_id, dataset, read_json(self.folder.results(dataset))))

    def on_results_loaded(self, message: ResultsLoaded) -> None:
        if message.run_id != self.run_id:
            return
        self.results[message.dataset] = message.results
        if message.dataset == self.dataset:
            results = message.results or {}
            if results.get("metrics") and results.get("primary_metric") not in self.metrics:
                self.metrics = list(results["metrics"])            # e.g. MIRACL's own metrics
                self.set_reactive(RunDetailScreen.metric, results["primary_metric"])
            self.update_table()

    # --- rendering --------------------------------------------------------------------------------
    def refresh_all(self, summary: dict | None = None) -> None:
        summary = summary or self.app.store.get(self.run_id) or {}
        self.update_header(summary)
        self.update_table()
        live = self.app.ensure_live(self.run_id)
        self.query_one("#detail-loss").data = list(live.losses)
        self.update_loss_title()
        log = self.query_one("#detail-log", TailLog)
        log.clear()
        log.write_lines([printable(line) for line in live.log])
        self.call_after_refresh(log.scroll_end, animate=False)   # once laid out: the newest lines show
        self.log_length = len(live.log)
        self.update_stderr(summary)

    def update_header(self, summary: dict) -> None:
        live = self.app.ensure_live(self.run_id)
        sampling, train = self.spec.get("sampling", {}), self.spec.get("train", {})
        strategy = sampling.get("strategy", "?")
        if alpha_text(strategy, sampling.get("alpha")):
            strategy += f" α={sampling.get('alpha')}"
        progress = f"step {live.step or summary.get('step') or 0}/{live.total_steps or summary.get('total_steps') or '?'}"
        if summary.get("status") == "running" and live.samples_per_s:
            eta = live.eta_seconds()
            progress += f" · {live.samples_per_s:.1f} samples/s" + (f" · ETA {clock_text(eta)}" if eta else "")
        header = self.query_one("#detail-header", Static)
        text = Text()
        text.append_text(status_text(summary.get("status", "?")))
        text.append(f"  {printable(summary.get('name', ''))}  ", style="bold")
        text.append(f"{printable(self.run_id)}\n", style="dim")
        text.append(printable(f"{self.spec.get('encoder', {}).get('name', '?')} · {strategy} · train "
                              f"{train.get('dataset')} · {progress} · {summary.get('device') or ''} · "
                              f"{where_label(summary, with_job=True)}"))
        if live.preparing and summary.get("status") in ("queued", "running"):
            text.append(f" · {printable(live.preparing)}", style="italic")
        if self.folder_size is not None:
            text.append(f" · {size_text(self.folder_size)} on disk", style="dim")
        header.update(text, layout=False)  # fixed height (app.tcss): no layout pass per update

    def update_table(self) -> None:
        table = self.query_one("#detail-table", LanguageTable)
        title = self.query_one("#detail-table-title", Static)
        if self.dataset is None:
            title.update("no evaluation datasets")
            return
        live = self.app.ensure_live(self.run_id)
        cells = live.evals.get(self.dataset)
        results = self.results.get(self.dataset)
        if cells is None and results:
            cells = cells_from_results(results)
        cells = cells or EvalCells()
        languages, groups = table_layout(self.spec, self.dataset, results, cells)
        table.metric = self.metric
        if (self.dataset, cells.step) != self.table_key:  # a new evaluation: start from empty cells
            table.set_layout(languages, groups)
            table.clear_values()
            self.table_key = (self.dataset, cells.step)
        table.show_cells(cells, languages, groups)
        self.update_history(live)
        if self.versus is not None and cells.done:
            self.compare_with(self.dataset, self.metric, self.versus)
        step = "" if cells.step < 0 else f" · step {cells.step}"
        if self.versus is not None:
            step += f" · Δ vs step {self.versus}"
        if results and results.get("precision") and cells.done:
            step += f" · {results['precision']}"
        state = "" if cells.done else " · evaluating…" if cells.settings or cells.progress else " · waiting"
        others = f"   [dim](t: {markup_safe(', '.join(self.datasets))})[/]" if len(self.datasets) > 1 else ""
        title.update(f"[b]{markup_safe(self.dataset)}[/b] · {markup_safe(self.metric)}{step}{state}{others}")
        if self.versus is None or cells.progress:
            self.query_one("#detail-eval-progress", Static).update(
                f"[dim]encoding {markup_safe(cells.progress)}[/]" if cells.progress else "", layout=False)

    def update_history(self, live) -> None:
        """Every evaluation of this dataset so far: its macro values of the metric shown."""
        history = live.history.get(self.dataset, [])
        settings = [setting for setting in SETTINGS if any(setting in cells.macro for cells in history)]
        lines = [f"{cells.step:>6}  " + "  ".join(
            f"{cells.macro.get(setting, {}).get(self.metric, float('nan')):>5.3f}" for setting in settings)
            for cells in history]
        header = "  step  " + "  ".join(f"{setting:>5}" for setting in settings)
        text = (f"evaluations (macro {self.metric}):\n{header}\n" + "\n".join(lines)) if len(lines) > 1 else ""
        self.query_one("#detail-history", Static).update(plain(text, "dim", newlines=True), layout=False)

    def update_loss_title(self) -> None:
        live = self.app.ensure_live(self.run_id)
        losses = list(live.losses)
        text = "loss" if not losses else (f"loss · first {losses[0]:.3f} · last {losses[-1]:.3f} · "
                                          f"min {min(losses):.3f} · {len(losses)} steps")
        self.query_one("#detail-loss-title", Static).update(text, layout=False)

    def update_stderr(self, summary: dict) -> None:
        widget = self.query_one("#detail-stderr", Static)
        if summary.get("status") != "failed":
            widget.display = False
            return
        tail = summary.get("stderr_tail") or ""
        if not tail and self.folder is not None and self.folder.stderr.exists():
            tail = "\n".join(self.folder.stderr.read_text(errors="replace").splitlines()[-15:])
        widget.display = True
        widget.update(f"[b red]failed:[/] {markup_safe(summary.get('error') or '')}\n"
                      f"[dim]{markup_safe(tail, newlines=True)}[/]")

    # --- live updates (called by the app) ----------------------------------------------------------
    def run_event(self, message: RunEventReceived) -> None:
        if message.run_id != self.run_id or self.folder is None:
            return
        event = message.event
        live = self.app.ensure_live(self.run_id)
        if isinstance(event, Step):  # shown by flush_steps, at most 4 times a second
            self.steps_pending = True
            return
        if isinstance(event, (Eval, EvalDone, EvalProgress)) and event.dataset == self.dataset:
            self.update_table()
        if isinstance(event, EvalDone):
            self.load_results(event.dataset)
        if isinstance(event, (Notice, Started)):
            self.update_header(self.app.store.get(self.run_id) or {})
        new_lines = list(live.log)[self.log_length:] if len(live.log) >= self.log_length else list(live.log)
        if new_lines:
            self.query_one("#detail-log", TailLog).write_lines([printable(line) for line in new_lines])
        self.log_length = len(live.log)

    def flush_steps(self) -> None:
        if not self.steps_pending:
            return
        self.steps_pending = False
        live = self.app.ensure_live(self.run_id)
        self.query_one("#detail-loss").data = list(live.losses)
        self.update_loss_title()
        self.update_header(self.app.store.get(self.run_id) or {})

    def run_status(self, message: RunStatusChanged) -> None:
        if message.run_id == self.run_id and self.folder is not None:
            self.update_header(message.summary)
            self.update_stderr(message.summary)
            if message.summary.get("status") in ("finished", "failed") and self.dataset:
                self.load_results(self.dataset)
            if message.summary.get("status") not in ("queued", "running"):
                self.measure_folder()             # checkpoints and the model are written by now

    # --- actions -------------------------------------------------------------------------------------
    def action_next_metric(self) -> None:
        self.metric = self.metrics[(self.metrics.index(self.metric) + 1) % len(self.metrics)] \
            if self.metric in self.metrics else self.metrics[0]

    def action_next_dataset(self) -> None:
        if self.datasets:
            self.dataset = self.datasets[(self.datasets.index(self.dataset) + 1) % len(self.datasets)]

    def action_next_versus(self) -> None:
        """Δ against step 0, then each later evaluation before the latest, then off."""
        if self.folder is None or self.dataset is None:
            return
        latest = self.app.ensure_live(self.run_id).evals.get(self.dataset)
        steps = [step for step in self.folder.evaluated_steps(self.dataset) if latest is None or step != latest.step]
        if not steps:
            self.notify("This run has no earlier evaluation to compare with (eval.at_start or eval_every).")
            return
        choices = [*steps, None]
        self.versus = choices[(choices.index(self.versus) + 1) % len(choices)] if self.versus in choices else steps[0]

    def action_config(self) -> None:
        config, log = self.query_one("#detail-config", Static), self.query_one("#detail-log", TailLog)
        config.display, log.display = not config.display, config.display

    def action_cancel(self) -> None:
        self.app.cancel_run(self.run_id)

    def action_resume(self) -> None:
        self.app.resume_run(self.run_id)


def clock_text(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s"


def config_text(spec: dict) -> Text:
    """The run's configuration as `field value` lines (what decides its result; names left out)."""
    from engine.contract.spec import flatten

    lines = [f"{key:<28} {json.dumps(value, ensure_ascii=False)}" for key, value in
             flatten({key: value for key, value in spec.items() if key not in ("name", "description", "grid",
                                                                               "hypotheses")}).items()]
    return plain("configuration (k: back to the log)\n" + "\n".join(lines), newlines=True)
