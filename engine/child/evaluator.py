"""Retrieval evaluation inside a run (a zero-shot run is a run with `train.steps: 0`).

`Evaluator.run(encoder, step)` evaluates every dataset of the spec's `eval` section,
emitting an `eval` event per language as soon as it is scored and an `eval_done` with
macro and group averages per dataset; the files land where `engine.contract.layout` says.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.contract import catalog
from engine.contract.events import Event, EvalDone
from engine.contract.layout import RunFolder

Emit = Callable[[Event], None]


class StopRequested(Exception):
    """Raised from an encoding progress callback when the run must stop."""


class Evaluator:
    def __init__(self, spec, folder: RunFolder, emit: Emit, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.spec = spec
        self.folder = folder
        self.emit = emit
        self.should_stop = should_stop
        self._corpora: dict[str, dict] = {}

    def run(self, encoder, step: int, autocast_dtype=None, final: bool = True) -> bool:
        """Evaluate every dataset; False if a stop was requested midway."""
        try:
            for dataset in self.spec.eval.datasets:
                if dataset in catalog.LAREQA_DATASETS:
                    self._lareqa(dataset, encoder, step, autocast_dtype, final)
                else:
                    self._miracl(dataset, encoder, step, autocast_dtype, final)
        except StopRequested:
            return False
        return True

    def _encode_fn(self, encoder, autocast_dtype) -> Callable:
        def encode(texts, is_query: bool, progress: Callable[[int, int], None]):
            def checked(done: int, total: int) -> None:
                if self.should_stop():
                    raise StopRequested()
                progress(done, total)

            return encoder.encode(texts, is_query, self.spec.eval.batch_size, checked, autocast_dtype)

        return encode

    def _lareqa(self, dataset: str, encoder, step: int, autocast_dtype, final: bool) -> None:
        from engine.child.data.lareqa import load_lareqa
        from engine.child.eval_lareqa import LareqaEvaluation
        from engine.contract.events import Eval

        evaluation_spec = self.spec.eval
        if dataset not in self._corpora:
            self._corpora[dataset] = load_lareqa(dataset, evaluation_spec.languages, self.spec.data_dir,
                                                 evaluation_spec.max_queries, evaluation_spec.slice_seed,
                                                 "eval.max_queries")
        started = time.perf_counter()
        evaluation = LareqaEvaluation(dataset, self._corpora[dataset], evaluation_spec.metrics,
                                      evaluation_spec.passage == "sentence+paragraph", self.emit, step)
        evaluation.encode_all(self._encode_fn(encoder, autocast_dtype))
        per_language = {}
        for language in evaluation.languages:
            row = evaluation.score_language(language)
            per_language[language] = row
            self.emit(Eval(step=step, dataset=dataset, language=language, **row))
        evaluation.write_per_query(self.folder.per_query(dataset, step))
        if final:
            evaluation.write_per_query(self.folder.per_query(dataset))
            if evaluation_spec.trec_runs != "none":
                evaluation.write_trec_runs(self.folder.trec_dir(dataset), evaluation_spec.trec_runs,
                                           evaluation_spec.trec_depth, self.spec.name)
        self._finish(dataset, step, per_language, evaluation.languages, started, evaluation.encode_seconds,
                     evaluation_spec.metrics, evaluation_spec.primary_metric)

    def _miracl(self, dataset: str, encoder, step: int, autocast_dtype, final: bool) -> None:
        from engine.child.eval_miracl import MIRACL_METRICS, evaluate_miracl

        started = time.perf_counter()
        per_language, encode_seconds = evaluate_miracl(self.spec, dataset, self._encode_fn(encoder, autocast_dtype),
                                                       self.emit, step, self.folder, final)
        self._finish(dataset, step, per_language, list(per_language), started, encode_seconds,
                     MIRACL_METRICS, MIRACL_METRICS[0])

    def seen_unseen(self, languages: list[str]) -> dict[str, tuple[str, ...]]:
        """The evaluated languages a trained run trained on, and the others; nothing when one
        side is empty (the split would only repeat the macro average)."""
        train = self.spec.train
        if train.steps == 0:
            return {}
        trained = train.languages or catalog.dataset_languages(train.dataset) or ()
        seen = tuple(language for language in languages if language in trained)
        unseen = tuple(language for language in languages if language not in trained)
        return {"seen": seen, "unseen": unseen} if seen and unseen else {}

    def _finish(self, dataset: str, step: int, per_language: dict, languages: list[str], started: float,
                encode_seconds: float, metric_names: tuple[str, ...], primary: str) -> None:
        from engine.child.eval_outputs import summarise
        from engine.contract.results import write_results

        groups = {**catalog.groups_for(languages, self.spec.eval.groups), **self.seen_unseen(languages)}
        macro, group_rows, bias = summarise(per_language, groups)
        seconds = time.perf_counter() - started
        results = {"dataset": dataset, "step": step, "run": self.spec.name, "languages": languages,
                   "seen_in_training": self.spec.train.steps != 0 and dataset == self.spec.train.dataset,
                   "metrics": list(metric_names), "primary_metric": primary,
                   "per_language": per_language, "macro": macro, "groups": group_rows, "bias": bias,
                   "seconds": seconds, "encode_seconds": encode_seconds}
        path = write_results(self.folder, dataset, step, results)
        self.emit(EvalDone(step=step, dataset=dataset, macro=macro, groups=group_rows, bias=bias,
                           results_path=str(path), seconds=seconds, encode_seconds=encode_seconds,
                           primary_metric=primary))
