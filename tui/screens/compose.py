"""Compose an experiment: a form over the spec, validated as the user types.

Each field edits one dotted path of the spec document; the whole document goes through
the same validator as `hbt-tui --run`, and its messages appear under the form with the
offending fields marked. The grid builder sweeps any field. Save writes
`experiments/<name>.json`; queue expands the grid and hands the runs to the runner.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import (
    Button,
    Footer,
    Header,
    Input,
    Label,
    Select,
    SelectionList,
    Static,
    Switch,
)

from engine.contract import catalog
from engine.contract.errors import SpecError
from engine.contract.layout import write_atomic
from engine.contract.model_names import BUNDLED_CHOICES, HUB_SUGGESTIONS
from engine.contract.spec import (
    STRATEGIES,
    get_dotted,
    set_dotted,
)
from engine.contract.validation import parse_spec
from engine.parent.tables import markup_safe, plain
from tui.compose_form import (
    DEFAULT_DOCUMENT,
    FIELDS,
    GRID_FIELDS,
    SECTIONS,
    Field,
    parse_grid_values,
    parse_value,
)
from tui.messages import RunsRefused
from tui.screens.confirm import ConfirmScreen


class ComposeScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+r", "queue", "Queue"),
        Binding("ctrl+o", "open", "Open spec"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, document: dict | None = None, source: Path | None = None,
                 load_error: str | None = None) -> None:
        super().__init__()
        self.document: dict = json.loads(json.dumps(document if document is not None else DEFAULT_DOCUMENT))
        grid = self.document.get("grid") or {}
        self.grid: dict[str, list] | list[dict] = dict(grid) if isinstance(grid, dict) else list(grid)
        self.source = source
        self.load_error = load_error
        self.problems: list[tuple[str, str]] = []
        self.refused: str | None = None            # what the pre-queue check said, until the form changes
        self.ready = False
        self.loaded: dict | None = None            # the form as it was when it opened (for "discard edits?")

    # --- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="compose-form"):
            for title, fields in SECTIONS:
                yield Static(title, classes="compose-section")
                for field in fields:
                    with Horizontal(classes="compose-row"):
                        yield Label(field.label, classes="compose-label")
                        yield self._widget(field)
            yield Static("grid (sweep a field: one run per value, combinations multiply)", classes="compose-section")
            with Horizontal(classes="compose-row"):
                yield Select([(path, path) for path in GRID_FIELDS], prompt="field", id="grid-field",
                             classes="compose-grid-field", compact=True)
                yield Input(placeholder="values, e.g. 0.25, 0.5, 0.75", id="grid-values", compact=True)
                yield Button("add", id="grid-add", compact=True)
            with Horizontal(classes="compose-row compose-buttons"):
                yield Button("α sweep 0.25/0.5/0.75", id="grid-alpha", compact=True)
                yield Button("all four strategies", id="grid-strategies", compact=True)
                yield Button("clear grid", id="grid-clear", compact=True)
            yield Static("", id="grid-summary")
            with Horizontal(classes="compose-row compose-buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary", compact=True)
                yield Button("Queue (ctrl+r)", id="queue", variant="success", compact=True)
                yield Button("Save & queue", id="save-queue", compact=True)
        yield Static("", id="compose-errors")
        yield Footer(compact=True)

    def _widget(self, field: Field):
        value = get_dotted(self.document, field.path)
        if field.kind == "bool":
            return Switch(value=bool(field.default if value is None else value), id=field.widget_id)
        if field.kind == "select":
            choices = list(field.choices)
            if isinstance(value, str) and value not in choices:     # a loaded value the form does not know:
                choices.append(value)                               # kept (and shown invalid), never dropped
            return Select([(choice, choice) for choice in choices], value=value if value in choices else Select.NULL,
                          prompt="(default)", id=field.widget_id, classes="compose-input", compact=True)
        if field.kind == "multi":
            return SelectionList(id=field.widget_id, classes="compose-multi", compact=True)
        suggester = SuggestFromList(BUNDLED_CHOICES + HUB_SUGGESTIONS) if field.path == "encoder.name" else None
        text = ", ".join(map(str, value)) if isinstance(value, list) else "" if value is None else str(value)
        return Input(value=text, id=field.widget_id, classes="compose-input",
                     suggester=suggester, placeholder=self._placeholder(field), compact=True)

    @staticmethod
    def _placeholder(field: Field) -> str:
        from engine.contract.spec import ExperimentSpec

        default = get_dotted(ExperimentSpec(name="x").to_dict(), field.path)
        if isinstance(default, list):
            default = ", ".join(map(str, default))
        return f"default: {default}" if default not in (None, "", "x") else ""

    def on_mount(self) -> None:
        self._refresh_language_options()
        self.ready = True
        self._update_grid_summary()
        self.validate()
        self.loaded = self.read_form()
        if self.load_error:
            self.notify(self.load_error, severity="error", timeout=10)

    def _refresh_language_options(self) -> None:
        train_dataset = get_dotted(self.document, "train.dataset", "mlqa-r")
        self._fill_languages("train.languages", catalog.dataset_languages(train_dataset) or ())
        eval_datasets = get_dotted(self.document, "eval.datasets", ["xquad-r"]) or []
        evaluated: list[str] = []
        for dataset in eval_datasets:
            evaluated += [lang for lang in (catalog.dataset_languages(dataset) or ()) if lang not in evaluated]
        self._fill_languages("eval.languages", tuple(evaluated))
        chosen = set(get_dotted(self.document, "eval.datasets", ["xquad-r"]) or [])
        datasets = self.query_one("#" + FIELDS["eval.datasets"].widget_id, SelectionList)
        if not datasets.option_count:
            datasets.add_options([(name, name, name in chosen) for name in FIELDS["eval.datasets"].choices])

    def _fill_languages(self, path: str, languages: tuple[str, ...]) -> None:
        widget = self.query_one("#" + FIELDS[path].widget_id, SelectionList)
        chosen = [str(language) for language in get_dotted(self.document, path) or []]
        offered = list(languages) + [language for language in chosen if language not in languages]   # kept: the
        current = [str(widget.get_option_at_index(i).value) for i in range(widget.option_count)]    # validator names it
        if current == offered:
            return
        with widget.prevent(SelectionList.SelectedChanged):
            widget.clear_options()
            widget.add_options([(language if language in languages else f"{language} (unknown)", language,
                                 language in chosen) for language in offered])

    # --- reading the form ----------------------------------------------------------------------------
    def read_form(self) -> dict:
        document = json.loads(json.dumps(self.document))
        for field in FIELDS.values():
            widget = self.query_one("#" + field.widget_id)
            if isinstance(widget, Switch):
                value: Any = widget.value
            elif isinstance(widget, Select):
                value = None if widget.value is Select.NULL else widget.value
            elif isinstance(widget, SelectionList):
                value = list(widget.selected) or None
            else:
                value = parse_value(widget.value, field.kind)
                if value == "" and field.kind == "text" and field.path not in ("name",):
                    value = None
            set_dotted(document, field.path, value)
        if self.grid:
            document["grid"] = self.grid
        else:
            document.pop("grid", None)
        return document

    def validate(self) -> bool:
        """Run the spec validator on the form; mark bad fields and list the messages."""
        if not self.ready:
            return False
        self.document = self.read_form()
        try:
            from engine.contract.grid import expand_grid

            runs = expand_grid(parse_spec(self.document))
            self.problems = []
        except SpecError as error:
            self.problems, runs = error.problems, []
        bad = {self._field_for(path) for path, _ in self.problems}
        for field in FIELDS.values():
            self.query_one("#" + field.widget_id).set_class(field.path in bad, "-invalid")
        errors = self.query_one("#compose-errors", Static)
        if self.problems:
            more = f"\n… and {len(self.problems) - 8} more" if len(self.problems) > 8 else ""
            errors.update(f"[b red]✘ not valid ({len(self.problems)})[/]\n" + "\n".join(
                f"[red]{markup_safe(path)}[/]: {markup_safe(reason)}" for path, reason in self.problems[:8]) + more)
        elif self.refused:
            errors.update(f"[b red]✘ refused by the pre-queue check[/] (data, model, device)\n"
                          f"[red]{markup_safe(self.refused)}[/]")
        else:
            names = ", ".join(run.name for run in runs[:4]) + (" …" if len(runs) > 4 else "")
            errors.update(f"[b green]✔ valid[/] — {len(runs)} run{'s' if len(runs) != 1 else ''}: {markup_safe(names)} "
                          "[dim](data, model and device are checked when you queue)[/]")
        return not self.problems

    @staticmethod
    def _field_for(path: str) -> str:
        path = path.split(" -> ")[-1].split("[")[0]
        return path

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    @on(SelectionList.SelectedChanged)
    def field_changed(self, event) -> None:
        if not self.ready or getattr(event, "control", None) is None:
            return
        if getattr(event.control, "id", "") in ("grid-values", "grid-field"):
            return
        self.refused = None                   # the form changed: the last check no longer applies
        self.validate()
        if getattr(event.control, "id", "") in (FIELDS["train.dataset"].widget_id, FIELDS["eval.datasets"].widget_id):
            self._refresh_language_options()

    # --- grid builder --------------------------------------------------------------------------------
    @on(Button.Pressed, "#grid-add")
    def grid_add(self) -> None:
        field = self.query_one("#grid-field", Select).value
        values = parse_grid_values(self.query_one("#grid-values", Input).value)
        if field is Select.NULL or not values:
            self.notify("Choose a field and give comma-separated values.", severity="warning")
            return
        self._builder_grid()[str(field)] = values
        self.query_one("#grid-values", Input).value = ""
        self._grid_changed()

    @on(Button.Pressed, "#grid-alpha")
    def grid_alpha(self) -> None:
        self._builder_grid()["sampling.alpha"] = [0.25, 0.5, 0.75]
        self._grid_changed()

    @on(Button.Pressed, "#grid-strategies")
    def grid_strategies(self) -> None:
        self._builder_grid()["sampling.strategy"] = list(STRATEGIES)
        self._grid_changed()

    @on(Button.Pressed, "#grid-clear")
    def grid_clear(self) -> None:
        self.grid = {}
        self._grid_changed()

    def _builder_grid(self) -> dict[str, list]:
        """The grid the builder edits: a single grid (a union from a file is replaced)."""
        if not isinstance(self.grid, dict):
            self.grid = {}
        return self.grid

    def _grid_changed(self) -> None:
        self._update_grid_summary()
        self.validate()

    def _update_grid_summary(self) -> None:
        if isinstance(self.grid, list):
            text = f"a union of {len(self.grid)} grids (from the spec file; the builder starts a new one)"
        else:
            text = "  ".join(f"{path} = {values}" for path, values in self.grid.items()) or "(no grid: one run)"
        self.query_one("#grid-summary", Static).update(plain(text))

    # --- save / queue / open -------------------------------------------------------------------------
    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        self.save()

    def save(self, then: Callable[[], None] | None = None) -> None:
        """Write experiments/<name>.json; a different file already there is overwritten only
        after the user says yes."""
        if not self.validate():
            self.notify("Fix the marked fields first.", severity="error")
            return
        path = Path(self.app.experiments_dir) / f"{self.document['name']}.json"
        text = json.dumps(self.document, indent=2, ensure_ascii=False) + "\n"

        def write(confirmed: bool | None = True) -> None:
            if not confirmed:
                self.notify(f"Not saved: {path} stays as it was.", severity="warning")
                return
            try:
                write_atomic(path, text.encode("utf-8"))
            except OSError as error:
                self.notify(f"Cannot save {path}: {error.strerror or error}", severity="error")
                return
            self.source = path
            self.loaded = self.read_form()
            self.notify(f"Saved {path}")
            if then is not None:
                then()

        is_source = self.source is not None and path.resolve() == Path(self.source).resolve()
        if path.exists() and not is_source and path.read_text(encoding="utf-8", errors="replace") != text:
            self.app.push_screen(ConfirmScreen(f"{path} already exists.\nOverwrite it with this spec?"), write)
            return
        write()

    @on(Button.Pressed, "#queue")
    def action_queue(self) -> None:
        if not self.validate():
            self.notify("Fix the marked fields first.", severity="error")
            return
        self.notify("Checking data, model and device …")
        self.app.prepare_document(self.document, requester=self)   # queued (and this screen closed) once checked

    def on_runs_refused(self, message: RunsRefused) -> None:
        """The pre-queue check said no: the form says so (not a pop-up beside a "✔ valid")."""
        self.refused = message.error
        self.validate()

    def action_back(self) -> None:
        """Back to the runs; edits that were not saved or queued are discarded only when asked."""
        if self.loaded is None or self.read_form() == self.loaded:
            self.app.pop_screen()
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.app.pop_screen()

        self.app.push_screen(ConfirmScreen("Discard the changes to this spec?\n(ctrl+s saves them)"), answered)

    @on(Button.Pressed, "#save-queue")
    def save_and_queue(self) -> None:
        self.save(then=self.action_queue)

    def action_open(self) -> None:
        from tui.screens.open_spec import OpenSpecScreen

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.app.switch_screen(self.app.compose_screen_for(path))

        self.app.push_screen(OpenSpecScreen(Path(self.app.experiments_dir)), chosen)
