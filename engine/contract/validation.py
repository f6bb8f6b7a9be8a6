"""Reading experiment specs: JSON text -> a validated, frozen `ExperimentSpec`.

`load_spec(path)`, `parse_spec_text(text)` and `parse_spec(document)` are the ways in; each
raises `SpecError` listing every problem with its JSON path. Decoding keeps keys given twice
and refuses nesting too deep; numbers must be finite and integers fit in 64 bits (what the
index and torch can store). Then two passes: `_convert` walks the type hints of the dataclasses (unknown keys, wrong types,
out-of-range numbers, bad choices), then `check_semantics` (engine.contract.spec_checks) checks what spans fields
(languages a dataset lacks, steps vs epochs, metric names, language groups). Every
problem is collected with its JSON path so a user sees all of them at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import stat
import types
import typing
from pathlib import Path
from typing import Any, Literal

from engine.contract.errors import SpecError
from engine.contract.spec import ExperimentSpec, HypothesisSpec
from engine.contract.spec_checks import Problems, check_semantics, closest, join_path
from engine.contract.text import unsafe_character
_MISSING = object()
MAX_SPEC_BYTES = 1024 * 1024       # a spec with a large grid is a few kB
MAX_DEPTH = 16                      # a spec is 3-4 levels deep; anything far deeper is a mistake
INT64 = (-2**63, 2**63 - 1)         # what the index (orjson) and torch can store


# --- the ways in ---------------------------------------------------------------------------------

class JSONObject(dict):
    """A decoded JSON object that remembers the keys it saw twice (`json` keeps the last
    value silently; the validator reports them)."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> JSONObject:
    decoded = JSONObject(pairs)
    if len(decoded) != len(pairs):
        seen: set[str] = set()
        decoded.duplicates = tuple(key for key, _ in pairs if key in seen or seen.add(key))
    return decoded


def loads_document(text: str, source: str | None = None) -> Any:
    """Decode spec JSON: keys given twice are remembered, too-deep nesting is a SpecError."""
    try:
        return json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as error:
        raise SpecError([(f"line {error.lineno} column {error.colno}",
                          f"malformed JSON: {error.msg}")], source) from None
    except RecursionError:
        raise SpecError([("(top level)", "malformed JSON: nested too deeply")], source) from None


def parse_spec(data: Any, source: str | None = None) -> ExperimentSpec:
    """Validate a decoded JSON document; raise SpecError listing every problem."""
    problems: Problems = []
    _check_structure(data, "", 0, problems)
    if problems:
        raise SpecError(problems, source)
    spec = _convert(data, ExperimentSpec, "", problems)
    if spec is not None:       # fields of the wrong type took their defaults: the rest is still checked
        check_semantics(spec, problems)
    if problems:
        raise SpecError(list(dict.fromkeys(problems)), source)
    return spec


def parse_hypotheses(data: Any, source: str | None = None) -> tuple[HypothesisSpec, ...]:
    """A `hypotheses` list on its own (a report's --hypotheses, or a run's spec): the fields'
    types and values; what they must match (arms, metrics, groups) is checked against runs."""
    problems: Problems = []
    _check_structure(data, "hypotheses", 1, problems)
    hypotheses = _convert(data, tuple[HypothesisSpec, ...], "hypotheses", problems) if not problems else ()
    ids = [hypothesis.id for hypothesis in hypotheses if hypothesis is not None]
    if not problems and len(set(ids)) != len(ids):
        problems.append(("hypotheses", "gives one id twice"))
    if problems:
        raise SpecError(list(dict.fromkeys(problems)), source)
    return hypotheses


def parse_spec_text(text: str, source: str | None = None) -> ExperimentSpec:
    return parse_spec(loads_document(text, source), source)


def read_document(path: str | Path) -> Any:
    """The decoded JSON of a spec file (not yet validated), or a SpecError."""
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise SpecError([("(file)", "no such spec file")], str(path)) from None
    except OSError as error:
        raise SpecError([("(file)", f"cannot read: {error.strerror or error}")], str(path)) from None
    if not stat.S_ISREG(status.st_mode):     # a FIFO or a device would block or never end
        kind = "a folder" if stat.S_ISDIR(status.st_mode) else "not a regular file (a FIFO, a device or a socket)"
        raise SpecError([("(file)", f"is {kind}")], str(path))
    if status.st_size > MAX_SPEC_BYTES:
        raise SpecError([("(file)", f"is {status.st_size:,} bytes; a spec is at most {MAX_SPEC_BYTES:,}")], str(path))
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_SPEC_BYTES + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError([("(file)", f"cannot read: {error}")], str(path)) from None
    return loads_document(text, str(path))


def load_spec(path: str | Path) -> ExperimentSpec:
    return parse_spec(read_document(path), str(path))


# --- pass 0: the shape of the document -----------------------------------------------------------

