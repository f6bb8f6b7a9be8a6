"""A corpus encoded in shards and searched with faiss.

The corpus stream is cut into shards of a fixed number of passages. A shard's embeddings are
an entry of a `EmbeddingCache` (the shared embedding cache for an encoder any run may meet
again, or a store in the run's folder): stored as float16 or float32 with a SHA-256, read
back memory-mapped once the checksum holds, recomputed with a warning when it does not, and
skipped when present — so a killed evaluation goes on from the shards it had written. The
key hashes the encoder's fingerprint, the storage type and the shard's texts, so an entry is
reused only for the same passages encoded by the same weights.

Search is exact inner product (`faiss.IndexFlatIP`, one shard at a time: memory holds one
shard and the running top-k), merged with `TopK`'s rule — higher score first, the earlier
passage on a tie — or an approximate faiss index (IVF, HNSW) over all shards, whose recall
against the exact search is measured and returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np

TIE_MARGIN = 8           # extra candidates fetched per shard, so a tie at the k-th place is seen


class TopK:
    """Running top-k per query: scores, document ids and document positions (for ties)."""

    def __init__(self, queries: int, k: int) -> None:
        self.k = k
        self.scores = np.full((queries, 0), -np.inf, dtype=np.float32)
        self.positions = np.zeros((queries, 0), dtype=np.int64)
        self.ids = np.empty((queries, 0), dtype=object)

    def add(self, scores: np.ndarray, chunk_ids: list[str], first_position: int) -> None:
        """A dense block of scores (Q, chunk) for the passages at first_position onwards."""
        shape = scores.shape
        positions = np.broadcast_to(np.arange(first_position, first_position + shape[1]), shape)
        self.add_candidates(scores, positions, np.broadcast_to(np.array(chunk_ids, dtype=object), shape))

    def add_candidates(self, scores: np.ndarray, positions: np.ndarray, ids: np.ndarray) -> None:
        """Candidates per query (Q, m): their scores, corpus positions and ids."""
        all_scores = np.concatenate([self.scores, scores.astype(np.float32, copy=False)], axis=1)
        all_positions = np.concatenate([self.positions, positions], axis=1)
        all_ids = np.concatenate([self.ids, ids], axis=1)
        # order by score descending, then by document position (earlier wins ties)
        order = np.lexsort((all_positions, -all_scores), axis=1)[:, :self.k]
        self.scores = np.take_along_axis(all_scores, order, axis=1)
        self.positions = np.take_along_axis(all_positions, order, axis=1)
        self.ids = np.take_along_axis(all_ids, order, axis=1)


@dataclass
class Shard:
    number: int
    first: int                    # corpus position of its first passage
    ids: list[str]
    embeddings: np.ndarray        # (passages, H), float16 or float32, maybe memory-mapped


def shards_of(documents: Iterator[tuple[str, str]], size: int) -> Iterator[tuple[int, int, list[tuple[str, str]]]]:
    """(shard number, first position, [(docid, text)]) of a document stream."""
    number, first = 0, 0
    while chunk := list(islice(documents, size)):
        yield number, first, chunk
        number, first = number + 1, first + len(chunk)


def encoded_shards(documents: Iterator[tuple[str, str]], size: int, encode: Callable[[list[str], int], np.ndarray],
                   store, key_of: Callable[[list[str]], str], dtype: str, about: dict | None = None,
                   part: tuple[int, int] | None = None) -> Iterator[Shard]:
    """Each shard's embeddings: from `store` when present and intact, else `encode(texts,
    first_position)` stored as `dtype`. `store` None: computed, never kept. `part` (k, n): only
    the shards whose number is k modulo n (one of n processes sharing the work)."""
    for number, first, chunk in shards_of(documents, size):
        if part is not None and number % part[1] != part[0]:
            continue
        texts = [text for _, text in chunk]

        def compute(texts=texts, first=first) -> np.ndarray:
            return np.ascontiguousarray(encode(texts, first), dtype=dtype)

        embeddings = compute() if store is None else store.get_or_compute(
            key_of(texts), compute, rows=len(texts), mmap=True,
            about={**about, "shard": number, "first": first} if about is not None else None)
        yield Shard(number, first, [docid for docid, _ in chunk], embeddings)


def search_exact(queries: np.ndarray, shards: Iterable[Shard], k: int) -> TopK:
    """Exact inner-product top-k over the shards, one at a time."""
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    top = TopK(len(queries), k)
    for shard in shards:
        passages = np.ascontiguousarray(shard.embeddings, dtype=np.float32)
        count = len(passages)
        if not count:
            continue
        index = faiss.IndexFlatIP(passages.shape[1])
        index.add(passages)
        fetch = min(count, k + TIE_MARGIN)
        scores, found = index.search(queries, fetch)
        ids = np.array(shard.ids, dtype=object)
        kth = min(k, fetch) - 1
        tied = np.nonzero(scores[:, fetch - 1] >= scores[:, kth])[0] if fetch < count else np.array([], dtype=int)
        if len(tied):   # a tie reaches past what was fetched: these queries rank the whole shard (same scores)
            full_scores, full_found = index.search(queries[tied], count)
            order = np.lexsort((full_found, -full_scores), axis=1)[:, :fetch]
            scores[tied] = np.take_along_axis(full_scores, order, axis=1)
            found[tied] = np.take_along_axis(full_found, order, axis=1)
        top.add_candidates(scores, found + shard.first, ids[found])
    return top


def search_approximate(queries: np.ndarray, shards: Iterable[Shard], k: int, kind: str,
                       seed: int = 0) -> tuple[TopK, float]:
    """Top-k from a faiss IVF or HNSW index over every shard; returns it and the seconds the
    index took to build and search. Ties at equal scores follow faiss's order."""
    import time

    import faiss

    started = time.perf_counter()
    shards = [shard for shard in shards if len(shard.ids)]
    if not shards:
        return TopK(len(queries), k), time.perf_counter() - started
    passages = np.concatenate([np.asarray(shard.embeddings, dtype=np.float32) for shard in shards])
    ids = np.array([docid for shard in shards for docid in shard.ids], dtype=object)
    dimension = passages.shape[1]
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(128, 2 * k)
    else:
        lists = max(1, min(int(4 * np.sqrt(len(passages))), len(passages) // 39 or 1))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).permutation(len(passages))[:max(lists * 39, 1)]
        index.train(passages[sample])
        index.nprobe = max(1, lists // 8)
    index.add(passages)
    scores, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(passages)))
    top = TopK(len(queries), k)
    valid = found >= 0
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    found = np.where(valid, found, 0)
    top.add_candidates(scores, found, ids[found])
    return top, time.perf_counter() - started


def recall_against(approximate: TopK, exact: TopK) -> float:
    """The share of the exact top-k that the approximate search found (mean over queries)."""
    shares = [len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(approximate.ids.tolist(), exact.ids.tolist())]
    return float(np.mean(shares)) if shares else 1.0
