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

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.child import metrics
from engine.child.corpus_search import TopK, encoded_shards, recall_against, search_approximate, search_exact
from engine.child.data import miracl
from engine.child.averages import mean_metrics
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
    about: dict | None = None                 # kept with each stored shard (what `--dry-run` counts)
    part: tuple[int, int] | None = None       # (k, n): only every n-th shard from the k-th


def shard_setup(spec, dataset: str, fingerprint: str, store) -> Shards:
    """The shards of `spec`'s MIRACL evaluation by an encoder of this fingerprint: how they are
    cut, stored, keyed and searched — the one place an evaluation and `hbt-tui miracl encode`
    agree on, so the shards one writes are the shards the other reads."""
    from engine.child.embedding_cache import texts_key

    options = spec.eval.miracl
    return Shards(options.shard_size, options.shard_dtype, store,
                  lambda texts: texts_key(f"{fingerprint}:shard:{options.shard_dtype}", texts, False), options.index,
                  {"kind": "corpus-shard", "encoder": spec.encoder.name, "fingerprint": fingerprint,
                   "dataset": dataset, "split": spec.eval.miracl_split, "protocol": options.protocol,
                   "pool": options.pool, "size": options.shard_size, "dtype": options.shard_dtype})


@dataclass
class LanguageResult:
    per_query: dict
    retrieved: list
    qrels: list
    top: TopK
    fingerprint: dict = field(default_factory=dict)
    index_recall: float | None = None
    index_seconds: float | None = None            # the approximate index's own build + search time

    def __iter__(self):   # (per_query, retrieved, qrels, top), as before
        return iter((self.per_query, self.retrieved, self.qrels, self.top))


def candidate_documents(data: miracl.MiraclLanguage, candidates: set[str] | None, counted: list[int],
                        kept: list[int]) -> Iterator[tuple[str, str]]:
    """The corpus's (docid, text) that are candidates (all under `full`), counting the corpus's
    passages in counted[0] and the candidates in kept[0] as they pass."""
    for docid, text in data.documents():
        counted[0] += 1
        if candidates is None or docid in candidates:
            kept[0] += 1
            yield docid, text


def miracl_languages(spec, dataset: str) -> tuple[list[str], Callable[[str], miracl.MiraclLanguage]]:
    """The languages a spec evaluates on this MIRACL dataset, and how one is loaded."""
    split = spec.eval.miracl_split
    if dataset == "miracl":
        return (list(spec.eval.languages or miracl.local_languages(spec.data_dir)),
                lambda language: miracl.load_local(language, split, spec.data_dir))
    return list(spec.eval.languages or catalog.MIRACL_DEV_LANGUAGES), lambda language: miracl.load_hub(language, split)


def pools_of(spec, languages: list[str]) -> tuple[dict, str | None]:
    """The pooled protocol's pool per language and the pool file's hash ({} and None under full)."""
    protocol, split = spec.eval.miracl, spec.eval.miracl_split
    if protocol.protocol != "pooled":
        return {}, None
    if protocol.pool.startswith("hf:"):
        return hub_pools(protocol.pool, languages)
    document, pool_sha256 = read_pool(Path(protocol.pool))
    if document.get("split") != split:
        raise DataError(f"{protocol.pool}: a pool of the {document.get('split')!r} split; "
                        f"eval.miracl_split is {split!r}")
    absent = [language for language in languages if language not in document["languages"]]
    if absent:
        raise DataError(f"{protocol.pool}: no pool for {', '.join(absent)} "
                        f"(it has {', '.join(sorted(document['languages'])) or 'none'})")
    return document["languages"], pool_sha256


def hub_pools(source: str, languages: list[str]) -> tuple[dict, str]:
    """A pool published as a Hugging Face dataset (`hf:NAME[@REVISION]`), read as a pool file is:
    per language its passage ids (every judged passage joins them, as in a pool `hbt-tui miracl
    pool` builds); no corpus size or judgements of its own to check, so the fingerprint is the
    source's name and, per language, the hash of its ids — two runs that read the same pool
    agree on the languages they share, another revision differs."""
    from engine.child.miracl_pool import hub_pool

    entries = {}
    for language in languages:
        docids = sorted(set(hub_pool(source[3:], language)))
        entries[language] = {"docids": docids, "corpus_size": None, "qrels_sha256": None, "with_judged": True,
                             "sha256": hashlib.sha256("\n".join(docids).encode("utf-8")).hexdigest()}
    return entries, source          # the source names the pool; each language's ids are hashed apart


def pool_candidates(pool: dict | None, judged: set[str]) -> set[str] | None:
    """The passages a language's pool lets through (None: the whole corpus)."""
    if pool is None:
        return None
    return set(pool["docids"]) | judged if pool.get("with_judged") else set(pool["docids"])


