"""What the headless commands print about runs (the commands in engine.parent.commands call
these; none of them acts on a run).

While runs go: on a terminal a progress bar per run (`ProgressView`); otherwise (`> log`,
nohup, CI, a cluster job) one plain line per state change, per evaluation and every
`--log-every` steps (`PlainView`), so a log shows progress as it happens. Before: the plan of a
`--dry-run` (`print_plan`). After: each run's status and per-language results
(`print_summaries`, `json_summary`). And the listings: `runs_table`, `print_run` (`show`).
"""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from engine.contract.arms import alpha_text
from engine.contract.events import TERMINAL_EVENTS, EvalDone, EvalProgress, Event, Notice, Started, Step
from engine.contract.spec import spec_diff
from engine.contract.layout import SETTINGS
from engine.contract.text import printable
from engine.parent.run_state import RunState
from engine.parent.store import RunStore
from engine.parent.submission import Prepared


class ProgressView:
    """One rich progress bar per run, fed by runner events (on a terminal)."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.progress = Progress(TextColumn("{task.fields[name]}", style="bold", markup=False), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}", markup=False),
                                 TimeRemainingColumn(),
                                 console=console, disable=not enabled, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def add(self, run_id: str, name: str) -> None:
        self.tasks[run_id] = self.progress.add_task(name, name=printable(name[:40]), detail="queued", total=None)

    def _update(self, task: int, detail: str | None = None, **fields) -> None:
        if detail is not None:
            fields["detail"] = printable(detail)       # a notice or a status may quote a path or a name
        self.progress.update(task, **fields)

    def on_status(self, run_id: str, summary: dict) -> None:
        if run_id in self.tasks and summary.get("status") not in ("running", None):
            self._update(self.tasks[run_id], detail=summary["status"])

    def on_event(self, run_id: str, event: Event) -> None:
        task = self.tasks.get(run_id)
        if task is None:
            return
        if isinstance(event, Started):
            self._update(task, total=max(event.total_steps, 1), completed=event.resumed_from_step,
                         detail=f"{event.device}")
        elif isinstance(event, Notice):
            self._update(task, detail=event.message)
        elif isinstance(event, Step):
            self._update(task, completed=event.step, detail=f"loss {event.loss:.3f} · "
                         f"{event.samples_per_s:.1f} samples/s · {event.batch_kind}")
        elif isinstance(event, EvalProgress):
            self._update(task, detail=f"eval {event.dataset} {event.stage} ({event.done} texts)")
        elif isinstance(event, EvalDone):
            self._update(task, detail=f"eval {event.dataset} done")
        elif isinstance(event, TERMINAL_EVENTS):
            self._update(task, detail=event.kind)


class PlainView:
    """One plain line per state change, per evaluation and every `log_every` steps (not a terminal).
    Each run's state is the one fold of its events (engine.parent.run_state) the runner and the
    TUI use: the step, loss, samples/s and ETA printed are the ones they show."""

    def __init__(self, stream, log_every: int) -> None:
        self.stream = stream
        self.log_every = max(1, log_every)
        self.names: dict[str, str] = {}
        self.status: dict[str, str] = {}
        self.states: dict[str, RunState] = {}

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc) -> None:
        self.stream.flush()

    def line(self, run_id: str, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {self.names.get(run_id, run_id)}: {text}", file=self.stream, flush=True)

    def add(self, run_id: str, name: str) -> None:
        self.names[run_id] = name
        self.status[run_id] = "queued"
        self.line(run_id, f"queued ({run_id})")

    def on_status(self, run_id: str, summary: dict) -> None:
        status = summary.get("status")
        if run_id not in self.names or status in (None, self.status.get(run_id)):
            return
        self.status[run_id] = status
        error = f" — {summary['error']}" if summary.get("error") and status not in ("finished", "running") else ""
        self.line(run_id, f"{status}{error}")

    def on_event(self, run_id: str, event: Event) -> None:
        if run_id not in self.names:
            return
        state = self.states.setdefault(run_id, RunState())
        state.apply(event)
        if isinstance(event, Notice):
            self.line(run_id, event.message)
        elif isinstance(event, Started):
            self.line(run_id, f"started on {state.device} ({state.precision}), {state.total_steps} steps")
        elif isinstance(event, Step):
            self._step(run_id, state, event)
        elif isinstance(event, EvalDone):
            metric = event.primary_metric or next(iter(next(iter(event.macro.values()), {})), "map")
            scores = " ".join(f"{setting} {values.get(metric, float('nan')):.3f}" for setting, values in event.macro.items())
            self.line(run_id, f"eval {event.dataset} at step {event.step}: {metric} {scores} "
                              f"({event.seconds:.0f} s)")

    def _step(self, run_id: str, state: RunState, event: Step) -> None:
        if event.step % self.log_every and event.step != event.total_steps:
            return
        seconds = state.eta_seconds()
        eta = f" · ETA {format_seconds(seconds)}" if seconds is not None else ""
        self.line(run_id, f"step {state.step}/{state.total_steps} · loss {state.loss:.4f} · "
                          f"{state.samples_per_s:.1f} samples/s{eta}")


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def print_plan(prepared: Prepared, source: str, continuation=None, jobs: int = 1) -> None:
    """--dry-run: the runs that would be created (and, on a runs directory holding some of them,
    those skipped, resumed or left), the fields that differ, what was checked, the time the rest
    should take (plain lines: a plan is read by people and by scripts alike)."""
    from engine.parent.continuation import estimate

    specs = prepared.specs if continuation is None else continuation.start
    differing = spec_diff([run.to_dict() for run in prepared.specs]) if len(prepared.specs) > 1 else []
    index_of = {run.name: index for index, run in enumerate(prepared.specs)}
    print(f"{source}: {len(specs)} run{'s' if len(specs) != 1 else ''} would be created "
          "(dry run: nothing was started)")
    width = max((len(run.name) for run in prepared.specs), default=0)
    for run in specs:
        fields = "  ".join(f"{key}={json.dumps(values[index_of[run.name]])}" for key, values in differing)
        print(f"  {run.name:<{width}}  {fields}".rstrip())
    if continuation is not None:
        for title, items in (("would be resumed from their checkpoints", continuation.resume),
                             ("already finished: skipped", continuation.finished),
                             ("failed: kept as they are (--retry-failed re-runs them)", continuation.failed),
                             ("queued or running in another process: left to it", continuation.elsewhere)):
            if items:
                print(f"{len(items)} {title}:")
                for spec, summary in items:
                    progress = f" (step {summary.get('step') or 0}/{summary.get('total_steps') or '?'})" \
                        if title.startswith("would be resumed") else ""
                    print(f"  {spec.name:<{width}}  {summary['id']}{progress}")
        seconds = estimate(continuation, jobs)
        if continuation.start or continuation.resume:
            print(f"estimated time of what remains: {format_seconds(seconds)} with --jobs {jobs} (the mean of "
                  f"{len(continuation.finished)} finished runs)" if seconds is not None
                  else "estimated time of what remains: unknown (no finished run of this grid to time)")
    checks = sorted({describe_checks(facts) for facts in prepared.facts})
    for text in checks:
        print(f"checked{' for every run' if len(checks) == 1 else ''}: {text}")


def describe_checks(facts: dict) -> str:
    parts = ["spec", "data", f"model ({facts['positions']} positions)" if facts.get("positions") else "model"]
    if "training_pairs" in facts:
        parts.append(f"batches ({facts['training_pairs']} training pairs)")
    if "cuda" in facts:
        parts.append("device")
    return ", ".join(parts)


def json_summary(summary: dict, store: RunStore) -> dict:
    keys = ("id", "name", "status", "error", "step", "total_steps", "loss", "device", "results", "spec_hash")
    return {**{key: summary.get(key) for key in keys}, "run_dir": str(store.runs_dir / summary["id"])}


def print_summaries(summaries: list[dict], store: RunStore, console: Console) -> None:
    from engine.parent.tables import plain, print_run_results

    for summary in summaries:
        style = {"finished": "green", "failed": "red"}.get(summary["status"], "yellow")
        line = Text.assemble(plain(summary["name"], "bold"), plain(f" ({summary['id']}): "),
                             plain(summary["status"], style))
        if summary.get("error"):
            line.append_text(plain(f" — {summary['error']}"))
        console.print(line, soft_wrap=True)
        if summary["status"] == "finished":
            print_run_results(store, summary, console)


def runs_table(runs: list[dict], width: int) -> Table:
    """`hbt-tui runs`: one row per run, the columns that fit `width` (the least needed go first)."""
    from engine.parent.records import primary_results, where_label
    from engine.parent.tables import fmt, plain

    clustered = any(where_label(run) != "local" for run in runs)   # a column only where it says something
    rows = []
    for run in runs:
        dataset, result = primary_results(run)
        macro = result.get("macro", {})
        rows.append({"id": run["id"], "status": run.get("status", "?"), "strategy": run.get("strategy") or "",
                     "α": alpha_text(run.get("strategy"), run.get("alpha")),
                     "step": f"{run.get('step') or 0}/{run.get('total_steps') or '?'}",
                     "eval": f"{dataset}:{result.get('primary', 'map')}" if dataset else "",
                     **{setting: fmt(macro.get(setting)) for setting in SETTINGS},
                     "bias": fmt(result.get("bias"), 1), "where": where_label(run)})
    columns = ["id", "status", "strategy", "α", "step", "eval", *SETTINGS, "bias"]
    columns += ["where"] if clustered else []
    # the id stays whole (it is what every other command takes); the least needed columns go first
    for optional in ("eval", "where", "α", "bias", "strategy", "step", "cross", "mono", "multi", "status"):
        needed = sum(max([len(column)] + [len(printable(row[column])) for row in rows]) + 3 for column in columns)
        if needed <= width:
            break
        columns.remove(optional) if optional in columns else None
    table = Table(title=f"{len(runs)} runs (scores: macro average of the primary metric)", title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("id", "status", "strategy", "eval", "where") else "right",
                         no_wrap=True, min_width=max([len(row["id"]) for row in rows] + [2]) if column == "id" else None)
    for row in rows:
        table.add_row(*(plain(row[column]) for column in columns))
    return table


def print_run(summary: dict, store: RunStore, console: Console, metric: str | None, with_cis: bool) -> None:
    """`hbt-tui show RUN`: its record, its results per dataset (with `with_cis`, 95 % intervals)
    and, for a failed run, the tail of its stderr."""
    from engine.parent.compare import load_run, value_cis
    from engine.parent.records import MISSING
    from engine.parent.tables import plain, results_table

    folder = store.folder(summary["id"])
    console.print(Text.assemble(plain(summary["name"], "bold"), "  ", plain(summary["id"]), "  ",
                                plain(summary["status"], "bold")))
    if summary["status"] == MISSING:
        console.print(plain(f"  its folder {folder.path} is gone: no results to show "
                            "(`hbt-tui delete` removes it from the index)"), soft_wrap=True)
        return
    for key in ("encoder", "strategy", "alpha", "train_dataset", "seed", "device", "host", "git_commit",
                "spec_hash", "step", "total_steps", "loss", "error"):
        if summary.get(key) not in (None, ""):
            console.print(plain(f"  {key:<14} {summary[key]}"), soft_wrap=True)
    console.print(plain(f"  {'folder':<14} {folder.path}"), soft_wrap=True)
    run = load_run(folder)
    for dataset, dataset_results in run.results.items():
        cis = value_cis(run, dataset, metric or dataset_results.get("primary_metric", "map")) if with_cis else None
        console.print(results_table(dataset_results, metric, cis))
    if summary.get("status") == "failed" and summary.get("stderr_tail"):
        console.print(Text("stderr (tail):", style="red"))
        console.print(plain(summary["stderr_tail"], newlines=True))
