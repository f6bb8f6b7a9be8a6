"""`hbt-tui --run SPEC`: expand, queue and run experiments with live progress bars, then print
the per-language results (with deltas against the spec's baseline run).

Ctrl-C cancels cleanly: every run gets SIGTERM, checkpoints and is marked cancelled.
Exit code 0 only if every run finished; 2 for bad input (nothing is started then).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from engine.errors import EXIT_USER_ERROR, UserError
from engine.protocol import Event
from engine.store import RunStore

EXIT_INTERRUPTED = 130


def prepare(spec_path: str) -> list:
    """Every run of the spec, validated and with its data and model found, or a UserError."""
    from engine.data.preflight import runnable_specs
    from engine.spec import load_spec

    return runnable_specs(load_spec(spec_path))


class ProgressView:
    """One rich progress bar per run, fed by runner events."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.progress = Progress(TextColumn("{task.fields[name]}", style="bold"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), TimeRemainingColumn(),
                                 console=console, disable=not enabled, transient=False)
        self.tasks: dict[str, int] = {}

    def add(self, run_id: str, name: str) -> None:
        self.tasks[run_id] = self.progress.add_task(name, name=name[:40], detail="queued", total=None)

    def on_event(self, run_id: str, event: Event) -> None:
        task = self.tasks[run_id]
        if event.kind == "started":
            self.progress.update(task, total=max(event.total_steps, 1), completed=event.resumed_from_step,
                                 detail=f"{event.device}")
        elif event.kind == "step":
            self.progress.update(task, completed=event.step, detail=f"loss {event.loss:.3f} · "
                                 f"{event.samples_per_s:.1f} samples/s · {event.batch_kind}")
        elif event.kind == "eval_progress":
            self.progress.update(task, detail=f"eval {event.dataset} {event.stage} ({event.done} texts)")
        elif event.kind == "eval_done":
            self.progress.update(task, detail=f"eval {event.dataset} done")
        elif event.kind in ("finished", "failed", "stopped"):
            self.progress.update(task, detail=event.kind)


def run_specs(spec_path: str, jobs: int, runs_dir: Path, as_json: bool, console: Console, priority: int = 0) -> int:
    try:
        specs = prepare(spec_path)
        store = RunStore(runs_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    for message in store.messages:
        console.print(f"[yellow]{message}[/]")
    return asyncio.run(_run(specs, jobs, store, as_json, console, Path(spec_path).stem, priority))


async def _run(specs: list, jobs: int, store: RunStore, as_json: bool, console: Console, group: str,
               priority: int) -> int:
    from engine.runner import Runner

    view = ProgressView(console, enabled=not as_json)
    runner = Runner(store, cpu_slots=jobs, on_event=view.on_event)
    for message in runner.reconcile():
        console.print(f"[yellow]{message}[/]")
    interrupted = False

    def on_interrupt() -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            console.print("[yellow]cancelling: runs checkpoint and stop (Ctrl-C again is ignored)…[/]")
            asyncio.get_running_loop().create_task(runner.cancel_all())

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGTERM, on_interrupt)
    with view.progress:
        run_ids = []
        for spec in specs:
            run_id = runner.submit(spec, priority=priority, group=group if len(specs) > 1 else None)
            view.add(run_id, spec.name)
            run_ids.append(run_id)
        await runner.wait(run_ids)
    summaries = [store.get(run_id) for run_id in run_ids]
    if as_json:
        print(json.dumps([_json_summary(summary, store) for summary in summaries], indent=2))
    else:
        print_summaries(summaries, store, console)
    if interrupted:
        return EXIT_INTERRUPTED
    return 0 if all(summary["status"] == "finished" for summary in summaries) else 1


def _json_summary(summary: dict, store: RunStore) -> dict:
    keys = ("id", "name", "status", "error", "step", "total_steps", "loss", "device", "results", "spec_hash")
    return {**{key: summary.get(key) for key in keys}, "run_dir": str(store.runs_dir / summary["id"])}


def print_summaries(summaries: list[dict], store: RunStore, console: Console) -> None:
    from engine.report import print_run_results

    for summary in summaries:
        style = {"finished": "green", "failed": "red"}.get(summary["status"], "yellow")
        line = f"[bold]{summary['name']}[/] ({summary['id']}): [{style}]{summary['status']}[/]"
        if summary.get("error"):
            line += f" — {summary['error']}"
        console.print(line)
        if summary["status"] == "finished":
            print_run_results(store, summary, console)
