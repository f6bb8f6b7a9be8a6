"""Helpers for tests that run the real `python -m engine.train` subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from engine.contract.events import parse_event


def tiny_spec(model: Path, **overrides) -> dict:
    """A spec for the tiny model on MLQA-R / XQuAD-R slices: seconds on a CPU."""
    document = {
        "name": "tiny",
        "encoder": {"name": str(model), "max_query_length": 32, "max_passage_length": 48},
        "sampling": {"strategy": "hybrid", "alpha": 0.5},
        "train": {"dataset": "mlqa-r", "languages": ["en", "de", "es"], "max_questions": 60, "batch_size": 8,
                  "steps": 6, "lr": 1e-3, "checkpoint_every": 3, "num_threads": 1, "seed": 5},
        "eval": {"datasets": ["xquad-r"], "languages": ["en", "de", "zh"], "max_queries": 12, "batch_size": 16},
    }
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return document


def write(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def env() -> dict[str, str]:
    variables = dict(os.environ)
    variables["PYTHONPATH"] = str(ROOT) + os.pathsep + variables.get("PYTHONPATH", "")
    variables["OMP_NUM_THREADS"] = "1"
    return variables


def run_train(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.train", *map(str, args)], capture_output=True, text=True,
                          env=env(), timeout=timeout, cwd=ROOT)


def events_of(stdout: str) -> list:
    events = [parse_event(line) for line in stdout.splitlines()]
    assert all(event is not None for event in events), stdout[:2000]
    return events


def step_losses(events) -> dict[int, float]:
    return {event.step: event.loss for event in events if event.kind == "step"}


def started(events) -> object:
    """The run's `started` event (notices such as "loading model" come before it)."""
    return next(event for event in events if event.kind == "started")


def wait_for(predicate, timeout: float = 300, what: str = "condition", every: float = 0.1):
    """Poll `predicate()` every `every` seconds until it holds and return its value. The
    deadline only bounds a test that is failing anyway, generously, so a loaded machine never
    trips it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def small_filesystem(mount: Path, size: str):
    """A tmpfs of `size` mounted at `mount` for a test (a real ENOSPC, a real read-only remount)."""
    mount.mkdir(parents=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.fail(f"this test needs a small file system: `mount -t tmpfs` failed ({made.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
