"""`hbt-tui runs | show | resume | cancel | delete | index rebuild | cache | data fetch`: the
commands on runs already made, the index, the embedding cache and the data (their parser is
engine.parent.commands). What they print comes from engine.parent.run_views; what they do to
runs, through the run service."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from rich.console import Console

from engine.contract.errors import RunError
from engine.parent.run_service import open_store, runs_dir_of


def cmd_runs(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.records import RunFilter
    from engine.parent.run_views import runs_table

    run_filter = RunFilter.parse(args.filter or "")
    run_filter = RunFilter(status=args.status or run_filter.status, strategy=args.strategy or run_filter.strategy,
                           tag=args.tag or run_filter.tag, words=run_filter.words + tuple((args.name or "").split()),
                           fields=run_filter.fields)
    runs = open_store(runs_dir_of(args)).find(run_filter)
    runs = runs[:args.limit] if args.limit else runs
    if args.json:
        print(json.dumps(runs, indent=1))
    else:
        console.print(runs_table(runs, console.width))
    return 0


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.compare import load_run
    from engine.parent.records import MISSING
    from engine.parent.run_views import print_run

    store = open_store(runs_dir_of(args))
    summary = store.resolve(args.run)
    if args.json:
        results = load_run(store.folder(summary["id"])).results if summary["status"] != MISSING else {}
        print(json.dumps({"summary": summary, "results": results}, indent=1))
    else:
        print_run(summary, store, console, args.metric, args.ci)
    return 0


def cmd_resume(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.run_views import PlainView, ProgressView, print_summaries
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


def cmd_cancel(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.records import ACTIVE
    from engine.parent.run_service import RunService

    store = open_store(runs_dir_of(args))
    summary = store.resolve(args.run)
    if summary["status"] not in ACTIVE:
        raise RunError(f"run {summary['id']} is {summary['status']}, not queued or running")
    status = asyncio.run(RunService(store).cancel(summary["id"]))
    print(f"{summary['id']}: {status}", file=sys.stderr)
    return 0 if status == "cancelled" else 1


def cmd_delete(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.run_service import RunService

    store = open_store(runs_dir_of(args))
    summary = store.resolve(args.run)
    store.folder(summary["id"])                  # a plain folder name inside the runs directory, or refused
    if not args.yes:
        raise RunError(f"deleting {summary['id']} removes its folder; add --yes to confirm")
    print(RunService(store).delete(summary["id"]), file=sys.stderr)
    return 0


def cmd_index(args: argparse.Namespace, console: Console) -> int:
    store = open_store(runs_dir_of(args))
    print(f"rebuilt the index of {store.runs_dir}: {store.rebuild()} runs")
    return 0


def cmd_cache(args: argparse.Namespace, console: Console) -> int:
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


def cmd_data_fetch(args: argparse.Namespace, console: Console) -> int:
    from engine.parent.fetch import fetch

    for dataset in args.datasets:
        print(f"{dataset}: {fetch(dataset, Path(args.to) if args.to else None)}")
    return 0
