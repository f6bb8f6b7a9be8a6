"""Training throughput: our step against two baselines on identical batches (printed, not asserted).

    python benchmarks/train_throughput.py [--steps 8] [--batch-size 16]

Systems, each in a fresh subprocess (so each gets its own peak RSS), all on the bundled
multilingual-e5-small with word embeddings frozen, the same hybrid (alpha 0.5) MLQA-R
batches, InfoNCE at temperature 0.05 (= MultipleNegativesRankingLoss scale 20), AdamW:

- ours:       engine.child.loop's step (texts grouped by length, each group padded to its own longest);
- reference:  the obvious loop: same model, batch and loss, static padding to max length;
- st-trainer: sentence-transformers' SentenceTransformerTrainer + MultipleNegativesRankingLoss,
              fed the same batches in the same order (only where sentence-transformers is installed).

Samples/s is measured over the steps after three warm-up steps.
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
QUERY_LENGTH, PASSAGE_LENGTH, TEMPERATURE, LR, WARMUP = 48, 96, 0.05, 2e-5, 3


def batches(count: int, batch_size: int) -> list[tuple[list[str], list[str]]]:
    from engine.child.data.lareqa import load_lareqa
    from engine.child.data.pairs import lareqa_pairs
    from engine.child.sampling import BatchSampler
    from engine.contract.spec import SamplingSpec

    source = lareqa_pairs(load_lareqa("mlqa-r", None, None), with_paragraph=False)
    sampler = BatchSampler(source, SamplingSpec(strategy="hybrid", alpha=0.5), batch_size, 0, seed=0)
    drawn = []
    for _ in range(count):
        (batch,) = sampler.next_step()
        drawn.append(([source.queries[i.query_language][i.key] for i in batch.items],
                      [source.passages[i.passage_id] for i in batch.items]))
    return drawn


def spec(batch_size: int):
    from engine.contract.validation import parse_spec

    return parse_spec({"name": "bench", "encoder": {"freeze_word_embeddings": True, "max_query_length": QUERY_LENGTH,
                                                    "max_passage_length": PASSAGE_LENGTH},
                       "loss": {"temperature": TEMPERATURE}, "train": {"batch_size": batch_size, "lr": LR}})


def run_ours(data, experiment) -> list[float]:
    import torch

    from engine.child.encoder import load_encoder
    from engine.child.loop import make_optimizer
    from engine.child.losses import info_nce

    encoder = load_encoder(experiment.encoder)
    encoder.train()
    optimizer = make_optimizer(encoder, experiment)
    durations = []
    for queries, passages in data:
        started = time.perf_counter()
        query_embeddings, _ = encoder.embed(queries, is_query=True)
        passage_embeddings, _ = encoder.embed(passages, is_query=False)
        info_nce(query_embeddings, passage_embeddings, TEMPERATURE).backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        durations.append(time.perf_counter() - started)
    return durations


def run_reference(data, experiment) -> list[float]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from engine.child.encoder import resolve_model_location

    location = resolve_model_location(experiment.encoder.name)
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location, add_pooling_layer=False)
    model.get_input_embeddings().weight.requires_grad_(False)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.01)

    def embed(texts: list[str], prefix: str, length: int) -> torch.Tensor:
        inputs = tokenizer([prefix + t for t in texts], padding="max_length", truncation=True, max_length=length,
                           return_tensors="pt")
        hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    durations = []
    for queries, passages in data:
        started = time.perf_counter()
        scores = embed(queries, "query: ", QUERY_LENGTH) @ embed(passages, "passage: ", PASSAGE_LENGTH).T
        F.cross_entropy(scores / TEMPERATURE, torch.arange(len(queries))).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        durations.append(time.perf_counter() - started)
    return durations


def run_st_trainer(data, experiment) -> list[float]:
    import tempfile

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from torch.utils.data import BatchSampler, SequentialSampler
    from transformers import TrainerCallback

    from engine.child.encoder import resolve_model_location

    model = SentenceTransformer(resolve_model_location(experiment.encoder.name), device="cpu")
    model.max_seq_length = PASSAGE_LENGTH
    model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    rows = {"anchor": [f"query: {q}" for queries, _ in data for q in queries],
            "positive": [f"passage: {p}" for _, passages in data for p in passages]}
    batch_size = len(data[0][0])

    class SameOrder(SentenceTransformerTrainer):
        def get_batch_sampler(self, dataset, batch_size, drop_last, *args, **kwargs):
            return BatchSampler(SequentialSampler(dataset), batch_size, drop_last)

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []

        def on_step_begin(self, *args, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            self.durations.append(time.perf_counter() - self.started)

    clock = Clock()
    with tempfile.TemporaryDirectory() as output:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=output, per_device_train_batch_size=batch_size, max_steps=len(data), learning_rate=LR,
            weight_decay=0.01, warmup_steps=0, max_grad_norm=1.0, logging_steps=10_000, save_strategy="no",
            report_to=[], use_cpu=True, dataloader_drop_last=True, disable_tqdm=True, seed=0)
        trainer = SameOrder(model=model, args=arguments, train_dataset=Dataset.from_dict(rows),
                            loss=MultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE), callbacks=[clock])
        trainer.train()
    return clock.durations


SYSTEMS = {"ours": run_ours, "reference": run_reference, "st-trainer": run_st_trainer}


def child(system: str, steps: int, batch_size: int) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    torch.manual_seed(0)
    data = batches(steps + WARMUP, batch_size)
    durations = SYSTEMS[system](data, spec(batch_size))[WARMUP:]
    samples_per_s = batch_size * len(durations) / sum(durations)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"system": system, "samples_per_s": samples_per_s, "peak_rss_mb": peak_mb,
                      "step_s": sum(durations) / len(durations)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--child", choices=list(SYSTEMS))
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps, args.batch_size)
    try:
        import sentence_transformers  # noqa: F401
        systems = list(SYSTEMS)
    except ImportError:
        systems = ["ours", "reference"]
        print("sentence-transformers is not installed: skipping st-trainer (pip install -e '.[bench]')")
    results = {}
    for system in systems:
        output = subprocess.run([sys.executable, __file__, "--child", system, "--steps", str(args.steps),
                                 "--batch-size", str(args.batch_size)], capture_output=True, text=True, check=False)
        if output.returncode != 0:
            print(f"{system}: failed\n{output.stderr[-2000:]}")
            continue
        results[system] = json.loads(output.stdout.strip().splitlines()[-1])
    print(f"\ntraining throughput · bundled e5-small · batch {args.batch_size} · CPU "
          f"({os.environ.get('BENCH_THREADS', os.cpu_count())} threads) · {args.steps} timed steps")
    print(f"{'system':<12} {'samples/s':>10} {'s/step':>8} {'peak RSS MB':>12}")
    for system, row in results.items():
        print(f"{system:<12} {row['samples_per_s']:>10.2f} {row['step_s']:>8.2f} {row['peak_rss_mb']:>12.0f}")
    baselines = [results[name]["samples_per_s"] for name in ("reference", "st-trainer") if name in results]
    if "ours" in results and baselines:
        for name in ("reference", "st-trainer"):
            if name in results:
                print(f"ours / {name}: {results['ours']['samples_per_s'] / results[name]['samples_per_s']:.2f}x")
        print(f"ours / faster baseline: {results['ours']['samples_per_s'] / max(baselines):.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
