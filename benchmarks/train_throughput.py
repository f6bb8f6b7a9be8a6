"""Training throughput: our step against the baselines on identical batches (printed, not asserted).

    python benchmarks/train_throughput.py [--steps 16] [--batch-size 16] [--rounds 3]

This machine's matmul peak (fp32 and bf16) is measured first, in the same run. Then each
system runs in a fresh subprocess (so each gets its own peak RSS), all on the bundled
multilingual-e5-small with word embeddings frozen, the same hybrid (alpha 0.5) MLQA-R
batches in the same order, InfoNCE at temperature 0.05 (= MultipleNegativesRankingLoss
scale 20), AdamW, gradient clipping at 1.0:

- ours-fp32, ours-bf16: engine.child.step's forward/backward as a run does it — the real tokens
                    of a step's queries and passages packed into one pass (engine.child.packed),
                    fused AdamW, foreach clipping — in fp32 and under bf16 autocast;
- today-fp32, today-bf16: the step before packing (Hugging Face's forward per length group,
                    per-tensor AdamW and clipping): the loss curve ours must follow;
- ours-fp32-bernoulli, ours-bf16-bernoulli (not run by default): ours with the dropout masks drawn
                    by torch's bernoulli_ instead of engine.child.native_masks (the same bits): what
                    the native masks save;
- reference(-bf16): the obvious loop: same model, batch and loss, static padding to max length;
- st-trainer(-bf16): sentence-transformers' SentenceTransformerTrainer + MultipleNegativesRankingLoss
                    (`bf16=True` for the bf16 one).

Ratios are only ever taken at the same precision. On a CPU with neither AVX-512 BF16 nor AMX
(where `auto` means fp32) the bf16 systems are NOT RUN unless --force-bf16; the machine's CPU
model and flags are printed first. After the timed steps, ours is profiled (torch.profiler)
over three more steps and the breakdown by kind of op is printed.
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
from benchmarks.step_profile import PROFILED, print_profile, profile_steps  # noqa: E402

QUERY_LENGTH, PASSAGE_LENGTH, TEMPERATURE, LR, WARMUP = 48, 96, 0.05, 2e-5, 3
DEVICE = os.environ.get("BENCH_DEVICE", "cpu")     # --device cuda (benchmarks/gpu_check.sh) sets it for the children
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
                       "train": {"batch_size": batch_size, "lr": LR, "precision": precision, "device": DEVICE}})


def run_ours(drawn: Drawn, experiment, variant: str = "") -> tuple[list[float], list[float], str]:
    """The run's own step: engine.child.step.backward (packed tokens) with the run's optimizer
    (fused AdamW) and clipping (foreach), under the precision the spec asks for.

    Variant `today` is the step as it was before packing: Hugging Face's forward per length
    group, the per-tensor AdamW loop and per-tensor clipping — the loss curve ours must follow.
    Variant `bf16-weights` (tried and not kept): the model held in bf16 with fp32 master copies."""
    import torch

    from engine.child.distributed import World
    from engine.child.encoder import load_encoder
    from engine.child.loop import make_optimizer
    from engine.child.runtime import AUTOCAST_DTYPES
    from engine.child.step import StepContext, backward

    precision = experiment.train.precision
    dtype = AUTOCAST_DTYPES[precision]
    encoder = load_encoder(experiment.encoder).to(DEVICE)
    encoder.train()
    optimizer = make_optimizer(encoder, experiment)
    trained = [parameter for parameter in encoder.parameters() if parameter.requires_grad]
    masters, foreach = trained, True
    if variant == "today":
        encoder.packed = None
        groups = [{"params": group["params"], "weight_decay": group["weight_decay"]} for group in optimizer.param_groups]
        optimizer = torch.optim.AdamW(groups, lr=LR, foreach=False)     # not the groups' own fused=True
        foreach = False
    elif variant == "bf16-weights":
        precision, dtype = "bf16", None
        masters = [parameter.detach().float().requires_grad_(True) for parameter in trained]
        encoder.model.to(torch.bfloat16)
        optimizer = torch.optim.AdamW(masters, lr=LR, weight_decay=experiment.train.weight_decay, fused=True)
    context = StepContext.for_spec(encoder, drawn.source, experiment, World(),
                                   torch.amp.GradScaler(DEVICE, enabled=False),
                                   lambda: torch.autocast(DEVICE, dtype=dtype, enabled=dtype is not None))

    def step(batch) -> float:
        loss, _, _ = backward(context, (batch,))
        if masters is not trained:
            for master, parameter in zip(masters, trained):
                master.grad, parameter.grad = parameter.grad.float(), None
        torch.nn.utils.clip_grad_norm_(masters, 1.0, foreach=foreach)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if masters is not trained:
            with torch.no_grad():
                for master, parameter in zip(masters, trained):
                    parameter.copy_(master)
        return loss

    durations, losses = [], []
    for batch in drawn.batches:
        started = time.perf_counter()
        losses.append(step(batch))
        synchronize()
        durations.append(time.perf_counter() - started)
    drawn.profile = profile_steps(lambda: [step(batch) for batch in drawn.batches[:PROFILED]], DEVICE)
    group = optimizer.param_groups[0]
    drawn.optimizer = "fused" if group.get("fused") else "foreach" if group.get("foreach") else "per-tensor"
    return durations, losses, precision


def synchronize() -> None:
    if DEVICE != "cpu":
        import torch

        torch.cuda.synchronize()


def run_reference(drawn: Drawn, experiment, bf16: bool = False) -> tuple[list[float], list[float], str]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from engine.child.encoder import resolve_model_location

    location = resolve_model_location(experiment.encoder.name)
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModel.from_pretrained(location, add_pooling_layer=False).to(DEVICE)
    model.get_input_embeddings().weight.requires_grad_(False)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.01)

    def embed(texts: list[str], prefix: str, length: int) -> torch.Tensor:
        inputs = tokenizer([prefix + t for t in texts], padding="max_length", truncation=True, max_length=length,
                           return_tensors="pt").to(DEVICE)
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):
            hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden.float() * mask).sum(1) / mask.sum(1), dim=-1)

    durations, losses = [], []
    for queries, passages in drawn.texts:
        started = time.perf_counter()
        scores = embed(queries, "query: ", QUERY_LENGTH) @ embed(passages, "passage: ", PASSAGE_LENGTH).T
        loss = F.cross_entropy(scores / TEMPERATURE, torch.arange(len(queries), device=DEVICE))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
        durations.append(time.perf_counter() - started)
    return durations, losses, "bf16" if bf16 else "fp32"


def run_st_trainer(drawn: Drawn, experiment, bf16: bool = False) -> tuple[list[float], list[float], str]:
    import tempfile

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from torch.utils.data import BatchSampler, SequentialSampler
    from transformers import TrainerCallback

    from engine.child.encoder import resolve_model_location

    model = SentenceTransformer(resolve_model_location(experiment.encoder.name), device=DEVICE)
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
            synchronize()
            self.durations.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    clock = Clock()
    with tempfile.TemporaryDirectory() as output:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=output, per_device_train_batch_size=batch_size, max_steps=len(drawn.texts), learning_rate=LR,
            weight_decay=0.01, warmup_steps=0, max_grad_norm=1.0, logging_steps=1, save_strategy="no",
            report_to=[], use_cpu=DEVICE == "cpu", bf16=bf16, dataloader_drop_last=True, disable_tqdm=True, seed=0)
        trainer = SameOrder(model=model, args=arguments, train_dataset=Dataset.from_dict(rows),
                            loss=MultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE), callbacks=[clock])
        trainer.train()
    return clock.durations, clock.losses, "bf16" if bf16 else "fp32"


SYSTEMS = {     # name: (precision, how to run it)
    "ours-fp32": ("fp32", lambda data, batch_size: run_ours(data, spec(batch_size, "fp32"))),
    "today-fp32": ("fp32", lambda data, batch_size: run_ours(data, spec(batch_size, "fp32"), "today")),
    "reference": ("fp32", lambda data, batch_size: run_reference(data, spec(batch_size))),
    "st-trainer": ("fp32", lambda data, batch_size: run_st_trainer(data, spec(batch_size))),
    "ours-bf16": ("bf16", lambda data, batch_size: run_ours(data, spec(batch_size, "bf16"))),
    "today-bf16": ("bf16", lambda data, batch_size: run_ours(data, spec(batch_size, "bf16"), "today")),
    "reference-bf16": ("bf16", lambda data, batch_size: run_reference(data, spec(batch_size), bf16=True)),
    "st-trainer-bf16": ("bf16", lambda data, batch_size: run_st_trainer(data, spec(batch_size), bf16=True)),
    "ours-bf16-weights": ("bf16", lambda data, batch_size: run_ours(data, spec(batch_size, "fp32"), "bf16-weights")),
    # ours with the dropout masks drawn by torch's bernoulli_ (HBT_NATIVE_MASKS=0): what the native masks give
    "ours-fp32-bernoulli": ("fp32", lambda data, batch_size: run_ours(data, spec(batch_size, "fp32"))),
    "ours-bf16-bernoulli": ("bf16", lambda data, batch_size: run_ours(data, spec(batch_size, "bf16"))),
}
DEFAULT_SYSTEMS = ("ours-fp32", "today-fp32", "reference", "st-trainer",
                   "ours-bf16", "today-bf16", "reference-bf16", "st-trainer-bf16")
LOSS_TARGETS = {"fp32": 1e-4, "bf16": 0.02}


def missing_for(system: str, force_bf16: bool = False) -> str | None:
    """Why a system cannot run here (a bf16 system on a CPU without bf16 arithmetic, a package
    it needs missing), else None."""
    from engine.child.runtime import cpu_has_fast_bf16

    if DEVICE == "cpu" and SYSTEMS[system][0] == "bf16" and not force_bf16 and not cpu_has_fast_bf16():
        return ("this CPU has neither AVX-512 BF16 nor AMX: bf16 would be emulated, and `auto` trains in fp32 "
                "here (--force-bf16 runs it anyway)")
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
    if system.endswith("-bernoulli"):
        os.environ["HBT_NATIVE_MASKS"] = "0"
    from engine.child import native_masks

    masks = ("native" if native_masks.available() else "bernoulli_") if system.startswith("ours") else ""
    torch.manual_seed(0)
    drawn = Drawn(steps + WARMUP, batch_size)
    durations, losses, precision = SYSTEMS[system][1](drawn, batch_size)
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
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "profile": getattr(drawn, "profile", None), "optimizer": getattr(drawn, "optimizer", ""),
                      "masks": masks}))


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


def ratio_line(label: str, ours: dict, results: dict, names: list[str], target: str = "") -> str:
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


NOMINAL_BF16_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10": 125, "V100": 125}


def nominal_gpu_peak(name: str) -> int | None:
    """The card's dense bf16 (V100: fp16) tensor-core peak from its datasheet, if it is one we know."""
    return next((peak for card, peak in NOMINAL_BF16_TFLOPS.items() if card in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--child", choices=list(SYSTEMS))
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"comma-separated, of: {', '.join(SYSTEMS)}")
    parser.add_argument("--force-bf16", action="store_true", help="run the bf16 systems on a CPU without bf16 too")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=DEVICE)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every system this many times, in turn (a round each), and keep each one's "
                             "median round: a machine whose speed drifts moves every system alike")
    args = parser.parse_args()
    os.environ["BENCH_DEVICE"] = args.device        # the children run where the parent was told to
    if args.child:
        return child(args.child, args.steps, args.batch_size)
    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    import torch

    from engine.child.runtime import machine, pick_precision

    torch.set_num_threads(threads)
    host = machine()
    print(f"machine: {host.get('cpu')} · {host.get('cores')} cores · flags: {', '.join(host.get('flags') or []) or 'none of avx512*/amx'}"
          f" · auto precision = {pick_precision('auto', torch.device('cpu'))}", flush=True)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is visible")
        print(f"gpu: {torch.cuda.get_device_name(0)} · nominal dense bf16 peak "
              f"{nominal_gpu_peak(torch.cuda.get_device_name(0)) or 'unknown'} TFLOP/s", flush=True)
    size = 2048 if args.device == "cpu" else 8192
    peaks = {name: matmul_peak(name, size=size, device=args.device) for name in ("fp32", "bf16")}
    rounds: dict[str, list[dict]] = {}
    not_run = {}
    for number in range(1, max(1, args.rounds) + 1):
        for system in args.systems.split(","):
            if system in not_run:
                continue
            why = missing_for(system, args.force_bf16)
            if why is None:
                output = subprocess.run([sys.executable, __file__, "--child", system, "--steps", str(args.steps),
                                         "--batch-size", str(args.batch_size)], capture_output=True, text=True,
                                        check=False)
                if output.returncode == 0:
                    rounds.setdefault(system, []).append(json.loads(output.stdout.strip().splitlines()[-1]))
                    print(f"... round {number}, {system}: {rounds[system][-1]['samples_per_s']:.2f} samples/s",
                          flush=True)
                    continue
                why = f"failed (exit {output.returncode}): {(output.stderr.strip().splitlines() or ['?'])[-1][:300]}"
            not_run[system] = why
            rounds.pop(system, None)
            print(f"!!! {system}: NOT RUN — {why}", flush=True)
    results = {system: sorted(runs, key=lambda row: row["samples_per_s"])[(len(runs) - 1) // 2]
               for system, runs in rounds.items()}
    if args.rounds > 1:
        print(f"\n{args.rounds} rounds; each system's median round is the one shown (samples/s of every round):")
        for system, runs in rounds.items():
            print(f"  {system:<20} " + " · ".join(f"{row['samples_per_s']:.2f}" for row in runs))

    where = f"CPU ({threads} threads)" if args.device == "cpu" else f"GPU {torch.cuda.get_device_name(0)}"
    print(f"\ntraining throughput · bundled e5-small, word embeddings frozen · batch {args.batch_size} · {where} · "
          f"{args.steps} timed steps after {WARMUP} warm-up steps · identical batches")
    print(f"matmul peak measured now: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
          f"({size}x{size})")
    print(f"{'system':<18} {'precision':>9} {'samples/s':>10} {'s/step':>7} {'GFLOP/s':>8} {'of peak':>8} "
          f"{'peak RSS MB':>12}  AdamW       masks")
    for system, row in results.items():
        achieved = row["model_flops"] / 1e9
        print(f"{system:<18} {row['precision']:>9} {row['samples_per_s']:>10.2f} {row['step_s']:>7.2f} "
              f"{achieved:>8.0f} {share(achieved, peaks[row['precision']]):>8} {row['peak_rss_mb']:>12.0f}  "
              f"{row.get('optimizer') or 'its own':<11} {row.get('masks') or 'its own'}")
    for system, why in not_run.items():
        print(f"{system:<18} NOT RUN: {why}")
    nominal = nominal_gpu_peak(torch.cuda.get_device_name(0)) if args.device == "cuda" else None
    if nominal:
        for system, row in results.items():
            if row["precision"] == "bf16":
                print(f"{system}: MFU {100 * row['model_flops'] / (nominal * 1e12):.1f}% of the card's nominal "
                      f"{nominal} TFLOP/s bf16")
    print("\nsame precision, identical batches (target >= 2.0x the faster baseline; share of peak target >= 40%):")
    for precision in ("fp32", "bf16"):
        mine = results.get(f"ours-{precision}")
        if mine is None:
            print(f"{precision}: ours-{precision} did not run: no ratio")
            continue
        suffix = "" if precision == "fp32" else "-bf16"
        print("  " + ratio_line(f"ours-{precision} / {precision} baselines", mine, results,
                                [f"{name}{suffix}" for name in BASELINES], " (target >= 2.0x)"))
        today = results.get(f"today-{precision}")
        if today is not None:
            differences = [abs(a - b) for a, b in zip(mine["losses"], today["losses"])]
            print(f"  ours-{precision} / today-{precision} (the step before packing): "
                  f"{mine['samples_per_s'] / today['samples_per_s']:.2f}x; loss curve over {len(differences)} steps: "
                  f"largest |d| {max(differences):.2e} (target <= {LOSS_TARGETS[precision]:g}), "
                  f"mean |d| {sum(differences) / len(differences):.2e}")
        serial = results.get(f"ours-{precision}-bernoulli")
        if serial is not None:
            differences = [abs(a - b) for a, b in zip(mine["losses"], serial["losses"])]
            print(f"  ours-{precision} ({mine['masks']} masks) / ours-{precision}-bernoulli: "
                  f"{mine['samples_per_s'] / serial['samples_per_s']:.2f}x; largest loss |d| {max(differences):.2e}")
    if "ours-bf16" in results and "ours-fp32" in results:
        bf16, fp32 = results["ours-bf16"], results["ours-fp32"]
        differences = [abs(a - b) for a, b in zip(bf16["losses"], fp32["losses"])]
        print(f"  ours bf16 / ours fp32: {bf16['samples_per_s'] / fp32['samples_per_s']:.2f}x; bf16 against fp32 "
              f"loss: largest |d| {max(differences):.4f}")
    ours = results.get("ours-fp32") or next(iter(results.values()), None)
    if ours is not None:
        pads = 1 - ours["real_tokens"] / ours["grouped_tokens"]
        static = 1 - ours["real_tokens"] / (args.steps * args.batch_size * (QUERY_LENGTH + PASSAGE_LENGTH))
        print(f"\npadding: {ours['real_tokens']:,} real tokens; today's step forwarded {ours['grouped_tokens']:,} "
              f"({100 * pads:.1f}% pads), static padding to max length {100 * static:.1f}% pads; ours forwards only "
              "the real tokens through every dense layer (attention per length group)")
    for system in ("ours-fp32", "ours-bf16"):
        if system in results:
            print_profile(system, results[system])


if __name__ == "__main__":
    main()
