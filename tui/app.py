"""The hbt-tui Textual app: the screens over the store and the run service (engine.parent.run_service).

`create_app(store, runner)` builds it, so tests inject a runner that replays recorded
events instead of training; the app reaches it only through a `RunService`. The runner runs
in the app's event loop: each run's process
is watched by an app-level worker (it outlives any screen) whose callbacks only post
messages; the handlers here own the live state and pass updates to the screens that are
`RunView`s. Blocking work (checking a submission, reading results) runs in thread workers
that post fact-named messages; a worker that fails is reported once, in
`on_worker_state_changed`. Never imports torch, transformers, faiss or datasets, and its
start-up path never imports numpy or scipy (tests check both).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.worker import Worker, WorkerState

from engine.contract.errors import UserError
from engine.contract.events import Event
from engine.contract.text import printable
from engine.parent.run_service import RunService, resolve_runs_dir
from engine.parent.run_state import EventTail, RunState, state_of
from engine.parent.store import RunStore
from tui.messages import (RunEventReceived, RunsPrepared, RunsRefused, RunStatusChanged, RunView, StepReceived,
                          event_message)

if TYPE_CHECKING:
    from engine.parent.runner import Runner


class ActionsProvider(Provider):
    """Command palette: the main actions (listed before anything is typed), and every run by name."""

    def actions(self) -> list[tuple[str, object, str]]:
        app = self.app
        return [("New experiment (compose)", app.action_compose, "compose and queue an experiment"),
                ("Open spec file…", app.action_open_spec, "edit a saved spec in Compose"),
                ("Runs", app.action_show_runs, "the list of runs"),
                ("Compare marked runs", app.action_compare_marked, "side by side per language"),
                ("Reports and past comparisons", app.action_reports, "open one again"),
                ("Rebuild index from run folders", app.action_rebuild_index, "hbt-tui index rebuild"),
                ("Help", app.action_help, "keys and concepts")]

    async def discover(self) -> Hits:
        for name, callback, help_text in self.actions():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        app = self.app
        matcher = self.matcher(query)
        commands = self.actions()
        for run in app.store.all()[:500]:
            commands.append((printable(f"Open run {run.get('name')} ({run.get('status')})"),
                             partial(app.open_run, run["id"]), run["id"]))
        for name, callback, help_text in commands:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


FOLLOW_SECONDS = 0.5          # how often runs owned elsewhere are read for new events


class HbtApp(App):
    TITLE = "hbt-tui"
    SUB_TITLE = "hybrid batch training for multilingual retrieval"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS = [Binding("question_mark", "help", "Help", show=False),
                Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(self, store: RunStore, runner: Runner | None = None, experiments_dir: Path = Path("experiments"),
                 exports_dir: Path = Path("exports"), open_spec: Path | None = None,
                 service: RunService | None = None) -> None:
        super().__init__()
        self.store = store
        self.service = service or RunService(store, runner)
        self.experiments_dir = experiments_dir
        self.exports_dir = exports_dir
        self.open_spec_path = open_spec
        self.live: dict[str, RunState] = {}           # the fold of each shown run's events
        self.tails: dict[str, EventTail] = {}          # where each one's events.jsonl was read up to
        self.statuses: dict[str, str | None] = {}      # the index's status of runs followed from their files
        self.service.follow(self._runner_event, self._runner_status,
                            lambda coroutine: self.run_worker(coroutine, group="runs", exit_on_error=False))

    def notify(self, message: str, *, title: str = "", severity: str = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Notifications quote run ids, paths and errors: shown as text (never markup), control
        characters escaped."""
        super().notify(printable(message, newlines=True), title=printable(title), severity=severity, timeout=timeout,
                       markup=markup)

    def on_mount(self) -> None:
        from tui.screens.runs import RunsScreen

        self.set_timer(0.3, self._freeze_startup_objects)  # after the first frame, before any load
        for message in self.store.messages + self.service.reconcile():
            self.notify(message, severity="warning", timeout=10)
        self.push_screen(RunsScreen())
        self.set_interval(FOLLOW_SECONDS, self.follow_elsewhere)
        if self.open_spec_path is not None:
            self.push_screen(self.compose_screen_for(self.open_spec_path))

    def _freeze_startup_objects(self) -> None:
        """Start-up objects (modules, styles, widgets) live as long as the app: keep them out
        of the collector's full passes, which otherwise stall the event loop for tens of ms."""
        import gc

        gc.collect()
        gc.freeze()
        gc.enable()   # paused since start-up, if `hbt-tui` paused it (tui.cli)

    def on_unmount(self) -> None:
        import gc

        gc.enable()

    # --- from the runner (same event loop): post, never touch state here -------------------------
    def _runner_event(self, run_id: str, event: Event) -> None:
        self.post_message(event_message(run_id, event))

    def _runner_status(self, run_id: str, summary: dict) -> None:
        self.post_message(RunStatusChanged(run_id, summary))

    # --- handlers own the live state and tell the screens -------------------------------------------
    def run_views(self) -> list[RunView]:
        # a screen on the stack that is not mounted yet has no widgets to update
        return [screen for screen in self.screen_stack if isinstance(screen, RunView) and screen.is_mounted]

    def on_run_event_received(self, message: RunEventReceived) -> None:
        self.ensure_live(message.run_id).apply(message.event)
        for view in self.run_views():
            view.run_event(message)

    def on_step_received(self, message: StepReceived) -> None:
        self.on_run_event_received(message)

    def on_run_status_changed(self, message: RunStatusChanged) -> None:
        for view in self.run_views():
            view.run_status(message)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every worker that fails is reported here, once: a user error as its one line."""
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            text = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            self.notify(text, severity="error", timeout=10)

    def ensure_live(self, run_id: str) -> RunState:
        """The state of a run, folded from its events.jsonl the first time it is needed; this
        runner's runs are kept current by their events, the others by `follow_elsewhere`."""
        if run_id not in self.live:
            self.live[run_id], self.tails[run_id] = state_of(self.store.folder(run_id).events)
        return self.live[run_id]

    def follow_elsewhere(self) -> None:
        """Runs another process owns (a `--run` in another shell, another TUI): the new lines of
        their events.jsonl become events here, exactly as this runner's do, and a change of their
        status in the index is announced; so a run looks the same whoever started it."""
        for summary in self.store.all():
            if summary.get("status") == "running" and not self.service.here(summary["id"]):
                self.ensure_live(summary["id"])
        for run_id, tail in list(self.tails.items()):
            if self.service.here(run_id):           # its events come from its process: only skip ahead
                tail.read_new()
                continue
            for event in tail.read_new():
                self.post_message(event_message(run_id, event))
            summary = self.store.get(run_id)
            status = summary.get("status") if summary else None
            if self.statuses.setdefault(run_id, status) != status:
                self.statuses[run_id] = status
                self.post_message(RunStatusChanged(run_id, summary or {}))

    # --- actions used by the screens ------------------------------------------------------------------
    def open_run(self, run_id: str) -> None:
        from tui.screens.run_detail import RunDetailScreen

        self.push_screen(RunDetailScreen(run_id))

    def open_compare(self, run_ids: list[str]) -> None:
        from tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(run_ids))

    def cancel_run(self, run_id: str) -> None:
        if self.service.status_here(run_id) in ("queued", "running"):
            self.run_worker(self.service.cancel(run_id), group="cancel", exit_on_error=False)
            self.notify(f"Cancelling {run_id}: it checkpoints and stops.")
            return
        summary = self.store.get(run_id)
        if summary is None or summary.get("status") not in ("queued", "running"):
            self.notify(f"{run_id} is not queued or running.", severity="warning")
            return
        self.run_worker(self._cancel_elsewhere(run_id), group="cancel", exit_on_error=False)
        self.notify(f"Asked the process that owns {run_id} to cancel it.")

    async def _cancel_elsewhere(self, run_id: str) -> None:
        """A run another hbt-tui (or `--run`) owns: its owner is asked and stops it."""
        try:
            status = await self.service.cancel(run_id)
        except UserError as error:
            self.notify(str(error), severity="error")
            return
        self.post_message(RunStatusChanged(run_id, self.store.get(run_id) or {}))
        self.notify(f"{run_id}: {status}.")

    def resume_run(self, run_id: str) -> None:
        try:
            self.service.resume(run_id)
        except UserError as error:
            self.notify(str(error), severity="error")
            return
        self.live.pop(run_id, None)
        self.tails.pop(run_id, None)
        self.notify(f"Resumed {run_id}.")

    def queue_document(self, document: dict) -> list[str]:
        """Check and queue a spec document now (blocking: for scripts and tests; the Compose
        screen uses `prepare_document`, which checks in a worker thread)."""
        from engine.parent.submission import prepare

        return self.submit_prepared(prepare(document, store=self.store))

    @work(thread=True, exclusive=True, group="prepare", exit_on_error=False)
    def prepare_document(self, document: dict, requester: object | None = None) -> None:
        """Validate, expand the grid and check every run (a subprocess) off the UI thread; a
        refusal goes to the screen that asked (its form shows it), else to a notification."""
        from engine.parent.submission import prepare

        try:
            prepared = prepare(document, store=self.store)
        except UserError as error:
            if requester is not None and hasattr(requester, "post_message"):
                requester.post_message(RunsRefused(str(error)))
                return
            raise
        self.post_message(RunsPrepared(prepared, requester))

    def on_runs_prepared(self, message: RunsPrepared) -> None:
        queued = self.submit_prepared(message.prepared)
        self.notify(f"Queued {len(queued)} run{'s' if len(queued) != 1 else ''}.")
        if message.requester is not None and message.requester is self.screen:
            self.pop_screen()

    def submit_prepared(self, prepared) -> list[str]:
        """Queue what the grid still needs (engine.parent.continuation): finished runs are
        skipped, interrupted ones resumed, failed ones kept; new ones started."""
        from engine.parent.continuation import plan

        continuation = plan(prepared.specs, self.store)
        queued = [self.service.queue(spec, summary, group=prepared.group) for spec, summary in continuation.work]
        if continuation.is_continuation:
            self.notify(f"{len(continuation.finished)} already finished, {len(continuation.resume)} resumed, "
                        f"{len(continuation.failed)} failed kept (the CLI's --retry-failed re-runs them).")
        return queued

    def compose_screen_for(self, path: Path):
        """Compose with a spec file loaded; a spec that fails validation opens with its errors."""
        from tui.screens.compose import ComposeScreen

        from engine.contract.validation import read_document

        try:
            document = read_document(path)
        except UserError as error:
            return ComposeScreen(load_error=str(error))
        if not isinstance(document, dict):
            return ComposeScreen(load_error=f"{path}: the top level must be an object")
        return ComposeScreen(document, source=Path(path))

    def action_compose(self) -> None:
        from tui.screens.compose import ComposeScreen

        self.push_screen(ComposeScreen())

    def action_open_spec(self) -> None:
        from tui.screens.open_spec import OpenSpecScreen

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.push_screen(self.compose_screen_for(path))

        self.push_screen(OpenSpecScreen(Path(self.experiments_dir)), chosen)

    def action_show_runs(self) -> None:
        from tui.screens.runs import RunsScreen

        while len(self.screen_stack) > 2 or not isinstance(self.screen, RunsScreen):
            if len(self.screen_stack) <= 1:
                break
            self.pop_screen()

    def action_compare_marked(self) -> None:
        from tui.screens.runs import RunsScreen

        runs_screen = next((s for s in self.screen_stack if isinstance(s, RunsScreen)), None)
        if runs_screen is not None:
            runs_screen.action_compare()

    def action_rebuild_index(self) -> None:
        count = self.store.rebuild()
        self.notify(f"Rebuilt the index: {count} runs.")
        for view in self.run_views():
            view.runs_rebuilt()

    def action_reports(self) -> None:
        from tui.screens.reports import ReportsScreen

        if not isinstance(self.screen, ReportsScreen):
            self.push_screen(ReportsScreen())

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Quit; with runs of this session still going, ask first: cancel them (they checkpoint
        and can be resumed), leave them running in the background (they checkpoint and a
        detached `hbt-tui resume` continues them: it owns them from then on, and any hbt-tui
        follows them), or stay."""
        from tui.screens.confirm import ChoiceScreen

        active = self.service.active()
        if not active:
            self.exit()
            return
        question = (f"{len(active)} run{'s are' if len(active) != 1 else ' is'} queued or running in this session.\n"
                    "Cancel: they checkpoint, and `r` (or `hbt-tui resume`) continues them later.\n"
                    "Background: they checkpoint and continue at once in a process of their own, "
                    "which outlives this terminal; `hbt-tui` shows them as they go.")

        async def answered(choice: str) -> None:
            if choice == "stay":
                return
            self.notify("Stopping the runs (they checkpoint)…")
            await self.service.cancel_all()
            await self.service.wait(active)
            if choice == "cancel":
                self.exit()
                return
            try:
                pid, log = self.service.continue_in_background(active)
            except UserError as error:
                self.notify(str(error), severity="error", timeout=10)
                return
            self.exit(f"{len(active)} run{'s' if len(active) != 1 else ''} continue in the background "
                      f"(pid {pid}); its output: {log}")

        self.push_screen(ChoiceScreen(question, [("c", "Cancel them and quit", "cancel"),
                                                 ("b", "Leave them running in the background", "background"),
                                                 ("s", "Stay", "stay")]), answered)


def create_app(store: RunStore, runner: Runner | None = None, **options) -> HbtApp:
    return HbtApp(store, runner, **options)


def run_app(runs_dir: str | None = None, jobs: int = 1, open_spec: str | None = None, **run_options) -> int:
    """`hbt-tui` with no arguments (`run_options` go to `App.run`: the start-up benchmark
    runs this very path headless)."""
    from engine.contract.errors import EXIT_USER_ERROR

    try:
        store = RunStore(resolve_runs_dir(runs_dir))
    except UserError as error:
        import sys

        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        service = RunService.start(store, jobs)
    except UserError as error:
        import sys

        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    app = create_app(store, open_spec=Path(open_spec) if open_spec else None, service=service)
    said = app.run(**run_options)
    if isinstance(said, str):   # what quitting left behind (runs handed to the background)
        print(said)
    return 0
