"""Monolingual MIRACL evaluation with bounded memory: nDCG@10, Recall@100, mAP@10.

The corpus is streamed in chunks: each chunk is encoded, scored against all queries,
and merged into a running top-k per query, so memory holds the queries, one chunk and
the top-k, whatever the corpus size. Ties keep the earlier document. mAP@10 is trec_eval's
map_cut_10 (divided by all relevant documents), which is what MIRACL's tooling reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from itertools import islice

import numpy as np

from engine.child import metrics
from engine.child.data import miracl
from engine.contract import catalog
from engine.contract.errors import DataError
from engine.child.eval_outputs import mean_metrics
from engine.contract.layout import RunFolder
from engine.contract.results import write_per_query, write_trec
from engine.contract.events import Eval, EvalProgress, Event

MIRACL_METRICS = ("ndcg@10", "recall@100", "map_cut@10")
DEPTH = 100
CHUNK = 8192


class TopK:
    """Running top-k per query: scores, document ids and document positions (for ties)."""

    def __init__(self, queries: int, k: int) -> None:
        self.k = k
        self.scores = np.full((queries, 0), -np.inf, dtype=np.float32)
        self.positions = np.zeros((queries, 0), dtype=np.int64)
        self.ids = np.empty((queries, 0), dtype=object)

    def add(self, scores: np.ndarray, chunk_ids: list[str], first_position: int) -> None:
        shape = scores.shape                                                        # (Q, chunk)
        positions = np.broadcast_to(np.arange(first_position, first_position + shape[1]), shape)
        ids = np.broadcast_to(np.array(chunk_ids, dtype=object), shape)
        all_scores = np.concatenate([self.scores, scores], axis=1)                 # (Q, k + chunk)
        all_positions = np.concatenate([self.positions, positions], axis=1)
        all_ids = np.concatenate([self.ids, ids], axis=1)
        # order by score descending, then by document position (earlier wins ties)
        order = np.lexsort((all_positions, -all_scores), axis=1)[:, :self.k]
        self.scores = np.take_along_axis(all_scores, order, axis=1)
        self.positions = np.take_along_axis(all_positions, order, axis=1)
        self.ids = np.take_along_axis(all_ids, order, axis=1)


def _chunks(documents: Iterator[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    while chunk := list(islice(documents, size)):
        yield chunk


def evaluate_language(data: miracl.MiraclLanguage, encode: Callable, emit: Callable[[Event], None], step: int,
                      dataset: str, chunk_size: int = CHUNK) -> tuple[dict, list, list, TopK]:
    queries = encode(data.queries, True, lambda done, total: None)                  # (Q, H)
    top = TopK(len(data.queries), DEPTH)
    judged = {docid for judgements in data.qrels.values() for docid in judgements}
    seen: set[str] = set()
    encoded = 0
    for chunk in _chunks(data.documents(), chunk_size):
        embeddings = encode([text for _, text in chunk], False, lambda done, total, base=encoded: emit(
            EvalProgress(step=step, dataset=dataset, stage=data.language, done=base + done, total=0)))
        chunk_ids = [docid for docid, _ in chunk]
        top.add(queries @ embeddings.T, chunk_ids, encoded)                         # (Q, chunk) scores
        encoded += len(chunk)
        seen.update(docid for docid in chunk_ids if docid in judged)
    missing = [docid for docid in judged if docid not in seen and data.hub_corpus is None]
    if missing:
        raise DataError(f"{data.qrels_lines[missing[0]]}: document {missing[0]!r} is judged but not in the corpus "
                        f"({len(missing)} such documents)")
    retrieved = [list(row) for row in top.ids]
    qrels = [data.qrels[qid] for qid in data.query_ids]
    ranks = metrics.ranks_from_topk(retrieved, qrels)
    gains = np.zeros_like(ranks)
    for row, (found, judged_docs) in enumerate(zip(retrieved, qrels)):
        hits = [judged_docs[doc] for doc in found if judged_docs.get(doc, 0) > 0]
        gains[row, :len(hits)] = hits
    ideal = [sorted((g for g in judged_docs.values() if g > 0), reverse=True) for judged_docs in qrels]
    ideal_gains = np.zeros((len(qrels), max(map(len, ideal), default=1)))
    for row, values in enumerate(ideal):
        ideal_gains[row, :len(values)] = values
    n_relevant = np.array([len(values) for values in ideal])
    per_query = metrics.compute(MIRACL_METRICS, ranks, n_relevant, gains, ideal_gains)
    return per_query, retrieved, qrels, top


def evaluate_miracl(spec, dataset: str, encode: Callable, emit: Callable[[Event], None], step: int,
                    folder: RunFolder, final: bool) -> tuple[dict, float]:
    split = spec.eval.miracl_split
    if dataset == "miracl":
        languages = spec.eval.languages or miracl.local_languages(spec.data_dir)
        loader = lambda language: miracl.load_local(language, split, spec.data_dir)  # noqa: E731
    else:
        languages = spec.eval.languages or catalog.MIRACL_DEV_LANGUAGES
        loader = lambda language: miracl.load_hub(language, split)  # noqa: E731
    per_language, rows, encode_seconds = {}, [], 0.0
    for language in languages:
        started = time.perf_counter()
        data = loader(language)
        per_query, retrieved, qrels, top = evaluate_language(data, encode, emit, step, dataset)
        encode_seconds += time.perf_counter() - started
        settings = {"mono": mean_metrics(per_query)}
        per_language[language] = {"settings": settings, "cross_by_target": {}, "bias": None,
                                  "queries": len(data.query_ids)}
        emit(Eval(step=step, dataset=dataset, language=language, settings=settings, queries=len(data.query_ids)))
        rows += [(language, "mono", qid, [float(per_query[name][row]) for name in MIRACL_METRICS])
                 for row, qid in enumerate(data.query_ids)]
        if final and spec.eval.trec_runs != "none":
            relevant = {qid: [doc for doc, gain in judged.items() if gain > 0] for qid, judged in zip(data.query_ids, qrels)}
            write_trec(folder.trec_dir(dataset), f"{language}.mono", data.query_ids, top.ids, top.scores, relevant, spec.name)
    write_per_query(folder.per_query(dataset, step), list(MIRACL_METRICS), rows)
    if final:
        write_per_query(folder.per_query(dataset), list(MIRACL_METRICS), rows)
    return per_language, encode_seconds
