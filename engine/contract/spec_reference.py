"""The spec's field reference, `docs/spec.md`, written from the dataclasses of
`engine.contract.spec` themselves — each section's docstring, and per field its dotted path,
the values it takes, its default, its range and the comment written beside it in the code —
so the page cannot drift from what the validator accepts (a test compares the file with
`render()`; `make docs` writes it)."""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import tokenize
import types
import typing
from typing import Any, Literal

from engine.contract import spec

SECTIONS = (("", spec.ExperimentSpec), ("encoder.", spec.EncoderSpec), ("sampling.", spec.SamplingSpec),
            ("loss.", spec.LossSpec), ("train.", spec.TrainSpec), ("train.hf.", spec.HFSourceSpec),
            ("eval.", spec.EvalSpec), ("eval.miracl.", spec.MiraclEvalSpec), ("hypotheses[].", spec.HypothesisSpec))


def field_comments(section: type) -> dict[str, str]:
    """The comment written with each field in the class's source: at the end of its line, or
    alone on the line above it."""
    source = inspect.getsource(section)
    line_field: dict[int, str] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        name = stripped.split(":", 1)[0]
        if line.startswith("    ") and not line.startswith("     ") and name.isidentifier() and ":" in stripped:
            line_field[number] = name
    trailing: dict[str, str] = {}
    above: dict[str, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        text = token.string.lstrip("#").strip()
        if token.start[0] in line_field:
            trailing[line_field[token.start[0]]] = text
        elif token.start[1] == 4 and token.start[0] + 1 in line_field:
            above[line_field[token.start[0] + 1]] = text
    return {**above, **trailing}


def type_text(hint: Any) -> str:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in arguments)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(argument) if argument is not type(None) else "`null`" for argument in arguments)
    if origin is tuple:
        inner = arguments[0] if arguments else Any
        return f"list of {type_text(inner)}"
    if origin is dict:
        return f"object of {type_text(arguments[1])}"
    if dataclasses.is_dataclass(hint):
        return f"object ({hint.__name__})"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(hint, "any")


def default_text(spec_field: dataclasses.Field) -> str:
    if spec_field.default is not dataclasses.MISSING:
        value = spec_field.default
    elif spec_field.default_factory is not dataclasses.MISSING:
        value = spec_field.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "its section's defaults"
    return f"`{json.dumps(value, ensure_ascii=False, default=list)}`"


def range_text(spec_field: dataclasses.Field) -> str:
    bounds = spec_field.metadata.get("range")
    if not bounds:
        return ""
    low, high, low_open = bounds

    def number(value: float) -> str:
        return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"

    return f"{'>' if low_open else '≥'} {number(low)}, ≤ {number(high)}" if low is not None else f"≤ {number(high)}"


def render() -> str:
    lines = ["# Spec field reference", "",
             "Generated from `engine/contract/spec.py` by `make docs` (a test keeps this page equal to the code). "
             "How specs are written, grids and hypotheses: [specs.md](specs.md).", ""]
    for prefix, section in SECTIONS:
        hints = typing.get_type_hints(section)
        comments = field_comments(section)
        title = prefix.rstrip(".") or "top level"
        lines += [f"## `{title}`", ""]
        doc = inspect.getdoc(section)
        if doc and section.__doc__ and not doc.startswith(section.__name__ + "("):
            lines += [" ".join(doc.split()), ""]
        lines += ["| field | values | default | range | meaning |", "|---|---|---|---|---|"]
        for spec_field in dataclasses.fields(section):
            hint = hints[spec_field.name]
            nested = dataclasses.is_dataclass(hint)
            meaning = comments.get(spec_field.name, "")
            if nested:
                meaning = meaning or f"see `{prefix}{spec_field.name}` below"
            lines.append(f"| `{prefix}{spec_field.name}` | {type_text(hint)} | {default_text(spec_field)} | "
                         f"{range_text(spec_field)} | {meaning.replace('|', chr(92) + '|')} |")
        lines.append("")
    return "\n".join(lines)