def _check_structure(value: Any, path: str, depth: int, problems: Problems) -> None:
    """Keys given twice and nesting too deep, anywhere in the document (grid values included)."""
    if depth > MAX_DEPTH:
        problems.append((path or "(top level)", f"nested more than {MAX_DEPTH} levels deep"))
        return
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", ()):
            problems.append((join_path(path, key), "duplicate key (given twice in one object)"))
        for key, item in value.items():
            if isinstance(key, str):
                _check_text(key, join_path(path, key), "", problems, "its name")
            _check_structure(item, join_path(path, key), depth + 1, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_structure(item, join_path(path, index), depth + 1, problems)
    elif isinstance(value, str):
        _check_text(value, path, "\n\t" if path in ("description", "hypotheses") or path.endswith(".claim") else "",
                    problems)


def _check_text(text: str, path: str, allow: str, problems: Problems, what: str = "") -> None:
    """Text a terminal will show: no control characters (escape sequences), no lone surrogates."""
    found = unsafe_character(text, allow)
    if found:
        kind = "a lone surrogate" if found.startswith("\\u") and 0xD800 <= int(found[2:], 16) <= 0xDFFF \
            else "a control character"
        problems.append((path or "(top level)", f"{what + ' ' if what else ''}must not hold {kind} ({found})"))


# --- pass 1: types and ranges --------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    if hint is bool:
        return "a boolean"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if dataclasses.is_dataclass(hint):
        return "an object"
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        return "a list"
    if origin is dict:
        return "an object"
    return str(hint)


def _describe(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return type(value).__name__.replace("dict", "an object").replace("list", "a list")
    if isinstance(value, int) and abs(value) >= 10 ** 20:
        return f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, str) and len(value) > 80:
        return repr(value[:77] + "…")
    return repr(value)


def _convert(value: Any, hint: Any, path: str, problems: Problems) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if value is None:
            return None
        return _convert(value, _matching(options, value), path, problems)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices or isinstance(value, bool):
            problems.append((path, f"must be one of {', '.join(map(str, choices))}; got {_describe(value)}"))
        return value
    if dataclasses.is_dataclass(hint):
        return _convert_dataclass(value, hint, path, problems)
    if origin in (tuple, list):
        return _convert_sequence(value, hint, path, problems)
    if origin is dict:
        return _convert_mapping(value, hint, path, problems)
    if hint is Any:
        return value
    return _convert_scalar(value, hint, path, problems)


def _matching(options: list[Any], value: Any) -> Any:
    """The member of a union that fits the value's JSON shape (a list or an object), else the first."""
    for option in options:
        origin = typing.get_origin(option)
        if isinstance(value, list) and origin in (tuple, list):
            return option
        if isinstance(value, dict) and (origin is dict or dataclasses.is_dataclass(option)):
            return option
    return options[0]


def _convert_scalar(value: Any, hint: type, path: str, problems: Problems) -> Any:
    ok = isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        if not INT64[0] <= value <= INT64[1]:
            problems.append((path, f"must be a finite number, got {_describe(value)}"))
            return 0.0
        return float(value)
    if not ok:
        problems.append((path, f"must be {_type_name(hint)}, got {_describe(value)}"))
    elif hint is float and not math.isfinite(value):
        problems.append((path, f"must be a finite number, got {_describe(value)}"))
    elif hint is int and not INT64[0] <= value <= INT64[1]:
        problems.append((path, f"must be a 64-bit integer, got {_describe(value)}"))
        return 0
    return value


def _convert_sequence(value: Any, hint: Any, path: str, problems: Problems) -> Any:
    if not isinstance(value, list):
        problems.append((path, f"must be a list, got {_describe(value)}"))
        return ()
    item_hint = typing.get_args(hint)[0]
    return tuple(_convert(item, item_hint, join_path(path, index), problems)
                 for index, item in enumerate(value))


def _convert_mapping(value: Any, hint: Any, path: str, problems: Problems) -> Any:
    if not isinstance(value, dict):
        problems.append((path, f"must be an object, got {_describe(value)}"))
        return {}
    value_hint = typing.get_args(hint)[1]
    return {key: _convert(item, value_hint, join_path(path, key), problems)
            for key, item in value.items()}


def _convert_dataclass(value: Any, cls: type, path: str, problems: Problems) -> Any:
    if not isinstance(value, dict):
        problems.append((path or "(top level)", f"must be an object, got {_describe(value)}"))
        return None
    hints = typing.get_type_hints(cls)
    known = {spec_field.name: spec_field for spec_field in dataclasses.fields(cls)}
    for key in value:
        if key not in known:
            suggestion = closest(key, list(known))
            hint = f"; did you mean {suggestion!r}?" if suggestion else ""
            problems.append((join_path(path, key), f"unknown field{hint}"))
    kwargs = {}
    for name, spec_field in known.items():
        field_path = join_path(path, name)
        raw = value.get(name, _MISSING)
        if raw is _MISSING:
            if spec_field.default is dataclasses.MISSING and spec_field.default_factory is dataclasses.MISSING:
                problems.append((field_path, "is required"))
            continue
        converted = _convert(raw, hints[name], field_path, problems)
        if converted is None and raw is not None:
            continue        # a section that is not an object (its problem is recorded): its defaults stand in
        _check_range(converted, spec_field, field_path, problems)
        kwargs[name] = converted
    try:
        return cls(**kwargs)
    except TypeError:
        return None


def _check_range(value: Any, spec_field: dataclasses.Field, path: str, problems: Problems) -> None:
    bounds = spec_field.metadata.get("range")
    if bounds is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low, high, low_open = bounds
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        low_text = "-inf" if low is None else _bound(low)
        high_text = "inf" if high is None else _bound(high)
        if high is None:
            relation = f"must be > {low_text}" if low_open else f"must be >= {low_text}"
        else:
            relation = f"must be in {left}{low_text}, {high_text}]"
        problems.append((path, f"{relation}, got {_bound(value)}"))


def _bound(number: float) -> str:
    """A bound or a value as people read it: 1.5, 100, 1,000,000,000."""
    if isinstance(number, int) or (isinstance(number, float) and number.is_integer() and abs(number) < 1e18):
        return f"{int(number):,}" if abs(number) >= 1_000_000 else str(int(number))
    return f"{number:g}"
