"""The commands that compare runs and answer the study: `hbt-tui compare`, `report`, `plan` and
`reports`, with the significance options they share (`add_test_options`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.contract.errors import RunError
from engine.parent.run_service import open_store, runs_dir_of
from engine.parent.tables import plain


def significance_of(args: argparse.Namespace):
    from engine.parent.significance import Significance

    return Significance(test=args.test, correction=args.correction, permutations=args.permutations, seed=args.seed)


def hypotheses_of(args: argparse.Namespace) -> list | None:
    """--hypotheses FILE: a JSON list of hypotheses, or a spec holding one (None without it)."""
    if not getattr(args, "hypotheses", None):
        return None
    from engine.contract.validation import read_document
    from engine.parent.report.hypotheses import read_hypotheses

    try:
        document = read_document(args.hypotheses)
    except Exception as error:       # a SpecError: its one line names the file
        raise RunError(f"--hypotheses {args.hypotheses}: {error}") from None
    found = list(read_hypotheses(document, f"--hypotheses {args.hypotheses}"))
    if not found:
        raise RunError(f"--hypotheses {args.hypotheses}: the family is empty; list at least one hypothesis")
    return found


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
    from engine.parent.compare import compare, load_run
    from engine.parent.compare_formats import FORMATS
    from engine.parent.tables import print_comparison

    test = significance_of(args)
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
                                 with_ci=args.format != "table", allow_mixed_protocols=args.allow_mixed_protocols)
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

    saved = save_comparison(store, [compare(runs, dataset, args.metric, tuple(args.setting), test=test, with_ci=True,
                                            allow_mixed_protocols=args.allow_mixed_protocols) for dataset in datasets])
    print(f"saved as {saved}", file=sys.stderr)
    if args.format == "table":
        diff = comparison.diff
        if diff:
            table = Table(title="config fields that differ", title_justify="left")
            table.add_column("field")
            for system in comparison.runs:
                table.add_column(plain(system.name))
            for key, values in diff:
                table.add_row(plain(key), *(plain(json.dumps(value, ensure_ascii=False)) for value in values))
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
    from engine.parent.report.hypotheses import answer_lines

    out = Path(args.out) if args.out else None
    check_out_dir(out, args.force, runs_dir_of(args))
    test = significance_of(args)
    check_effect(args.effect)
    declared = hypotheses_of(args)
    store = open_store(runs_dir_of(args))
    report = build(store, args.references, metrics=args.metric, reference=args.reference, partial=args.partial,
                   allow_mixed=args.allow_mixed, test=test, title=args.title, hypotheses=declared, effect=args.effect,
                   allow_mixed_protocols=args.allow_mixed_protocols)
    folder = save_report(store, report, out, args.force)
    print_family(console, report["hypotheses"])
    for line in answer_lines(report["hypotheses"]):
        print("- " + line)
    print(f"wrote {folder / REPORT_FILE}" + (f" and {out / REPORT_FILE}" if out else ""), file=sys.stderr)
    return 0


def check_effect(effect: float) -> None:
    if not 0 < effect < 1:
        raise RunError(f"--effect must be in (0, 1) (a difference in the metric), got {effect:g}")


def print_family(console: Console, family: dict) -> None:
    """The hypothesis table, one plain line per hypothesis (readable at any width): what `report`
    answers first."""
    console.print(Text(f"{len(family['items'])} {family['source']} hypotheses · {family['correction']} over them · "
                       f"power at Δ = ±{family['effect']:g}", style="bold"), soft_wrap=True)
    for item in family["items"]:
        interval = f" [{item['ci'][0]:+.3f}, {item['ci'][1]:+.3f}]" if item.get("ci") else ""
        delta = "–" if item["delta"] is None else f"{item['delta']:+.3f}"
        seeds = " vs ".join("0-shot" if fixed else str(count) for count, fixed in zip(item["seeds"], item["fixed"]))
        p_text = "–" if item["p_adjusted"] is None else f"{item['p_adjusted']:.2g}"
        power = "–" if item["power"] is None else f"{item['power']:.2f}"
        console.print(plain(f"{item['id']:<4} {item['verdict']:<16} Δ {delta}{interval}  p {p_text}  power {power}  "
                            f"{seeds} seeds × {item['units']} questions  {item['claim']}"), soft_wrap=True)


def plan_command(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.plan import QUESTION_IDS, hours, plan
    from engine.parent.report.build import arms_of, check_selection, reference_arm, section_frame, select_runs
    from engine.parent.report.hypotheses import declared, evaluate

    check_effect(args.effect)
    if not 0.5 <= args.power < 1:
        raise RunError(f"--power must be in [0.5, 1), got {args.power:g}")
    wanted_hypotheses = hypotheses_of(args)
    store = open_store(runs_dir_of(args))
    runs = select_runs(store, args.references)
    check_selection(runs, partial=False, allow_mixed=args.allow_mixed)
    arms = [arm for arm in arms_of(runs, store) if any(run.results for run in arm.system.runs)]
    if not arms:
        raise RunError("none of these runs has evaluation results")
    reference = reference_arm(arms, args.reference)
    sections = {dataset: section_frame(arms, dataset)
                for dataset in sorted({name for arm in arms for run in arm.system.runs for name in run.results})}
    family = evaluate(arms, sections, reference.label, significance_of(args),
                      wanted_hypotheses if wanted_hypotheses is not None else declared(arms), args.effect)
    dataset = family["items"][0]["dataset"]
    available = args.max_questions or QUESTION_IDS.get(dataset) or max(item["units"] for item in family["items"])
    found = plan(family, arms, args.effect, args.power, available, args.budget_hours)
    if args.json:
        printable = {**found, "rows": [{key: value for key, value in row.items()
                                        if key not in ("components", "arms", "fixed")} for row in found["rows"]],
                     "costs": {label: vars(cost) for label, cost in found["costs"].items()}}
        print(json.dumps(printable, indent=1, default=str))
        return 0
    table = Table(title=f"plan · {len(found['rows'])} {family['source']} hypotheses · power {args.power:g} at level "
                        f"{found['level']:.2g} (Bonferroni over the family) · up to {available} question ids",
                  title_justify="left")
    for column in ("id", "Δ wanted", "now: seeds×q", "power now", "detectable now", "seeds needed", "seeds (all ids)",
                   "ids needed", "seed sd", "arm × question sd"):
        table.add_column(column, justify="left" if column == "id" else "right")
    for row in found["rows"]:
        parts = row["components"]
        table.add_row(plain(row["id"]), f"{row['effect']:g}", f"{row['seeds']}×{row['units']}", f"{row['power']:.2f}",
                      "∞" if row["detectable"] == float("inf") else f"{row['detectable']:.4f}",
                      str(row["seeds_needed"] or "> 200"), str(row["seeds_needed_all_ids"] or "> 200"),
                      str(row["units_needed"] or f"> {available}"), f"{parts.seed ** 0.5:.4f}",
                      f"{parts.interaction ** 0.5:.4f}")
    console.print(table)
    costs = found["costs"]
    print(f"run times from the pilot ({len(costs)} arms): " + "; ".join(
        f"{label} {cost.train_seconds:.0f} s training + {cost.eval_seconds:.0f} s evaluation" for label, cost in costs.items()))
    print(f"the pilot's design: {hours(found['pilot_seconds'])} of runs for the {len(found['arms'])} arms the family "
          "names")
    best = found["best"]
    if best:
        print(f"cheapest design with power >= {args.power:g} for every hypothesis: {best['seeds']} seeds per trained arm "
              f"× {best['units']} question ids ≈ {hours(best['seconds'])} of runs")
    else:
        print(f"no design up to 200 seeds × {available} ids reaches power {args.power:g} for every hypothesis")
    fitting = found["fitting"]
    if fitting:
        print(f"within {args.budget_hours:g} h: {fitting['seeds']} seeds × {fitting['units']} ids "
              f"({hours(fitting['seconds'])}); smallest effect detectable at {args.power:g} power: " +
              ", ".join(f"{key} {value:.4f}" for key, value in fitting["detectable"].items()))
    elif args.budget_hours is not None:
        print(f"no design of >= 2 seeds fits {args.budget_hours:g} h")
    print("assumes the per-question components stay as measured when ids are added (a larger slice also adds "
          "candidates, which can move them)", file=sys.stderr)
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
        table.add_row(*(plain(value) for value in (record["id"], record["kind"], when,
                                                    record.get("headline") or record.get("title", ""))))
    console.print(table)
    return 0


def add_test_options(parser: argparse.ArgumentParser, family: str = "the cells of a comparison") -> None:
    parser.add_argument("--test", choices=["t", "permutation"], default="t",
                        help="the question-level test where an arm has one trained run (paired t-test, default, or "
                        "paired randomisation); arms with >= 2 seeds always get the crossed test")
    parser.add_argument("--correction", choices=["holm", "bh", "none"], default="holm",
                        help=f"multiplicity correction over {family} (default Holm)")
    parser.add_argument("--permutations", type=int, default=10_000, help="resamples of --test permutation (>= 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of permutations and bootstrap CIs")


def add_family_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hypotheses", metavar="FILE", help="the confirmatory family from this JSON file (a list, or "
                        "a spec with `hypotheses`) instead of the one the runs declare")
    parser.add_argument("--effect", type=float, default=0.01, help="the effect power is computed at (default 0.01)")
    parser.add_argument("--reference", help="the arm every delta is taken against (default: hybrid, α nearest 0.5)")


def export_command(args: argparse.Namespace, console: Console) -> int:
    """`hbt-tui export mlflow|wandb RUNS|NAME|GRID…`: finished runs into a tracker (again: updated)."""
    from engine.contract.layout import REPORT_FILE, report_folder
    from engine.parent.report.build import select_runs
    from engine.parent.trackers import require
    from engine.parent.trackers.mapping import check_evaluated, tracked_run

    tracker = require(args.tracker)
    store = open_store(runs_dir_of(args))
    runs = select_runs(store, args.references)
    reports = {}
    for record in store.reports():                 # a report that includes a run goes with it
        for run_id in record.get("runs") or []:
            reports.setdefault(run_id, report_folder(store.runs_dir, record["id"]) / REPORT_FILE)
    tracked = [tracked_run(store.folder(run["id"]), [reports[run["id"]]] if reports.get(run["id"], Path()).is_file()
                           else []) for run in runs]
    check_evaluated(tracked)
    if args.tracker == "mlflow":
        lines = tracker.export(tracked, args.tracking_uri)
    else:
        lines = tracker.export(tracked, Path(args.dir) if args.dir else None, online=args.online)
    for line in lines:
        print(line)
    return 0


def push_command(args: argparse.Namespace, console: Console) -> int:
    """`hbt-tui push RUN REPO_ID`: the model card and upload are child-side (python -m engine.card),
    like every other use of the Hugging Face libraries."""
    import subprocess
    import sys

    store = open_store(runs_dir_of(args))
    folder = store.folder(store.resolve(args.run)["id"])
    command = [sys.executable, "-m", "engine.card", "push", str(folder.path), args.repo_id]
    return subprocess.run(command + (["--private"] if args.private else [])).returncode
