"""Key bindings more than one screen has."""

from __future__ import annotations

from textual.binding import Binding


def hidden(key: str, action: str, description: str) -> Binding:
    """A key listed in `?` and the palette but not in the footer (which fits 80 columns)."""
    return Binding(key, action, description, show=False)


HELP = Binding("question_mark", "app.help", "Help")          # every screen's footer: `?` lists its keys
BACK = Binding("escape", "app.pop_screen", "Back")
RUN_ACTIONS = [hidden("c", "cancel", "Cancel"), hidden("r", "resume", "Resume")]   # a run: list or detail screen
