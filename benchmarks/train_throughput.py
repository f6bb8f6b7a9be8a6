"""Training throughput: our step against the baselines on identical batches (printed, not asserted).

    python benchmarks/train_throughput.py [--steps 16] [--batch-size 16]

This machine's matmul peak (fp32 and bf16) is measured first, in the same run. Then each
system runs in a fresh subprocess (so each gets its own peak RSS), all on the bundled
multilingual-e5-small with word embeddings frozen, the same hybrid (alpha 0.5) MLQA-R
batches in the same order, InfoNCE at temperature 0.05 (= MultipleNegativesRankingLoss
scale 20), AdamW, gradient clipping at 1.0:

- ours:             engine.child.step's forward/backward as a run does it, with
                    `train.precision: auto` (bf16 autocast on a CPU with AVX-512 BF16 or AMX);
- ours-fp32:        the same step in fp32: the speed of precision alone, and the loss curve
                    that bf16 must follow;
- reference:        the obvious loop: same model, batch and loss, static padding to max length;
- st-trainer:       sentence-transformers' SentenceTransformerTrainer + MultipleNegativesRankingLoss;
- reference-bf16, st-trainer-bf16: the two baselines with bf16 autocast (`bf16=True` for the
                    trainer), so no ratio hides a precision the baselines could have used too.

A baseline that cannot run (sentence-transformers or accelerate missing) is reported as not
run, and no ratio is claimed against it. Samples/s is measured over the steps after three
warm-up steps; model FLOP/s counts forward + backward (3x the forward) of the dense layers
and attention over the real tokens of the timed steps (benchmarks/hardware.py). The padding
our step forwards is printed too, with what length bucketing across 4 batches would save.
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

from benchmarks.hardware import encoder_flops, matmul_peak, share, token_lengths  # noqa: E402

QUERY_LENGTH, PASSAGE_LENGTH, TEMPERATURE, LR, WARMUP = 48, 96, 0.05, 2e-5, 3
BASELINES = ("reference", "st-trainer")


class Drawn:
    """The sampler's batches (what our step takes) and their texts (what the baselines take)."""

    def __init__(self, count: int, batch_size: int) -> None:
        from engine.child.data.lareqa import load_lareqa
        from engine.child.data.pairs import lareqa_pairs
        from engine.child.sampling import BatchSampler
        from engine.contract.spec import SamplingSpec

        self.source = lareqa_pairs(load_lareqa("mlqa-r", None, None), with_paragraph=False)
        sampler = BatchSampler(self.source, SamplingSpec(strategy="hybrid", alpha=0.5), batch_size, 0, seed=0)
        self.batches = [sampler.next_step()[0] for _ in range(count)]
        self.texts = [([self.source.queries[i.query_language][i.key] for i in batch.items],
                       [self.source.passages[i.passage_id] for i in batch.items]) for batch in self.batches]


def spec(batch_size: int, precision: str = "auto"):
    from engine.contract.validation import parse_spec

    return parse_spec({"name": "bench", "encoder": {"freeze_word_embeddings": True, "max_query_length": QUERY_LENGTH,
                                                    "max_passage_length": PASSAGE_LENGTH},
                       "loss": {"temperature": TEMPERATURE},
                       "train": {"batch_size": batch_size, "lr": LR, "precision": precision}})


