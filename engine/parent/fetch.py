"""`hbt-tui data fetch`: download the LAReQA files (XQuAD-R, MLQA-R) into the user cache.

Files come from the LAReQA repository (google-research-datasets/lareqa); MLQA-R from the
commit that still had it. Each dataset is downloaded into a staging folder, checked to
parse, and renamed into place, so an interrupted fetch leaves nothing half-written.
HBT_DATA_URL points at a mirror laid out like the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from engine.contract import catalog
from engine.contract.errors import DataError

DEFAULT_BASE = "https://raw.githubusercontent.com/google-research-datasets/lareqa"
REVISIONS = {"xquad-r": "master", "mlqa-r": "354d67d1"}
TIMEOUT_SECONDS = 30


def _url(dataset: str, filename: str) -> str:
    base = os.environ.get("HBT_DATA_URL", DEFAULT_BASE).rstrip("/")
    return f"{base}/{REVISIONS[dataset]}/{dataset}/{filename}"


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, open(target, "wb") as handle:
            shutil.copyfileobj(response, handle)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise DataError(f"cannot download {url}: {reason}") from None


def fetch(dataset: str, destination: Path | None = None) -> Path:
    """Download every language file of `dataset`; return the folder it now lives in."""
    if dataset not in catalog.LAREQA_DATASETS:
        raise DataError(f"cannot fetch {dataset!r}: known datasets are {', '.join(catalog.LAREQA_DATASETS)} "
                        "(MIRACL loads from the Hugging Face hub with eval dataset hf:miracl)")
    root = destination or catalog.cache_dir() / "data"
    target = root / dataset
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dataset}-", dir=root))
    try:
        for language in catalog.LAREQA_DATASETS[dataset]:
            path = staging / f"{language}.json"
            _download(_url(dataset, f"{language}.json"), path)
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise DataError(f"{_url(dataset, path.name)}: downloaded file is not valid JSON") from None
        _download(_url(dataset, "LICENSE"), staging / "LICENSE")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
