"""Checkpoints: everything needed to continue a run exactly where it stopped, and nothing that
can run code when it is read back.

    checkpoints/step-000120/
        model/              the encoder in HF format (safetensors, tokenizer, ST module files)
        training_state.pt   optimizer, scheduler, grad scaler and RNG states: tensors and plain
                            Python values only, loaded with `torch.load(weights_only=True)`
        trainer_state.json  step, sampler state, elapsed seconds
        spec.json           the resolved spec
        checksums.json      size and SHA-256 of every file above, written last

A checkpoint is written into a hidden staging folder and renamed into place, so a crash
mid-write never leaves one that looks complete; a full disk removes the staging folder.
Resuming takes the newest checkpoint whose files match their checksums and whose state loads
as plain data, and says which one it used and why it skipped any newer ones.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.child.process import DiskFull, is_disk_full
from engine.contract.errors import RunError
from engine.contract.layout import (CHECKSUMS_FILE, MODEL_DIR, SPEC_FILE, TRAINER_STATE_FILE, TRAINING_STATE_FILE,
                                    RunFolder, step_name)


@dataclass
class TrainingState:
    step: int
    sampler: dict[str, int]
    elapsed: float


@dataclass
class Resumable:
    """The checkpoint a resume continues from, its loaded state, and what was skipped."""

    path: Path
    state: TrainingState
    saved: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


# --- RNG state as plain data ---------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- integrity -------------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.name != CHECKSUMS_FILE)
    manifest = {str(path.relative_to(folder)): [path.stat().st_size, _sha256(path)] for path in files}
    (folder / CHECKSUMS_FILE).write_text(json.dumps({"files": manifest}, indent=1), encoding="utf-8")


def verify_checksums(folder: Path) -> str | None:
    """Why the checkpoint's files do not match what was recorded at save, or None."""
    try:
        manifest = json.loads((folder / CHECKSUMS_FILE).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return None  # written before checksums were recorded: nothing to compare against
    except (OSError, ValueError, KeyError, TypeError):
        return f"{CHECKSUMS_FILE} is unreadable"
    for name, (size, digest) in manifest.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were saved"
        if _sha256(path) != digest:
            return f"{name} does not match its checksum"
    return None


# --- saving and loading --------------------------------------------------------------------------

def save_checkpoint(folder: RunFolder, encoder, optimizer, scheduler, scaler, state: TrainingState,
                    spec: dict, keep: int, rank_rngs: list | None = None) -> Path:
    """Called on rank 0 only; `rank_rngs` holds every rank's RNG state (their dropout differs)."""
    final, staging = folder.checkpoint(state.step), folder.staging_checkpoint(state.step)
    folder.checkpoints_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        encoder.save(staging / MODEL_DIR)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(), "rng": rng_state(), "rank_rngs": rank_rngs or []},
                   staging / TRAINING_STATE_FILE)
        (staging / SPEC_FILE).write_text(json.dumps(spec, indent=2), encoding="utf-8")
        (staging / TRAINER_STATE_FILE).write_text(json.dumps(
            {"step": state.step, "sampler": state.sampler, "elapsed": state.elapsed}), encoding="utf-8")
        write_checksums(staging)
    except Exception as error:
        full = is_disk_full(error, folder.checkpoints_dir)
        shutil.rmtree(staging, ignore_errors=True)
        if full:
            raise DiskFull(f"checkpoint {step_name(state.step)}") from error
        raise
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for old in folder.checkpoints()[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(checkpoint: Path) -> tuple[TrainingState, dict[str, Any]]:
    """The trainer and training states of one checkpoint; a RunError says why it is unusable."""
    problem = verify_checksums(checkpoint)
    if problem:
        raise RunError(problem)
    try:
        saved = torch.load(checkpoint / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise RunError(f"{TRAINING_STATE_FILE} holds objects other than tensors and plain values; "
                       "refused to unpickle it (it could run code)") from None
    except (OSError, RuntimeError, EOFError) as error:
        raise RunError(f"{TRAINING_STATE_FILE} cannot be read ({str(error).splitlines()[0][:120]})") from None
    try:
        meta = json.loads((checkpoint / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
        state = TrainingState(step=int(meta["step"]), sampler=dict(meta["sampler"]), elapsed=float(meta["elapsed"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise RunError(f"{TRAINER_STATE_FILE} is unreadable") from None
    if not isinstance(saved, dict) or not {"optimizer", "scheduler", "scaler", "rng"} <= set(saved):
        raise RunError(f"{TRAINING_STATE_FILE} lacks the optimizer, scheduler, scaler or RNG state")
    return state, saved


def find_resumable(folder: RunFolder) -> Resumable:
    """The newest checkpoint that is intact, or a RunError listing why each one is not."""
    skipped = []
    for checkpoint in reversed(folder.checkpoints()):
        try:
            state, saved = load_state(checkpoint)
        except RunError as problem:
            skipped.append(f"{checkpoint.name}: {problem}")
            continue
        return Resumable(checkpoint, state, saved, skipped)
    if not skipped:
        raise RunError(f"{folder.path}: no checkpoint to resume from")
    raise RunError(f"{folder.path}: no intact checkpoint to resume from ({'; '.join(skipped)})")


def restore(resumable: Resumable, optimizer, scheduler, scaler, rank: int = 0) -> None:
    saved = resumable.saved
    kernels = [(group.get("fused"), group.get("foreach")) for group in optimizer.param_groups]
    optimizer.load_state_dict(saved["optimizer"])
    for group, (fused, foreach) in zip(optimizer.param_groups, kernels):    # how to step is this run's choice
        group["fused"], group["foreach"] = fused, foreach
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    rank_rngs = saved.get("rank_rngs") or []
    restore_rng(rank_rngs[rank] if rank < len(rank_rngs) else saved["rng"])
