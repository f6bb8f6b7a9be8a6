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
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.contract.errors import EXIT_USER_ERROR, RunError, UserError
from engine.contract.arms import alpha_text
from engine.contract.layout import SETTINGS
from engine.contract.text import printable
from engine.parent.run_service import open_store, runs_dir_of
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


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.headless import run_spec_file

    return run_spec_file(args.run_spec, args.jobs, runs_dir_of(args), console, as_json=args.json,
                         priority=args.priority, dry_run=args.dry_run, yes=args.yes, log_every=args.log_every,
                         nproc=args.nproc, executor=args.executor, partition=args.partition,
                         retry_failed=args.retry_failed, track=args.track)


def _cmd_runs(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.records import RunFilter, primary_results, where_label
    from engine.parent.tables import fmt, plain

    run_filter = RunFilter.parse(args.filter or "")
    run_filter = RunFilter(status=args.status or run_filter.status, strategy=args.strategy or run_filter.strategy,
                           tag=args.tag or run_filter.tag, words=run_filter.words + tuple((args.name or "").split()),
                           fields=run_filter.fields)
    runs = open_store(runs_dir_of(args)).find(run_filter)
    runs = runs[:args.limit] if args.limit else runs
    if args.json:
        print(json.dumps(runs, indent=1))
        return 0
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
        if needed <= console.width:
            break
        columns.remove(optional) if optional in columns else None
    table = Table(title=f"{len(runs)} runs (scores: macro average of the primary metric)", title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("id", "status", "strategy", "eval", "where") else "right",
                         no_wrap=True, min_width=max([len(row["id"]) for row in rows] + [2]) if column == "id" else None)
    for row in rows:
        table.add_row(*(plain(row[column]) for column in columns))
    console.print(table)
    return 0


def _cmd_show(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.compare import load_run, value_cis
    from engine.parent.records import MISSING
    from engine.parent.tables import plain, results_table

    store = open_store(runs_dir_of(args))
    summary = store.resolve(args.run)
    folder = store.folder(summary["id"])
    results = load_run(folder).results if summary["status"] != MISSING else {}
    if args.json:
        print(json.dumps({"summary": summary, "results": results}, indent=1))
        return 0
    console.print(Text.assemble(plain(summary["name"], "bold"), "  ", plain(summary["id"]), "  ",
                                plain(summary["status"], "bold")))
    if summary["status"] == MISSING:
        console.print(plain(f"  its folder {folder.path} is gone: no results to show "
                            "(`hbt-tui delete` removes it from the index)"), soft_wrap=True)
        return 0
    for key in ("encoder", "strategy", "alpha", "train_dataset", "seed", "device", "host", "git_commit",
                "spec_hash", "step", "total_steps", "loss", "error"):
        if summary.get(key) not in (None, ""):
            console.print(plain(f"  {key:<14} {summary[key]}"), soft_wrap=True)
    console.print(plain(f"  {'folder':<14} {folder.path}"), soft_wrap=True)
    run = load_run(folder) if args.ci else None
    for dataset, dataset_results in results.items():
        metric = args.metric or dataset_results.get("primary_metric", "map")
        cis = value_cis(run, dataset, metric) if args.ci else None
        console.print(results_table(dataset_results, args.metric, cis))
    if summary.get("status") == "failed" and summary.get("stderr_tail"):
        console.print(Text("stderr (tail):", style="red"))
        console.print(plain(summary["stderr_tail"], newlines=True))
    return 0


def _cmd_resume(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.headless import PlainView, ProgressView, print_summaries
    from engine.parent.run_service import RunService

    store = open_store(runs_dir_of(args))
    summaries = list({summary["id"]: summary for summary in map(store.resolve, args.runs)}.values())

    async def resume() -> list[dict]:
        view = ProgressView(console, enabled=True) if console.is_terminal else PlainView(sys.stdout, 10)
        service = RunService.start(store, args.jobs, on_event=view.on_event, on_status=view.on_status)
        for message in service.reconcile():
            print(f"note: {message}", file=sys.stderr)
        with view:
            for summary in summaries:
                service.resume(summary["id"])
                view.add(summary["id"], summary["name"])
            await service.wait([summary["id"] for summary in summaries])
        return [service.final_summary(summary["id"]) or summary for summary in summaries]

    finals = asyncio.run(resume())
    print_summaries(finals, store, console)
    return 0 if all(final["status"] == "finished" for final in finals) else 1


def _cmd_cancel(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.records import ACTIVE
    from engine.parent.run_service import RunService

    store = open_store(runs_dir_of(args))
    summary = store.resolve(args.run)
    if summary["status"] not in ACTIVE:
        raise RunError(f"run {summary['id']} is {summary['status']}, not queued or running")
    status = asyncio.run(RunService(store).cancel(summary["id"]))
    print(f"{summary['id']}: {status}", file=sys.stderr)
    return 0 if status == "cancelled" else 1


def _cmd_delete(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.run_service import RunService

    store = open_store(runs_dir_of(args))
    summary = store.resolve(args.run)
    store.folder(summary["id"])                  # a plain folder name inside the runs directory, or refused
    if not args.yes:
        raise RunError(f"deleting {summary['id']} removes its folder; add --yes to confirm")
    print(RunService(store).delete(summary["id"]), file=sys.stderr)
    return 0


def _cmd_index(args: argparse.Namespace, console: Console) -> int:
    store = open_store(runs_dir_of(args))
    print(f"rebuilt the index of {store.runs_dir}: {store.rebuild()} runs")
    return 0


def _cmd_cache(args: argparse.Namespace, console: Console) -> int:
    from engine.contract import embedding_files

    if args.cache_command == "clear":
        removed, size = embedding_files.clear()
        print(f"removed {removed} cached embedding entries ({size / 2**20:.1f} MB) from {embedding_files.cache_root()}")
        return 0
    facts = embedding_files.info()
    if args.json:
        print(json.dumps(facts))
        return 0
    print(f"embedding cache: {facts['path']}\n{facts['entries']} entries, {facts['bytes'] / 2**20:.1f} MB "
          f"of {facts['limit_bytes'] / 2**20:.0f} MB (HBT_EMBEDDING_CACHE_MB); least recently used go first")
    return 0


def _cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    """A zero-shot evaluation is a run: checked, queued, indexed and compared like any other."""
    from engine.parent.zero_shot import zero_shot_document
    from engine.parent.headless import run_prepared
    from engine.parent.submission import prepare

    store = open_store(runs_dir_of(args))
    document = zero_shot_document(args.target, store=store, datasets=args.datasets, languages=args.languages,
                                  max_queries=args.max_queries, data_dir=args.data_dir, name=args.name)
    prepared = prepare(document, args.target, store=store)
    return asyncio.run(run_prepared(prepared, 1, store, console, as_json=args.json))


def _cmd_data_fetch(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.fetch import fetch

    for dataset in args.datasets:
        print(f"{dataset}: {fetch(dataset, Path(args.to) if args.to else None)}")
    return 0


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
    runs.set_defaults(handler=_cmd_runs)
    show = commands.add_parser("show", help="one run")
    show.add_argument("run")
    show.add_argument("--metric")
    show.add_argument("--ci", action="store_true", help="95 %% confidence intervals (bootstrap over questions)")
    show.set_defaults(handler=_cmd_show)
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
    for name, handler, text in (("resume", _cmd_resume, "continue interrupted/cancelled/failed runs (--jobs N at once)"),
                                ("cancel", _cmd_cancel, "stop a queued or running run (any parent's)"),
                                ("delete", _cmd_delete, "remove a run and its folder")):
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
    index.add_parser("rebuild", help="re-create it from the run folders").set_defaults(handler=_cmd_index)
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
    cache.add_parser("info", help="where it is, its size and limit").set_defaults(handler=_cmd_cache)
    cache.add_parser("clear", help="remove every cached embedding").set_defaults(handler=_cmd_cache)
    data = commands.add_parser("data", help="benchmark data").add_subparsers(
        dest="data_command", required=True, parser_class=with_common)
    fetch = data.add_parser("fetch", help="download XQuAD-R / MLQA-R into the user cache")
    fetch.add_argument("datasets", nargs="*", default=["xquad-r", "mlqa-r"])
    fetch.add_argument("--to", help="data directory to fill (default: the user cache)")
    fetch.set_defaults(handler=_cmd_data_fetch)
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
        return 130
