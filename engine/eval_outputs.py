"""What an evaluation leaves in the run folder, and the averages over languages.

    eval/<dataset>/results.json          per-language rows, the X x Y matrix, macro and group
                                         averages (also eval/<dataset>/step-NNNNNN/results.json)
    eval/<dataset>/per_query.tsv.gz      one row per (language, setting, query): paired tests
    eval/<dataset>/trec/<X>.<setting>.run + .qrels   TREC files (top-k) for trec_eval or ranx
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

SETTINGS = ("mono", "cross", "multi")


def mean_metrics(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.mean(values)) if len(values) else float("nan") for name, values in per_query.items()}


def average_rows(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Macro average of metric dicts, ignoring NaN."""
    rows = list(rows)
    names = {name for row in rows for name in row}
    averaged = {}
    for name in sorted(names):
        values = [row[name] for row in rows if name in row and not math.isnan(row[name])]
        averaged[name] = float(np.mean(values)) if values else float("nan")
    return averaged


def summarise(per_language: dict[str, dict], groups: dict[str, tuple[str, ...]]) -> tuple[dict, dict, float | None]:
    """Macro averages over all languages and over each group, plus the mean language bias."""
    def over(languages: Iterable[str]) -> dict[str, dict[str, float]]:
        chosen = [per_language[lang] for lang in languages if lang in per_language]
        return {setting: average_rows(row["settings"][setting] for row in chosen if setting in row["settings"])
                for setting in SETTINGS if any(setting in row["settings"] for row in chosen)}

    macro = over(per_language)
    group_rows = {name: {"languages": list(members), **over(members)} for name, members in groups.items()}
    biases = [row["bias"] for row in per_language.values() if row.get("bias") is not None]
    bias = float(np.mean(biases)) if biases else None
    for name, members in groups.items():
        member_bias = [per_language[lang]["bias"] for lang in members
                       if lang in per_language and per_language[lang].get("bias") is not None]
        group_rows[name]["bias"] = float(np.mean(member_bias)) if member_bias else None
    return macro, group_rows, bias


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_results(folder: Path, step: int, results: dict) -> Path:
    text = json.dumps(results, indent=1, allow_nan=True)
    atomic_write_text(folder / f"step-{step:06d}" / "results.json", text)
    atomic_write_text(folder / "results.json", text)
    return folder / "results.json"


def write_per_query(path: Path, metric_names: list[str], rows: list[tuple[str, str, str, list[float]]]) -> None:
    """rows: (language, setting, query id, values in metric_names order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=5) as handle:
        handle.write("\t".join(["language", "setting", "qid", *metric_names]) + "\n")
        for language, setting, qid, values in rows:
            handle.write(f"{language}\t{setting}\t{qid}\t" + "\t".join(f"{value:.6g}" for value in values) + "\n")


def read_per_query(path: Path) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """{(language, setting): {qid: {metric: value}}} from a per_query.tsv.gz file."""
    table: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        names = header[3:]
        for line in handle:
            language, setting, qid, *values = line.rstrip("\n").split("\t")
            table.setdefault((language, setting), {})[qid] = dict(zip(names, map(float, values)))
    return table


def write_trec(folder: Path, name: str, query_ids: list[str], top_doc_ids: np.ndarray, top_scores: np.ndarray,
               qrels: dict[str, list[str]], tag: str) -> None:
    """`<name>.run` (qid Q0 docid rank score tag) and `<name>.qrels` (qid 0 docid 1).
    top_doc_ids / top_scores: (queries, depth), best first."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.run", "w", encoding="utf-8") as handle:
        for qid, doc_ids, scores in zip(query_ids, top_doc_ids, top_scores):
            handle.write("".join(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n"
                                 for rank, (doc, score) in enumerate(zip(doc_ids, scores), start=1)))
    with open(folder / f"{name}.qrels", "w", encoding="utf-8") as handle:
        handle.write("".join(f"{qid} 0 {doc} 1\n" for qid, docs in qrels.items() for doc in docs))
