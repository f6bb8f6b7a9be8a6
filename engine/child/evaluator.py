"""Retrieval evaluation inside a run (a zero-shot run is a run with `train.steps: 0`).

`Evaluator.run(encoder, step)` evaluates every dataset of the spec's `eval` section,
emitting an `eval` event per language as soon as it is scored and an `eval_done` with
macro and group averages per dataset; the files land where `engine.contract.layout` says.

The encoder runs in `eval.precision` (auto: bf16 where the hardware runs it fast): a bf16 or
fp16 copy of the model encodes, pooling and normalising in fp32, and every score is computed
in fp32 from the embeddings. With `eval.cache`, an unchanged encoder's embeddings come from
the embedding cache (`engine.child.embedding_cache`) instead of being computed again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.contract import catalog
from engine.contract.errors import DataError
from engine.contract.events import Event, EvalDone, Notice
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
        self.cache = None
        if spec.eval.cache:
            from engine.child.embedding_cache import EmbeddingCache

            self.cache = EmbeddingCache(warn=lambda message: emit(Notice(message=message, level="warning")),
                                        check_stop=self._check_stop)

    def _check_stop(self) -> None:
        if self.should_stop():
            raise StopRequested()

    def run(self, encoder, step: int, final: bool = True) -> bool:
        """Evaluate every dataset; False if a stop was requested midway."""
        from engine.child.runtime import pick_eval_precision

        precision = pick_eval_precision(self.spec.eval.precision, encoder.device)
        fingerprint = None
        sharded = any(dataset not in catalog.LAREQA_DATASETS for dataset in self.spec.eval.datasets)
        if (self.cache is not None and self.cache.enabled) or sharded:   # shards are keyed by it even uncached
            from engine.child.embedding_cache import encoder_fingerprint

            fingerprint = encoder_fingerprint(encoder, precision, self.spec.eval.batch_size)
        inference = encoder.for_inference(precision)
        encode = self._encode_fn(inference, fingerprint if self.cache is not None else None)
        try:
            for dataset in self.spec.eval.datasets:
                hits = self.cache.hits if self.cache else 0
                if dataset in catalog.LAREQA_DATASETS:
                    self._lareqa(dataset, encode, step, final, precision, hits)
                else:
                    self._miracl(dataset, encode, self._encode_fn(inference, None), fingerprint, step, final,
                                 precision, hits)
        except StopRequested:
            return False
        return True

    def _encode_fn(self, encoder, fingerprint: str | None) -> Callable:
        def encode(texts, is_query: bool, progress: Callable[[int, int], None]):
            def checked(done: int, total: int) -> None:
                if self.should_stop():
                    raise StopRequested()
                progress(done, total)

            def compute():
                return encoder.encode(texts, is_query, self.spec.eval.batch_size, checked)

            if fingerprint is None or self.cache is None:
                return compute()
            from engine.child.embedding_cache import texts_key

            embeddings = self.cache.get_or_compute(texts_key(fingerprint, texts, is_query), compute, rows=len(texts))
            checked(len(texts), len(texts))
            return embeddings

        return encode

    def _lareqa(self, dataset: str, encode: Callable, step: int, final: bool, precision: str, hits: int) -> None:
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
        evaluation.encode_all(encode)
        per_language = {}
        for language in evaluation.languages:
            row = evaluation.score_language(language)
            per_language[language] = row
            self.emit(Eval(step=step, dataset=dataset, language=language, **row))
        files_started = time.perf_counter()
        evaluation.write_per_query(self.folder.per_query(dataset, step))
        if final:
            evaluation.write_per_query(self.folder.per_query(dataset))
            if evaluation_spec.trec_runs != "none":
                evaluation.write_trec_runs(self.folder.trec_dir(dataset), evaluation_spec.trec_runs,
                                           evaluation_spec.trec_depth, self.spec.name)
        self._finish(dataset, step, per_language, evaluation.languages, started, evaluation.encode_seconds,
                     evaluation_spec.metrics, evaluation_spec.primary_metric, precision, hits,
                     time.perf_counter() - files_started)

    def _miracl(self, dataset: str, encode: Callable, encode_uncached: Callable, fingerprint: str, step: int,
                final: bool, precision: str, hits: int) -> None:
        """The corpus in shards: entries of the embedding cache (shared by every run that meets
        this encoder), or, with eval.cache off, of a store in the run's folder that lives until
        the evaluation is done (so a killed one goes on from its shards)."""
        import shutil

        from engine.child.eval_miracl import MIRACL_METRICS, evaluate_miracl, shard_setup

        own, store = self._shard_store(dataset)
        shards = shard_setup(self.spec, dataset, fingerprint, store)
        started = time.perf_counter()
        try:
            per_language, encode_seconds, protocol = evaluate_miracl(self.spec, dataset, encode_uncached, self.emit,
                                                                     step, self.folder, final, shards)
        except DataError:          # bad data will not be resumed: its shards would only take the disk
            if store is not self.cache:
                shutil.rmtree(own, ignore_errors=True)
            raise
        self._finish(dataset, step, per_language, list(per_language), started, encode_seconds,
                     MIRACL_METRICS, MIRACL_METRICS[0], precision, hits, protocol=protocol)
        if store is not self.cache:
            shutil.rmtree(own, ignore_errors=True)
        elif step > 0 and not final and store.hits == hits:
            # a periodic evaluation's trained weights are never met again (the base encoder's shards
            # are, by every run of a grid); a final one's are kept, for an evaluation resumed after a
            # stop; and shards it found already there (weights that did not move: lr 0) are someone's
            store.discard_shards(fingerprint, dataset)

    def _shard_store(self, dataset: str):
        """(the run's own shard folder, the store a MIRACL corpus's shards go to): the embedding
        cache, or with it off a store in that folder."""
        from engine.child.embedding_cache import EmbeddingCache

        own = self.folder.path / "eval" / dataset / "shards"
        if self.cache is not None and self.cache.enabled:
            return own, self.cache
        return own, EmbeddingCache(own, warn=lambda message: self.emit(Notice(message=message, level="warning")),
                                   check_stop=self._check_stop, limit=2**62)

    @property
    def shares_corpus_encoding(self) -> bool:
        """Whether the spec has a corpus in shards that the ranks of a run can encode together."""
        return any(dataset not in catalog.LAREQA_DATASETS for dataset in self.spec.eval.datasets)

    def encode_shard_part(self, encoder, part: tuple[int, int]) -> int | None:
        """This rank's part (k of n) of every MIRACL corpus's shards, into the store the
        evaluation reads (rank 0 then finds them all there); how many shards it encoded or found,
        None when a stop came meanwhile."""
        from dataclasses import replace

        from engine.child.embedding_cache import encoder_fingerprint
        from engine.child.eval_miracl import encode_part, shard_setup
        from engine.child.runtime import pick_eval_precision

        precision = pick_eval_precision(self.spec.eval.precision, encoder.device)
        fingerprint = encoder_fingerprint(encoder, precision, self.spec.eval.batch_size)
        encode = self._encode_fn(encoder.for_inference(precision), None)
        done = 0
        try:
            for dataset in self.spec.eval.datasets:
                if dataset in catalog.LAREQA_DATASETS:
                    continue
                shards = replace(shard_setup(self.spec, dataset, fingerprint, self._shard_store(dataset)[1]), part=part)
                done += encode_part(self.spec, dataset, shards, encode,   # rank 0's lines: the others' go nowhere
                                    lambda line: self.emit(Notice(message=f"rank {part[0]}: {line}")))
        except StopRequested:
            return None
        return done

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
                encode_seconds: float, metric_names: tuple[str, ...], primary: str, precision: str,
                hits_before: int, files_seconds: float | None = None, protocol: dict | None = None) -> None:
        from engine.child.averages import summarise
        from engine.contract.results import write_results

        groups = {**catalog.groups_for(languages, self.spec.eval.groups), **self.seen_unseen(languages)}
        macro, group_rows, bias = summarise(per_language, groups)
        seconds = time.perf_counter() - started
        cached = (self.cache.hits - hits_before) if self.cache is not None else 0
        results = {"dataset": dataset, "step": step, "run": self.spec.name, "languages": languages,
                   "seen_in_training": self.spec.train.steps != 0 and dataset == self.spec.train.dataset,
                   "metrics": list(metric_names), "primary_metric": primary,
                   "per_language": per_language, "macro": macro, "groups": group_rows, "bias": bias,
                   "seconds": seconds, "encode_seconds": encode_seconds, "files_seconds": files_seconds,
                   "precision": precision,
                   "cached_encodings": cached}
        if protocol is not None:
            results["protocol"] = protocol
        path = write_results(self.folder, dataset, step, results)
        self.emit(EvalDone(step=step, dataset=dataset, macro=macro, groups=group_rows, bias=bias,
                           results_path=str(path), seconds=seconds, encode_seconds=encode_seconds,
                           primary_metric=primary, precision=precision, cached=cached))
