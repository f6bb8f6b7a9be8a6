"""Ranking metrics computed from the ranks of the relevant items only.

Every metric in `engine.contract.metric_names` is a function of where the relevant items landed,
so nothing sorts a whole ranking: `relevant_ranks` counts, for each relevant item, how
many candidates beat it. Ties are broken deterministically: among equal scores the
candidate that comes first in the candidate list ranks higher (for pooled multilingual
rankings: languages in evaluation order, then document order within each file).

`ranks` arrays are (queries, max_relevant) float arrays of 1-based ranks sorted
ascending, padded with +inf (a relevant item that was not retrieved is also +inf).
"""

from __future__ import annotations

import numpy as np

from engine.contract.metric_names import parse_metric

PAD = np.inf


def relevant_ranks(scores: np.ndarray, relevant: np.ndarray, chunk: int = 64) -> np.ndarray:
    """scores (Q, C); relevant (Q, R) candidate indices, -1 for padding -> ranks (Q, R), sorted."""
    queries, candidates = scores.shape
    ranks = np.full(relevant.shape, PAD)
    positions = np.arange(candidates)
    for start in range(0, queries, chunk):
        block = scores[start:start + chunk]                                       # (q, C)
        targets = relevant[start:start + chunk]                                   # (q, R)
        valid = targets >= 0
        safe = np.where(valid, targets, 0)
        target_scores = np.take_along_axis(block, safe, axis=1)                   # (q, R)
        beats = block[:, None, :] > target_scores[:, :, None]                     # (q, R, C)
        ties_before = (block[:, None, :] == target_scores[:, :, None]) & (positions < safe[:, :, None])
        counts = (beats | ties_before).sum(axis=2) + 1.0                          # (q, R)
        ranks[start:start + chunk] = np.where(valid, counts, PAD)
    return np.sort(ranks, axis=1)


def ranks_from_topk(topk_ids: list[list[str]], qrels: list[dict[str, int]]) -> np.ndarray:
    """Ranks of the relevant documents within retrieved lists (+inf when not retrieved)."""
    width = max((sum(1 for gain in judged.values() if gain > 0) for judged in qrels), default=1)
    ranks = np.full((len(qrels), max(width, 1)), PAD)
    for row, (retrieved, judged) in enumerate(zip(topk_ids, qrels)):
        found = [position + 1 for position, doc in enumerate(retrieved) if judged.get(doc, 0) > 0]
        ranks[row, :len(found)] = found
    return ranks


def compute(names: tuple[str, ...] | list[str], ranks: np.ndarray, n_relevant: np.ndarray,
            gains: np.ndarray | None = None, ideal_gains: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-query values of each named metric.

    ranks (Q, R) as above; n_relevant (Q,) counts every relevant item, retrieved or not.
    gains (Q, R) are the graded gains in rank order and ideal_gains (Q, G) the gains sorted
    descending, for nDCG; both default to binary relevance.
    """
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    position = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)                # (R,)
    precision_at_hit = np.where(np.isfinite(ranks), position / ranks, 0.0)        # (Q, R)
    first = ranks[:, 0]
    if gains is None:
        gains = np.isfinite(ranks).astype(np.float64)
    return {name: _one(name, ranks, n_relevant, precision_at_hit, first, gains, ideal_gains) for name in names}


def _one(name: str, ranks: np.ndarray, n_relevant: np.ndarray, precision_at_hit: np.ndarray,
         first: np.ndarray, gains: np.ndarray, ideal_gains: np.ndarray | None) -> np.ndarray:
    family, k = parse_metric(name)
    cutoff = np.inf if k is None else k
    hit = ranks <= cutoff                                                        # (Q, R)
    if family == "map":
        denominator = n_relevant if k is None else np.minimum(n_relevant, k)
        return (precision_at_hit * hit).sum(1) / denominator
    if family == "map_cut":
        return (precision_at_hit * hit).sum(1) / n_relevant
    if family == "recall":
        return hit.sum(1) / n_relevant
    if family == "mrr":
        return np.where(first <= cutoff, 1.0 / first, 0.0)
    if family == "success":
        return (first <= cutoff).astype(np.float64)
    if family == "ndcg":
        return _ndcg(ranks, hit, n_relevant, gains, ideal_gains, int(k))
    raise ValueError(f"unknown metric {name!r}")


def _ndcg(ranks: np.ndarray, hit: np.ndarray, n_relevant: np.ndarray, gains: np.ndarray,
          ideal_gains: np.ndarray | None, k: int) -> np.ndarray:
    discounted = np.where(hit, gains / np.log2(np.where(hit, ranks, 1.0) + 1.0), 0.0)
    dcg = discounted.sum(1)
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))               # (k,)
    if ideal_gains is None:
        ideal_count = np.minimum(n_relevant, k).astype(int)
        cumulative = np.concatenate([[0.0], np.cumsum(discount)])
        idcg = cumulative[ideal_count]
    else:
        top = ideal_gains[:, :k]
        idcg = (top * discount[: top.shape[1]]).sum(1)
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def language_bias(ranks: np.ndarray) -> np.ndarray:
    """Max minus min rank of the parallel relevant candidates (NaN with fewer than two)."""
    finite = np.isfinite(ranks)
    count = finite.sum(1)
    highest = np.where(finite, ranks, -np.inf).max(1)
    return np.where(count >= 2, highest - ranks[:, 0], np.nan)
