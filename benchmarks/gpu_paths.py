"""The CUDA paths a run takes, checked end to end through `hbt-tui --run` (printed, not asserted).

    python benchmarks/gpu_paths.py [--device cuda] [--steps 6]

1. Two short real runs (bundled e5-small, MLQA-R, evaluated on a slice of XQuAD-R), one with
   `train.precision: bf16` and one with `fp16`: the device and precision each one's `started`
   event reports (the autocast dtype the child actually took), its evaluation precision, its
   final loss (fp16: with the GradScaler) and mAP.
2. Slots: a grid of two seeds under `--jobs 2`. With GPUs there is one slot per visible card,
   so on one card the second run waits for the first (documented in the README): printed are
   each run's slot (`CUDA_VISIBLE_DEVICES`) and whether their running times overlapped.
3. Evaluation encoding throughput (texts/s) of XQuAD-R candidates in fp32 and in the run's
   `eval.precision: auto`.

`--device cpu` runs the same checks on the CPU (fp16 is then refused by the pre-run check,
which is printed as such): the way to try this script without a GPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_spec(name: str, device: str, precision: str, steps: int, seeds: list[int] | None = None) -> dict:
    spec = {"name": name, "encoder": {"freeze_word_embeddings": True, "max_query_length": 48, "max_passage_length": 96},
            "sampling": {"strategy": "hybrid", "alpha": 0.5},
            "train": {"dataset": "mlqa-r", "batch_size": 16, "steps": steps, "lr": 3e-5, "warmup_steps": 1,
                      "device": device, "precision": precision, "log_every": 1},
            "eval": {"datasets": ["xquad-r"], "max_queries": 40, "languages": ["en", "de", "zh"]}}
    if seeds:
        spec["grid"] = {"train.seed": seeds}
    return spec


def launch(spec: dict, runs: Path, jobs: int = 1) -> subprocess.CompletedProcess:
    path = runs.parent / f"{spec['name']}.json"
    path.write_text(json.dumps(spec))
    return subprocess.run([sys.executable, "-m", "engine.cli", "--run", str(path), "--runs-dir", str(runs),
                           "--jobs", str(jobs), "--yes"], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def events(folder: Path) -> list[dict]:
    lines = (folder / "events.jsonl").read_text().splitlines() if (folder / "events.jsonl").exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def folders(runs: Path, prefix: str) -> list[Path]:
    return sorted(path for path in runs.iterdir() if path.is_dir() and path.name.startswith(prefix))


def check_precisions(device: str, steps: int, runs: Path) -> None:
    print("\n1. precision paths (a real run each):")
    for precision in ("bf16", "fp16"):
        done = launch(run_spec(f"path-{precision}", device, precision, steps), runs)
        if done.returncode != 0:
            print(f"   {precision}: refused or failed (exit {done.returncode}): "
                  f"{(done.stderr.strip().splitlines() or ['?'])[-1][:200]}")
            continue
        for folder in folders(runs, f"path-{precision}"):
            seen = events(folder)
            started = next((event for event in seen if event.get("event") == "started"), {})
            losses = [event["loss"] for event in seen if event.get("event") == "step" and "loss" in event]
            evaluated = [event for event in seen if event.get("event") == "eval_done"]
            last = evaluated[-1] if evaluated else {}
            macro = (last.get("macro") or {}).get("multi", {}).get("map")
            print(f"   asked {precision}: started on {started.get('device')} ({started.get('precision')}); "
                  f"eval precision {last.get('precision') or '?'}; final loss "
                  f"{losses[-1] if losses else float('nan'):.4f}; multi mAP {macro if macro is not None else '?'}")


def check_slots(device: str, steps: int, runs: Path) -> None:
    print("\n2. slots: a grid of two seeds under --jobs 2")
    done = launch(run_spec("slots", device, "auto", steps, seeds=[1, 2]), runs, jobs=2)
    if done.returncode != 0:
        print(f"   failed (exit {done.returncode}): {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}")
        return
    spans = []
    for folder in folders(runs, "slots"):
        record = json.loads((folder / "run.json").read_text())
        spans.append((record.get("started"), record.get("ended")))
        print(f"   {folder.name}: slot {record.get('slot')!r}, status {record.get('status')}, "
              f"ran {record.get('started'):.0f}-{record.get('ended'):.0f}")
    if len(spans) == 2 and all(None not in span for span in spans):
        (a0, a1), (b0, b1) = sorted(spans)
        print(f"   overlapped: {'yes' if b0 < a1 else 'no (one after the other)'}")


def check_encoding(device: str) -> None:
    import torch

    from engine.child.data.lareqa import load_lareqa
    from engine.child.encoder import half_matmuls, load_encoder
    from engine.child.runtime import AUTOCAST_DTYPES, pick_eval_precision
    from engine.contract.spec import EncoderSpec

    print("\n3. evaluation encoding throughput (XQuAD-R candidates of en, de, zh)")
    corpora = load_lareqa("xquad-r", ("en", "de", "zh"), None, None)
    texts = [text for corpus in corpora.values() for text in corpus.candidates]
    encoder = load_encoder(EncoderSpec()).to(device)
    auto = pick_eval_precision("auto", torch.device(device))
    for label, model in (("fp32", encoder), (f"auto = {auto}", half_matmuls(copy.deepcopy(encoder), AUTOCAST_DTYPES[auto]) if auto != "fp32" else None)):
        if model is None:
            print(f"   {label}: same as fp32 here")
            continue
        model.encode(texts[:256], False, 128)                      # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        model.encode(texts, False, 128)
        if device == "cuda":
            torch.cuda.synchronize()
        print(f"   {label}: {len(texts) / (time.perf_counter() - started):,.0f} texts/s over {len(texts):,} candidates")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--skip", default="", help="comma-separated of: precisions, slots, encoding")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_paths: no CUDA device is visible (--device cpu tries the checks on the CPU)")
    print(f"device: {torch.cuda.get_device_name(0) if args.device == 'cuda' else 'cpu'} · torch {torch.__version__}")
    skipped = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "runs"
        if "precisions" not in skipped:
            check_precisions(args.device, args.steps, runs)
        if "slots" not in skipped:
            check_slots(args.device, args.steps, runs)
    if "encoding" not in skipped:
        check_encoding(args.device)


if __name__ == "__main__":
    main()
