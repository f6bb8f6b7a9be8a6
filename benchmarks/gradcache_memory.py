"""GradCache: peak memory and samples/s of a training step at batch 256, with and without
`loss.chunk_size`, beside batch 32 without it (printed, not asserted).

    python benchmarks/gradcache_memory.py [--steps 2] [--chunk 32] [--large 256] [--small 32]

Each configuration runs in a fresh subprocess: the bundled multilingual-e5-small (word
embeddings frozen), hybrid α=0.5 MLQA-R batches, InfoNCE at temperature 0.05, AdamW, through
engine.child.step.backward, the function the training loop calls. Memory is the steps' own:
on CUDA torch.cuda.max_memory_allocated over the model's allocation; on CPU the highest
resident set (sampled every 2 ms from /proc/self/statm) over the resident set just before
the steps, after one warm-up step at batch 8 and malloc_trim (activations live for the whole
forward and backward, so a 2 ms sample sees them).
Printed: GradCache's step memory against batch 256 uncached (what it saves) and against
batch 32 uncached (what the small batch would cost).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
QUERY_LENGTH, PASSAGE_LENGTH = 48, 96


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """The highest resident set seen while it runs, sampled by a thread."""

    def __init__(self, interval: float = 0.002) -> None:
        import threading

        self.interval, self.highest, self.running = interval, rss_mb(), True
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while self.running:
            self.highest = max(self.highest, rss_mb())
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()
        self.highest = max(self.highest, rss_mb())


def malloc_trim() -> None:
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(batch_size: int, chunk: int | None, steps: int) -> None:
    import torch

    from engine.child.data.lareqa import load_lareqa
    from engine.child.data.pairs import lareqa_pairs
    from engine.child.distributed import World
    from engine.child.encoder import load_encoder
    from engine.child.loop import make_optimizer
    from engine.child.sampling import BatchSampler
    from engine.child.step import StepContext, backward
    from engine.contract.validation import parse_spec

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    torch.manual_seed(0)
    def experiment(batch: int, chunk_size: int | None):
        encoder = {"freeze_word_embeddings": True, "max_query_length": QUERY_LENGTH,
                   "max_passage_length": PASSAGE_LENGTH}
        return parse_spec({"name": "bench", "encoder": encoder,
                           "sampling": {"strategy": "hybrid", "alpha": 0.5},
                           "loss": {"temperature": 0.05, **({"chunk_size": chunk_size} if chunk_size else {})},
                           "train": {"batch_size": batch}})

    spec = experiment(batch_size, chunk)
    source = lareqa_pairs(load_lareqa("mlqa-r", None, None), with_paragraph=False)
    encoder = load_encoder(spec.encoder)
    encoder.train()
    device = encoder.device
    optimizer = make_optimizer(encoder, spec)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    context = StepContext.for_spec(encoder, source, spec, World(), scaler,
                                   lambda: torch.autocast(device.type, enabled=False))

    def step(sampler: BatchSampler) -> None:
        backward(context, sampler.next_step())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    warm = experiment(8, None)
    step_of_8 = StepContext.for_spec(encoder, source, warm, World(), scaler, context.autocast)
    backward(step_of_8, BatchSampler(source, warm.sampling, 8, 0, seed=1).next_step())
    optimizer.step()                                      # the optimizer state exists from here on
    optimizer.zero_grad(set_to_none=True)
    malloc_trim()
    baseline = rss_mb()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device) / 2**20
    sampler = BatchSampler(source, spec.sampling, batch_size, 0, seed=0)
    durations = []
    with RssSampler() as sampled:
        for _ in range(steps):
            started = time.perf_counter()
            step(sampler)
            if device.type == "cuda":
                torch.cuda.synchronize()
            durations.append(time.perf_counter() - started)
    memory = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else sampled.highest) - baseline
    print(json.dumps({"batch": batch_size, "chunk": chunk, "device": str(device), "step_mb": memory,
                      "peak_rss_mb": peak_rss_mb(), "samples_per_s": batch_size * steps / sum(durations),
                      "step_s": sum(durations) / steps}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--large", type=int, default=256)
    parser.add_argument("--small", type=int, default=32)
    parser.add_argument("--child", nargs=2, metavar=("BATCH", "CHUNK"))
    args = parser.parse_args()
    if args.child:
        batch, chunk = args.child
        return child(int(batch), None if chunk == "none" else int(chunk), args.steps)
    configurations = [(args.small, None), (args.large, None), (args.large, args.chunk)]
    rows = {}
    for batch, chunk in configurations:
        label = f"batch {batch}" + (f", GradCache chunk {chunk}" if chunk else ", uncached")
        output = subprocess.run([sys.executable, __file__, "--child", str(batch), str(chunk or "none"),
                                 "--steps", str(args.steps)], capture_output=True, text=True, check=False)
        if output.returncode != 0:   # reported, never dropped
            print(f"{label}: FAILED (exit {output.returncode}): {output.stderr.strip().splitlines()[-1:]}")
            continue
        rows[(batch, chunk)] = json.loads(output.stdout.strip().splitlines()[-1])
    device = next(iter(rows.values()))["device"] if rows else "?"
    memory = "peak CUDA memory of the steps" if device.startswith("cuda") else "growth of peak RSS during the steps"
    print(f"\nGradCache · bundled e5-small · {device} ({os.environ.get('BENCH_THREADS', os.cpu_count())} threads) · "
          f"{args.steps} steps each · step MB = {memory}")
    print(f"{'configuration':<32} {'step MB':>9} {'samples/s':>10} {'s/step':>8}")
    for (batch, chunk), row in rows.items():
        label = f"batch {batch}" + (f", GradCache chunk {chunk}" if chunk else ", uncached")
        print(f"{label:<32} {row['step_mb']:>9.0f} {row['samples_per_s']:>10.2f} {row['step_s']:>8.2f}")
    cached = rows.get((args.large, args.chunk))
    for batch in (args.large, args.small):
        uncached = rows.get((batch, None))
        if cached and uncached:
            print(f"GradCache batch {args.large} / uncached batch {batch}: memory "
                  f"{cached['step_mb'] / max(uncached['step_mb'], 1e-9):.2f}x, samples/s "
                  f"{cached['samples_per_s'] / uncached['samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
