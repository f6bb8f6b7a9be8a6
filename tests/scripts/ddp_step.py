"""Run under torchrun by tests/test_distributed.py: one training step on 2 gloo ranks against
the single-process step on the same global batch (computed on rank 0). Prints one JSON line."""

import contextlib
import json
import sys

import torch

from engine.child.data.lareqa import load_lareqa
from engine.child.data.pairs import lareqa_pairs
from engine.child.distributed import (World, average_gradients, exit_process, shard, start, stop,
                                      world_from_env)
from engine.child.encoder import load_encoder
from engine.child.loop import mean_over_ranks
from engine.child.sampling import BatchSampler
from engine.child.step import StepContext, backward
from engine.contract.validation import parse_spec


def step(spec, world, source, batches):
    torch.manual_seed(0)
    encoder = load_encoder(spec.encoder)
    encoder.eval()                       # no dropout: the two steps must see identical forwards
    context = StepContext.for_spec(encoder, source, spec, world, torch.amp.GradScaler("cpu", enabled=False),
                                   contextlib.nullcontext)
    loss, _, _ = backward(context, batches)
    return encoder, loss


def main() -> None:
    model, strategy, chunk, symmetric = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "symmetric"
    world = world_from_env()
    torch.set_num_threads(1)
    start(world, torch.device("cpu"))
    spec = parse_spec({"name": "ddp", "encoder": {"name": model, "max_query_length": 32, "max_passage_length": 48},
                       "sampling": {"strategy": strategy},
                       "loss": {"symmetric": symmetric, "chunk_size": None if chunk == "none" else int(chunk)},
                       "train": {"batch_size": 8, "devices": world.size, "languages": ["en", "de", "es"]}})
    source = lareqa_pairs(load_lareqa("mlqa-r", ("en", "de", "es"), None, 60), with_paragraph=False)
    sampler = BatchSampler(source, spec.sampling, spec.train.batch_size, 0, seed=3)
    for _ in range(2):
        batches = sampler.next_step()
    encoder, loss = step(spec, world, source, batches)
    average_gradients(encoder.parameters(), world)
    loss = mean_over_ranks(loss, world)
    mine = [(batch.kind, [(item.query_language, item.passage_language) for item in shard(batch.items, world)])
            for batch in batches]
    everyone = [None] * world.size
    torch.distributed.all_gather_object(everyone, mine)
    if world.main:
        reference_spec = parse_spec({**spec.to_dict(), "loss": {**spec.to_dict()["loss"], "chunk_size": None},
                                     "train": {**spec.to_dict()["train"], "devices": 1}})
        reference, reference_loss = step(reference_spec, World(), source, batches)
        difference = max(float((a.grad - b.grad).abs().max()) for a, b in
                         zip(encoder.parameters(), reference.parameters()) if a.grad is not None)
        print(json.dumps({"loss": loss, "reference_loss": reference_loss, "max_grad_difference": difference,
                          "ranks": everyone, "global": [[(i.query_language, i.passage_language) for i in batch.items]
                                                        for batch in batches]}))
    torch.distributed.barrier()           # the other rank waits for the reference before leaving
    stop(world)


if __name__ == "__main__":
    main()
    exit_process(0)
