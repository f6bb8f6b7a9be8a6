"""The commands that compare runs and answer the study: `hbt-tui compare`, `report` and
`reports`, with the significance options they share (`add_test_options`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from engine.contract.errors import RunError
from engine.parent.headless import open_store, runs_dir_of


def test_settings(args: argparse.Namespace):
    from engine.parent.significance import Significance

    return Significance(test=args.test, correction=args.correction, permutations=args.permutations, seed=args.seed)


def check_output_path(path: Path, force: bool) -> None:
    """An output file may be written: its folder exists and it is new (or --force)."""
    if not path.parent.is_dir():
        raise RunError(f"--output {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise RunError(f"--output {path}: is a directory")
    if path.exists() and not force:
        raise RunError(f"--output {path}: the file exists; add --force to overwrite it")


def compare_command(args: argparse.Namespace, console: Console) -> int:
    from engine.contract.layout import write_atomic
    from engine.parent.compare import FORMATS, compare, load_run
    from engine.parent.tables import print_comparison

    test = test_settings(args)
    if args.output:
        if args.format == "table":
            raise RunError("--output needs --format md, csv or latex")
        check_output_path(Path(args.output), args.force)
    store = open_store(runs_dir_of(args))
    summaries = [store.resolve(reference) for reference in args.runs]
    runs = [load_run(store.folder(summary["id"])) for summary in summaries]
    datasets = [args.dataset] if args.dataset else sorted({d for run in runs for d in run.results})
    if not datasets:
        raise RunError("none of these runs has evaluation results yet")
    outputs = []
    for dataset in datasets:
        try:
            comparison = compare(runs, dataset, args.metric, tuple(args.setting), test=test,
                                 with_ci=args.format != "table")
        except ValueError as error:
            raise RunError(str(error)) from None
        if args.require_seeds:
            single = next((system.name for system in comparison.runs if len(system.runs) < 2), None)
            if single:
                raise RunError(f"--require-seeds: {single!r} has a single run; mean ± sd over seeds needs at least "
                               "2 runs that differ only in train.seed")
        if args.format == "table":
            print_comparison(console, comparison)
        else:
            outputs.append(FORMATS[args.format](comparison))
    from engine.parent.report.saved import save_comparison

    saved = save_comparison(store, [compare(runs, dataset, args.metric, tuple(args.setting), test=test, with_ci=True)
                                    for dataset in datasets])
    print(f"saved as {saved}", file=sys.stderr)
    if args.format == "table":
        diff = comparison.diff
        if diff:
            table = Table(title="config fields that differ", title_justify="left")
            table.add_column("field")
            for system in comparison.runs:
                table.add_column(system.name)
            for key, values in diff:
                table.add_row(key, *(json.dumps(value) for value in values))
            console.print(table)
        return 0
    text = "\n".join(outputs)
    if args.output:
        write_atomic(Path(args.output), text.encode("utf-8"))
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def report_command(args: argparse.Namespace, console: Console) -> int:
    from engine.contract.layout import REPORT_FILE
    from engine.parent.report.build import build
    from engine.parent.report.saved import check_out_dir, save_report
    from engine.parent.report.verdict import sentence, verdict

    out = Path(args.out) if args.out else None
    check_out_dir(out, args.force)
    test = test_settings(args)
    store = open_store(runs_dir_of(args))
    report = build(store, args.references, metrics=args.metric, reference=args.reference, partial=args.partial,
                   allow_mixed=args.allow_mixed, test=test, title=args.title)
    folder = save_report(store, report, out, args.force)
    for item in verdict(report):
        print("- " + sentence(item).replace("**", ""))
    print(f"wrote {folder / REPORT_FILE}" + (f" and {out / REPORT_FILE}" if out else ""), file=sys.stderr)
    return 0


def reports_command(args: argparse.Namespace, console: Console) -> int:
    saved = open_store(runs_dir_of(args)).reports()
    if args.json:
        print(json.dumps(saved, indent=1))
        return 0
    table = Table(title=f"{len(saved)} saved reports and comparisons", title_justify="left")
    for column in ("id", "kind", "when", "headline"):
        table.add_column(column, overflow="fold")
    for record in saved:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.get("created", 0)))
        table.add_row(record["id"], record["kind"], when, record.get("headline") or record.get("title", ""))
    console.print(table)
    return 0


def add_test_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--test", choices=["t", "permutation"], default="t",
                        help="paired t-test (default) or paired randomisation test, over question ids")
    parser.add_argument("--correction", choices=["holm", "bh", "none"], default="holm",
                        help="multiplicity correction over the cells of a comparison (default Holm)")
    parser.add_argument("--permutations", type=int, default=10_000, help="resamples of --test permutation (>= 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of permutations and bootstrap CIs")
