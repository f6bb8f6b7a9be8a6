"""Building a MIRACL candidate pool: every judged passage of a language, plus the union of the
top-`depth` passages of each reference retriever for each query — the design of MTEB's
`MIRACLRetrievalHardNegatives` (BM25 and dense models pooled), so a model is scored on a
fixed, shared candidate set instead of the whole corpus.

Retrievers: `bm25` (the `bm25s` library, its default Unicode word tokenizer — weak on
languages written without spaces, as any word-level BM25), `run:NAME=FOLDER` (the TREC run
files a finished run wrote for this dataset: its own top-k, no encoding), and any encoder
name `load_encoder` accepts (a model folder, a hub name, `bundled:…`), which encodes the
corpus in shards and searches it exactly. `hf:NAME[@REVISION]` takes a pool someone else built
— a Hugging Face dataset in MTEB's retrieval layout, such as `hf:mteb/miracl-hard-negatives`
(configuration `corpus-LANG`, split `corpus`, column `_id`), or a local folder in that layout —
as one more source: its passages of the language that are in this corpus join the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.child.corpus_search import encoded_shards, search_exact
from engine.child.data import miracl
from engine.contract.errors import DataError
from engine.contract.miracl_protocol import qrels_sha256


def bm25_top(queries: list[str], documents: list[tuple[str, str]], depth: int) -> list[list[str]]:
    try:
        import bm25s
    except ImportError:
        raise DataError("the bm25 retriever needs the bm25s package (pip install bm25s)") from None

    if not documents:
        return [[] for _ in queries]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([text for _, text in documents], show_progress=False), show_progress=False)
    found, _ = retriever.retrieve(bm25s.tokenize(queries, show_progress=False), k=min(depth, len(documents)),
                                  show_progress=False)
    return [[documents[position][0] for position in row] for row in np.asarray(found).tolist()]


def run_top(folder: Path, language: str, query_ids: list[str], depth: int) -> list[list[str]]:
    """A finished run's own ranking, from its TREC run file for this language."""
    path = folder / f"{language}.mono.run"
    if not path.is_file():
        raise DataError(f"{path}: no TREC run file for {language} (eval.trec_runs must not be none)")
    ranked: dict[str, list[tuple[int, str]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if len(parts) < 6 or not parts[3].isdigit():
            raise DataError(f"{path}:{number}: not a TREC run line (qid Q0 docid rank score tag)")
        ranked.setdefault(parts[0], []).append((int(parts[3]), parts[2]))
    return [[docid for _, docid in sorted(ranked.get(qid, []))[:depth]] for qid in query_ids]


def hub_pool(source: str, language: str) -> list[str]:
    """The passage ids of `language` in a pool published as a Hugging Face dataset (or a local
    folder in its layout): `source` is NAME or NAME@REVISION."""
    name, _, revision = source.partition("@")
    try:
        import datasets

        local = Path(name).is_dir()          # a local folder is read afresh: its files may have changed in place
        fresh = {"download_mode": "force_redownload", "verification_mode": "no_checks"} if local else {}
        rows = datasets.load_dataset(name, f"corpus-{language}", split="corpus", revision=revision or None, **fresh)
        return [str(docid) for docid in rows["_id"]]
    except ImportError:
        raise DataError("a Hugging Face pool needs the datasets package (pip install datasets)") from None
    except Exception as error:  # noqa: BLE001 - the hub's errors (offline, no such config, no such column) vary
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"hf:{source}: cannot read the pool of {language} (configuration corpus-{language}, "
                        f"split corpus, column _id): {first}") from None


def encoder_top(model: str, data: miracl.MiraclLanguage, documents: list[tuple[str, str]], depth: int,
                batch_size: int = 64) -> list[list[str]]:
    from engine.child.encoder import load_encoder
    from engine.contract.spec import EncoderSpec

    encoder = load_encoder(EncoderSpec(name=model))
    queries = encoder.encode(data.queries, True, batch_size)
    shards = encoded_shards(iter(documents), 65536, lambda texts, first: encoder.encode(texts, False, batch_size),
                            None, lambda texts: "", "float32")
    return [list(row) for row in search_exact(queries, shards, depth).ids.tolist()]


def pool_language(data: miracl.MiraclLanguage, depth: int, retrievers: list[str],
                  say: Callable[[str], None] = lambda text: None) -> dict:
    """The pool of one language: {corpus_size, qrels_sha256, docids, sizes per retriever}. The
    language's corpus is held in memory while BM25 indexes it (as any in-memory BM25 does): a
    corpus of tens of millions of passages needs a machine with the memory for it."""
    documents = list(data.documents())
    judged = {docid for qid in data.query_ids for docid in data.qrels[qid]}
    present = {docid for docid, _ in documents}
    missing = sorted(judged - present)
    if missing and data.hub_corpus is None:
        raise DataError(f"{data.qrels_lines[missing[0]]}: document {missing[0]!r} is judged but not in the corpus "
                        f"({len(missing)} such documents)")
    pool = set(judged & present)
    added = {}
    for retriever in retrievers:
        if retriever == "bm25":
            ranked = bm25_top(data.queries, documents, depth)
        elif retriever.startswith("hf:"):
            ranked = [hub_pool(retriever[3:], data.language)]
        elif retriever.startswith("run:"):
            ranked = run_top(Path(retriever.split("=", 1)[1]), data.language, data.query_ids, depth)
        else:
            ranked = encoder_top(retriever, data, documents, depth)
        before = len(pool)
        pool.update(docid for row in ranked for docid in row if docid in present)
        added[retriever.split("=", 1)[0]] = len(pool) - before
        say(f"{data.language}: {retriever.split('=', 1)[0]} added {len(pool) - before} passages")
    return {"corpus_size": len(documents), "qrels_sha256": qrels_sha256({qid: data.qrels[qid] for qid in data.query_ids}),
            "docids": sorted(pool), "added": added, "judged": len(judged & present)}
