"""Averages over languages: per-query values to per-language means, languages to macro and
group rows. The files these land in are `engine.contract.results`."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from engine.contract.layout import SETTINGS


def mean_metrics(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.mean(values)) if len(values) else float("nan") for name, values in per_query.items()}


def average_rows(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Macro average of metric dicts, ignoring NaN."""
    rows = list(rows)
    names = {name for row in rows for name in row}
    averaged = {}
    for name in sorted(names):
        values = [row[name] for row in rows if name in row and not math.isnan(row[name])]
        averaged[name] = float(np.mean(values)) if values else float("nan")
    return averaged


def summarise(per_language: dict[str, dict], groups: dict[str, tuple[str, ...]]) -> tuple[dict, dict, float | None]:
    """Macro averages over all languages and over each group, plus the mean language bias."""
    def over(languages: Iterable[str]) -> dict[str, dict[str, float]]:
        chosen = [per_language[lang] for lang in languages if lang in per_language]
        return {setting: average_rows(row["settings"][setting] for row in chosen if setting in row["settings"])
                for setting in SETTINGS if any(setting in row["settings"] for row in chosen)}

    macro = over(per_language)
    group_rows = {name: {"languages": list(members), **over(members)} for name, members in groups.items()}
    biases = [row["bias"] for row in per_language.values() if row.get("bias") is not None]
    bias = float(np.mean(biases)) if biases else None
    for name, members in groups.items():
        member_bias = [per_language[lang]["bias"] for lang in members
                       if lang in per_language and per_language[lang].get("bias") is not None]
        group_rows[name]["bias"] = float(np.mean(member_bias)) if member_bias else None
    return macro, group_rows, bias
