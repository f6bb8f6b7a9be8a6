"""Checkpoints: everything needed to continue a run exactly where it stopped.

    checkpoints/step-000120/
        model/              the encoder in HF format (+ tokenizer, sentence-transformers files)
        training_state.pt   optimizer, scheduler, grad scaler, RNG states (python, numpy, torch, cuda)
        trainer_state.json  step, sampler state, elapsed seconds
        spec.json           the resolved spec

A checkpoint is written into a hidden staging folder and renamed into place, so a crash
mid-write never leaves a checkpoint that looks complete. Only the newest `keep` remain.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINTS = "checkpoints"


@dataclass
class TrainingState:
    step: int
    sampler: dict[str, int]
    elapsed: float


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    complete = [path for path in root.glob("step-*") if (path / "trainer_state.json").is_file()]
    return sorted(complete, key=lambda path: int(path.name.split("-")[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoint_dirs(run_dir)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, encoder, optimizer, scheduler, scaler, state: TrainingState,
                    spec_json: str, keep: int) -> Path:
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step:06d}"
    staging = root / f".staging-{state.step:06d}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    encoder.save(staging / "model")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng_state()}, staging / "training_state.pt")
    (staging / "spec.json").write_text(spec_json, encoding="utf-8")
    (staging / "trainer_state.json").write_text(json.dumps(
        {"step": state.step, "sampler": state.sampler, "elapsed": state.elapsed}), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(checkpoint: Path, optimizer, scheduler, scaler) -> TrainingState:
    saved = torch.load(checkpoint / "training_state.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    scaler.load_state_dict(saved["scaler"])
    restore_rng(saved["rng"])
    meta = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return TrainingState(step=meta["step"], sampler=meta["sampler"], elapsed=meta["elapsed"])
