"""MIRACL: topics, qrels and corpus, from a local folder in MIRACL's layout or from the hub.

Local (`eval.datasets: ["miracl"]`), one folder per language under `<data dir>/miracl/`:

    miracl/<lang>/topics*<split>*.tsv     qid <TAB> query            (or topics.tsv)
    miracl/<lang>/qrels*<split>*.tsv      qid Q0 docid relevance     (TREC; or qrels.tsv)
    miracl/<lang>/**/*.jsonl[.gz]         {"docid", "title", "text"} (e.g. docs-0.jsonl.gz)

which is how MIRACL's own repositories lay out `topics/`, `qrels/` and `miracl-corpus`.
Hub (`"hf:miracl"`): `miracl/miracl` for topics and judgements, `miracl/miracl-corpus` for
the corpus, streamed. The corpus is always an iterator: it is never held in memory.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.contract import catalog
from engine.child.data.lareqa import missing_data_message
from engine.contract.errors import DataError


@dataclass
class MiraclLanguage:
    language: str
    query_ids: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)      # qid -> docid -> relevance
    qrels_lines: dict[str, str] = field(default_factory=dict)            # docid -> "file:line" that judged it
    corpus_files: list[Path] = field(default_factory=list)
    hub_corpus: object | None = None

    def documents(self) -> Iterator[tuple[str, str]]:
        """(docid, "title text") for every corpus document, streamed."""
        if self.hub_corpus is not None:
            for row in self.hub_corpus:
                yield str(row["docid"]), f"{row.get('title', '')} {row['text']}".strip()
            return
        for path in self.corpus_files:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                        yield str(row["docid"]), f"{row.get('title', '')} {row['text']}".strip()
                    except (ValueError, KeyError, TypeError):
                        raise DataError(f"{path}:{number}: not a corpus line "
                                        '({"docid": ..., "title": ..., "text": ...})') from None


def _first(folder: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def read_topics(path: Path) -> tuple[list[str], list[str]]:
    ids, queries = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].strip():
            raise DataError(f"{path}:{number}: expected 'qid<TAB>query', got {line[:60]!r}")
        ids.append(parts[0].strip())
        queries.append(parts[1].strip())
    return ids, queries


def read_qrels(path: Path) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    qrels: dict[str, dict[str, int]] = {}
    lines: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4 or not parts[3].lstrip("-").isdigit():
            raise DataError(f"{path}:{number}: expected 'qid Q0 docid relevance', got {line[:60]!r}")
        qid, _, docid, relevance = parts
        qrels.setdefault(qid, {})[docid] = int(relevance)
        lines.setdefault(docid, f"{path}:{number}")
    return qrels, lines


def load_local(language: str, split: str, data_dir: str | None) -> MiraclLanguage:
    root = catalog.resolve_dataset_dir("miracl", data_dir)
    if root is None:
        raise DataError(missing_data_message("miracl", data_dir))
    folder = root / language
    if not folder.is_dir():
        raise DataError(f"{folder}: no MIRACL folder for language {language!r}")
    topics = _first(folder, [f"topics*{split}*.tsv", "topics.tsv", f"**/topics*{split}*.tsv"])
    qrels = _first(folder, [f"qrels*{split}*.tsv", f"qrels*{split}*.txt", "qrels.tsv", f"**/qrels*{split}*"])
    if topics is None or qrels is None:
        missing = "topics" if topics is None else "qrels"
        raise DataError(f"{folder}: no {missing} file for split {split!r} (expected {missing}*{split}*.tsv)")
    corpus = sorted(set(folder.glob("**/*.jsonl")) | set(folder.glob("**/*.jsonl.gz")))
    if not corpus:
        raise DataError(f"{folder}: no corpus files (*.jsonl or *.jsonl.gz)")
    data = MiraclLanguage(language, corpus_files=corpus)
    data.qrels, data.qrels_lines = read_qrels(qrels)
    for qid, query in zip(*read_topics(topics)):
        if any(relevance > 0 for relevance in data.qrels.get(qid, {}).values()):
            data.query_ids.append(qid)
            data.queries.append(query)
    return data


def load_hub(language: str, split: str) -> MiraclLanguage:
    """Topics and judgements from `miracl/miracl`, the corpus streamed from `miracl/miracl-corpus`."""
    import datasets

    try:
        topics = datasets.load_dataset("miracl/miracl", language, split=split)
        corpus = datasets.load_dataset("miracl/miracl-corpus", language, split="train", streaming=True)
    except Exception as error:  # offline, gated, renamed: the user needs one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot load MIRACL ({language}) from the Hugging Face hub: {message}") from None
    data = MiraclLanguage(language, hub_corpus=corpus)
    for row in topics:
        qid = str(row["query_id"])
        judged = {str(p["docid"]): 1 for p in row["positive_passages"]}
        judged.update({str(p["docid"]): 0 for p in row.get("negative_passages", [])})
        data.qrels[qid] = judged
        data.query_ids.append(qid)
        data.queries.append(row["query"])
    return data


def local_languages(data_dir: str | None) -> tuple[str, ...]:
    root = catalog.resolve_dataset_dir("miracl", data_dir)
    return tuple(sorted(path.name for path in root.iterdir() if path.is_dir())) if root else ()
