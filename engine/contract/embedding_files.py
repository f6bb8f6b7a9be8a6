"""The embedding cache's files, for both sides: where they live, how big they may grow, and
the management `hbt-tui cache` does (the training side reads and writes entries through
`engine.child.embedding_cache`). Standard library only.

An entry is `KEY.npy` with `KEY.json` beside it ({sha256, shape, dtype}); `KEY.lock` files
serialise its computation between processes. KEY is 40 lower-case hex digits. Only files of
that shape — whose metadata says what an entry's says — are ever listed, evicted or cleared:
a cache directory pointed at a folder of the user's loses nothing else.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from engine.contract import catalog
from engine.contract.errors import UserError

DEFAULT_LIMIT_MB = 4096
ENTRY_KEY = re.compile(r"^[0-9a-f]{40}$")
TEMPORARY = re.compile(r"^[0-9a-f]{40}\.(npy|json)\.tmp-[0-9]+$")


def cache_root() -> Path:
    """`$HBT_EMBEDDING_CACHE_DIR`, else `<cache dir>/embeddings` (`$HBT_CACHE_DIR`, ~/.cache/hbt-tui)."""
    configured = os.environ.get("HBT_EMBEDDING_CACHE_DIR")
    return Path(configured).expanduser() if configured else catalog.cache_dir() / "embeddings"


def limit_bytes() -> int:
    """`$HBT_EMBEDDING_CACHE_MB` (default 4096) in bytes; anything but a number >= 0 is refused."""
    text = os.environ.get("HBT_EMBEDDING_CACHE_MB", str(DEFAULT_LIMIT_MB))
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0 or megabytes == float("inf"):
        raise UserError(f"HBT_EMBEDDING_CACHE_MB: expected a size in MB (a number >= 0), got {text!r}")
    return int(megabytes * 2**20)


def is_entry(array_path: Path) -> bool:
    """Whether `KEY.npy` is an entry the cache wrote: its name, and metadata that says so."""
    if array_path.suffix != ".npy" or not ENTRY_KEY.match(array_path.stem) or not array_path.is_file():
        return False
    try:
        meta = json.loads(array_path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("sha256"), str) and isinstance(meta.get("shape"), list) \
        and isinstance(meta.get("dtype"), str)


def corpus_shards(root: Path | None) -> list[tuple[Path, dict, int]]:
    """(metadata path, what it encodes, rows) of every MIRACL corpus shard in the cache: its
    `about` says kind "corpus-shard", the encoder's fingerprint, dataset, language, protocol,
    pool, size and dtype. Unreadable metadata is passed over."""
    found = []
    for meta_path in root.glob("*.json") if root is not None and root.is_dir() else ():
        if not ENTRY_KEY.match(meta_path.stem):
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            about, rows = meta.get("about"), int(meta["shape"][0])
        except (OSError, ValueError, AttributeError, KeyError, TypeError, IndexError):
            continue
        if isinstance(about, dict) and about.get("kind") == "corpus-shard":
            found.append((meta_path, about, rows))
    return found


def entries(root: Path) -> list[tuple[Path, int, float]]:
    """(array path, bytes with its metadata, last use) of every entry, oldest use first."""
    found = []
    for array_path in root.glob("*.npy"):
        if not is_entry(array_path):
            continue
        try:
            stat = array_path.stat()
            meta_size = array_path.with_suffix(".json").stat().st_size
        except OSError:
            continue
        found.append((array_path, stat.st_size + meta_size, stat.st_mtime))
    return sorted(found, key=lambda entry: entry[2])


def evict(root: Path, limit: int) -> int:
    """Remove least recently used entries until the cache fits `limit` bytes; returns how many."""
    listed = entries(root)
    total, removed = sum(size for _, size, _ in listed), 0
    for array_path, size, _ in listed:
        if total <= limit:
            break
        array_path.unlink(missing_ok=True)
        array_path.with_suffix(".json").unlink(missing_ok=True)
        total -= size
        removed += 1
    return removed


def clear(root: Path | None = None) -> tuple[int, int]:
    """Remove every entry; returns (entries, bytes) removed."""
    root = root or cache_root()
    listed = entries(root) if root.exists() else []
    for array_path, _, _ in listed:
        array_path.unlink(missing_ok=True)
        array_path.with_suffix(".json").unlink(missing_ok=True)
    for leftover in (root.iterdir() if root.exists() else []):    # temp files and locks of ours, by name
        if TEMPORARY.match(leftover.name) or (leftover.suffix == ".lock" and ENTRY_KEY.match(leftover.stem)):
            leftover.unlink(missing_ok=True)
    return len(listed), sum(size for _, size, _ in listed)


def info(root: Path | None = None) -> dict:
    root = root or cache_root()
    listed = entries(root) if root.exists() else []
    return {"path": str(root), "entries": len(listed), "bytes": sum(size for _, size, _ in listed),
            "limit_bytes": limit_bytes()}
