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
| `ctrl+q` | quit (with runs going it asks: cancel them — they checkpoint and can be resumed —, leave them running in the background — a detached `hbt-tui resume` goes on from their checkpoint — or stay) |

## Runs
| key | action |
|---|---|
| `enter` | open the run |
| `n` | compose a new experiment |
| `space` | mark / unmark for comparison · `m` compare the marked runs |
| `c` / `r` / `d` | cancel · resume · delete (asks first, with the folder's size) — not in the footer |
| `s` | cycle the sort column (not in the footer) · `/` filter (`field:value` on any column: `status:failed`, `strategy:hybrid`, `seed:2`; or text) |
| `enter` on a grid or configuration row | fold / unfold its runs (mean ± sd over seeds on the configuration row) |

## Run detail
Per-language table (rows: languages, high/low-resource groups, macro average; columns:
mono / cross / multi and language bias) filling in as the evaluation reports.
`m` next metric · `t` next dataset · `v` Δ against step 0, then each earlier evaluation (`*`: the test says
so) · `k` the run's configuration · `c` cancel · `r` resume (these two are not in the footer).

## Compare
Runs side by side per language with deltas against the baseline (green better, red
worse, `*` significant at p < 0.05 after Holm's correction, the question as the unit), group averages and
the config fields that differ. `b` next baseline · `m` next metric · `t` next dataset ·
`e` export Markdown, CSV and LaTeX to `exports/` · `s` save the comparison to Reports. Runs over
different languages are compared on the languages they share (the footnote names the others).
MIRACL results of different protocols, pools or judgements are refused in one line; `x` compares
them anyway (the footnote says so) and `x` again refuses them again.

## Reports (R)
Saved reports (`hbt-tui report`) and comparisons (CLI or Compare screen), newest first, with
their headline delta. `enter` opens one: its tables and verdict, the α sweep and the
per-language deltas drawn in the terminal. `t` next dataset · `d` delete a saved report.

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
