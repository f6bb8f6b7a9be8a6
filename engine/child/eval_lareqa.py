"""Monolingual, cross-lingual and multilingual retrieval on XQuAD-R / MLQA-R.

Each language's questions and candidates are encoded exactly once; every setting is
scored from those embeddings:

- mono:  queries in X against the candidates of X;
- cross: queries in X against the candidates of each Y != X (every ordered pair), a
         query counting only where its id exists in Y (MLQA-R is not fully parallel);
- multi: queries in X against the pooled candidates of all evaluated languages, where
         each translation of the answer sentence is relevant. Language bias is the max
         minus the min rank of those parallel relevant candidates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.child import metrics
from engine.child.data.lareqa import LareqaLanguage
from engine.child.averages import mean_metrics
from engine.contract.results import write_per_query, write_trec
from engine.contract.events import Eval, EvalProgress, Event


@dataclass
class Encoded:
    queries: np.ndarray      # (Q, H)
    candidates: np.ndarray   # (C, H)


def _relevant_matrix(columns: list[list[int]]) -> np.ndarray:
    width = max((len(column) for column in columns), default=1) or 1
    matrix = np.full((len(columns), width), -1, dtype=np.int64)
    for row, column in enumerate(columns):
        matrix[row, :len(column)] = column
    return matrix


class LareqaEvaluation:
    def __init__(self, dataset: str, corpora: dict[str, LareqaLanguage], metric_names: tuple[str, ...],
                 with_paragraph: bool, emit: Callable[[Event], None], step: int) -> None:
        self.dataset = dataset
        self.corpora = corpora
        self.names = list(metric_names)
        self.with_paragraph = with_paragraph
        self.emit = emit
        self.step = step
        self.languages = list(corpora)
        self.encoded: dict[str, Encoded] = {}
        self.mono: dict[str, dict[str, float]] = {}
        self.encode_seconds = 0.0
        self.per_query_rows: list[tuple[str, str, str, list[float]]] = []

    # --- encoding: once per language ---------------------------------------------------------
    def encode_all(self, encode: Callable[..., np.ndarray]) -> None:
        total = sum(len(c.questions) + len(c.candidates) for c in self.corpora.values())
        done = 0
        for language, corpus in self.corpora.items():
            started = time.perf_counter()
            texts = [corpus.candidate_text(i, self.with_paragraph) for i in range(len(corpus.candidates))]

            def progress(count: int, _total: int, base: int = done, stage: str = language) -> None:
                self.emit(EvalProgress(step=self.step, dataset=self.dataset, stage=stage,
                                       done=base + count, total=total))

            queries = encode(corpus.questions, True, progress)
            candidates = encode(texts, False, lambda c, t, base=done + len(corpus.questions): progress(c, t, base))
            self.encode_seconds += time.perf_counter() - started
            done += len(corpus.questions) + len(corpus.candidates)
            self.encoded[language] = Encoded(queries, candidates)
            self.mono[language] = self._mono(language)
            self.emit(Eval(step=self.step, dataset=self.dataset, language=language,
                           settings={"mono": self.mono[language]}, queries=len(corpus.questions)))

    # --- scoring ------------------------------------------------------------------------------
    def _score(self, query_language: str, target_languages: list[str],
               scores: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Per-query metrics, the ranks and the mask of queries with a relevant candidate.
        `scores` (Q, C): the query language's scores against the targets' candidates, when
        the caller has them (a block of the multilingual scores)."""
        source = self.corpora[query_language]
        offsets, columns = 0, [[] for _ in source.question_ids]
        for target in target_languages:
            answer_of = dict(zip(self.corpora[target].question_ids, self.corpora[target].answer_candidate))
            for row, key in enumerate(source.question_ids):
                if key in answer_of:
                    columns[row].append(offsets + answer_of[key])
            offsets += len(self.corpora[target].candidates)
        if scores is None:
            candidates = np.concatenate([self.encoded[target].candidates for target in target_languages])
            scores = self.encoded[query_language].queries @ candidates.T              # (Q, C)
        has_relevant = np.array([bool(column) for column in columns])
        ranks = metrics.relevant_ranks(scores[has_relevant], _relevant_matrix([c for c in columns if c]))
        n_relevant = np.array([len(column) for column in columns if column])
        return metrics.compute(self.names, ranks, n_relevant), ranks, has_relevant

    def _mono(self, language: str) -> dict[str, float]:
        per_query, _, mask = self._score(language, [language])
        self._keep_per_query(language, "mono", mask, per_query)
        return mean_metrics(per_query)

    def _keep_per_query(self, language: str, setting: str, mask: np.ndarray, per_query: dict[str, np.ndarray],
                        bias: np.ndarray | None = None) -> None:
        """Rows of per_query.tsv.gz: the metrics, then the query's language bias (multi only)."""
        ids = [qid for qid, keep in zip(self.corpora[language].question_ids, mask) if keep]
        for row, qid in enumerate(ids):
            values = [float(per_query[name][row]) for name in self.names]
            values.append(float(bias[row]) if bias is not None else float("nan"))
            self.per_query_rows.append((language, setting, qid, values))

    def score_language(self, language: str) -> dict:
        """cross (mean over targets, plus each target) and multi for one query language."""
        by_target: dict[str, dict[str, float]] = {}
        question_count = len(self.corpora[language].question_ids)
        cross_sum = np.zeros((question_count, len(self.names)))
        cross_count = np.zeros(question_count)
        # one product against every language's candidates: multi, and each cross block of it
        candidates = np.concatenate([self.encoded[target].candidates for target in self.languages])
        scores = self.encoded[language].queries @ candidates.T                        # (Q, C_all)
        offsets = np.cumsum([0] + [len(self.corpora[target].candidates) for target in self.languages])
        for position, target in enumerate(self.languages):
            if target == language:
                continue
            block = scores[:, offsets[position]:offsets[position + 1]]
            per_query, _, mask = self._score(language, [target], block)
            if not mask.any():
                continue
            by_target[target] = mean_metrics(per_query)
            cross_sum[mask] += np.stack([per_query[name] for name in self.names], axis=1)
            cross_count[mask] += 1
        per_query, ranks, mask = self._score(language, self.languages, scores)
        bias_values = metrics.language_bias(ranks)                                    # (queries with a relevant,)
        self._keep_per_query(language, "multi", mask, per_query, bias_values)
        bias = float(np.nanmean(bias_values)) if np.isfinite(bias_values).any() else None
        settings = {"mono": self.mono[language], "multi": mean_metrics(per_query)}
        if by_target:
            settings["cross"] = {name: float(np.mean([row[name] for row in by_target.values()])) for name in self.names}
            cross_mask = cross_count > 0
            cross_values = cross_sum[cross_mask] / cross_count[cross_mask, None]
            self._keep_per_query(language, "cross", cross_mask,
                                 {name: cross_values[:, index] for index, name in enumerate(self.names)})
        return {"settings": settings, "cross_by_target": by_target, "bias": bias,
                "queries": question_count}

    # --- files --------------------------------------------------------------------------------
    def write_per_query(self, path: Path) -> None:
        write_per_query(path, [*self.names, "bias"], self.per_query_rows)

    def write_trec_runs(self, folder: Path, mode: str, depth: int, tag: str) -> None:
        import faiss

        for language in self.languages:
            plans = [(f"{language}.mono", [language])]
            if mode == "all":
                plans += [(f"{language}-{target}.cross", [target]) for target in self.languages if target != language]
            if len(self.languages) > 1:
                plans.append((f"{language}.multi", self.languages))
            for name, targets in plans:
                self._write_one_trec(folder, name, language, targets, depth, tag, faiss)

    def _write_one_trec(self, folder: Path, name: str, language: str, targets: list[str], depth: int,
                        tag: str, faiss) -> None:
        candidates = np.ascontiguousarray(np.concatenate([self.encoded[t].candidates for t in targets]))
        doc_ids = [f"{target}-{index}" for target in targets for index in range(len(self.corpora[target].candidates))]
        index = faiss.IndexFlatIP(candidates.shape[1])
        index.add(candidates)
        scores, indices = index.search(np.ascontiguousarray(self.encoded[language].queries), min(depth, len(doc_ids)))
        qrels: dict[str, list[str]] = {}
        for target in targets:
            answers = dict(zip(self.corpora[target].question_ids, self.corpora[target].answer_candidate))
            for qid in self.corpora[language].question_ids:
                if qid in answers:
                    qrels.setdefault(qid, []).append(f"{target}-{answers[qid]}")
        # faiss leaves the order of equal scores open: apply our rule (earlier candidate first)
        order = np.lexsort((indices, -scores), axis=1)
        indices, scores = np.take_along_axis(indices, order, 1), np.take_along_axis(scores, order, 1)
        top_doc_ids = np.array(doc_ids, dtype=object)[indices]                       # (Q, depth)
        write_trec(folder, name, self.corpora[language].question_ids, top_doc_ids, scores, qrels, tag)
