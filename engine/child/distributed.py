"""One run over several processes (torchrun): which rank this is, the process group, and the
few collective operations the training loop needs.

The global batch keeps its language type: every rank builds the same sampler from the same
seed, draws the same global batch, and takes its own contiguous shard of the items. Passage
(and query) embeddings are gathered with gradients, so each query scores against the whole
global batch; gradients are averaged over ranks after the backward passes, which makes the
step equal to the single-process step on the same global batch. Rank 0 alone writes events,
checkpoints and the model. A stop asked of any rank stops every rank at the same step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The rank and world size torchrun sets (a single process without it)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def start(world: World, device: torch.device) -> None:
    """Join the process group: NCCL on GPUs, gloo on CPUs. A long timeout, because rank 0
    evaluates while the others wait."""
    if not world.distributed or torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, rank=world.rank, world_size=world.size,
                                         timeout=timedelta(hours=4))


def stop(world: World) -> None:
    if world.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def exit_process(code: int) -> None:
    """End a rank of a torchrun world without the interpreter's finalisation: gloo's
    transport threads can abort a rank there ("terminate called without an active
    exception", SIGABRT) after all its work is done and the group destroyed — seen about once
    in ten 2-rank runs on a loaded machine, and torchrun then fails the whole run. Output is
    flushed first; a single process exits the normal way."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        raise SystemExit(code)
    import logging
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class _Gather(torch.autograd.Function):
    """all_gather whose backward hands each rank the gradient of its own rows, summed over
    every rank's loss (each rank's loss scores its queries against all rows)."""

    @staticmethod
    def forward(context, tensor: torch.Tensor, size: int, rank: int) -> torch.Tensor:
        pieces = [torch.empty_like(tensor) for _ in range(size)]
        torch.distributed.all_gather(pieces, tensor.contiguous())
        context.rank, context.rows = rank, tensor.shape[0]
        return torch.cat(pieces)                                                     # (size · rows, D)

    @staticmethod
    def backward(context, gradient: torch.Tensor):
        gradient = gradient.contiguous().clone()
        torch.distributed.all_reduce(gradient)
        start = context.rank * context.rows
        return gradient[start:start + context.rows], None, None


def gather(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Every rank's tensor (equal sizes), concatenated in rank order, with gradients."""
    if not world.distributed:
        return tensor
    return _Gather.apply(tensor, world.size, world.rank)


def average_gradients(parameters, world: World) -> None:
    """Mean of every gradient over ranks (what DDP does, after any number of backward passes)."""
    if not world.distributed:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad, op=torch.distributed.ReduceOp.SUM)
            parameter.grad.div_(world.size)


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when it is true on one (a stop, for instance)."""
    if not world.distributed:
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(value, world: World) -> list:
    """Every rank's picklable value, in rank order (on every rank)."""
    values = [None] * world.size
    torch.distributed.all_gather_object(values, value)
    return values


def barrier(world: World) -> None:
    if world.distributed:
        torch.distributed.barrier()


def shard(items: tuple, world: World) -> tuple:
    """This rank's contiguous share of a global batch (the batch size splits evenly)."""
    if not world.distributed:
        return items
    size = len(items) // world.size
    return items[world.rank * size:(world.rank + 1) * size]
