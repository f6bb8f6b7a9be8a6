"""What a grid's MIRACL evaluations will cost, before paying it (`--dry-run`): per language, the
passages the protocol encodes, the base encoder's shards already in the embedding cache, and
the encoding time at the rate measured on this encoder in this runs directory (or a stated
assumption when it has none). Standard library only.

Trained weights are new weights: every evaluation after step 0 encodes its candidates again;
the base encoder's shards (step 0, `eval.at_start`, zero-shot runs) are encoded once and shared
by every run of the grid through the cache.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from pathlib import Path

from engine.contract.catalog import MIRACL_CORPUS_SIZES, MIRACL_DEV_LANGUAGES, resolve_dataset_dir
from engine.contract.embedding_files import cache_root, corpus_shards
from engine.contract.errors import DataError
from engine.contract.miracl_protocol import read_pool

ASSUMED_RATE = {"cpu": 100.0, "cuda": 2000.0}     # passages/s, when nothing here measured this encoder
MIRACL = ("miracl", "hf:miracl")


def corpus_size(dataset: str, language: str, data_dir: str | None) -> int | None:
    """Passages in a local corpus (its lines); for hf:miracl MIRACL's published size (the hub's
    corpus is only known streamed); None where neither is known."""
    if dataset == "hf:miracl":
        return MIRACL_CORPUS_SIZES.get(language)
    if dataset != "miracl":
        return None
    root = resolve_dataset_dir("miracl", data_dir)
    folder = root / language if root else None
    if folder is None or not folder.is_dir():
        return None
    count = 0
    for path in sorted(set(folder.glob("**/*.jsonl")) | set(folder.glob("**/*.jsonl.gz"))):
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8") as handle:
                count += sum(1 for line in handle if line.strip())
        except (OSError, EOFError, UnicodeDecodeError, zlib.error):
            return None                   # the evaluation names the damaged file; a cost is not worth a crash
    return count


def local_languages(data_dir: str | None) -> list[str]:
    root = resolve_dataset_dir("miracl", data_dir)
    return sorted(path.name for path in root.iterdir() if path.is_dir()) if root else []


def cached_shards(root: Path, about: dict) -> tuple[Counter, Counter]:
    """(shards, passages) stored per language that match `about` (encoder, dataset, protocol,
    pool, size, dtype), for the fingerprint with the most of them (the base weights)."""
    per_fingerprint: dict[str, tuple[Counter, Counter]] = {}
    for _, stored, rows in corpus_shards(root):
        if all(stored.get(key) == value for key, value in about.items()):
            shards, passages = per_fingerprint.setdefault(stored.get("fingerprint", ""), (Counter(), Counter()))
            shards[stored.get("language")] += 1
            passages[stored.get("language")] += rows
    return max(per_fingerprint.values(), key=lambda found: sum(found[0].values()), default=(Counter(), Counter()))


def measured_rate(store, encoder: str) -> float | None:
    """Passages per second of this encoder's MIRACL evaluations in this runs directory (those
    that encoded everything themselves)."""
    passages = seconds = 0.0
    for summary in store.all():
        if summary.get("encoder") != encoder:
            continue
        folder = store.folder(summary["id"])
        for dataset in MIRACL:
            try:
                results = json.loads(folder.results(dataset).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if results.get("cached_encodings") or not results.get("protocol"):
                continue
            passages += sum(entry.get("searched", 0) for entry in results["protocol"]["languages"].values())
            seconds += results.get("encode_seconds") or 0.0
    return passages / seconds if passages and seconds else None


def evaluations(spec) -> tuple[int, int]:
    """(evaluations with trained weights, evaluations with the base weights) of one run."""
    train, evaluation = spec.train, spec.eval
    if train.steps == 0:
        return 0, 1
    trained = (train.steps // train.eval_every if train.eval_every else 0) + (1 if evaluation.at_end else 0)
    if train.eval_every and train.steps % train.eval_every == 0 and evaluation.at_end:
        trained -= 1                       # the last periodic evaluation is the final one
    return trained, 1 if evaluation.at_start else 0


def cost_lines(specs: list, store, device: str = "cpu") -> list[str]:
    lines: list[str] = []
    groups: dict[tuple, list] = {}
    for spec in specs:
        for dataset in (dataset for dataset in spec.eval.datasets if dataset in MIRACL):
            key = (dataset, spec.encoder.name, spec.data_dir, tuple(spec.eval.languages or ()),
                   json.dumps(spec.eval.miracl.__dict__, sort_keys=True, default=str), spec.eval.miracl_split)
            groups.setdefault(key, []).append(spec)
    for (dataset, encoder, data_dir, _, _, split), members in groups.items():
        spec = members[0]
        options = spec.eval.miracl
        languages = list(spec.eval.languages or (MIRACL_DEV_LANGUAGES if dataset == "hf:miracl"
                                                 else local_languages(data_dir)))
        pool = None
        if options.protocol == "pooled" and options.pool.startswith("hf:"):
            lines.append(f"MIRACL {dataset}: the pool {options.pool} is read from the Hugging Face hub when evaluated, "
                         f"so its size is not known here (`hbt-tui miracl pool --retrievers {options.pool}` makes a "
                         "local pool file this estimate can count)")
            continue
        if options.protocol == "pooled":
            try:
                pool, _ = read_pool(Path(options.pool))
            except DataError as error:
                lines.append(f"MIRACL {dataset}: {error}")
                continue
        cached = cached_shards(cache_root(), {"encoder": encoder, "dataset": dataset, "split": split,
                                              "protocol": options.protocol, "pool": options.pool,
                                              "size": options.shard_size, "dtype": options.shard_dtype})
        trained = sum(evaluations(member)[0] for member in members)
        base = any(evaluations(member)[1] for member in members)
        rate = measured_rate(store, encoder)
        source = "measured here" if rate else f"assumed for {device}: no MIRACL evaluation of this encoder here"
        rate = rate or ASSUMED_RATE.get(device, ASSUMED_RATE["cpu"])
        lines.append(f"MIRACL {dataset} · {options.protocol}"
                     f"{' (' + options.pool + ')' if pool else ''} · {encoder} · shards of {options.shard_size} "
                     f"({options.shard_dtype}) · {len(members)} run{'s' if len(members) != 1 else ''}: "
                     f"{trained} trained evaluation{'s' if trained != 1 else ''}"
                     f"{' + the base encoder once' if base else ''}")
        total = 0
        unknown = []
        for language in languages:
            passages = len(pool["languages"][language]["docids"]) if pool and language in pool["languages"] \
                else corpus_size(dataset, language, data_dir)
            if passages is None:
                unknown.append(language)
                continue
            shards = -(-passages // options.shard_size)
            have = min(cached[0].get(language, 0), shards) if base else 0
            to_encode = trained * passages + (max(0, passages - cached[1].get(language, 0)) if base else 0)
            total += to_encode
            lines.append(f"  {language:<4} {passages:>12,} passages · {shards} shards · "
                         f"{have} of the base encoder's cached · {to_encode:,} to encode")
        if unknown:
            lines.append(f"  {', '.join(unknown)}: size known only when streamed from the hub (a pooled protocol "
                         "fixes it)")
        if dataset == "hf:miracl" and not pool:
            lines.append("  sizes: MIRACL's published corpus sizes (Zhang et al., 2023), not read from the hub")
        seconds = total / rate
        spent = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min" if seconds >= 60 \
            else f"{seconds:.0f} s"
        lines.append(f"  encoding: {total:,} passages ≈ {spent} at {rate:,.0f} passages/s ({source})")
    return lines
