"""How a number looks in a table cell: right-aligned, a dim dash when missing."""

from __future__ import annotations

import math

from rich.text import Text


def number(value: float | None, digits: int = 3) -> Text:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Text("–", style="dim", justify="right")
    return Text(f"{value:.{digits}f}", justify="right")
