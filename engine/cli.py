"""The headless command line behind `hbt-tui ...` (no textual here).

    hbt-tui [--runs-dir D] [--jobs N] [--open SPEC]         the terminal UI (see tui.cli)
    hbt-tui --run SPEC [--jobs N] [--runs-dir D] [--json]   expand, queue, run, print results
    hbt-tui runs [--status S] [--name TEXT] [--tag T]        list and filter runs
    hbt-tui show RUN                                         one run: config, results, errors
    hbt-tui compare RUN RUN... [--format table|md|csv|latex] per language, with deltas
    hbt-tui resume RUN | cancel RUN | delete RUN
    hbt-tui index rebuild                                    re-create the index from run folders
    hbt-tui evaluate SPEC|MODEL ...                          stand-alone / zero-shot evaluation
    hbt-tui data fetch [DATASET...]                          download XQuAD-R / MLQA-R

RUN is a run id, a unique prefix of one, or a run name (its newest run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from engine.errors import EXIT_USER_ERROR, RunError, UserError

DEFAULT_RUNS_DIR = "runs"


def runs_dir_of(args: argparse.Namespace) -> Path:
    return Path(args.runs_dir or os.environ.get("HBT_RUNS_DIR") or DEFAULT_RUNS_DIR)


def open_store(args: argparse.Namespace, console: Console):
    from engine.store import RunStore

    store = RunStore(runs_dir_of(args))
    for message in store.messages:
        console.print(f"[yellow]{message}[/]", highlight=False)
    return store


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from engine.headless import run_specs

    return run_specs(args.run_spec, args.jobs, runs_dir_of(args), args.json, console, args.priority)


def _cmd_runs(args: argparse.Namespace, console: Console) -> int:
    runs = open_store(args, console).find(status=args.status, text=args.name, tag=args.tag, strategy=args.strategy)
    runs = runs[:args.limit] if args.limit else runs
    if args.json:
        print(json.dumps(runs, indent=1))
        return 0
    table = Table(title=f"{len(runs)} runs (scores: macro average of the primary metric)", title_justify="left")
    table.add_column("id", overflow="fold")
    for column in ("status", "strategy", "α", "step", "eval", "mono", "cross", "multi", "bias"):
        table.add_column(column, justify="left" if column in ("status", "strategy", "eval") else "right",
                         no_wrap=True)
    from engine.report import fmt
    from engine.run_record import primary_results

    for run in runs:
        dataset, result = primary_results(run)
        metric = result.get("primary", "map")
        macro = result.get("macro", {})
        alpha = f"{run['alpha']:g}" if run.get("strategy") == "hybrid" and run.get("alpha") is not None else ""
        table.add_row(run["id"], run.get("status", "?"), run.get("strategy") or "", alpha,
                      f"{run.get('step') or 0}/{run.get('total_steps') or '?'}", f"{dataset}:{metric}" if dataset else "",
                      *(fmt(macro.get(s)) for s in ("mono", "cross", "multi")),
                      fmt(result.get("bias"), 1))
    console.print(table)
    return 0


def _cmd_show(args: argparse.Namespace, console: Console) -> int:
    from engine.compare import load_run
    from engine.report import results_table

    store = open_store(args, console)
    summary = store.resolve(args.run)
    run_dir = store.runs_dir / summary["id"]
    if args.json:
        print(json.dumps({"summary": summary, "results": load_run(run_dir).results}, indent=1))
        return 0
    console.print(f"[bold]{summary['name']}[/]  {summary['id']}  [bold]{summary['status']}[/]", highlight=False)
    for key in ("encoder", "strategy", "alpha", "train_dataset", "seed", "device", "host", "git_commit",
                "spec_hash", "step", "total_steps", "loss", "error"):
        if summary.get(key) not in (None, ""):
            console.print(f"  {key:<14} {summary[key]}", highlight=False)
    console.print(f"  {'folder':<14} {run_dir}", highlight=False)
    for results in load_run(run_dir).results.values():
        console.print(results_table(results, args.metric))
    if summary.get("status") == "failed" and summary.get("stderr_tail"):
        console.print("[red]stderr (tail):[/]")
        console.print(summary["stderr_tail"], highlight=False, markup=False)
    return 0


def _cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from engine.compare import FORMATS, compare, load_run
    from engine.report import comparison_table

    store = open_store(args, console)
    summaries = [store.resolve(reference) for reference in args.runs]
    runs = [load_run(store.runs_dir / summary["id"], summary["id"]) for summary in summaries]
    datasets = [args.dataset] if args.dataset else sorted({d for run in runs for d in run.results})
    if not datasets:
        raise RunError("none of these runs has evaluation results yet")
    outputs = []
    for dataset in datasets:
        try:
            comparison = compare(runs, dataset, args.metric, tuple(args.setting))
        except ValueError as error:
            raise RunError(str(error)) from None
        if args.format == "table":
            console.print(comparison_table(comparison))
        else:
            outputs.append(FORMATS[args.format](comparison))
    if args.format == "table":
        diff = compare(runs, datasets[0], args.metric).diff
        if diff:
            table = Table(title="config fields that differ", title_justify="left")
            table.add_column("field")
            for run in runs:
                table.add_column(run.name)
            for key, values in diff:
                table.add_row(key, *(json.dumps(value) for value in values))
            console.print(table)
        return 0
    text = "\n".join(outputs)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        console.print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_resume(args: argparse.Namespace, console: Console) -> int:
    import asyncio

    from engine.headless import ProgressView, print_summaries
    from engine.runner import Runner

    from engine.run_record import RESUMABLE

    store = open_store(args, console)
    summary = store.resolve(args.run)
    Runner(store).reconcile()
    summary = store.get(summary["id"])
    if summary["status"] not in RESUMABLE:
        raise RunError(f"run {summary['id']} is {summary['status']}; only {', '.join(RESUMABLE)} runs can be resumed")

    async def resume() -> None:
        view = ProgressView(console, enabled=True)
        runner = Runner(store, cpu_slots=1, on_event=view.on_event)
        with view.progress:
            view.add(summary["id"], summary["name"])
            runner.resume(summary["id"])
            await runner.wait([summary["id"]])

    asyncio.run(resume())
    final = store.get(summary["id"])
    print_summaries([final], store, console)
    return 0 if final["status"] == "finished" else 1


def _cmd_cancel(args: argparse.Namespace, console: Console) -> int:
    import asyncio

    from engine.run_record import ACTIVE, RUN_FILE, pid_alive, read_json, write_json_atomic
    from engine.runner import terminate_group

    store = open_store(args, console)
    summary = store.resolve(args.run)
    if summary["status"] not in ACTIVE:
        raise RunError(f"run {summary['id']} is {summary['status']}, not queued or running")
    run_dir = store.runs_dir / summary["id"]
    write_json_atomic(run_dir / RUN_FILE, {**(read_json(run_dir / RUN_FILE) or {}), "cancel_requested": True})
    pid = summary.get("pid")
    if pid and pid_alive(pid):
        asyncio.run(terminate_group(pid, 20.0, lambda: not pid_alive(pid)))
    if not pid_alive(summary.get("parent_pid")):  # nobody else will record it
        store.update(summary["id"], status="cancelled")
        write_json_atomic(run_dir / RUN_FILE, {**(read_json(run_dir / RUN_FILE) or {}), "status": "cancelled"})
    console.print(f"cancelled {summary['id']}")
    return 0


def _cmd_delete(args: argparse.Namespace, console: Console) -> int:
    import shutil

    from engine.run_record import ACTIVE

    store = open_store(args, console)
    summary = store.resolve(args.run)
    if summary["status"] in ACTIVE:
        raise RunError(f"run {summary['id']} is {summary['status']}; cancel it first")
    if not args.yes:
        raise RunError(f"deleting {summary['id']} removes its folder; add --yes to confirm")
    shutil.rmtree(store.runs_dir / summary["id"], ignore_errors=True)
    store.remove(summary["id"])
    console.print(f"deleted {summary['id']}")
    return 0


def _cmd_index(args: argparse.Namespace, console: Console) -> int:
    store = open_store(args, console)
    console.print(f"rebuilt the index of {store.runs_dir}: {store.rebuild()} runs")
    return 0


def _cmd_data_fetch(args: argparse.Namespace, console: Console) -> int:
    from engine.data.fetch import fetch

    for dataset in args.datasets:
        console.print(f"{dataset}: {fetch(dataset, Path(args.to) if args.to else None)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hbt-tui", description="Hybrid batch training experiments. "
                                     "Without arguments: the terminal UI.")
    parser.add_argument("--run", dest="run_spec", metavar="SPEC",
                        help="run an experiment spec (grids expand) headless")
    parser.add_argument("--jobs", type=int, default=1, help="concurrent runs on CPU (GPUs: one per GPU)")
    parser.add_argument("--priority", type=int, default=0, help="queue priority of these runs (higher first)")
    parser.add_argument("--runs-dir", help="where runs live (default: $HBT_RUNS_DIR or ./runs)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    # the same options after a command (`hbt-tui runs --runs-dir D`); SUPPRESS keeps the earlier value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--jobs", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    def with_common(**kwargs) -> argparse.ArgumentParser:
        return argparse.ArgumentParser(parents=[common], **kwargs)

    commands = parser.add_subparsers(dest="command", parser_class=with_common)
    runs = commands.add_parser("runs", help="list runs")
    runs.add_argument("--status")
    runs.add_argument("--name", help="text in the name or id")
    runs.add_argument("--tag")
    runs.add_argument("--strategy")
    runs.add_argument("--limit", type=int, default=50)
    runs.set_defaults(handler=_cmd_runs)
    show = commands.add_parser("show", help="one run")
    show.add_argument("run")
    show.add_argument("--metric")
    show.set_defaults(handler=_cmd_show)
    compare = commands.add_parser("compare", help="runs side by side per language")
    compare.add_argument("runs", nargs="+")
    compare.add_argument("--dataset")
    compare.add_argument("--metric")
    compare.add_argument("--setting", nargs="+", default=["mono", "cross", "multi"],
                         choices=["mono", "cross", "multi"])
    compare.add_argument("--format", choices=["table", "md", "csv", "latex"], default="table")
    compare.add_argument("--output", help="write md/csv/latex to this file")
    compare.set_defaults(handler=_cmd_compare)
    for name, handler, text in (("resume", _cmd_resume, "continue an interrupted/cancelled/failed run"),
                                ("cancel", _cmd_cancel, "stop a queued or running run"),
                                ("delete", _cmd_delete, "remove a run and its folder")):
        command = commands.add_parser(name, help=text)
        command.add_argument("run")
        if name == "delete":
            command.add_argument("--yes", action="store_true")
        command.set_defaults(handler=handler)
    index = commands.add_parser("index", help="the results index").add_subparsers(
        dest="index_command", required=True, parser_class=with_common)
    index.add_parser("rebuild", help="re-create it from the run folders").set_defaults(handler=_cmd_index)
    commands.add_parser("evaluate", help="stand-alone evaluation (see hbt-tui evaluate --help)", add_help=False)
    data = commands.add_parser("data", help="benchmark data").add_subparsers(
        dest="data_command", required=True, parser_class=with_common)
    fetch = data.add_parser("fetch", help="download XQuAD-R / MLQA-R into the user cache")
    fetch.add_argument("datasets", nargs="*", default=["xquad-r", "mlqa-r"])
    fetch.add_argument("--to", help="data directory to fill (default: the user cache)")
    fetch.set_defaults(handler=_cmd_data_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "evaluate":
        from engine.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    try:
        if args.run_spec:
            return _cmd_run(args, console)
        if not args.command:
            parser.print_help()
            return EXIT_USER_ERROR
        return args.handler(args, console)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
