"""The training loop: one readable loop with labelled phases (nanoGPT-style).

    setup -> (resume) -> [lr -> forward/backward x accumulation -> clip + step -> log
                          -> eval / checkpoint / stop] -> final eval -> save model

AdamW (no decay on biases and LayerNorm), linear warmup then linear decay, gradient
accumulation and clipping, dynamic padding (each batch padded to its longest text),
autocast (`train.precision`; auto = bf16 on CUDA cards and on CPUs with AVX-512 BF16 or AMX,
fp16 with a grad scaler on older cards, fp32 elsewhere) with fp32 weights, optimizer state,
pooling and loss.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass

import torch

from engine.child.checkpoint import TrainingState, find_resumable, restore, rng_state, save_checkpoint
from engine.child.data.lareqa import load_lareqa
from engine.child.data.pairs import PairSource, hf_pairs, lareqa_pairs
from engine.child.encoder import DualEncoder, load_encoder
from engine.child.evaluator import Evaluator
from engine.child.distributed import World, any_rank, average_gradients, barrier, gather_objects, world_from_env
from engine.child.distributed import start as start_world
from engine.child.distributed import stop as stop_world
from engine.child.step import StepContext, backward
from engine.child.process import DiskFull, StopFlag, is_disk_full
from engine.child.runtime import (AUTOCAST_DTYPES, describe_device, library_versions, machine, pick_device,
                                  pick_precision, seed_everything, set_threads)
from engine.child.sampling import BatchSampler
from engine.contract import catalog
from engine.contract.errors import DataError, UserError
from engine.contract.events import Checkpoint, EventWriter, Finished, Notice, Started, Step, Stopped
from engine.contract.layout import MODEL_DIR, RunFolder
from engine.contract.spec import ExperimentSpec

log = logging.getLogger("hbt.train")


@dataclass(frozen=True)
class RunArgs:
    spec: ExperimentSpec
    folder: RunFolder
    resume: bool
    stop_at_step: int | None


def mean_over_ranks(value: float, world: World) -> float:
    """The step's loss over the whole global batch (each rank holds its share's mean)."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    torch.distributed.all_reduce(tensor)
    return float(tensor.item()) / world.size


def total_steps(spec: ExperimentSpec, steps_per_epoch: int) -> int:
    if spec.train.steps is not None:
        return spec.train.steps
    epochs = spec.train.epochs if spec.train.epochs is not None else 1.0
    return max(1, math.ceil(epochs * steps_per_epoch))


def build_pair_source(spec: ExperimentSpec) -> PairSource:
    train = spec.train
    if train.dataset.startswith(catalog.HF_PREFIX):
        if not train.languages:
            raise DataError("train.languages: list the languages (configs) to load from the Hugging Face dataset")
        return hf_pairs(train.hf, train.languages)
    corpora = load_lareqa(train.dataset, train.languages, spec.data_dir, train.max_questions, train.slice_seed,
                          "train.max_questions")
    return lareqa_pairs(corpora, with_paragraph=train.passage == "sentence+paragraph")


