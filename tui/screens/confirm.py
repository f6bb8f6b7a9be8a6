"""Questions as modal screens: yes/no (`ConfirmScreen`, returns True or False) and one of a
few choices (`ChoiceScreen`, returns the chosen value). The question is shown as text, never
as markup (it quotes run names and paths)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from engine.parent.tables import plain


class ChoiceScreen(ModalScreen[Any]):
    """A question and a button per answer; each answer's key chooses it, escape the last one."""

    def __init__(self, question: str, choices: list[tuple[str, str, Any]]) -> None:
        super().__init__()
        self.question = question
        self.choices = choices                # (key, label, value)

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(plain(self.question), id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                for index, (key, label, _) in enumerate(self.choices):
                    variant = "primary" if index == len(self.choices) - 1 else "error" if index == 0 else "default"
                    yield Button(f"{label} ({key})", variant=variant, id=f"choice-{index}")

    def on_mount(self) -> None:
        self.query_one(f"#choice-{len(self.choices) - 1}", Button).focus()    # the safe answer

    def on_key(self, event) -> None:
        for key, _, value in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(value)
                return
        if event.key == "escape":
            event.stop()
            self.dismiss(self.choices[-1][2])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.choices[int(event.button.id.split("-")[1])][2])


class ConfirmScreen(ChoiceScreen):
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__(question, [("y", "Yes", True), ("n", "No", False)])

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
