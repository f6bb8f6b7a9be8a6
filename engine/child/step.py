"""Forward and backward of one sampler step: one batch, or under multitask the weighted
monolingual and cross-lingual objectives; on one process or a rank of many; whole, or with
GradCache (`loss.chunk_size`).

GradCache (Gao et al., 2021; sentence-transformers' CachedMultipleNegativesRankingLoss does
the same) computes the contrastive loss over the full batch with only one chunk's activations
alive at a time: (1) embed every chunk without a graph, remembering its RNG state; (2) compute
the loss on those embeddings and back-propagate it to them; (3) embed each chunk again with
its graph, the same RNG state (so dropout repeats), and push the cached gradient through it.
The loss and gradients equal those of the whole-batch step; peak memory is one chunk's.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from engine.child.data.pairs import PairSource
from engine.child.distributed import World, gather, shard
from engine.child.encoder import DualEncoder
from engine.child.losses import ContrastiveLoss
from engine.child.sampling import Batch
from engine.contract.arms import STRATEGIES
from engine.contract.spec import ExperimentSpec


@dataclass
class StepContext:
    """What a step uses, by value: the encoder and the pairs, the loss, each batch's objective
    weight (its strategy's), the ranks, the grad scaler and the autocast of the precision."""

    encoder: DualEncoder
    source: PairSource
    world: World
    scaler: torch.amp.GradScaler
    autocast: Callable[[], AbstractContextManager]
    loss: ContrastiveLoss
    weights: tuple[float, ...]

    @classmethod
    def for_spec(cls, encoder: DualEncoder, source: PairSource, spec: ExperimentSpec, world: World,
                 scaler: torch.amp.GradScaler, autocast: Callable[[], AbstractContextManager]) -> StepContext:
        """The context of a run's spec: its loss and its strategy's objective weights."""
        return cls(encoder, source, world, scaler, autocast, ContrastiveLoss.from_spec(spec.loss),
                   STRATEGIES[spec.sampling.strategy].weights(spec.sampling))


def texts(batch: Batch, source: PairSource, world: World) -> tuple[list[str], list[str]]:
    """This rank's queries and passages (its shard of the global batch, then hard negatives)."""
    items = shard(batch.items, world)
    queries = [source.queries[item.query_language][item.key] for item in items]
    passages = [source.passages[item.passage_id] for item in items]
    passages += [source.passages[passage_id] for passage_id in batch.hard_negatives]
    return queries, passages


def objective(context: StepContext, query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor) -> torch.Tensor:
    """InfoNCE of the local queries against every rank's passages (this rank's loss share)."""
    world, loss = context.world, context.loss
    B = query_embeddings.shape[0]
    passages = gather(passage_embeddings.float(), world)                              # (W·B + H, D)
    all_queries = gather(query_embeddings.float(), world) if loss.symmetric and world.distributed else None
    return loss(query_embeddings.float(), passages, offset=world.rank * B, all_queries=all_queries)


def backward(context: StepContext, batches: tuple[Batch, ...], scale: float = 1.0) -> tuple[float, dict, int]:
    """Forward and backward of one sampler step; returns (loss, its parts, real tokens encoded).
    `scale` divides the loss over gradient-accumulation micro-steps."""
    losses, tokens = [], 0
    whole = context.loss.chunk_size is None
    total = None
    for batch, weight in zip(batches, context.weights, strict=True):
        queries, passages = texts(batch, context.source, context.world)
        if whole:
            with context.autocast():               # one pass over both sides' tokens (DualEncoder.embed_sides)
                (query_embeddings, passage_embeddings), batch_tokens = context.encoder.embed_sides(
                    [(queries, True), (passages, False)])                                  # (B, D), (B + H, D)
            loss = objective(context, query_embeddings, passage_embeddings)
            total = weight * loss if total is None else total + weight * loss
            tokens += batch_tokens
        else:
            loss, batch_tokens = cached_backward(context, queries, passages, weight * scale)
            tokens += batch_tokens
        losses.append(float(loss.detach()))
    if whole:
        context.scaler.scale(total * scale).backward()
    value = sum(weight * loss for weight, loss in zip(context.weights, losses, strict=True))
    parts = {} if len(batches) == 1 else {"mono": losses[0], "cross": losses[1]}
    return value, parts, tokens


# --- GradCache ---------------------------------------------------------------------------------------

def _rng_state(device: torch.device) -> tuple:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _embed_without_graph(context: StepContext, texts_: list[str], is_query: bool) -> tuple[torch.Tensor, list, int]:
    """(N, D) embeddings in chunks with no graph kept, each chunk's RNG state, real tokens."""
    chunk, device = context.loss.chunk_size, context.encoder.device
    pieces, states, tokens = [], [], 0
    with torch.no_grad():
        for start in range(0, len(texts_), chunk):
            states.append(_rng_state(device))
            with context.autocast():
                embeddings, count = context.encoder.embed(texts_[start:start + chunk], is_query)
            pieces.append(embeddings.float())
            tokens += count
    return torch.cat(pieces), states, tokens


def _replay(context: StepContext, texts_: list[str], is_query: bool, states: list, gradient: torch.Tensor) -> None:
    """Each chunk again, with its graph and its RNG state, its cached gradient pushed through."""
    chunk, device = context.loss.chunk_size, context.encoder.device
    devices = [device] if device.type == "cuda" else []
    for number, start in enumerate(range(0, len(texts_), chunk)):
        with torch.random.fork_rng(devices=devices):
            cpu_state, cuda_state = states[number]
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, device)
            with context.autocast():
                embeddings, _ = context.encoder.embed(texts_[start:start + chunk], is_query)
            embeddings.float().backward(gradient[start:start + chunk])


def cached_backward(context: StepContext, queries: list[str], passages: list[str],
                    weight: float) -> tuple[torch.Tensor, int]:
    query_cache, query_states, query_tokens = _embed_without_graph(context, queries, True)
    passage_cache, passage_states, passage_tokens = _embed_without_graph(context, passages, False)
    query_cache.requires_grad_(True)
    passage_cache.requires_grad_(True)
    loss = objective(context, query_cache, passage_cache)
    context.scaler.scale(loss * weight).backward()
    _replay(context, queries, True, query_states, query_cache.grad)
    _replay(context, passages, False, passage_states, passage_cache.grad)
    return loss, query_tokens + passage_tokens