def make_optimizer(encoder: DualEncoder, spec: ExperimentSpec) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, parameter in encoder.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": spec.train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:        # one fused kernel over all parameters: 3x faster than the per-tensor loop on a CPU, same values
        return torch.optim.AdamW(groups, lr=spec.train.lr, fused=True)
    except (RuntimeError, TypeError):       # a torch or device without the fused AdamW
        return torch.optim.AdamW(groups, lr=spec.train.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def run(args: RunArgs, writer: EventWriter, stop: StopFlag) -> None:
    """The whole run: train and evaluate, or only evaluate (`train.steps: 0`, a zero-shot run)."""
    spec = args.spec
    set_threads(spec.train.num_threads)
    device = pick_device(spec.train.device)
    precision = pick_precision(spec.train.precision, device)
    seed_everything(spec.train.seed)
    if spec.train.steps == 0:
        return evaluate_only(spec, args.folder, writer, stop, device, precision)
    return train(args, writer, stop, device, precision)


def train(args: RunArgs, writer: EventWriter, stop: StopFlag, device: torch.device, precision: str) -> None:
    # --- setup -------------------------------------------------------------------------
    spec, folder = args.spec, args.folder
    world = world_from_env()
    if world.distributed:
        device = torch.device(f"cuda:{world.local_rank}") if device.type == "cuda" else device
        if device.type == "cpu" and not spec.train.num_threads:
            set_threads(max(1, (os.cpu_count() or 1) // world.size))
        start_world(world, device)
    autocast_dtype = AUTOCAST_DTYPES[precision]
    resumable = find_resumable(folder) if args.resume else None
    for skipped in resumable.skipped if resumable else ():
        writer.emit(Notice(message=f"skipped checkpoint {skipped}", level="warning"))
    writer.emit(Notice(message=f"loading training data ({spec.train.dataset}) …"))
    source = build_pair_source(spec)
    # every rank draws the same global batch and trains on its own shard of it
    sampler = BatchSampler(source, spec.sampling, spec.train.batch_size, spec.loss.hard_negatives, spec.train.seed)
    total = total_steps(spec, sampler.steps_per_epoch)
    writer.emit(Notice(message=f"loading model {spec.encoder.name} …"))
    encoder = load_encoder(spec.encoder, str(resumable.path / MODEL_DIR) if resumable else None).to(device)
    encoder.train()
    optimizer = make_optimizer(encoder, spec)
    scheduler = make_scheduler(optimizer, spec.train.warmup_steps, total)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    state = TrainingState(step=0, sampler=sampler.state(), elapsed=0.0)
    if resumable is not None:
        restore(resumable, optimizer, scheduler, scaler, world.rank)
        state = resumable.state
        sampler.load_state(state.sampler)
        writer.emit(Notice(message=f"resuming from {resumable.path.name} (step {state.step})"))
        log.info("resumed from %s (step %d)", resumable.path, state.step)
    evaluator = Evaluator(spec, folder, writer.emit, should_stop=lambda: stop.requested)
    context = StepContext.for_spec(encoder, source, spec, world, scaler,
                                   lambda: torch.autocast(device.type, dtype=autocast_dtype,
                                                          enabled=autocast_dtype is not None))
    parameters = sum(p.numel() for p in encoder.parameters())
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    writer.emit(Started(run_name=spec.name, pid=os.getpid(), device=describe_device(device, world.size),
                        precision=precision, total_steps=total, parameters=parameters, trainable_parameters=trainable,
                        resumed_from_step=state.step, seed=spec.train.seed, versions=library_versions(),
                        world_size=world.size, machine=machine()))
    clock = time.perf_counter()
    elapsed_before = state.elapsed

    def checkpoint_now(step: int):
        path = folder.checkpoint(step)
        rank_rngs = gather_objects(rng_state(), world) if world.distributed else None
        if world.main:
            snapshot = TrainingState(step, sampler.state(), elapsed_before + time.perf_counter() - clock)
            path = save_checkpoint(folder, encoder, optimizer, scheduler, scaler, snapshot, spec.to_dict(),
                                   spec.train.keep_checkpoints, rank_rngs)
            writer.emit(Checkpoint(step=step, path=str(path)))
        barrier(world)
        return path

    def stop_now(step: int) -> None:
        path = checkpoint_now(step)
        writer.emit(Stopped(step=step, signal=stop.reason or "", checkpoint=str(path)))
        stop_world(world)

    def evaluate(step: int, final: bool = True) -> bool:
        """Every rank encodes its part of a MIRACL corpus's shards, then rank 0 evaluates (reading
        them) while the others wait; False when a stop came meanwhile."""
        if world.distributed and evaluator.shares_corpus_encoding:
            try:
                part = evaluator.encode_shard_part(encoder, (world.rank, world.size))
            except UserError as error:          # on every rank, so rank 0 reports it (a full disk, bad data)
                part = error
            shared = gather_objects(part, world)
            failure = next((found for found in shared if isinstance(found, UserError)), None)
            if failure is not None:
                raise failure
            if None in shared:
                return False
            if world.main:
                writer.emit(Notice(message=f"corpus shards encoded by {world.size} ranks: "
                                           + ", ".join(f"rank {rank} {count}" for rank, count in enumerate(shared))))
        completed = evaluator.run(encoder, step, final=final) if world.main else True
        barrier(world)
        return not any_rank(not completed, world)

    if spec.eval.at_start and state.step == 0 and not evaluate(0):
        return stop_now(0)

    for step in range(state.step + 1, total + 1):
        started = time.perf_counter()
        # --- forward / backward over the accumulated micro-batches -----------------------
        losses, parts, tokens, samples, labels = [], {}, 0, 0, []
        for _ in range(spec.train.grad_accumulation):
            batches = sampler.next_step()
            loss, parts, batch_tokens = backward(context, batches, 1 / spec.train.grad_accumulation)
            losses.append(loss)
            tokens += batch_tokens
            samples += sum(len(batch.items) for batch in batches)
            labels.extend(batch.label for batch in batches)
        average_gradients(encoder.parameters(), world)
        # --- clip, step the optimizer and the schedule --------------------------------------
        lr = scheduler.get_last_lr()[0]
        if spec.train.max_grad_norm > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(encoder.parameters(), spec.train.max_grad_norm, foreach=True)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        # --- log ------------------------------------------------------------------------------
        seconds = max(time.perf_counter() - started, 1e-9)
        if step % spec.train.log_every == 0 or step == total:
            writer.emit(Step(step=step, total_steps=total, loss=mean_over_ranks(sum(losses) / len(losses), world),
                             lr=lr, samples_per_s=samples / seconds, tokens_per_s=tokens * world.size / seconds,
                             batch_kind=",".join(labels), losses=parts))
        # --- evaluate, checkpoint, stop -------------------------------------------------------
        if spec.train.eval_every and step % spec.train.eval_every == 0 and step != total:
            if not evaluate(step, final=False):
                return stop_now(step)
        if spec.train.checkpoint_every and step % spec.train.checkpoint_every == 0 and step != total:
            checkpoint_now(step)
        if args.stop_at_step == step and step != total:
            stop.request("stop-at-step")
        if any_rank(stop.requested, world):
            stop.reason = stop.reason or "SIGTERM"
            return stop_now(step)

    # --- final evaluation and the model ------------------------------------------------------
    if spec.train.checkpoint_every:
        checkpoint_now(total)
    if spec.eval.at_end and not evaluate(total):
        return stop_now(total)
    if world.main:
        save_model(encoder, folder)
    barrier(world)
    writer.emit(Finished(step=total, seconds=elapsed_before + time.perf_counter() - clock,
                         model_path=str(folder.model)))
    stop_world(world)


def save_model(encoder: DualEncoder, folder: RunFolder) -> None:
    """The final model, written beside its place and renamed in: never half a model."""
    staging = folder.path / f".{folder.model.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        encoder.save(staging)
        card(folder, staging)
    except Exception as error:
        full = is_disk_full(error, folder.path)
        shutil.rmtree(staging, ignore_errors=True)
        if full:
            raise DiskFull("the final model") from error
        raise
    shutil.rmtree(folder.model, ignore_errors=True)
    staging.rename(folder.model)


def card(folder: RunFolder, staging) -> None:
    """The model card beside the weights (engine.child.model_card); a card that cannot be made
    is said on stderr and never fails the run (a full disk still does, like the weights)."""
    from engine.child.model_card import write_model_card

    try:
        write_model_card(folder, staging)
    except OSError:
        raise
    except Exception as error:
        log.warning("no model card: %s: %s", type(error).__name__, error)


def evaluate_only(spec: ExperimentSpec, folder: RunFolder, writer: EventWriter, stop: StopFlag,
                  device: torch.device, precision: str) -> None:
    """train.steps = 0: a zero-shot run, evaluated like any other so it can be compared."""
    writer.emit(Notice(message=f"loading model {spec.encoder.name} …"))
    encoder = load_encoder(spec.encoder).to(device)
    parameters = sum(p.numel() for p in encoder.parameters())
    writer.emit(Started(run_name=spec.name, pid=os.getpid(), device=describe_device(device), precision=precision,
                        total_steps=0, parameters=parameters, trainable_parameters=0, seed=spec.train.seed,
                        versions=library_versions(), machine=machine()))
    clock = time.perf_counter()
    if not Evaluator(spec, folder, writer.emit, lambda: stop.requested).run(encoder, 0):
        writer.emit(Stopped(step=0, signal=stop.reason or ""))
        return
    writer.emit(Finished(step=0, seconds=time.perf_counter() - clock, model_path=spec.encoder.name))
