"""Store and runner overhead at scale (printed, not asserted).

    python benchmarks/store_scale.py [--runs 10000] [--streams 8] [--rate 50] [--seconds 10]

1. An index of 10,000 synthetic run summaries shaped like real ones (spec fields, the
   primary metric's macro and group averages per setting, bias): time to open + list + filter, to
   compare 10 runs from the index and from their run folders, one state-transition
   write, and the index size on disk. Both JSON codecs are measured (orjson, stdlib).
2. Parent overhead: the real runner with 8 replayed runs (real subprocesses speaking the
   real protocol) streaming 50 step events/s each; the parent's CPU share while they run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.contract.layout import EVENTS_FILE, INDEX_FILE, RunFolder, write_json_atomic  # noqa: E402

LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")
METRICS = ("map", "map@20", "ndcg@10", "recall@1", "recall@10", "mrr@10")
STRATEGIES = ("monolingual", "crosslingual", "hybrid", "multitask")


def synthetic_summary(number: int, rng: random.Random) -> dict:
    strategy = STRATEGIES[number % 4]
    macro = {setting: round(rng.random(), 4) for setting in ("mono", "cross", "multi")}
    return {"id": f"sweep-{number:05d}-261125-101500-{number:04x}", "name": f"sweep-{number:05d}",
            "status": rng.choice(("finished", "finished", "finished", "failed", "cancelled")),
            "created": 1.79e9 + number, "started": 1.79e9 + number + 1, "ended": 1.79e9 + number + 600,
            "priority": 0, "spec_hash": f"{rng.getrandbits(64):016x}", "git_commit": "218569fc97d8", "host": "node-1",
            "group": "sweep", "tags": ["grid", "cpu"], "encoder": "bundled:multilingual-e5-small",
            "strategy": strategy, "alpha": round(rng.random(), 2), "seed": number % 5, "train_dataset": "mlqa-r",
            "train_languages": None, "eval_datasets": ["xquad-r"], "baseline": None, "step": 1000,
            "total_steps": 1000, "loss": rng.random(), "device": "cuda:0 (NVIDIA H100)", "pid": 1000 + number,
            "pgid": 1000 + number, "parent_pid": 999, "exit_code": 0, "error": None,
            "results": {"xquad-r": {"primary": "map", "macro": macro, "bias": round(rng.random() * 400, 4),
                                    "groups": {g: {s: round(rng.random(), 4) for s in ("mono", "cross", "multi")}
                                               for g in ("high", "low")}}}}


def synthetic_results(summary: dict, rng: random.Random) -> dict:
    per_language = {lang: {"settings": {s: {m: rng.random() for m in METRICS} for s in ("mono", "cross", "multi")},
                           "bias": rng.random() * 400, "queries": 1190} for lang in LANGUAGES}
    return {"dataset": "xquad-r", "step": 1000, "run": summary["name"], "languages": list(LANGUAGES),
            "metrics": list(METRICS), "primary_metric": "map", "per_language": per_language,
            "macro": {s: {m: rng.random() for m in METRICS} for s in ("mono", "cross", "multi")},
            "groups": {}, "bias": 100.0}


def measure_store(count: int, folder: Path) -> dict:
    from engine.parent import store as store_module
    from engine.parent.compare import compare, load_run
    from engine.parent.records import RunFilter

    rng = random.Random(0)
    summaries = [synthetic_summary(number, rng) for number in range(count)]
    runs_dir = folder / "runs"
    runs_dir.mkdir()
    write_run_folders(runs_dir, summaries)
    (runs_dir / INDEX_FILE).write_bytes(store_module._dumps(
        {"runs": {str(i + 1): summary for i, summary in enumerate(summaries)}}))
    chosen = summaries[:10]
    for summary in chosen:  # ten run folders with real-shaped per-language results
        folder = RunFolder.of(runs_dir, summary["id"])
        write_json_atomic(folder.spec, {"name": summary["name"], "sampling": {"alpha": summary["alpha"]}})
        write_json_atomic(folder.results("xquad-r"), synthetic_results(summary, rng))
    figures = {"size_mb": (runs_dir / INDEX_FILE).stat().st_size / 1e6}
    started = time.perf_counter()
    store = store_module.RunStore(runs_dir)
    listed = store.all()
    filtered = store.find(RunFilter(status="finished", strategy="hybrid", words=("sweep-01",)))
    figures["open_list_filter_ms"] = 1000 * (time.perf_counter() - started)
    assert len(listed) == count and filtered
    started = time.perf_counter()
    index_rows = [store.get(summary["id"])["results"]["xquad-r"]["macro"] for summary in chosen]
    figures["compare_index_ms"] = 1000 * (time.perf_counter() - started)
    assert len(index_rows) == 10
    started = time.perf_counter()
    runs = [load_run(store.folder(summary["id"])) for summary in chosen]
    comparison = compare(runs, "xquad-r")
    figures["compare_folders_ms"] = 1000 * (time.perf_counter() - started)
    assert len(comparison.rows) == len(LANGUAGES) + 1
    started = time.perf_counter()
    store.update(chosen[0]["id"], status="finished", ended=time.time())
    figures["transition_write_ms"] = 1000 * (time.perf_counter() - started)
    return figures


def write_run_folders(runs_dir: Path, summaries: list[dict]) -> None:
    """A folder with a spec per summary: the index describes runs that exist."""
    for summary in summaries:
        write_json_atomic(RunFolder.of(runs_dir, summary["id"]).spec, {"name": summary["name"]})


def write_step_source(folder: Path) -> Path:
    """A recorded run of one step, for `engine.child.replay --repeat-steps`: a stream of step events."""
    folder.mkdir()
    lines = [{"v": 1, "event": "started", "time": 0.0, "run_name": "load", "pid": 0, "device": "cpu",
              "precision": "fp32", "total_steps": 1, "parameters": 1, "trainable_parameters": 1},
             {"v": 1, "event": "step", "time": 0.0, "step": 1, "total_steps": 1, "loss": 0.5, "lr": 1e-5,
              "samples_per_s": 10.0, "tokens_per_s": 900.0, "batch_kind": "mono:en", "losses": {}},
             {"v": 1, "event": "finished", "time": 0.0, "step": 1, "seconds": 1.0}]
    (folder / EVENTS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def measure_parent(streams: int, rate: float, seconds: float, folder: Path) -> dict:
    from engine.child.replay import replay_command
    from engine.parent.runner import Runner
    from engine.contract.validation import parse_spec
    from engine.parent.store import RunStore

    source = write_step_source(folder / "source")
    store = RunStore(folder / "parent-runs")
    received = [0]
    runner = Runner(store, cpu_slots=streams, gpus=[], on_event=lambda run_id, event: received.__setitem__(
        0, received[0] + 1), command=replay_command(source, rate=rate, repeat_steps=int(rate * seconds)))

    async def go() -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        ids = [runner.submit(parse_spec({"name": f"load-{i}"})) for i in range(streams)]
        await runner.wait(ids)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return cpu, time.perf_counter() - started

    cpu, wall = asyncio.run(go())
    statuses = {summary["status"] for summary in store.all()}
    return {"events": received[0], "wall_s": wall, "cpu_s": cpu, "cpu_share": cpu / wall,
            "us_per_event": 1e6 * cpu / max(received[0], 1), "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    from engine.parent import store as store_module

    print(f"\nstore at scale · {args.runs:,} run summaries")
    codecs = [("orjson", store_module._loads, store_module._dumps),
              ("json", json.loads, lambda value: json.dumps(value, separators=(",", ":")).encode())]
    for name, loads, dumps in codecs:
        store_module._loads, store_module._dumps = loads, dumps
        with tempfile.TemporaryDirectory() as folder:
            figures = measure_store(args.runs, Path(folder))
        print(f"  [{name:6}] open + list + filter {figures['open_list_filter_ms']:6.0f} ms (target < 200) · "
              f"compare 10 runs: from the index {figures['compare_index_ms']:5.1f} ms, per language from their "
              f"folders {figures['compare_folders_ms']:5.1f} ms (target < 100) · one transition write "
              f"{figures['transition_write_ms']:5.0f} ms · index {figures['size_mb']:.1f} MB")
    store_module._loads, store_module._dumps = codecs[0][1], codecs[0][2]
    with tempfile.TemporaryDirectory() as folder:
        parent = measure_parent(args.streams, args.rate, args.seconds, Path(folder))
    print(f"\nparent overhead · {args.streams} replayed runs x {args.rate:g} events/s for {args.seconds:g} s")
    print(f"  {parent['events']:,} events in {parent['wall_s']:.1f} s · parent CPU {parent['cpu_s']:.2f} s "
          f"= {100 * parent['cpu_share']:.1f}% of one core · {parent['us_per_event']:.0f} µs per event "
          f"(incl. launching the 8 processes) · final statuses {sorted(parent['statuses'])}")


if __name__ == "__main__":
    main()
