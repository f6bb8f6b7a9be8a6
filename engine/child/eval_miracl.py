"""Monolingual MIRACL evaluation with bounded memory: nDCG@10, Recall@100, mAP@10.

Under the `full` protocol every passage of a language's corpus is a candidate; under `pooled`
only those of the pool file (every judged passage plus reference retrievers' top-k), checked
against the corpus size and judgements the pool was built on. The candidates are encoded in
shards (`engine.child.corpus_search`: stored, checksummed, reused — a killed evaluation goes
on from its shards) and searched with faiss, exactly by default: memory holds the queries,
one shard and the top-k, whatever the corpus size. Ties keep the earlier document. mAP@10 is
trec_eval's map_cut_10 (divided by all relevant documents), which is what MIRACL's tooling
reports. Every result carries its protocol fingerprint (`engine.contract.miracl_protocol`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.child import metrics
from engine.child.corpus_search import TopK, encoded_shards, recall_against, search_approximate, search_exact
from engine.child.data import miracl
from engine.child.eval_outputs import mean_metrics
from engine.contract import catalog
from engine.contract.errors import DataError
from engine.contract.events import Eval, EvalProgress, Event, Notice
from engine.contract.layout import RunFolder
from engine.contract.miracl_protocol import qrels_sha256, read_pool
from engine.contract.results import write_per_query, write_trec

MIRACL_METRICS = ("ndcg@10", "recall@100", "map_cut@10")
DEPTH = 100
CHUNK = 8192

__all__ = ["TopK", "evaluate_language", "evaluate_miracl", "Shards"]


@dataclass
class Shards:
    """Where a corpus's shard embeddings live and how they are keyed: `store` an
    EmbeddingCache (None: never kept), `key_of(texts)` their key."""

    size: int = CHUNK
    dtype: str = "float32"
    store: object | None = None
    key_of: Callable[[list[str]], str] = lambda texts: ""
    index: str = "exact"


@dataclass
class LanguageResult:
    per_query: dict
    retrieved: list
    qrels: list
    top: TopK
    fingerprint: dict = field(default_factory=dict)
    index_recall: float | None = None

    def __iter__(self):   # (per_query, retrieved, qrels, top), as before
        return iter((self.per_query, self.retrieved, self.qrels, self.top))


def evaluate_language(data: miracl.MiraclLanguage, encode: Callable, emit: Callable[[Event], None], step: int,
                      dataset: str, chunk_size: int = CHUNK, shards: Shards | None = None,
                      pool: dict | None = None) -> LanguageResult:
    """One language: `encode(texts, is_query, progress)` embeds; `shards` says how the corpus
    is cut, stored and searched; `pool` (a pool file's entry for this language) restricts the
    candidates to it."""
    shards = shards or Shards(size=chunk_size)
    queries = encode(data.queries, True, lambda done, total: None)                  # (Q, H)
    judged = {docid for judgements in data.qrels.values() for docid in judgements}
    judgements = qrels_sha256({qid: data.qrels[qid] for qid in data.query_ids})
    if pool is not None and pool["qrels_sha256"] != judgements:
        raise DataError(f"the MIRACL pool for {data.language} was built on other judgements than these "
                        f"(qrels {judgements[:12]} vs the pool's {pool['qrels_sha256'][:12]}): build it again")
    candidates = set(pool["docids"]) if pool is not None else None
    counted, kept = [0], [0]                # passages in the corpus, and among the candidates
    seen: set[str] = set()

    def stream() -> Iterator[tuple[str, str]]:
        for docid, text in data.documents():
            counted[0] += 1
            if candidates is None or docid in candidates:
                kept[0] += 1
                if docid in judged:
                    seen.add(docid)
                yield docid, text

    def embed(texts: list[str], first: int) -> np.ndarray:
        return encode(texts, False, lambda done, total: emit(
            EvalProgress(step=step, dataset=dataset, stage=data.language, done=first + done, total=0)))

    corpus = encoded_shards(stream(), shards.size, embed, shards.store, shards.key_of, shards.dtype)
    index_recall = None
    if shards.index == "exact":
        top = search_exact(queries, corpus, DEPTH)
    else:
        corpus = list(corpus)
        exact = search_exact(queries, corpus, DEPTH)
        top, seconds = search_approximate(queries, corpus, DEPTH, shards.index)
        index_recall = recall_against(top, exact)
        emit(Notice(message=f"{dataset} {data.language}: {shards.index} search recall@{DEPTH} against exact "
                            f"{index_recall:.4f} ({seconds:.1f} s)"))
    if pool is not None and counted[0] != pool["corpus_size"]:
        raise DataError(f"the MIRACL pool for {data.language} was built on a corpus of {pool['corpus_size']} "
                        f"passages; this one has {counted[0]}: build the pool again")
    missing = [docid for docid in judged if docid not in seen and data.hub_corpus is None]
    if missing:
        raise DataError(f"{data.qrels_lines[missing[0]]}: document {missing[0]!r} is judged but not in the "
                        f"{'pool' if candidates is not None else 'corpus'} ({len(missing)} such documents)")
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
    fingerprint = {"corpus_size": counted[0], "searched": kept[0], "qrels_sha256": judgements}
    return LanguageResult(per_query, retrieved, qrels, top, fingerprint, index_recall)


def evaluate_miracl(spec, dataset: str, encode: Callable, emit: Callable[[Event], None], step: int,
                    folder: RunFolder, final: bool, shards: Shards | None = None) -> tuple[dict, float, dict]:
    """Every language of the spec; returns (per language, encoding seconds, the fingerprint)."""
    split = spec.eval.miracl_split
    if dataset == "miracl":
        languages = spec.eval.languages or miracl.local_languages(spec.data_dir)
        loader = lambda language: miracl.load_local(language, split, spec.data_dir)  # noqa: E731
    else:
        languages = spec.eval.languages or catalog.MIRACL_DEV_LANGUAGES
        loader = lambda language: miracl.load_hub(language, split)  # noqa: E731
    protocol = spec.eval.miracl
    pools, pool_sha256 = {}, None
    if protocol.protocol == "pooled":
        document, pool_sha256 = read_pool(Path(protocol.pool))
        if document.get("split") != split:
            raise DataError(f"{protocol.pool}: a pool of the {document.get('split')!r} split; "
                            f"eval.miracl_split is {split!r}")
        pools = document["languages"]
        absent = [language for language in languages if language not in pools]
        if absent:
            raise DataError(f"{protocol.pool}: no pool for {', '.join(absent)} "
                            f"(it has {', '.join(sorted(pools)) or 'none'})")
    fingerprint = {"protocol": protocol.protocol, "split": split, "pool_sha256": pool_sha256, "languages": {}}
    per_language, rows, encode_seconds = {}, [], 0.0
    for language in languages:
        started = time.perf_counter()
        data = loader(language)
        result = evaluate_language(data, encode, emit, step, dataset, shards=shards, pool=pools.get(language))
        per_query, retrieved, qrels, top = result
        encode_seconds += time.perf_counter() - started
        fingerprint["languages"][language] = result.fingerprint
        settings = {"mono": mean_metrics(per_query)}
        per_language[language] = {"settings": settings, "cross_by_target": {}, "bias": None,
                                  "queries": len(data.query_ids)}
        if result.index_recall is not None:
            per_language[language]["index_recall"] = result.index_recall
        emit(Eval(step=step, dataset=dataset, language=language, settings=settings, queries=len(data.query_ids)))
        rows += [(language, "mono", qid, [float(per_query[name][row]) for name in MIRACL_METRICS])
                 for row, qid in enumerate(data.query_ids)]
        if final and spec.eval.trec_runs != "none":
            relevant = {qid: [doc for doc, gain in judged.items() if gain > 0] for qid, judged in zip(data.query_ids, qrels)}
            write_trec(folder.trec_dir(dataset), f"{language}.mono", data.query_ids, top.ids, top.scores, relevant, spec.name)
    write_per_query(folder.per_query(dataset, step), list(MIRACL_METRICS), rows)
    if final:
        write_per_query(folder.per_query(dataset), list(MIRACL_METRICS), rows)
    return per_language, encode_seconds, fingerprint
