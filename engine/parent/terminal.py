"""The headless commands' output streams: whatever a plain `print` writes is shown as text.

Messages quote names, paths, statuses and errors read from specs and run folders; any of them
can hold an escape sequence. `guard_streams` wraps stdout and stderr so every control character
that `print` writes (newlines kept) is shown escaped (engine.contract.text.printable); rich's
console keeps the real stream for its own styling and gets user text through
`engine.parent.tables.plain`, never as markup.
"""

from __future__ import annotations

import io
import sys
from typing import TextIO

from engine.contract.text import printable


class PrintableStream(io.TextIOBase):
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        # line ends (CSV's \r\n included) and tabs are layout, every other control character is shown
        safe = "\r\n".join(printable(part, newlines=True).replace("\\x09", "\t") for part in text.split("\r\n"))
        self.stream.write(safe)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.stream, "encoding", "utf-8")


def guard_streams() -> TextIO:
    """Wrap sys.stdout and sys.stderr (once); returns the real stdout, for rich."""
    real = sys.stdout.stream if isinstance(sys.stdout, PrintableStream) else sys.stdout
    if not isinstance(sys.stdout, PrintableStream):
        sys.stdout = PrintableStream(sys.stdout)
    if not isinstance(sys.stderr, PrintableStream):
        sys.stderr = PrintableStream(sys.stderr)
    return real
