"""Shared fixtures: the real data folder, a tiny real model (tokenizer trained here) and
an isolated cache. Tests run real code on small slices; nothing is mocked."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HBT_DATA_DIR") or ROOT.parent / "shared" / "data").resolve()
os.environ["HBT_DATA_DIR"] = str(DATA_DIR)
# the bundled encoder is converted once (~470 MB) into a cache that survives test sessions
os.environ.setdefault("HBT_CACHE_DIR", str(ROOT / ".hbt-cache"))
# embeddings are cached per test session (a fresh, empty cache each time the suite runs)
if "HBT_EMBEDDING_CACHE_DIR" not in os.environ:
    os.environ["HBT_EMBEDDING_CACHE_DIR"] = tempfile.mkdtemp(prefix="hbt-embeddings-")
    atexit.register(shutil.rmtree, os.environ["HBT_EMBEDDING_CACHE_DIR"], True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["TZ"] = "UTC"  # event clocks in UI snapshots
time.tzset()
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "mlqa-r" / "en.json").is_file():
        pytest.fail(f"test data not found at {DATA_DIR} (set HBT_DATA_DIR to ../shared/data)")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, data_dir) -> Path:
    """A 2-layer XLM-R-shaped encoder with a BPE tokenizer trained on the benchmark text."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), data_dir)


def write_spec(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path
