"""Pick a spec file to open in Compose."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from engine.parent.tables import plain


class OpenSpecScreen(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical(id="open-box"):
            yield Static(plain(f"Open a spec from {self.folder}/ (or type a path and press enter)"))
            yield Input(placeholder="path/to/spec.json", id="open-path")
            paths = sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []
            yield OptionList(*(Option(plain(path.name), id=str(path)) for path in paths), id="open-list")

    def on_mount(self) -> None:
        self.query_one("#open-list", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(Path(str(event.option.id)))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(Path(event.value.strip()).expanduser())
