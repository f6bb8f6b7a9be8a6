"""Grids: one spec sweeping dotted fields expands into one spec per combination.

    "grid": {"sampling.alpha": [0.25, 0.5, 0.75], "train.seed": [1, 2]}

gives six runs named `<name>-alpha=0.25-seed=1` and so on. A list of such grids is their
union (a study: strategies x seeds, plus an alpha sweep x seeds, plus one zero-shot run):

    "grid": [{"sampling.strategy": ["monolingual", "crosslingual"], "train.seed": [1, 2]},
             {"sampling.strategy": ["hybrid"], "sampling.alpha": [0.25, 0.75], "train.seed": [1, 2]}]

Each expanded spec is validated as if the user had written it, so a bad grid value is
reported with its path.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from typing import Any

from engine.contract.errors import SpecError
from engine.contract.spec import ExperimentSpec, set_dotted
from engine.contract.validation import parse_spec


_UNNAMEABLE = re.compile(r"[^A-Za-z0-9_.,=+@-]")
MAX_NAME = 120                     # what the spec's name accepts


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(map(_format_value, value))
    return str(value).replace(" ", "_").replace("/", "_")


def run_name(base: str, assignment: dict[str, Any]) -> str:
    """`<name>-<field>=<value>-…`, in the characters a name may hold (a path, a `bundled:` name or
    a prefix with a space is spelled with `_`); a name past the length limit ends in a hash of the
    whole assignment, so runs stay apart."""
    parts = [f"{dotted.rsplit('.', 1)[-1]}={_format_value(value)}" for dotted, value in assignment.items()]
    name = _UNNAMEABLE.sub("_", "-".join([base, *parts]))
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(json.dumps(assignment, sort_keys=True, default=str).encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME - 9]}-{digest}"
    return name


def sub_grids(grid: dict | tuple) -> list[dict]:
    """A grid as a list of grids (one, or the union's members)."""
    return [grid] if isinstance(grid, dict) else list(grid)


def grid_size(spec: ExperimentSpec) -> int:
    if not spec.grid:
        return 1
    return sum(math.prod(len(values) for values in grid.values()) for grid in sub_grids(spec.grid))


def expand_grid(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """Every combination of the grid as its own validated spec (the spec itself if no grid)."""
    if not spec.grid:
        return [spec]
    base = spec.to_dict()
    base["grid"] = {}
    return [run for grid in sub_grids(spec.grid) for run in _expand(spec, base, grid)]


def _expand(spec: ExperimentSpec, base: dict, grid: dict) -> list[ExperimentSpec]:
    keys = list(grid)
    expanded = []
    for values in itertools.product(*(grid[key] for key in keys)):
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
