"""The arms of a study: what a run's spec makes it (X-X, X-Y, hybrid α, multitask, zero-shot),
named the way every table, verdict and hypothesis names it.

One declaration per strategy (`STRATEGIES`): its spec value, the arm kind the report orders
and compares by, its label and its place on the α axis (0 = X-Y, 1 = X-X), and what the
sampler and the step do with it (the batch kinds a step draws, the objectives' weights). A hypothesis names
arms by these labels; `match_arm` accepts the spellings a user types ("hybrid alpha=0.5",
"monolingual", "multitask full"). Stdlib only: the spec validator checks hypotheses with it.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# the spec fields that decide a run's arm (a grid over anything else keeps the arm)
ARM_FIELDS = ("sampling.strategy", "sampling.alpha", "sampling.cross_batch", "sampling.multitask_batch",
              "train.steps")


@dataclass(frozen=True)
class Strategy:
    """One batch-sampling strategy, everything that differs between them in one place: the
    report's arm (kind, label and place on the α axis, from a spec document's `sampling`
    section) and the training (from the parsed `SamplingSpec`): the batch kinds one step
    draws, which kinds it can draw at all (the sampler checks that the data can fill them),
    each objective's weight, and whether a step's batches share the batch size."""

    name: str                                       # sampling.strategy
    kind: str                                       # xx | xy | hybrid | multitask
    label: Callable[[dict], str]                    # from the spec's sampling section
    alpha: Callable[[dict], float | None]           # its place on the α axis
    draw: Callable[[Any, random.Random], tuple[str, ...]]   # one step's batch kinds ("mono", "cross")
    needs: Callable[[Any], frozenset[str]]          # the kinds it may draw
    weights: Callable[[Any], tuple[float, ...]] = lambda sampling: (1.0,)  # one per batch of a step
    halves: Callable[[Any], bool] = lambda sampling: False                 # each batch gets half the size
    words: str = ""                                 # what it does, in a sentence (the model card's)
    alpha_is_a_setting: bool = False                # α is this strategy's own parameter (shown beside it)


MONO, CROSS = "mono", "cross"
STRATEGIES = {strategy.name: strategy for strategy in (
    Strategy("monolingual", "xx", lambda sampling: "X-X", lambda sampling: 1.0,
             draw=lambda sampling, rng: (MONO,), needs=lambda sampling: frozenset({MONO}),
             words="monolingual batches only (X-X): every batch one language"),
    Strategy("crosslingual", "xy",
             lambda sampling: "X-Y" if sampling.get("cross_batch", "mixed") == "mixed" else "X-Y (one pair per batch)",
             lambda sampling: 0.0,
             draw=lambda sampling, rng: (CROSS,), needs=lambda sampling: frozenset({CROSS}),
             words="cross-lingual batches only (X-Y): each item its own pair of query and passage languages"),
    Strategy("hybrid", "hybrid", lambda sampling: f"hybrid α={float(sampling.get('alpha', 0.5)):g}",
             lambda sampling: float(sampling.get("alpha", 0.5)),
             draw=lambda sampling, rng: (MONO,) if rng.random() < sampling.alpha else (CROSS,),
             needs=lambda sampling: frozenset({MONO} if sampling.alpha > 0 else set())
             | frozenset({CROSS} if sampling.alpha < 1 else set()),
             words="hybrid batches: each batch monolingual with probability α, else cross-lingual (X-Y)",
             alpha_is_a_setting=True),
    Strategy("multitask", "multitask", lambda sampling: f"multitask ({sampling.get('multitask_batch', 'full')})",
             lambda sampling: None,
             draw=lambda sampling, rng: (MONO, CROSS), needs=lambda sampling: frozenset({MONO, CROSS}),
             weights=lambda sampling: (sampling.mono_weight, sampling.cross_weight),
             halves=lambda sampling: sampling.multitask_batch == "half",
             words="multitask: a monolingual and a cross-lingual batch every step, their losses weighted"),
)}
ZERO_SHOT_WORDS = "no training: the base encoder, evaluated zero-shot"


def alpha_text(strategy: str | None, alpha: float | None) -> str:
    """α beside a run's strategy where α is that strategy's setting (hybrid), else nothing."""
    known = STRATEGIES.get(strategy or "")
    return f"{alpha:g}" if known is not None and known.alpha_is_a_setting and alpha is not None else ""


KIND_ORDER = {"xx": 0, "xy": 1, "hybrid": 2, "multitask": 3, "zero-shot": 4, "other": 5}


@dataclass(frozen=True)
class ArmName:
    label: str
    kind: str
    alpha: float | None


def arm_name(spec: dict) -> ArmName:
    """The arm of a run from its (resolved or partial) spec document."""
    sampling = spec.get("sampling") or {}
    if (spec.get("train") or {}).get("steps") == 0:
        return ArmName("zero-shot", "zero-shot", None)
    strategy = STRATEGIES.get(sampling.get("strategy", "hybrid"))
    if strategy is None:
        return ArmName(str(sampling.get("strategy")), "other", None)
    return ArmName(strategy.label(sampling), strategy.kind, strategy.alpha(sampling))


def _normal(text: str) -> str:
    text = text.strip().lower().replace("alpha", "α").replace("_", " ")
    text = re.sub(r"\s*=\s*", "=", text)
    text = re.sub(r"\s+", " ", text)
    for spelled, label in (("monolingual", "x-x"), ("x-x-mono", "x-x"), ("crosslingual", "x-y"),
                           ("cross-lingual", "x-y"), ("zero shot", "zero-shot"), ("zeroshot", "zero-shot")):
        if text == spelled:
            return label
    match = re.fullmatch(r"multitask \(?(full|half)\)?", text)
    if match:
        return f"multitask ({match[1]})"
    match = re.fullmatch(r"hybrid(?: ?α=?)?([0-9.]+)", text)
    if match:
        return f"hybrid α={float(match[1]):g}"
    return text


def match_arm(wanted: str, labels: list[str]) -> str | None:
    """The label among `labels` that `wanted` names (exactly, or as its one normalised match)."""
    if wanted in labels:
        return wanted
    normal = _normal(wanted)
    exact = [label for label in labels if _normal(label) == normal]
    if len(exact) == 1:
        return exact[0]
    prefixed = [label for label in labels if _normal(label).startswith(normal)]
    return prefixed[0] if len(prefixed) == 1 else None


def grid_arms(document: dict, grid: dict | list | tuple | None) -> list[str]:
    """The arm labels a spec document's grid produces (the spec's own arm without a grid)."""
    grids = [] if not grid else [grid] if isinstance(grid, dict) else list(grid)
    if not grids:
        return [arm_name(document).label]
    labels: list[str] = []
    for sub_grid in grids:
        keys = [key for key in sub_grid if key in ARM_FIELDS]
        for values in itertools.product(*(sub_grid[key] for key in keys)):
            variant = {section: dict(value) if isinstance(value, dict) else value
                       for section, value in document.items()}
            for dotted, value in zip(keys, values):
                section, name = dotted.split(".")
                variant.setdefault(section, {})
                variant[section] = {**(variant[section] or {}), name: value}
            label = arm_name(variant).label
            if label not in labels:
                labels.append(label)
    return labels


def is_arm_label(text: str) -> bool:
    """Whether `text` names an arm some spec could make."""
    normal = _normal(text)
    return normal in ("x-x", "x-y", "x-y (one pair per batch)", "zero-shot", "multitask (full)",
                      "multitask (half)") or bool(re.fullmatch(r"hybrid α=[0-9.]+", normal))