def run_ours(drawn: Drawn, experiment, variant: str = "") -> tuple[list[float], list[float], str]:
    """The run's own step: engine.child.step.backward under the precision the run would pick.
    Variants tried and not kept (run them with --systems): `fused` (fp32, fused AdamW) and
    `bf16-weights` (the model held in bf16, fp32 master copies in the optimizer)."""
    import torch

    from engine.child.distributed import World
    from engine.child.encoder import load_encoder
    from engine.child.loop import make_optimizer
    from engine.child.runtime import AUTOCAST_DTYPES, pick_precision
    from engine.child.step import StepContext, backward

    precision = pick_precision(experiment.train.precision, torch.device("cpu"))
    dtype = AUTOCAST_DTYPES[precision]
    encoder = load_encoder(experiment.encoder)
    encoder.train()
    optimizer = make_optimizer(encoder, experiment)
    trained = [parameter for parameter in encoder.parameters() if parameter.requires_grad]
    masters = trained
    if variant == "fused":
        optimizer = torch.optim.AdamW(optimizer.param_groups, lr=LR, fused=True)
    elif variant == "bf16-weights":
        precision, dtype = "bf16", None
        masters = [parameter.detach().float().requires_grad_(True) for parameter in trained]
        encoder.model.to(torch.bfloat16)
        optimizer = torch.optim.AdamW(masters, lr=LR, weight_decay=experiment.train.weight_decay)
    context = StepContext(encoder, drawn.source, experiment, World(), torch.amp.GradScaler("cpu", enabled=False),
                          lambda: torch.autocast("cpu", dtype=dtype, enabled=dtype is not None))
    durations, losses = [], []
    for batch in drawn.batches:
        started = time.perf_counter()
        loss, _, _ = backward(context, (batch,))
        if masters is not trained:
            for master, parameter in zip(masters, trained):
                master.grad, parameter.grad = parameter.grad.float(), None
        torch.nn.utils.clip_grad_norm_(masters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if masters is not trained:
            with torch.no_grad():
                for master, parameter in zip(masters, trained):
                    parameter.copy_(master)
        durations.append(time.perf_counter() - started)
        losses.append(loss)
    return durations, losses, precision


def run_reference(drawn: Drawn, experiment, bf16: bool = False) -> tuple[list[float], list[float], str]:
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
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden.float() * mask).sum(1) / mask.sum(1), dim=-1)

    durations, losses = [], []
    for queries, passages in drawn.texts:
        started = time.perf_counter()
        scores = embed(queries, "query: ", QUERY_LENGTH) @ embed(passages, "passage: ", PASSAGE_LENGTH).T
        loss = F.cross_entropy(scores / TEMPERATURE, torch.arange(len(queries)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        durations.append(time.perf_counter() - started)
        losses.append(float(loss))
    return durations, losses, "bf16" if bf16 else "fp32"


def run_st_trainer(drawn: Drawn, experiment, bf16: bool = False) -> tuple[list[float], list[float], str]:
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
    rows = {"anchor": [f"query: {q}" for queries, _ in drawn.texts for q in queries],
            "positive": [f"passage: {p}" for _, passages in drawn.texts for p in passages]}
    batch_size = len(drawn.texts[0][0])

    class SameOrder(SentenceTransformerTrainer):
        def get_batch_sampler(self, dataset, batch_size, drop_last, *args, **kwargs):
            return BatchSampler(SequentialSampler(dataset), batch_size, drop_last)

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self.losses: list[float] = []

        def on_step_begin(self, *args, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            self.durations.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    clock = Clock()
    with tempfile.TemporaryDirectory() as output:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=output, per_device_train_batch_size=batch_size, max_steps=len(drawn.texts), learning_rate=LR,
            weight_decay=0.01, warmup_steps=0, max_grad_norm=1.0, logging_steps=1, save_strategy="no",
            report_to=[], use_cpu=True, bf16=bf16, dataloader_drop_last=True, disable_tqdm=True, seed=0)
        trainer = SameOrder(model=model, args=arguments, train_dataset=Dataset.from_dict(rows),
                            loss=MultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE), callbacks=[clock])
        trainer.train()
    return clock.durations, clock.losses, "bf16" if bf16 else "fp32"


SYSTEMS = {
    "ours": lambda data, batch_size: run_ours(data, spec(batch_size, "auto")),
    "ours-fp32": lambda data, batch_size: run_ours(data, spec(batch_size, "fp32")),
    "reference": lambda data, batch_size: run_reference(data, spec(batch_size)),
    "st-trainer": lambda data, batch_size: run_st_trainer(data, spec(batch_size)),
    "reference-bf16": lambda data, batch_size: run_reference(data, spec(batch_size), bf16=True),
    "st-trainer-bf16": lambda data, batch_size: run_st_trainer(data, spec(batch_size), bf16=True),
    "ours-fused": lambda data, batch_size: run_ours(data, spec(batch_size, "fp32"), "fused"),
    "ours-bf16-weights": lambda data, batch_size: run_ours(data, spec(batch_size, "fp32"), "bf16-weights"),
}
DEFAULT_SYSTEMS = ("ours", "ours-fp32", "reference", "st-trainer", "reference-bf16", "st-trainer-bf16")


def missing_for(system: str) -> str | None:
    """Why a system cannot run here (a package it needs is missing), else None."""
    if not system.startswith("st-trainer"):
        return None
    import importlib.util

    missing = [name for name in ("sentence_transformers", "accelerate", "datasets")
               if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed (pip install -e '.[bench]')" if missing else None


def child(system: str, steps: int, batch_size: int) -> None:
    import torch

    from engine.child.encoder import load_encoder
    from engine.contract.spec import EncoderSpec

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    torch.manual_seed(0)
    drawn = Drawn(steps + WARMUP, batch_size)
    durations, losses, precision = SYSTEMS[system](drawn, batch_size)
    timed = durations[WARMUP:]
    encoder = load_encoder(EncoderSpec(max_query_length=QUERY_LENGTH, max_passage_length=PASSAGE_LENGTH))
    lengths, forwarded, pairs = [], 0, []
    for queries, passages in drawn.texts[WARMUP:]:
        query_lengths = token_lengths(encoder.tokenizer, queries, "query: ", QUERY_LENGTH)
        passage_lengths = token_lengths(encoder.tokenizer, passages, "passage: ", PASSAGE_LENGTH)
        lengths += query_lengths + passage_lengths
        forwarded += grouped_tokens(query_lengths) + grouped_tokens(passage_lengths)
        pairs += sorted(zip(passage_lengths, query_lengths))
    bucketed = bucketed_tokens(pairs, batch_size)
    print(json.dumps({"system": system, "samples_per_s": batch_size * len(timed) / sum(timed),
                      "step_s": sum(timed) / len(timed), "precision": precision, "losses": losses,
                      "model_flops": encoder_flops(encoder.model, lengths, training=True) / sum(timed),
                      "real_tokens": sum(lengths), "grouped_tokens": forwarded, "bucketed_tokens": bucketed,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def grouped_tokens(lengths: list[int]) -> int:
    """Tokens our step forwards for one side of a batch: its texts sorted by length, in the
    groups `DualEncoder.embed` pads separately."""
    from engine.child.encoder import length_groups

    ordered = sorted(lengths)
    return sum(len(group) * ordered[group[-1]] for group in length_groups(ordered))


def bucketed_tokens(pairs: list[tuple[int, int]], batch_size: int, window: int = 4) -> int:
    """Tokens our step would forward if every `window` consecutive batches were re-cut by
    passage length (length bucketing across batches; `pairs` is (passage, query) lengths)."""
    total = 0
    for start in range(0, len(pairs), window * batch_size):
        pooled = sorted(pairs[start:start + window * batch_size])
        for cut in range(0, len(pooled), batch_size):
            batch = pooled[cut:cut + batch_size]
            total += grouped_tokens([passage for passage, _ in batch]) + grouped_tokens([query for _, query in batch])
    return total


def ratio_line(label: str, ours: dict, results: dict, names: list[str], not_run: dict, target: str = "") -> str:
    ran = [name for name in names if name in results]
    skipped = [name for name in names if name not in results]
    if not ran:
        return f"{label}: no baseline ran ({', '.join(skipped)}): no ratio claimed"
    fastest = max(ran, key=lambda name: results[name]["samples_per_s"])
    line = (f"{label}: {ours['samples_per_s'] / results[fastest]['samples_per_s']:.2f}x "
            f"(faster baseline that ran: {fastest}){target}")
    if skipped:
        line += f"; NOT compared with {', '.join(skipped)}: it did not run"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--child", choices=list(SYSTEMS))
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"comma-separated, of: {', '.join(SYSTEMS)}")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps, args.batch_size)
    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    import torch

    torch.set_num_threads(threads)
    peaks = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
    results, not_run = {}, {}
    for system in args.systems.split(","):
        why = missing_for(system)
        if why is None:
            output = subprocess.run([sys.executable, __file__, "--child", system, "--steps", str(args.steps),
                                     "--batch-size", str(args.batch_size)], capture_output=True, text=True,
                                    check=False)
            if output.returncode == 0:
                results[system] = json.loads(output.stdout.strip().splitlines()[-1])
                continue
            why = f"failed (exit {output.returncode}): {(output.stderr.strip().splitlines() or ['?'])[-1][:300]}"
        not_run[system] = why
        print(f"!!! {system}: NOT RUN — {why}", flush=True)

    print(f"\ntraining throughput · bundled e5-small, word embeddings frozen · batch {args.batch_size} · CPU "
          f"({threads} threads) · {args.steps} timed steps after {WARMUP} warm-up steps")
    print(f"matmul peak measured now: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s (2048x2048)")
    print(f"{'system':<16} {'precision':>9} {'samples/s':>10} {'s/step':>7} {'GFLOP/s':>8} {'of peak':>8} "
          f"{'peak RSS MB':>12}")
    for system, row in results.items():
        achieved = row["model_flops"] / 1e9
        print(f"{system:<16} {row['precision']:>9} {row['samples_per_s']:>10.2f} {row['step_s']:>7.2f} "
              f"{achieved:>8.0f} {share(achieved, peaks[row['precision']]):>8} {row['peak_rss_mb']:>12.0f}")
    for system, why in not_run.items():
        print(f"{system:<16} NOT RUN: {why}")
    if "ours" not in results:
        print("ours did not run: no ratio")
        return
    ours = results["ours"]
    print(ratio_line(f"ours ({ours['precision']}) / fp32 baselines", ours, results, list(BASELINES), not_run,
                     " (target >= 2.0x)"))
    print(ratio_line(f"ours ({ours['precision']}) / bf16 baselines", ours, results,
                     [f"{name}-bf16" for name in BASELINES], not_run))
    pads = 1 - ours["real_tokens"] / ours["grouped_tokens"]
    static = 1 - ours["real_tokens"] / (args.steps * args.batch_size * (QUERY_LENGTH + PASSAGE_LENGTH))
    print(f"padding: ours forwards {ours['grouped_tokens']:,} tokens for {ours['real_tokens']:,} real ones "
          f"({100 * pads:.1f}% pads; static padding to max length: {100 * static:.1f}%): the most that grouping "
          "batches by length could still save")
    print(f"length bucketing across 4 batches (re-cut by passage length; NOT what a run does: it changes which "
          f"texts share a batch): {ours['bucketed_tokens']:,} tokens, "
          f"{100 * (1 - ours['bucketed_tokens'] / ours['grouped_tokens']):.1f}% fewer than ours")
    if "ours-fp32" in results:
        fp32 = results["ours-fp32"]
        print(f"ours {ours['precision']} / ours fp32: {ours['samples_per_s'] / fp32['samples_per_s']:.2f}x")
        differences = [abs(a - b) for a, b in zip(ours["losses"], fp32["losses"])]
        print(f"loss curve, {ours['precision']} against fp32 on the same {len(differences)} steps: largest |d| "
              f"{max(differences):.4f}, mean |d| {sum(differences) / len(differences):.4f} "
              f"(losses {min(fp32['losses']):.2f}-{max(fp32['losses']):.2f})")


if __name__ == "__main__":
    main()
