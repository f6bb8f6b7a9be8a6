"""MIRACL protocols and their fingerprints, and the pool file format. Standard library only:
the child writes and checks them, the parent reads them (compare, report, the TUI).

A result's fingerprint says which numbers it can be compared with:

    {"protocol": "full" | "pooled", "split": "dev", "pool_sha256": str | None,
     "index": "exact" | "hnsw" | "ivf", "shard_dtype": "float16" | "float32",
     "languages": {lang: {"corpus_size": int, "searched": int, "qrels_sha256": str,
                          "pool_sha256": str (hub pools only)}}}

Two results are comparable when protocol, split, pool and search index agree and, on every
language both have, the corpus size and the judgements agree (the storage type is recorded,
not refused: like bf16 encoding, it moves scores by about 1e-3). A result from before
fingerprints has none: comparable only with others that have none.

A pool file (`hbt-tui miracl pool` writes it; JSON, optionally gzipped):

    {"format": "hbt-tui-miracl-pool/1", "split": "dev", "depth": 250, "retrievers": [...],
     "languages": {lang: {"corpus_size": int, "qrels_sha256": str, "docids": [...]}}}

Every judged passage is in the pool; its SHA-256 (of the file's bytes) is `pool_sha256`. A pool
read from the Hugging Face hub (`hf:NAME[@REVISION]`) has no file: its `pool_sha256` is that
source, and each language's entry carries the SHA-256 of its passage ids (`pool_sha256` there).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

from engine.contract.errors import DataError

POOL_FORMAT = "hbt-tui-miracl-pool/1"


def qrels_sha256(qrels: dict[str, dict[str, int]]) -> str:
    """The judgements' hash, independent of file layout and order."""
    lines = sorted(f"{qid}\t{docid}\t{grade}" for qid, judged in qrels.items() for docid, grade in judged.items())
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def write_pool(path: Path, split: str, depth: int, retrievers: list[str], languages: dict[str, dict]) -> str:
    """Write a pool file (gzipped when the name ends in .gz); returns its SHA-256."""
    document = {"format": POOL_FORMAT, "split": split, "depth": depth, "retrievers": retrievers,
                "languages": {language: {"corpus_size": entry["corpus_size"], "qrels_sha256": entry["qrels_sha256"],
                                         "docids": sorted(entry["docids"])}
                              for language, entry in sorted(languages.items())}}
    data = json.dumps(document, ensure_ascii=False).encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return hashlib.sha256(data).hexdigest()


def read_pool(path: Path) -> tuple[dict[str, Any], str]:
    """(the pool document, its SHA-256); DataError naming the file when it is not one."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the MIRACL pool file ({error.strerror or error})") from None
    try:
        text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        document = json.loads(text)
    except (OSError, EOFError, ValueError, zlib.error):
        raise DataError(f"{path}: not a MIRACL pool file (damaged, or not JSON; `hbt-tui miracl pool` writes one)") \
            from None
    if not isinstance(document, dict) or document.get("format") != POOL_FORMAT \
            or not isinstance(document.get("languages"), dict):
        raise DataError(f"{path}: not a MIRACL pool file (format {POOL_FORMAT!r} expected)")
    for language, entry in document["languages"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("docids"), list) \
                or not isinstance(entry.get("corpus_size"), int) or not isinstance(entry.get("qrels_sha256"), str):
            raise DataError(f"{path}: language {language!r} lacks docids, corpus_size or qrels_sha256")
    return document, hashlib.sha256(data).hexdigest()


def fingerprint_of(results: dict) -> dict:
    """The fingerprint a results.json carries (one from before fingerprints: full, unknown corpus)."""
    return results.get("protocol") or {}


def describe(fingerprint: dict) -> str:
    name = fingerprint.get("protocol", "full")
    pool = fingerprint.get("pool_sha256")
    index = fingerprint.get("index", "exact")
    return (f"{name}{' pool ' + pool[:12] if pool else ''}{' · ' + fingerprint['split'] if fingerprint.get('split') else ''}"
            f"{' · ' + index + ' search' if index != 'exact' else ''}")


def mismatch(fingerprints: list[tuple[str, dict]], languages: list[str] | None = None) -> str | None:
    """Why results with these fingerprints (name, fingerprint) cannot be compared, or None.
    `languages`: those compared (default: every language two results share)."""
    if len(fingerprints) < 2:
        return None
    first_name, first = fingerprints[0]
    for name, other in fingerprints[1:]:
        if bool(first) != bool(other):
            return (f"MIRACL results with and without a protocol fingerprint: {first_name} vs {name} "
                    "(evaluate the older one again to compare them)")
        for key, default in (("protocol", None), ("split", None), ("pool_sha256", None), ("index", "exact")):
            if first.get(key, default) != other.get(key, default):
                return (f"MIRACL results of different protocols: {first_name} is {describe(first)}, "
                        f"{name} is {describe(other)}")
        shared = set(first.get("languages", {})) & set(other.get("languages", {}))
        for language in sorted(shared if languages is None else shared & set(languages)):
            mine, theirs = first["languages"][language], other["languages"][language]
            for key, what in (("corpus_size", "corpus sizes"), ("qrels_sha256", "judgements"),
                              ("pool_sha256", "pools")):
                if mine.get(key) != theirs.get(key):
                    return (f"MIRACL {language}: {first_name} and {name} were evaluated on different {what} "
                            f"({mine.get(key)} vs {theirs.get(key)})")
    return None
