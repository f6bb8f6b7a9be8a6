"""`hbt-tui --run SPEC`: check, expand, queue and run experiments, then print the per-language
results (with deltas against the spec's baseline run).

On a terminal each run gets a progress bar; otherwise (`> log`, nohup, CI, a cluster job)
one plain line per state change, per evaluation and every `--log-every` steps, so a log
shows progress as it happens. `--json` prints only the final JSON. `--dry-run` checks
everything and prints the runs it would create, starting nothing.

Ctrl-C cancels cleanly, during submission too: every run gets SIGTERM, checkpoints and is
marked cancelled. Exit code 0 only if every run finished; 2 for bad input — found before
anything starts (nothing is created), or when a submission is refused midway (a full disk):
the runs already queued are then cancelled with checkpoints and listed, never lost.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from engine.contract.errors import EXIT_USER_ERROR, RunError, UserError
from engine.contract.events import TERMINAL_EVENTS, EvalDone, EvalProgress, Event, Notice, Started, Step
from engine.contract.spec import spec_diff
from engine.contract.text import printable
from engine.parent.run_service import open_store
from engine.parent.run_state import RunState
from engine.parent.store import RunStore
from engine.parent.submission import Prepared

EXIT_INTERRUPTED = 130


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


async def run_prepared(prepared: Prepared, jobs: int, store: RunStore, console: Console, *, as_json: bool,
                       priority: int = 0, log_every: int = 10, executor: str | None = None,
                       partition: str | None = None, retry_failed: bool = False,
                       track: list[str] | None = None) -> int:
    from engine.parent.run_service import RunService

    specs = prepared.specs
    view = (ProgressView(console, enabled=not as_json) if console.is_terminal or as_json
            else PlainView(sys.stdout, log_every))
    service = RunService.start(store, jobs, on_event=view.on_event, on_status=view.on_status, executor=executor,
                               partition=partition, trackers=track)
    for message in service.reconcile():
        print(f"note: {message}", file=sys.stderr)
    interrupted = False

    def on_interrupt() -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            print("cancelling: runs checkpoint and stop (Ctrl-C again is ignored)…", file=sys.stderr)
            asyncio.get_running_loop().create_task(service.cancel_all())

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGTERM, on_interrupt)
    from engine.parent.continuation import plan

    continuation = plan(specs, store, retry_failed)
    for title, items in (("already finished: skipped", continuation.finished),
                         ("failed: kept as it is (--retry-failed re-runs it)", continuation.failed),
                         ("queued or running in another process: left to it", continuation.elsewhere)):
        for spec, summary in items:
            print(f"note: {spec.name} ({summary['id']}) {title}", file=sys.stderr)
    run_ids, failure = [], None
    with view:
        for spec, summary in continuation.work:
            if interrupted:
                break
            try:
                run_id = service.queue(spec, summary, priority=priority, group=prepared.group, source=prepared.source)
            except UserError as error:  # e.g. the disk filled up: keep what was queued, stop cleanly
                failure = error
                break
            view.add(run_id, spec.name)
            run_ids.append(run_id)
            await asyncio.sleep(0)  # let Ctrl-C in between submissions
        if interrupted or failure is not None:
            await service.cancel_all()
        await service.wait(run_ids)
    summaries = [service.final_summary(run_id) or {"id": run_id, "name": run_id, "status": "missing"}
                 for run_id in run_ids]
    if as_json:      # the whole grid: what ran now, and what was left as it was (marked)
        kept = [{**_json_summary(store.get(summary["id"]) or summary, store), "skipped": True}
                for _, summary in continuation.finished + continuation.failed + continuation.elsewhere]
        print(json.dumps([_json_summary(summary, store) for summary in summaries] + kept, indent=2))
    else:
        print_summaries(summaries, store, console)
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return EXIT_USER_ERROR
    if interrupted:
        return EXIT_INTERRUPTED
    if not continuation.work:
        print(f"nothing to do: {len(continuation.finished)} of the {len(specs)} runs already finished"
              + (f", {len(continuation.failed)} failed (--retry-failed)" if continuation.failed else "")
              + (f", {len(continuation.elsewhere)} running elsewhere" if continuation.elsewhere else ""),
              file=sys.stderr)
    complete = all(summary["status"] == "finished" for summary in summaries) and not continuation.failed
    return 0 if complete and (summaries or continuation.finished) else 1


def run_spec_file(spec_path: str, jobs: int, runs_dir: Path, console: Console, *, as_json: bool, priority: int = 0,
                  dry_run: bool = False, yes: bool = False, log_every: int = 10, nproc: int | None = None,
                  executor: str | None = None, partition: str | None = None, retry_failed: bool = False,
                  track: list[str] | None = None) -> int:
    from engine.contract.validation import read_document
    from engine.parent.executors import from_spec
    from engine.parent.submission import check_baseline, prepare

    if jobs < 1:
        raise RunError(f"--jobs must be at least 1, got {jobs}")
    document = read_document(spec_path)
    if nproc is not None and isinstance(document, dict):
        document["train"] = {**(document.get("train") or {}), "devices": nproc}
    prepared = prepare(document, spec_path, allow_large=yes)   # before any folder exists
    from_spec(executor, partition).check()                      # a cluster that cannot be reached starts nothing
    store = open_store(runs_dir)
    check_baseline(prepared.specs, store)
    if dry_run:
        from engine.parent.continuation import plan

        print_plan(prepared, spec_path, plan(prepared.specs, store, retry_failed), jobs)
        from engine.parent.launch import detect_gpus
        from engine.parent.miracl_cost import cost_lines

        for line in cost_lines(prepared.specs, store, "cuda" if detect_gpus() else "cpu"):
            print(line)
        return 0
    return asyncio.run(run_prepared(prepared, jobs, store, console, as_json=as_json, priority=priority,
                                    log_every=log_every, executor=executor, partition=partition,
                                    retry_failed=retry_failed, track=track))


def _json_summary(summary: dict, store: RunStore) -> dict:
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
