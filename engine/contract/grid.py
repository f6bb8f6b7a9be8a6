"""Grids: one spec sweeping dotted fields expands into one spec per combination.

    "grid": {"sampling.alpha": [0.25, 0.5, 0.75], "train.seed": [1, 2]}

gives six runs named `<name>-alpha=0.25-seed=1` and so on. Each expanded spec is
validated as if the user had written it, so a bad grid value is reported with its path.
"""

from __future__ import annotations

import itertools
from typing import Any

from engine.contract.errors import SpecError
from engine.contract.spec import ExperimentSpec, set_dotted
from engine.contract.validation import parse_spec


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(map(_format_value, value))
    return str(value).replace(" ", "_").replace("/", "_")


def run_name(base: str, assignment: dict[str, Any]) -> str:
    parts = [f"{dotted.rsplit('.', 1)[-1]}={_format_value(value)}" for dotted, value in assignment.items()]
    return "-".join([base, *parts])


def expand_grid(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """Every combination of the grid as its own validated spec (the spec itself if no grid)."""
    if not spec.grid:
        return [spec]
    base = spec.to_dict()
    base["grid"] = {}
    keys = list(spec.grid)
    expanded = []
    for values in itertools.product(*(spec.grid[key] for key in keys)):
        assignment = dict(zip(keys, values))
        document = _copy(base)
        for dotted, value in assignment.items():
            try:
                set_dotted(document, dotted, _plain(value), create=False)
            except KeyError:
                raise SpecError([(f"grid.{dotted}", "no such field to sweep")], spec.name) from None
        document["name"] = run_name(spec.name, assignment)
        try:
            expanded.append(parse_spec(document))
        except SpecError as error:
            where = ", ".join(f"{key}={_format_value(value)}" for key, value in assignment.items())
            raise SpecError([(f"grid ({where}) -> {path}", reason) for path, reason in error.problems],
                            spec.name) from None
    return expanded


def _plain(value: Any) -> Any:
    return [_plain(item) for item in value] if isinstance(value, tuple) else value


def _copy(document: Any) -> Any:
    if isinstance(document, dict):
        return {key: _copy(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_copy(value) for value in document]
    return document
