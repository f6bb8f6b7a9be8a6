"""Checks that a spec's datasets are on disk, before a run directory is created."""

from __future__ import annotations

from engine.data import catalog
from engine.data.lareqa import dataset_dir
from engine.errors import DataError
from engine.spec import ExperimentSpec


def check_lareqa(dataset: str, languages: tuple[str, ...] | None, data_dir: str | None) -> None:
    root = dataset_dir(dataset, data_dir)
    for language in languages or catalog.LAREQA_DATASETS[dataset]:
        if not (root / f"{language}.json").is_file():
            raise DataError(f"{root / f'{language}.json'}: missing file for language {language!r} of {dataset}")


def check_runnable(spec: ExperimentSpec, train: bool = True) -> None:
    """Everything a run needs that can be checked before it starts: data files and model name."""
    from engine.model_names import check_encoder_name

    check_datasets(spec, train)
    check_encoder_name(spec.encoder.name)


def runnable_specs(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """Every run of a spec's grid, each checked to be able to start (or a UserError)."""
    from engine.grid import expand_grid

    specs = expand_grid(spec)
    for run in specs:
        check_runnable(run)
    return specs


def check_datasets(spec: ExperimentSpec, train: bool = True) -> None:
    if train and spec.train.dataset in catalog.LAREQA_DATASETS:
        check_lareqa(spec.train.dataset, spec.train.languages, spec.data_dir)
    for dataset in spec.eval.datasets:
        if dataset in catalog.LAREQA_DATASETS:
            check_lareqa(dataset, spec.eval.languages, spec.data_dir)
        elif dataset == "miracl":
            dataset_dir(dataset, spec.data_dir)