def encode_part(spec, dataset: str, shards: Shards, encode: Callable, say: Callable[[str], None]) -> int:
    """`hbt-tui miracl encode`: this process's part of every language's shards, into the store
    (the evaluations that meet this encoder then read them); returns how many it wrote or found."""
    languages, loader = miracl_languages(spec, dataset)
    pools, _ = pools_of(spec, languages)
    done = 0
    for language in languages:
        data = loader(language)
        pool = pools.get(language)
        judged = {docid for judgements in data.qrels.values() for docid in judgements}
        documents = candidate_documents(data, pool_candidates(pool, judged), [0], [0])
        about = {**shards.about, "language": language}
        for shard in encoded_shards(documents, shards.size, lambda texts, first: encode(texts, False, lambda d, t: None),
                                    shards.store, shards.key_of, shards.dtype, about, shards.part):
            done += 1
            say(f"{language}: shard {shard.number} ({len(shard.ids)} passages from {shard.first})")
    return done


def check_judgements(pool: dict | None, data: miracl.MiraclLanguage) -> str:
    """The hash of `data`'s judgements; a pool built on other judgements fails in one line."""
    judgements = qrels_sha256({qid: data.qrels[qid] for qid in data.query_ids})
    if pool is not None and pool["qrels_sha256"] not in (None, judgements):
        raise DataError(f"the MIRACL pool for {data.language} was built on other judgements than these "
                        f"(qrels {judgements[:12]} vs the pool's {pool['qrels_sha256'][:12]}): build it again")
    return judgements


def evaluate_language(data: miracl.MiraclLanguage, encode: Callable, emit: Callable[[Event], None], step: int,
                      dataset: str, chunk_size: int = CHUNK, shards: Shards | None = None,
                      pool: dict | None = None) -> LanguageResult:
    """One language: `encode(texts, is_query, progress)` embeds; `shards` says how the corpus
    is cut, stored and searched; `pool` (a pool file's entry for this language) restricts the
    candidates to it."""
    shards = shards or Shards(size=chunk_size)
    queries = encode(data.queries, True, lambda done, total: None)                  # (Q, H)
    judged = {docid for judgements in data.qrels.values() for docid in judgements}
    judgements = check_judgements(pool, data)
    candidates = pool_candidates(pool, judged)
    outside = sorted(judged - candidates) if candidates is not None else []
    if outside:              # before any encoding: a stale pool costs one line, not an evaluation
        raise DataError(f"the MIRACL pool for {data.language} lacks judged passage {outside[0]!r} "
                        f"({len(outside)} such; {data.qrels_lines[outside[0]]}): build it again")
    counted, kept = [0], [0]                # passages in the corpus, and among the candidates
    seen: set[str] = set()

    def stream() -> Iterator[tuple[str, str]]:
        for docid, text in candidate_documents(data, candidates, counted, kept):
            if docid in judged:
                seen.add(docid)
            yield docid, text

    def embed(texts: list[str], first: int) -> np.ndarray:
        return encode(texts, False, lambda done, total: emit(
            EvalProgress(step=step, dataset=dataset, stage=data.language, done=first + done, total=0)))

    about = {**shards.about, "language": data.language} if shards.about is not None else None
    corpus = encoded_shards(stream(), shards.size, embed, shards.store, shards.key_of, shards.dtype, about, shards.part)
    index_recall = seconds = None
    if shards.index == "exact":
        top = search_exact(queries, corpus, DEPTH)
    else:
        corpus = list(corpus)
        exact = search_exact(queries, corpus, DEPTH)
        top, seconds = search_approximate(queries, corpus, DEPTH, shards.index)
        index_recall = recall_against(top, exact)
        emit(Notice(message=f"{dataset} {data.language}: {shards.index} search recall@{DEPTH} against exact "
                            f"{index_recall:.4f} ({seconds:.1f} s)"))
    if pool is not None and pool["corpus_size"] not in (None, counted[0]):
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
    fingerprint = {"corpus_size": counted[0], "searched": kept[0], "qrels_sha256": judgements,
                   **({"pool_sha256": pool["sha256"]} if pool is not None and "sha256" in pool else {})}
    return LanguageResult(per_query, retrieved, qrels, top, fingerprint, index_recall, seconds)


def evaluate_miracl(spec, dataset: str, encode: Callable, emit: Callable[[Event], None], step: int,
                    folder: RunFolder, final: bool, shards: Shards | None = None) -> tuple[dict, float, dict]:
    """Every language of the spec; returns (per language, encoding seconds, the fingerprint)."""
    languages, loader = miracl_languages(spec, dataset)
    pools, pool_sha256 = pools_of(spec, languages)
    fingerprint = {"protocol": spec.eval.miracl.protocol, "split": spec.eval.miracl_split,
                   "pool_sha256": pool_sha256, "index": spec.eval.miracl.index,
                   "shard_dtype": spec.eval.miracl.shard_dtype, "languages": {}}
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
            per_language[language]["index_seconds"] = result.index_seconds
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
