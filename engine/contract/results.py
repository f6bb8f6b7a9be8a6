"""The files an evaluation leaves in a run folder, written by the child and read by the parent.

    results.json        per-language rows (mono / cross / multi metrics, the X x Y matrix,
                        bias), macro and group averages; one per step and the latest
    per_query.tsv.gz    one row per (language, setting, query id): the metrics, and in the
                        multilingual rows the query's language bias (NaN elsewhere): what
                        paired tests use
    trec/<name>.run     qid Q0 docid rank score tag (top-k), with <name>.qrels beside it

Paths come from `engine.contract.layout`. Stdlib only: the parent reads these without numpy.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from engine.contract.layout import RunFolder, write_atomic

PerQuery = dict[tuple[str, str], dict[str, dict[str, float]]]
"""{(language, setting): {question id: {metric: value}}}"""


def write_results(folder: RunFolder, dataset: str, step: int, results: dict) -> Path:
    """results.json of one step, and the dataset's latest; returns the latest's path."""
    data = json.dumps(results, indent=1, allow_nan=True).encode("utf-8")
    write_atomic(folder.results(dataset, step), data)
    write_atomic(folder.results(dataset), data)
    return folder.results(dataset)


def write_per_query(path: Path, metric_names: Sequence[str],
                    rows: Iterable[tuple[str, str, str, Sequence[float]]]) -> None:
    """rows: (language, setting, query id, values in metric_names order)."""
    lines = ["\t".join(["language", "setting", "qid", *metric_names])]
    lines += [f"{language}\t{setting}\t{qid}\t" + "\t".join(f"{value:.9g}" for value in values)
              for language, setting, qid, values in rows]
    write_atomic(path, gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=5))


def read_per_query(path: Path) -> PerQuery:
    table: PerQuery = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        names = handle.readline().rstrip("\n").split("\t")[3:]
        for line in handle:
            language, setting, qid, *values = line.rstrip("\n").split("\t")
            table.setdefault((language, setting), {})[qid] = dict(zip(names, map(float, values)))
    return table


def write_trec(folder: Path, name: str, query_ids: Sequence[str], top_doc_ids: Iterable[Sequence[str]],
               top_scores: Iterable[Sequence[float]], qrels: dict[str, list[str]], tag: str) -> None:
    """`<name>.run` and `<name>.qrels`. Scores keep full float32 precision (9 significant
    digits), so no ties appear that the ranking did not have."""
    run_lines = []
    for qid, doc_ids, scores in zip(query_ids, top_doc_ids, top_scores):
        run_lines += [f"{qid} Q0 {doc} {rank} {float(score):.9g} {tag}"
                      for rank, (doc, score) in enumerate(zip(doc_ids, scores), start=1)]
    write_atomic(folder / f"{name}.run", ("\n".join(run_lines) + "\n").encode("utf-8"))
    qrels_lines = [f"{qid} 0 {doc} 1" for qid, docs in qrels.items() for doc in docs]
    write_atomic(folder / f"{name}.qrels", ("\n".join(qrels_lines) + "\n").encode("utf-8"))
