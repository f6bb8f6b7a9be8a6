"""A log that keeps its newest line in view when its size changes, as it does when lines arrive."""

from __future__ import annotations

from textual import events
from textual.widgets import Log


class TailLog(Log):
    """Textual's `Log` scrolls to its end on new lines only. When a layout breakpoint or a resized
    terminal makes it shorter, the lines it showed would stay where they were and the newest ones fall
    out of view; this one follows its tail again once the new size is laid out (while `auto_scroll`)."""

    def on_resize(self, event: events.Resize) -> None:
        if self.auto_scroll:
            self.call_after_refresh(self.scroll_end, animate=False)
