"""Significance that holds for retrieval over translated questions.

On XQuAD-R and MLQA-R the queries of different languages are translations of one question,
so they are not independent. The unit of every test is therefore the question:

- a language's cell pairs that language's queries (one per question id);
- a group or macro row first averages each question id over the row's languages, then pairs
  question ids. Each language is weighted by 1 / (its number of questions), so the mean of
  the units is exactly the row's value (the mean over languages of the per-language means):
  what is shown and what is tested are the same number.

Tests come from scipy: the paired t-test (`ttest_rel`) or a paired randomisation test
(`permutation_test` with sign flips within pairs, seeded, >= 1,000 resamples). A comparison
tests a family of cells; p-values are corrected over the family with Holm (default) or
Benjamini-Hochberg (`statsmodels.multipletests`). Effects get 95 % confidence intervals from
a seeded paired bootstrap over question ids (`scipy.stats.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.contract.errors import RunError

TESTS = {"t": "paired t-test", "permutation": "paired randomisation test"}
CORRECTIONS = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no correction"}
MIN_PERMUTATIONS = 1000


@dataclass(frozen=True)
class Significance:
    test: Literal["t", "permutation"] = "t"
    correction: Literal["holm", "bh", "none"] = "holm"
    permutations: int = 10_000
    bootstrap: int = 5_000
    alpha: float = 0.05
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise RunError(f"--test must be one of {', '.join(TESTS)}, got {self.test!r}")
        if self.correction not in CORRECTIONS:
            raise RunError(f"--correction must be one of {', '.join(CORRECTIONS)}, got {self.correction!r}")
        if self.permutations < MIN_PERMUTATIONS:
            raise RunError(f"--permutations must be at least {MIN_PERMUTATIONS:,}, got {self.permutations}")

    def footnote(self, family: int, seeds: bool = False) -> str:
        corrected = ("uncorrected" if self.correction == "none"
                     else f"{CORRECTIONS[self.correction]}-corrected over the {family} cells of this comparison")
        resamples = f" ({self.permutations:,} permutations, seed {self.seed})" if self.test == "permutation" else ""
        text = (f"* p < {self.alpha:g}, {corrected}; {TESTS[self.test]}{resamples} with the question as the unit "
                "(a language's cell pairs its queries; group and macro rows pair question ids averaged over the "
                "row's languages)")
        if seeds:
            text += "; values are means ± sd over seeds, tests pair per-question scores averaged over seeds"
        return text


def question_units(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{question id: unit value} for a group or macro row from {language: {question id: score}}:
    each language weighted by 1 / its number of questions, so that the units' mean is the
    mean over languages of the per-language means."""
    languages = [language for language, per_question in scores.items() if per_question]
    if not languages:
        return {}
    questions = {qid for language in languages for qid in scores[language]}
    scale = len(questions) / len(languages)
    units = dict.fromkeys(questions, 0.0)
    for language in languages:
        weight = scale / len(scores[language])
        for qid, score in scores[language].items():
            units[qid] += weight * score
    return units


def paired_p(first: np.ndarray, second: np.ndarray, settings: Significance) -> float | None:
    """Two-sided p-value that the mean paired difference is zero (None with fewer than 2 pairs)."""
    from scipy import stats

    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    differences = second - first
    if len(differences) < 2:
        return None
    if np.all(differences == differences[0]):
        return 1.0 if differences[0] == 0 else 0.0
    if settings.test == "t":
        return float(stats.ttest_rel(second, first).pvalue)

    def mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(y - x, axis=axis)

    result = stats.permutation_test((first, second), mean_difference, permutation_type="samples",
                                    vectorized=True, n_resamples=settings.permutations,
                                    alternative="two-sided", random_state=settings.seed)
    return float(result.pvalue)


def correct(p_values: list[float], settings: Significance) -> list[float]:
    """The family's p-values adjusted for multiplicity (Holm, Benjamini-Hochberg or none)."""
    if not p_values or settings.correction == "none":
        return list(p_values)
    from statsmodels.stats.multitest import multipletests

    method = {"holm": "holm", "bh": "fdr_bh"}[settings.correction]
    return [float(value) for value in multipletests(p_values, alpha=settings.alpha, method=method)[1]]


def mean_ci(values: np.ndarray, settings: Significance) -> tuple[float, float] | None:
    """A percentile bootstrap CI of the mean (of paired differences, or of scores), seeded."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return None
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = stats.bootstrap((values,), np.mean, confidence_level=settings.confidence, n_resamples=settings.bootstrap,
                             method="percentile", random_state=settings.seed, vectorized=True)
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)
