"""How a value looks in a table cell: a number right-aligned (a dim dash when missing), a
mean ± sd, a run's status with its icon, a progress bar, a size, a time and a duration."""

from __future__ import annotations

import math
import time

from rich.text import Text

from engine.parent.tables import plain


def number(value: float | None, digits: int = 3) -> Text:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Text("–", style="dim", justify="right")
    return Text(f"{value:.{digits}f}", justify="right")


STATUS_STYLE = {"queued": "cyan", "running": "bold yellow", "finished": "green", "failed": "bold red",
                "cancelled": "magenta", "interrupted": "dark_orange", "missing": "dim red"}
STATUS_ICON = {"queued": "◌", "running": "▶", "finished": "✔", "failed": "✘", "cancelled": "■",
               "interrupted": "⏸", "missing": "?"}


def status_text(status: str) -> Text:
    return plain(f"{STATUS_ICON.get(status, ' ')} {status}", STATUS_STYLE.get(status, ""))


def progress_text(step: int | None, total: int | None) -> Text:
    if not total:
        return Text(f"{step or 0}/?", style="dim")
    filled = int(round(min(1.0, (step or 0) / total) * 4))
    text = Text()
    text.append("━" * filled, style="green")
    text.append("━" * (4 - filled), style="grey37")
    text.append(f" {step or 0}/{total}")
    return text


def size_text(size: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def when(seconds: float | None) -> Text:
    return plain(time.strftime("%m-%d %H:%M", time.localtime(seconds)) if seconds else "", "dim")


def duration(run: dict) -> float | None:
    started, ended = run.get("started"), run.get("ended")
    if not isinstance(started, (int, float)):
        return None
    end = ended if isinstance(ended, (int, float)) else (time.time() if run.get("status") == "running" else None)
    return end - started if end else None


def duration_text(seconds: float | None) -> Text:
    if seconds is None:
        return Text("")
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return Text(f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s", style="dim")


def mean_sd(pair: tuple[float, float | None] | None, digits: int = 3) -> Text:
    if pair is None:
        return Text("–", style="dim")
    mean, sd = pair
    text = Text(f"{mean:.{digits}f}")
    if sd is not None:
        text.append(f"±{sd:.{digits}f}", style="dim")
    return text
