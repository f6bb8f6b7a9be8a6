"""Retrieval evaluation, inside a training run or on its own.

`Evaluator.run(encoder, step)` evaluates every dataset of the spec's `eval` section,
emitting an `eval` event per language as soon as it is scored and an `eval_done` with
macro and group averages per dataset. On its own:

    python -m engine.evaluate SPEC|MODEL [--datasets xquad-r] [--languages en de] [--max-queries N]

evaluates any encoder (a spec, a hub name, a folder or `bundled:...`, untrained included)
into a run folder and prints the per-language mono / cross / multi table with language bias.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from engine.data import catalog
from engine.errors import EXIT_USER_ERROR, UserError
from engine.protocol import Event, EvalDone

Emit = Callable[[Event], None]


class StopRequested(Exception):
    """Raised from an encoding progress callback when the run must stop."""


class Evaluator:
    def __init__(self, spec, run_dir: Path, emit: Emit, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.spec = spec
        self.run_dir = run_dir
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
        from engine.data.lareqa import load_lareqa
        from engine.eval_lareqa import LareqaEvaluation
        from engine.protocol import Eval

        evaluation_spec = self.spec.eval
        if dataset not in self._corpora:
            self._corpora[dataset] = load_lareqa(dataset, evaluation_spec.languages, self.spec.data_dir,
                                                 evaluation_spec.max_queries)
        started = time.perf_counter()
        evaluation = LareqaEvaluation(dataset, self._corpora[dataset], evaluation_spec.metrics,
                                      evaluation_spec.passage == "sentence+paragraph", self.emit, step)
        evaluation.encode_all(self._encode_fn(encoder, autocast_dtype))
        per_language = {}
        for language in evaluation.languages:
            row = evaluation.score_language(language)
            per_language[language] = row
            self.emit(Eval(step=step, dataset=dataset, language=language, **row))
        folder = self.run_dir / "eval" / dataset
        evaluation.write_per_query(folder / f"step-{step:06d}" / "per_query.tsv.gz")
        if final:
            evaluation.write_per_query(folder / "per_query.tsv.gz")
            if evaluation_spec.trec_runs != "none":
                evaluation.write_trec_runs(folder / "trec", evaluation_spec.trec_runs, evaluation_spec.trec_depth,
                                           self.spec.name)
        self._finish(dataset, step, per_language, evaluation.languages, started, evaluation.encode_seconds,
                     evaluation_spec.metrics, evaluation_spec.primary_metric)

    def _miracl(self, dataset: str, encoder, step: int, autocast_dtype, final: bool) -> None:
        from engine.eval_miracl import MIRACL_METRICS, evaluate_miracl

        started = time.perf_counter()
        per_language, encode_seconds = evaluate_miracl(self.spec, dataset, self._encode_fn(encoder, autocast_dtype),
                                                       self.emit, step, self.run_dir / "eval" / dataset, final)
        self._finish(dataset, step, per_language, list(per_language), started, encode_seconds,
                     MIRACL_METRICS, MIRACL_METRICS[0])

    def _finish(self, dataset: str, step: int, per_language: dict, languages: list[str], started: float,
                encode_seconds: float, metric_names: tuple[str, ...], primary: str) -> None:
        from engine.eval_outputs import summarise, write_results

        groups = catalog.groups_for(languages, self.spec.eval.groups)
        macro, group_rows, bias = summarise(per_language, groups)
        seconds = time.perf_counter() - started
        results = {"dataset": dataset, "step": step, "run": self.spec.name, "languages": languages,
                   "metrics": list(metric_names), "primary_metric": primary,
                   "per_language": per_language, "macro": macro, "groups": group_rows, "bias": bias,
                   "seconds": seconds, "encode_seconds": encode_seconds}
        path = write_results(self.run_dir / "eval" / dataset, step, results)
        self.emit(EvalDone(step=step, dataset=dataset, macro=macro, groups=group_rows, bias=bias,
                           results_path=str(path), seconds=seconds, encode_seconds=encode_seconds))


# --- command line -----------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-")[:60] or "model"


def build_eval_spec(target: str, args: argparse.Namespace):
    """A spec from a JSON file, or a zero-shot spec around a model name, with CLI overrides."""
    from engine.spec import EncoderSpec, ExperimentSpec, TrainSpec, load_spec, parse_spec

    model_dir = Path(target) / "model"
    if Path(target).is_dir() and (Path(target) / "spec.json").is_file() and model_dir.is_dir():
        trained = load_spec(Path(target) / "spec.json")   # a finished run: its trained model
        spec = replace(trained, name=f"{trained.name}-eval", encoder=replace(trained.encoder, name=str(model_dir)))
    elif target.endswith(".json") or Path(target).is_file():
        spec = load_spec(target)
    else:
        spec = ExperimentSpec(name=f"zero-shot-{_slug(target.split(':')[-1].split('/')[-1])}",
                              encoder=EncoderSpec(name=target), train=TrainSpec(steps=0))
    overrides = {key: value for key, value in (("datasets", args.datasets), ("languages", args.languages),
                                               ("max_queries", args.max_queries)) if value is not None}
    for key in ("datasets", "languages"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    spec = replace(spec, grid={}, train=replace(spec.train, steps=0, epochs=None),
                   eval=replace(spec.eval, **overrides))
    document = spec.to_dict()
    if args.data_dir:
        document["data_dir"] = args.data_dir
    return parse_spec(document, target)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engine.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a spec JSON (its encoder, untrained), a finished run folder, "
                        "a hub model name, a model folder or bundled:multilingual-e5-small")
    parser.add_argument("--datasets", nargs="+", help="evaluation datasets (default: the spec's, xquad-r)")
    parser.add_argument("--languages", nargs="+", help="languages (default: all the dataset has)")
    parser.add_argument("--max-queries", type=int, help="first N questions per language (a slice)")
    parser.add_argument("--data-dir", help="data directory (default: spec, $HBT_DATA_DIR, user cache)")
    parser.add_argument("--run-dir", type=Path, help="output folder (default: runs/<name>-<time>)")
    parser.add_argument("--events", action="store_true", help="print JSON-lines events instead of the table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from engine.runtime import setup_logging

    setup_logging()
    args = _parse_args(argv)
    try:
        from engine.data.preflight import check_runnable

        spec = build_eval_spec(args.target, args)
        check_runnable(spec, train=False)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    run_dir = args.run_dir or Path("runs") / f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
    return evaluate_into(spec, run_dir, print_events=args.events)


def evaluate_into(spec, run_dir: Path, print_events: bool) -> int:
    """Run the zero-shot spec like any run (events, results), then print its tables."""
    from engine.loop import train
    from engine.protocol import EventWriter, read_events
    from engine.report import print_results
    from engine.train import SPEC_FILE, Args, StopFlag

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / SPEC_FILE).write_text(spec.to_json(), encoding="utf-8")
    except OSError as error:
        print(f"error: cannot create run directory {run_dir}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USER_ERROR
    stop = StopFlag().install()
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as log:
        try:
            train(Args(spec, run_dir, resume=False, stop_at_step=None),
                  EventWriter(log, sys.stdout if print_events else None), stop)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USER_ERROR
    if stop.requested:
        return stop.exit_code or 1
    if not print_events:
        for event in read_events(run_dir / "events.jsonl"):
            if isinstance(event, EvalDone):
                print_results(event.results_path)
        print(f"results in {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
