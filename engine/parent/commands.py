"""The headless commands behind `hbt-tui ...` (no textual here).

    hbt-tui --run SPEC [--jobs N] [--dry-run] [--yes] [--json]   check, expand, queue, run, print results
    hbt-tui runs [--status S] [--name TEXT] [--tag T] [--filter F]  list and filter runs
    hbt-tui show RUN                                              one run: config, results, errors
    hbt-tui compare RUN RUN... [--format table|md|csv|latex]      per language, with deltas
    hbt-tui resume RUN… [--jobs N] | cancel RUN | delete RUN --yes
    hbt-tui report RUNS|NAME|GRID... [--out DIR]                  the study's answer: tables, figures, verdict
    hbt-tui plan RUNS|NAME [--effect 0.01] [--power 0.8]          seeds and ids a wanted effect needs
    hbt-tui reports                                               saved reports and comparisons
    hbt-tui index rebuild                                         re-create the index from run folders
    hbt-tui evaluate SPEC|RUN|MODEL ...                           a zero-shot run, queued like any other
    hbt-tui data fetch [DATASET...]                               download XQuAD-R / MLQA-R
    hbt-tui cache info | cache clear                              the embedding cache

RUN is a run id, a unique prefix of one, or a run name (its newest run). Every message meant
for a person goes to stderr as one plain line (never wrapped), so `--json` output stays pure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console

from engine.contract.errors import EXIT_USER_ERROR, UserError
from engine.contract.layout import SETTINGS
from engine.contract.text import printable
from engine.parent.run_service import open_store, runs_dir_of
from engine.parent import run_commands
from engine.parent.terminal import guard_streams
from engine.parent.study_commands import (
    add_family_options,
    add_test_options,
    compare_command,
    export_command,
    plan_command,
    push_command,
    report_command,
    reports_command,
)

if TYPE_CHECKING:
    from engine.parent.store import RunStore
    from engine.parent.submission import Prepared

EXIT_INTERRUPTED = 130


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    """`--run SPEC`: check and expand the spec (bad input: one line, exit 2, nothing created),
    then run what the grid still needs through the run service and print the per-language
    results (with deltas against the spec's baseline run). `--dry-run` prints the plan and
    starts nothing."""
    from engine.contract.validation import read_document
    from engine.parent.executors import from_spec
    from engine.parent.submission import check_baseline, prepare

    document = read_document(args.run_spec)
    if args.nproc is not None and isinstance(document, dict):
        document["train"] = {**(document.get("train") or {}), "devices": args.nproc}
    prepared = prepare(document, args.run_spec, allow_large=args.yes)   # before any folder exists
    from_spec(args.executor, args.partition).check()                      # an unreachable cluster starts nothing
    store = open_store(runs_dir_of(args))
    check_baseline(prepared.specs, store)
    if args.dry_run:
        from engine.parent.continuation import plan
        from engine.parent.launch import detect_gpus
        from engine.parent.miracl_cost import cost_lines
        from engine.parent.run_views import print_plan

        print_plan(prepared, args.run_spec, plan(prepared.specs, store, args.retry_failed), args.jobs)
        for line in cost_lines(prepared.specs, store, "cuda" if detect_gpus() else "cpu"):
            print(line)
        return 0
    return asyncio.run(_run_grid(prepared, store, console, args.jobs, as_json=args.json, priority=args.priority,
                                 log_every=args.log_every, executor=args.executor, partition=args.partition,
                                 retry_failed=args.retry_failed, track=args.track))


async def _run_grid(prepared: Prepared, store: RunStore, console: Console, jobs: int, *, as_json: bool,
                    priority: int = 0, log_every: int = 10, executor: str | None = None,
                    partition: str | None = None, retry_failed: bool = False,
                    track: list[str] | None = None) -> int:
    """Run what a checked grid still needs and print the outcome. Ctrl-C cancels cleanly, during
    submission too (every run checkpoints and is marked cancelled). Exit 0 only if every run
    finished; 2 when a submission was refused midway (a full disk: the runs already queued are
    cancelled with checkpoints and listed, never lost); 130 when interrupted."""
    from engine.parent.continuation import plan
    from engine.parent.run_service import RunService
    from engine.parent.run_views import PlainView, ProgressView, json_summary, print_summaries

    view = (ProgressView(console, enabled=not as_json) if console.is_terminal or as_json
            else PlainView(sys.stdout, log_every))
    service = RunService.start(store, jobs, on_event=view.on_event, on_status=view.on_status, executor=executor,
                               partition=partition, trackers=track)
    for message in service.reconcile():
        print(f"note: {message}", file=sys.stderr)

    def on_interrupt() -> None:
        if service.interrupt():
            print("cancelling: runs checkpoint and stop (Ctrl-C again is ignored)…", file=sys.stderr)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    loop.add_signal_handler(signal.SIGTERM, on_interrupt)
    continuation = plan(prepared.specs, store, retry_failed)
    left = continuation.finished + continuation.failed + continuation.elsewhere
    for title, items in (("already finished: skipped", continuation.finished),
                         ("failed: kept as it is (--retry-failed re-runs it)", continuation.failed),
                         ("queued or running in another process: left to it", continuation.elsewhere)):
        for spec, summary in items:
            print(f"note: {spec.name} ({summary['id']}) {title}", file=sys.stderr)
    with view:
        outcome = await service.run_grid(continuation.work, priority=priority, group=prepared.group,
                                         source=prepared.source, on_queued=view.add)
    summaries = [service.final_summary(run_id) or {"id": run_id, "name": run_id, "status": "missing"}
                 for run_id in outcome.run_ids]
    if as_json:      # the whole grid: what ran now, and what was left as it was (marked)
        kept = [{**json_summary(store.get(summary["id"]) or summary, store), "skipped": True} for _, summary in left]
        print(json.dumps([json_summary(summary, store) for summary in summaries] + kept, indent=2))
    else:
        print_summaries(summaries, store, console)
    if outcome.failure is not None:
        print(f"error: {outcome.failure}", file=sys.stderr)
        return EXIT_USER_ERROR
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if not continuation.work:
        print(f"nothing to do: {len(continuation.finished)} of the {len(prepared.specs)} runs already finished"
              + (f", {len(continuation.failed)} failed (--retry-failed)" if continuation.failed else "")
              + (f", {len(continuation.elsewhere)} running elsewhere" if continuation.elsewhere else ""),
              file=sys.stderr)
    complete = all(summary["status"] == "finished" for summary in summaries) and not continuation.failed
    return 0 if complete and (summaries or continuation.finished) else 1


def _cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    """A zero-shot evaluation is a run: checked, queued, indexed and compared like any other."""
    from engine.parent.zero_shot import zero_shot_document
    from engine.parent.submission import prepare

    store = open_store(runs_dir_of(args))
    document = zero_shot_document(args.target, store=store, datasets=args.datasets, languages=args.languages,
                                  max_queries=args.max_queries, data_dir=args.data_dir, name=args.name)
    prepared = prepare(document, args.target, store=store)
    return asyncio.run(_run_grid(prepared, store, console, 1, as_json=args.json))


class Parser(argparse.ArgumentParser):
    """argparse, with bad arguments said in one line (`error: ...`, exit 2) like every other input."""

    def error(self, message: str) -> None:
        print(f"error: {printable(message)} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def bounded(low: float, high: float, kind: type = int):
    """An argparse type: a number of `kind` in [low, high], named when out of range."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text[:40]!r}") from None
        if not low <= value <= high:      # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be in [{low:g}, {high:g}], got {text[:40]}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hbt-tui", description="Hybrid batch training experiments. Without arguments: the terminal UI.")
    parser.add_argument("--run", dest="run_spec", metavar="SPEC",
                        help="run an experiment spec (grids expand) headless")
    parser.add_argument("--jobs", type=bounded(1, 1024), default=1, help="concurrent runs on CPU (GPUs: one per GPU)")
    parser.add_argument("--priority", type=bounded(-10**6, 10**6), default=0, help="queue priority of these runs (higher first)")
    parser.add_argument("--dry-run", action="store_true", help="check everything and list the runs; start nothing")
    parser.add_argument("--yes", action="store_true", help="queue grids of more than 200 runs")
    parser.add_argument("--retry-failed", action="store_true",
                        help="re-run (from their checkpoints) the grid's runs that failed; finished ones are skipped "
                        "and interrupted ones resumed either way")
    parser.add_argument("--log-every", type=bounded(1, 10**9), default=10, help="when not on a terminal: a line every N steps")
    parser.add_argument("--nproc", type=bounded(1, 1024), help="run each run over N processes/GPUs (sets train.devices)")
    parser.add_argument("--executor", help="local (default), ray://HOST:PORT (a Ray dashboard), slurm, "
                        "submitit-local; or set it in ./hbt-tui.json or $HBT_EXECUTOR")
    parser.add_argument("--partition", help="the Slurm partition (with --executor slurm)")
    parser.add_argument("--track", nargs="+", choices=["mlflow", "wandb"],
                        help="forward the runs live to these trackers (or \"trackers\" in ./hbt-tui.json)")
    parser.add_argument("--runs-dir", help="where runs live (default: $HBT_RUNS_DIR or ./runs)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--open", dest="open_spec", metavar="SPEC", help="the UI: open this spec file in Compose")
    # the same options after a command (`hbt-tui runs --runs-dir D`); SUPPRESS keeps the earlier value
    common = Parser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--jobs", type=bounded(1, 1024), default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def with_common(**kwargs) -> argparse.ArgumentParser:
        return Parser(parents=[common], **kwargs)

    commands = parser.add_subparsers(dest="command", parser_class=with_common)
    runs = commands.add_parser("runs", help="list runs")
    runs.add_argument("--status")
    runs.add_argument("--name", help="text in the name or id")
    runs.add_argument("--tag")
    runs.add_argument("--strategy")
    runs.add_argument("--filter", help="the Runs screen's filter: 'status:failed strategy:hyb text'")
    runs.add_argument("--limit", type=bounded(1, 10**7), default=50)
    runs.set_defaults(handler=run_commands.cmd_runs)
    show = commands.add_parser("show", help="one run")
    show.add_argument("run")
    show.add_argument("--metric")
    show.add_argument("--ci", action="store_true", help="95 %% confidence intervals (bootstrap over questions)")
    show.set_defaults(handler=run_commands.cmd_show)
    compare = commands.add_parser("compare", help="runs side by side per language")
    compare.add_argument("runs", nargs="+")
    compare.add_argument("--dataset")
    compare.add_argument("--metric")
    compare.add_argument("--setting", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    compare.add_argument("--format", choices=["table", "md", "csv", "latex"], default="table")
    compare.add_argument("--output", help="write md/csv/latex to this file (a new file, or --force)")
    compare.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    add_test_options(compare)
    compare.add_argument("--allow-mixed-protocols", action="store_true",
                         help="compare MIRACL results of different protocols or pools")
    compare.add_argument("--require-seeds", action="store_true",
                         help="refuse systems with a single run (mean ± sd over seeds needs 2 or more)")
    compare.set_defaults(handler=compare_command)
    for name, handler, text in (("resume", run_commands.cmd_resume,
                                 "continue interrupted/cancelled/failed runs (--jobs N at once)"),
                                ("cancel", run_commands.cmd_cancel, "stop a queued or running run (any parent's)"),
                                ("delete", run_commands.cmd_delete, "remove a run and its folder")):
        command = commands.add_parser(name, help=text)
        if name == "resume":   # several at once with --jobs N
            command.add_argument("runs", nargs="+", metavar="run")
        else:
            command.add_argument("run")
        if name == "delete":
            command.add_argument("--yes", action="store_true")
        command.set_defaults(handler=handler)
    from engine.parent.miracl_commands import add_miracl_parser

    add_miracl_parser(commands, with_common)
    report = commands.add_parser("report", help="a study's answer: tables, figures and a verdict")
    report.add_argument("references", nargs="+", metavar="RUNS|NAME|GRID",
                        help="runs by id, prefix or name, or every run of a grid (the spec's name)")
    report.add_argument("--out", help="also write the report into this new folder (e.g. docs/study)")
    report.add_argument("--force", action="store_true", help="replace --out if it exists")
    report.add_argument("--metric", nargs="+", help="metrics to report (default: the primary one and mAP@10)")
    report.add_argument("--partial", action="store_true", help="include unfinished runs (marked [partial])")
    report.add_argument("--allow-mixed", action="store_true", help="runs of different encoders in one report")
    report.add_argument("--allow-mixed-protocols", action="store_true",
                        help="MIRACL results of different protocols or pools in one report")
    report.add_argument("--title", help="the report's title")
    add_family_options(report)
    add_test_options(report, "the confirmatory hypotheses (exploratory tables: Benjamini-Hochberg within each)")
    report.set_defaults(handler=report_command)
    plan = commands.add_parser("plan", help="seeds and question ids a wanted effect needs, sized from pilot runs")
    plan.add_argument("references", nargs="+", metavar="RUNS|NAME|GRID", help="the pilot: runs, names or a grid")
    plan.add_argument("--power", type=bounded(0.5, 0.999, float), default=0.8, help="the power wanted for every hypothesis (default 0.8)")
    plan.add_argument("--max-questions", type=bounded(2, 10**7), help="question ids available (default: all the dataset has)")
    plan.add_argument("--budget-hours", type=bounded(0.01, 10**5, float), help="also: the design that fits this many hours of runs")
    plan.add_argument("--allow-mixed", action="store_true", help="runs of different encoders in one pilot")
    add_family_options(plan)
    add_test_options(plan, "the hypotheses")
    plan.set_defaults(handler=plan_command)
    commands.add_parser("reports", help="saved reports and comparisons").set_defaults(handler=reports_command)
    export = commands.add_parser("export", help="runs into MLflow or Weights & Biases (again: updated, never twice)")
    export.add_argument("tracker", choices=["mlflow", "wandb"])
    export.add_argument("references", nargs="+", metavar="RUNS|NAME|GRID")
    export.add_argument("--tracking-uri", help="MLflow: a server or a store (default $MLFLOW_TRACKING_URI or ./mlruns)")
    export.add_argument("--dir", help="W&B: where its wandb/ folder goes (default: here)")
    export.add_argument("--online", action="store_true", help="W&B: upload now (needs `wandb login`); default offline")
    export.set_defaults(handler=export_command)
    push = commands.add_parser("push", help="a run's model (with its model card) to the Hugging Face Hub")
    push.add_argument("run")
    push.add_argument("repo_id", metavar="REPO_ID", help="user/name on the Hub")
    push.add_argument("--private", action="store_true")
    push.set_defaults(handler=push_command)
    index = commands.add_parser("index", help="the results index").add_subparsers(
        dest="index_command", required=True, parser_class=with_common)
    index.add_parser("rebuild", help="re-create it from the run folders").set_defaults(handler=run_commands.cmd_index)
    evaluate = commands.add_parser("evaluate", help="a zero-shot evaluation of an encoder, as a run")
    evaluate.add_argument("target", help="a spec JSON (its encoder, untrained), a finished run (id, name or "
                          "folder: its trained model), a hub model name, a model folder or bundled:multilingual-e5-small")
    evaluate.add_argument("--datasets", nargs="+", help="evaluation datasets (default: the spec's, xquad-r)")
    evaluate.add_argument("--languages", nargs="+", help="languages (default: all the dataset has)")
    evaluate.add_argument("--max-queries", type=bounded(1, 10**7), help="questions per language (a representative slice)")
    evaluate.add_argument("--data-dir", help="data directory (default: spec, $HBT_DATA_DIR, user cache)")
    evaluate.add_argument("--name", help="the run's name (default: zero-shot-<model>)")
    evaluate.set_defaults(handler=_cmd_evaluate)
    cache = commands.add_parser("cache", help="the embedding cache").add_subparsers(
        dest="cache_command", required=True, parser_class=with_common)
    cache.add_parser("info", help="where it is, its size and limit").set_defaults(handler=run_commands.cmd_cache)
    cache.add_parser("clear", help="remove every cached embedding").set_defaults(handler=run_commands.cmd_cache)
    data = commands.add_parser("data", help="benchmark data").add_subparsers(
        dest="data_command", required=True, parser_class=with_common)
    fetch = data.add_parser("fetch", help="download XQuAD-R / MLQA-R into the user cache")
    fetch.add_argument("datasets", nargs="*", default=["xquad-r", "mlqa-r"])
    fetch.add_argument("--to", help="data directory to fill (default: the user cache)")
    fetch.set_defaults(handler=run_commands.cmd_data_fetch)
    return parser


def main(argv: list[str] | None = None, default: Callable[[argparse.Namespace], int] | None = None) -> int:
    """The headless commands; with no command and no --run, `default` (the TUI) or the help."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if default is not None and not args.command and not args.run_spec:
        return default(args)
    import gc

    gc.enable()          # `hbt-tui` pauses it for the UI's start-up
    real_stdout = guard_streams()            # what `print` writes is shown as text, control characters escaped
    console = Console(file=real_stdout, markup=False, emoji=False, highlight=False)   # never markup either
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
    except KeyboardInterrupt:       # Ctrl-C before any run started (the checks, a report): no traceback
        print("error: interrupted; nothing was started or written", file=sys.stderr)
        return EXIT_INTERRUPTED
