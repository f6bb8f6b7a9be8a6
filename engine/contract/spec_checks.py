"""Pass 2 of reading a spec (engine.contract.validation): what spans fields — languages a
dataset lacks (with the closest known one), the training set and steps vs epochs, the
hypotheses against the grid's arms, parallel training, the evaluation's datasets, metrics and
language groups. Each problem is appended with its JSON path; the spec is already typed.
Standard library only."""

from __future__ import annotations

import re
from typing import Any

from engine.contract import arms, catalog
from engine.contract.metric_names import parse_metric
from engine.contract.spec import ExperimentSpec

Problems = list[tuple[str, str]]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,=+@-]{0,119}$")


def join_path(path: str, key: str | int) -> str:
    """`path.key`, or `path[index]`: a problem's place in the document."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def closest(word: str, options: list[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _check_languages(languages: tuple[str, ...] | None, dataset: str, path: str,
                     problems: Problems) -> None:
    known = catalog.dataset_languages(dataset)
    if languages == ():
        problems.append((path, "must list at least one language (or be null for all)"))
        return
    if languages is None or known is None:
        return
    for index, language in enumerate(languages):
        if language not in known:
            problems.append((join_path(path, index),
                             f"{dataset} has no language {language!r} (it has {', '.join(known)})"))
    if len(set(languages)) != len(languages):
        problems.append((path, "lists a language twice"))


def check_semantics(spec: ExperimentSpec, problems: Problems) -> None:
    if not _NAME.match(spec.name):
        problems.append(("name", "must be 1-120 letters, digits or _.,=+@- and start with a letter or digit"))
    train, evaluation = spec.train, spec.eval
    if not catalog.is_known_dataset(train.dataset):
        problems.append(("train.dataset", f"unknown dataset {train.dataset!r} "
                         f"(known: {', '.join(catalog.LAREQA_DATASETS)}, or hf:<name>)"))
    elif train.dataset in ("miracl", "hf:miracl"):
        problems.append(("train.dataset", "MIRACL is an evaluation set; train on mlqa-r, xquad-r or hf:<name>"))
    else:
        _check_languages(train.languages, train.dataset, "train.languages", problems)
    if train.dataset.startswith(catalog.HF_PREFIX) and (train.hf is None or not train.hf.path):
        problems.append(("train.hf.path", "is required when train.dataset is hf:<name>"))
    if train.languages is not None and len(train.languages) < 2 and spec.sampling.strategy != "monolingual":
        problems.append(("train.languages", f"{spec.sampling.strategy} sampling needs at least 2 languages"))
    if train.steps is not None and train.epochs is not None:
        problems.append(("train.steps", "set train.steps or train.epochs, not both"))
    _check_parallel(spec, problems)
    if spec.sampling.strategy == "multitask":
        if spec.sampling.mono_weight + spec.sampling.cross_weight <= 0:
            problems.append(("sampling.mono_weight", "multitask weights must not both be 0"))
        if spec.sampling.multitask_batch == "half" and train.batch_size < 4:
            problems.append(("train.batch_size", "multitask with half batches needs batch_size >= 4"))
    _check_eval(evaluation, problems)
    if train.steps != 0 and not evaluation.allow_train_overlap:
        for index, dataset in enumerate(evaluation.datasets):
            if dataset == train.dataset:
                problems.append((f"eval.datasets[{index}]", f"{dataset} is also train.dataset: evaluating on the "
                                 "training data is refused (set eval.allow_train_overlap: true to allow it; "
                                 "its tables are then marked as seen in training)"))
    _check_hypotheses(spec, problems)
    grids = [spec.grid] if isinstance(spec.grid, dict) else list(spec.grid)
    for number, grid in enumerate(grids):
        where = "grid" if isinstance(spec.grid, dict) else f"grid[{number}]"
        if not grid and not isinstance(spec.grid, dict):
            problems.append((where, "must sweep at least one field"))
        for dotted, values in grid.items():
            if not values:
                problems.append((f"{where}.{dotted}", "must list at least one value"))


def _check_hypotheses(spec: ExperimentSpec, problems: Problems) -> None:
    """Each hypothesis names a dataset, metric, setting and group this spec evaluates, and arms
    its grid makes (without a grid, arms some spec could make: the report checks the runs)."""
    evaluation = spec.eval
    labels = arms.grid_arms(spec.to_dict(), spec.grid) if spec.grid else None
    seen_ids: set[str] = set()
    for index, hypothesis in enumerate(spec.hypotheses):
        where = f"hypotheses[{index}]"
        if not hypothesis.id.strip() or hypothesis.id in seen_ids:
            problems.append((f"{where}.id", "must be a unique, non-empty name" if hypothesis.id.strip()
                             else "must not be empty"))
        seen_ids.add(hypothesis.id)
        for name in ("reference", "baseline"):
            wanted = getattr(hypothesis, name)
            if labels is not None and arms.match_arm(wanted, labels) is None:
                problems.append((f"{where}.{name}", f"no arm {wanted!r} in this spec's grid (arms: {', '.join(labels)})"))
            elif labels is None and not arms.is_arm_label(wanted):
                problems.append((f"{where}.{name}", f"{wanted!r} is not an arm (X-X, X-Y, hybrid α=A, multitask (full), "
                                 "multitask (half), zero-shot)"))
        if hypothesis.dataset not in evaluation.datasets:
            problems.append((f"{where}.dataset", f"{hypothesis.dataset!r} is not in eval.datasets "
                             f"({', '.join(evaluation.datasets)})"))
        if hypothesis.metric != "bias" and hypothesis.metric not in evaluation.metrics:
            problems.append((f"{where}.metric", f"{hypothesis.metric!r} is not evaluated (eval.metrics: "
                             f"{', '.join(evaluation.metrics)})"))
        if hypothesis.metric == "bias" and hypothesis.setting != "multi":
            problems.append((f"{where}.setting", "language bias exists in the multilingual setting only"))
        groups = {"all", "seen", "unseen", *(evaluation.groups or {"high": (), "low": ()})}
        languages = catalog.dataset_languages(hypothesis.dataset) or ()
        if hypothesis.group not in groups and hypothesis.group not in languages:
            problems.append((f"{where}.group", f"unknown group {hypothesis.group!r} (groups: "
                             f"{', '.join(sorted(groups))}, or one language)"))
        if hypothesis.sense in (">=", "<=") and hypothesis.margin <= 0:
            problems.append((f"{where}.margin", "a non-inferiority claim needs a margin > 0"))


def _check_parallel(spec: ExperimentSpec, problems: Problems) -> None:
    """train.batch_size is the global batch: it must split evenly over the devices (each
    objective's batch, under multitask half), and a GradCache chunk must fit in one device's share."""
    train, loss = spec.train, spec.loss
    strategy = arms.STRATEGIES.get(spec.sampling.strategy)
    half = strategy is not None and strategy.halves(spec.sampling)
    part = train.batch_size // 2 if half else train.batch_size
    if part % train.devices:
        what = "half of train.batch_size" if half else "train.batch_size"
        problems.append(("train.devices", f"{what} ({part}) does not split over {train.devices} devices"))
    elif loss.chunk_size is not None and loss.chunk_size > part // train.devices:
        problems.append(("loss.chunk_size", f"{loss.chunk_size} is larger than the batch each device embeds "
                         f"({part // train.devices})"))
    if train.devices > 1 and train.steps == 0:
        problems.append(("train.devices", "a zero-shot run (train.steps: 0) evaluates on one device"))
    if train.devices > 1 and loss.hard_negatives:
        problems.append(("loss.hard_negatives", "hard negatives are not gathered across devices yet; "
                         "use 0 with train.devices > 1"))


def _check_eval(evaluation: Any, problems: Problems) -> None:
    if not evaluation.datasets:
        problems.append(("eval.datasets", "must list at least one dataset"))
    if evaluation.languages == () and not evaluation.datasets:
        problems.append(("eval.languages", "must list at least one language (or be null for all)"))
    for index, dataset in enumerate(evaluation.datasets):
        if dataset not in catalog.known_datasets():
            problems.append((f"eval.datasets[{index}]", f"unknown evaluation dataset {dataset!r} "
                             f"(known: {', '.join(catalog.known_datasets())})"))
        else:
            _check_languages(evaluation.languages, dataset, "eval.languages", problems)
    for index, metric in enumerate(evaluation.metrics):
        try:
            parse_metric(metric)
        except ValueError as error:
            problems.append((f"eval.metrics[{index}]", str(error)))
    if evaluation.primary_metric not in evaluation.metrics:
        problems.append(("eval.primary_metric", f"must be one of eval.metrics, got {evaluation.primary_metric!r}"))
    for group, members in (evaluation.groups or {}).items():
        if not members:
            problems.append((f"eval.groups.{group}", "must list at least one language"))
    if evaluation.miracl.protocol == "pooled" and not evaluation.miracl.pool \
            and any(dataset in ("miracl", "hf:miracl") for dataset in evaluation.datasets):
        problems.append(("eval.miracl.pool", "the pooled protocol needs a pool file (`hbt-tui miracl pool` builds one)"))
