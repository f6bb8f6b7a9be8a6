"""The compose form's model, derived from the spec's own dataclasses: one `Field` per leaf of
the spec a form can edit (its kind from the leaf's type), grouped in sections, with the
parsing of what a user types into a field or a grid builder's value list. No widgets here."""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from typing import Any, Literal

from engine.contract import catalog
from engine.contract.spec import LeafField, leaf_fields


@dataclass(frozen=True)
class Field:
    path: str
    label: str
    kind: str          # text | int | optional-int | float | optional-float | bool | select | multi | list
    choices: tuple = ()
    default: Any = None

    @property
    def widget_id(self) -> str:
        return "f-" + self.path.replace(".", "-").replace("_", "-")


SECTION_TITLES = {"": "experiment", "encoder": "encoder", "sampling": "batch sampling", "loss": "loss",
                  "train": "training", "eval": "evaluation"}
LABELS = {  # a friendlier label where the field name alone says too little
    "encoder.name": "encoder (bundled, hub name or path)",
    "sampling.alpha": "α: share of monolingual batches",
    "sampling.mono_weight": "multitask: mono weight",
    "sampling.cross_weight": "multitask: cross weight",
    "sampling.multitask_batch": "multitask: batch per objective",
    "loss.temperature": "InfoNCE temperature τ",
    "loss.symmetric": "symmetric term",
    "loss.hard_negatives": "hard negatives per query",
    "train.dataset": "training data",
    "train.languages": "training languages (none = all)",
    "train.max_questions": "questions per language (blank = all)",
    "train.lr": "learning rate",
    "eval.datasets": "evaluation datasets",
    "eval.languages": "evaluation languages (none = all)",
    "eval.max_queries": "queries per language (blank = all)",
}
CHOICES = {"train.dataset": tuple(catalog.LAREQA_DATASETS), "eval.datasets": catalog.known_datasets()}


def form_field(leaf: LeafField) -> Field | None:
    """The form field for one leaf of the spec, from its type; None where a form field would
    not help (the grid, language groups, a Hugging Face source: edit those in the JSON)."""
    hint, args = leaf.hint, typing.get_args(leaf.hint)
    optional = type(None) in args
    if optional:
        hint = next(arg for arg in args if arg is not type(None))
    origin = typing.get_origin(hint)
    label = LABELS.get(leaf.path, leaf.path.rsplit(".", 1)[-1].replace("_", " "))
    if leaf.path in CHOICES:
        return Field(leaf.path, label, "multi" if origin is tuple else "select", CHOICES[leaf.path])
    if hint is bool:
        return Field(leaf.path, label, "bool", default=leaf.default)
    if origin is Literal:
        return Field(leaf.path, label, "select", typing.get_args(hint))
    if hint in (int, float):
        return Field(leaf.path, label, ("optional-" if optional else "") + hint.__name__)
    if hint is str:
        return Field(leaf.path, label, "text")
    if origin is tuple:
        return Field(leaf.path, label, "multi" if leaf.path.endswith("languages") else "list")
    return None


def build_sections() -> list[tuple[str, list[Field]]]:
    sections: dict[str, list[Field]] = {}
    for leaf in leaf_fields():
        field = form_field(leaf)
        if field is not None:
            section = leaf.path.rpartition(".")[0]
            sections.setdefault(SECTION_TITLES.get(section, section), []).append(field)
    return list(sections.items())


SECTIONS = build_sections()
FIELDS = {field.path: field for _, fields in SECTIONS for field in fields}
GRID_FIELDS = ("sampling.alpha", "sampling.strategy", "train.seed", "loss.temperature", "train.lr",
               "train.batch_size", "loss.hard_negatives", "encoder.name")
DEFAULT_DOCUMENT = {"name": "my-experiment", "encoder": {"freeze_word_embeddings": True},
                    "train": {"steps": 100, "batch_size": 16, "lr": 3e-5},
                    "eval": {"datasets": ["xquad-r"], "max_queries": 100}}


def parse_value(text: str, kind: str) -> Any:
    """Numbers where they parse; otherwise the text, which the validator then names."""
    text = text.strip()
    if kind != "text" and not text:
        return None  # blank: the spec's default
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    number = {"int": int, "optional-int": int, "float": float, "optional-float": float}.get(kind)
    if number is not None:
        try:
            return number(text)
        except ValueError:
            return text
    return text


def parse_grid_values(text: str) -> list[Any]:
    values = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            values.append(json.loads(item))
        except ValueError:
            values.append(item)
    return values
