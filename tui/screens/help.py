"""Keys and concepts, one screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# hbt-tui

Compose multilingual dense-retrieval experiments, queue them, watch them train and
evaluate, and compare runs per language.

## Everywhere
| key | action |
|---|---|
| `ctrl+p` | command palette (new experiment, open spec, compare, rebuild index, open a run) |
| `?` | this help |
| `escape` | back |
| `ctrl+q` | quit (running runs are cancelled: they checkpoint and can be resumed) |

## Runs
| key | action |
|---|---|
| `enter` | open the run |
| `n` | compose a new experiment |
| `space` | mark / unmark for comparison · `m` compare the marked runs |
| `c` / `r` / `d` | cancel · resume · delete (asks first) |
| `s` | cycle the sort column · `/` filter (`status:failed`, `strategy:hybrid`, text) |

## Run detail
Per-language table (rows: languages, high/low-resource groups, macro average; columns:
mono / cross / multi and language bias) filling in as the evaluation reports.
`m` next metric · `t` next dataset · `c` cancel · `r` resume.

## Compare
Runs side by side per language with deltas against the baseline (green better, red
worse, `*` significant at p < 0.05 after Holm's correction, the question as the unit), group averages and
the config fields that differ. `b` next baseline · `m` next metric · `t` next dataset ·
`e` export Markdown, CSV and LaTeX to `exports/`.

## Reports (R)
Saved reports (`hbt-tui report`) and comparisons (CLI or Compare screen), newest first, with
their headline delta. `enter` opens one: its tables and verdict, the α sweep and the
per-language deltas drawn in the terminal. `t` next dataset.

## Compose
Fields validate as you type (the spec validator's messages). `ctrl+s` save as
`experiments/<name>.json` · `ctrl+r` queue · `ctrl+o` open a spec file. The grid builder
sweeps any field, e.g. an α sweep or all four strategies.

## Settings
- **mono**: queries in X against candidates in X · **cross**: X against each Y ≠ X
  (mean over Y) · **multi**: X against the pooled candidates of all languages.
- **language bias**: max − min rank of a query's parallel relevant candidates in the
  multilingual ranking (lower is better).
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)
