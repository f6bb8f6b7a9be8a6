"""Significance that holds for retrieval over translated questions trained with seeds.

Two sources of variance enter every comparison of trained arms:

- **questions**: on XQuAD-R and MLQA-R the queries of different languages are translations of
  one question, so the unit is the question. A language's cell pairs that language's queries
  (one per question id); a group or macro row first averages each question id over the row's
  languages, each language weighted by 1 / (its number of questions), so that the mean of the
  units is exactly the row's value: what is shown and what is tested are the same number.
- **training seeds**: a strategy is a method and its runs are draws over seeds. Comparing two
  arms that each have >= 2 seeds (`crossed_test`) treats questions and seeds as crossed random
  factors: the linear mixed model  y[arm, seed, question] = arm + question + arm:question +
  seed(arm) + residual,  whose REML estimates in this balanced design are the ANOVA (moment)
  estimators below, tested with a t statistic whose degrees of freedom are the geometric mean
  of Satterthwaite's and the run means' own (the small-sample correction: `MeanSquares.df`).
  The suite checks its false-positive rate by simulation and its estimate and standard error
  against statsmodels' MixedLM.

A zero-shot arm (the untrained encoder) is one deterministic model: it has no seed variance.
A trained arm with a single run cannot stand for its method: such comparisons are of *these
models* and use the question-level test (scipy's `ttest_rel`, or `permutation_test` with sign
flips, seeded); every footnote says which was used. p-values are corrected over a family with
Holm or Benjamini-Hochberg (`statsmodels.multipletests`); model comparisons get percentile
bootstrap CIs over questions (`scipy.stats.bootstrap`), method comparisons the t interval of
the crossed test.
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
MAX_PERMUTATIONS = 10_000_000
CROSSED = ("a mixed model with questions and training seeds as crossed random factors "
           "(t on small-sample degrees of freedom)")


@dataclass(frozen=True)
class Significance:
    """How cells are tested: the question-level test for model comparisons (`test`), the
    correction over a family, resamples, the significance `level` and the CI's confidence."""

    test: Literal["t", "permutation"] = "t"
    correction: Literal["holm", "bh", "none"] = "holm"
    permutations: int = 10_000
    bootstrap: int = 5_000
    level: float = 0.05
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise RunError(f"--test must be one of {', '.join(TESTS)}, got {self.test!r}")
        if self.correction not in CORRECTIONS:
            raise RunError(f"--correction must be one of {', '.join(CORRECTIONS)}, got {self.correction!r}")
        if self.permutations < MIN_PERMUTATIONS:
            raise RunError(f"--permutations must be at least {MIN_PERMUTATIONS:,}, got {self.permutations}")
        if self.permutations > MAX_PERMUTATIONS:
            raise RunError(f"--permutations must be at most {MAX_PERMUTATIONS:,}, got {self.permutations:,}")
        if not 0 <= self.seed < 2**32:
            raise RunError(f"--seed must be in [0, 2^32), got {self.seed}")

    def model_test_name(self) -> str:
        resamples = f" ({self.permutations:,} permutations, seed {self.seed})" if self.test == "permutation" else ""
        return TESTS[self.test] + resamples

    def footnote(self, family: int, kinds: set[str], family_name: str = "the cells of this comparison",
                 seeds: bool = False) -> str:
        """What a table's marks mean: the level, the family and its correction, the units and the
        test of each kind of cell in it ('methods': crossed test; 'models': question-level test)."""
        if family == 0:
            return "no cell could be tested: the runs have no per-question scores in common"
        corrected = ("uncorrected" if self.correction == "none"
                     else f"{CORRECTIONS[self.correction]}-corrected over the {family} {family_name}")
        parts = [f"* p < {self.level:g}, {corrected}"]
        if "methods" in kinds:
            parts.append(f"arms with >= 2 seeds: units are questions × training seeds, {CROSSED}")
        if "models" in kinds:
            parts.append(f"arms with one run: units are questions, {self.model_test_name()} — it compares these "
                         "trained models, not their methods (train >= 2 seeds per arm for that)")
        parts.append("a language's cell pairs its queries; group and macro rows pair question ids averaged over "
                     "the row's languages")
        if seeds:
            parts.append("values are means ± sd over seeds")
        return "; ".join(parts)


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


def correct(p_values: list[float], settings: Significance, method: str | None = None) -> list[float]:
    """The family's p-values adjusted for multiplicity (Holm, Benjamini-Hochberg or none)."""
    method = method or settings.correction
    if not p_values or method == "none":
        return list(p_values)
    from statsmodels.stats.multitest import multipletests

    return [float(value) for value in multipletests(p_values, alpha=settings.level,
                                                    method={"holm": "holm", "bh": "fdr_bh"}[method])[1]]


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


# --- two sources of variance: questions x training seeds -----------------------------------------

@dataclass(frozen=True)
class Arm:
    """One arm's scores in a comparison: (runs, units) in a shared unit order. `fixed` marks a
    deterministic model (the untrained encoder), whose single run has no seed variance."""

    scores: np.ndarray
    fixed: bool = False

    @property
    def random(self) -> bool:
        return not self.fixed


@dataclass(frozen=True)
class MeanSquares:
    """The pieces of the crossed design, pooled over the arms that have seed variance.

    runs:        variance of the run means within an arm (df: seeds - 1 per arm), E = σ²_seed + σ²_res / Q
    differences: variance over units of the per-unit difference of arm means (df: Q - 1),
                 E = 2σ²_arm:question + k σ²_res
    residual:    seed × unit interaction within an arm (df: (seeds - 1)(Q - 1) per arm), E = σ²_res
    k:           the sum of 1 / seeds over the arms with seed variance
    """

    runs: float
    runs_df: int
    differences: float
    residual: float
    residual_df: int
    units: int
    k: float
    seeds: tuple[int, ...]

    @property
    def seed_variance(self) -> float:
        """σ²_seed: how much a run's mean moves with its seed beyond the question sampling."""
        return max(self.runs - self.residual / self.units, 0.0) if self.runs_df else 0.0

    @property
    def interaction_variance(self) -> float:
        """2σ²_arm:question: the per-question difference between the arms that no seed explains."""
        return max(self.differences - self.k * self.residual, 0.0)

    def terms(self) -> list[tuple[float, float, int]]:
        """Var(Δ) as a sum of (coefficient, mean square, df): k·runs + (differences - k·residual) / Q,
        the interaction part dropped when it estimates below zero."""
        terms = [(self.k, self.runs, self.runs_df)] if self.runs_df else []
        if self.differences > self.k * self.residual:
            terms.append((1 / self.units, self.differences, self.units - 1))
            if self.residual_df:
                terms.append((-self.k / self.units, self.residual, self.residual_df))
        return terms

    def variance(self) -> float:
        return max(sum(coefficient * square for coefficient, square, _ in self.terms()), 0.0)

    def satterthwaite_df(self) -> float:
        terms = self.terms()
        denominator = sum((coefficient * square) ** 2 / df for coefficient, square, df in terms if df)
        return float(self.variance() ** 2 / denominator) if denominator > 0 else float(self.units - 1)

    def df(self, rule: str = "shrunk") -> float:
        """The test's degrees of freedom: the geometric mean of Satterthwaite's and the run
        means' own (`shrunk`, the default). Satterthwaite alone is too liberal with few seeds
        when the arm × question variance is large; the run means' df alone too conservative
        (engine.parent.calibration shows both); the mean between keeps the level in each case
        simulated. `satterthwaite` and `runs` are the two ends, for that comparison."""
        satterthwaite = self.satterthwaite_df()
        if not self.runs_df or rule == "satterthwaite":
            return satterthwaite
        if rule == "runs":
            return float(self.runs_df)
        return float(np.sqrt(satterthwaite * self.runs_df)) if satterthwaite > self.runs_df else satterthwaite


def mean_squares(first: Arm, second: Arm) -> MeanSquares:
    units = first.scores.shape[1]
    random = [arm.scores for arm in (first, second) if arm.random]
    run_sum = sum(float(np.sum((scores.mean(1) - scores.mean()) ** 2)) for scores in random)
    runs_df = sum(scores.shape[0] - 1 for scores in random)
    residual_sum = sum(float(np.sum((scores - scores.mean(1, keepdims=True) - scores.mean(0, keepdims=True)
                                     + scores.mean()) ** 2)) for scores in random)
    residual_df = runs_df * (units - 1)
    differences = second.scores.mean(0) - first.scores.mean(0)                 # (units,)
    return MeanSquares(runs=run_sum / runs_df if runs_df else 0.0, runs_df=runs_df,
                       differences=float(np.var(differences, ddof=1)) if units > 1 else 0.0,
                       residual=residual_sum / residual_df if residual_df else 0.0, residual_df=residual_df,
                       units=units, k=sum(1 / scores.shape[0] for scores in random),
                       seeds=tuple(scores.shape[0] for scores in random))


@dataclass(frozen=True)
class CrossedTest:
    """Δ = second - first with both sources of variance in its standard error."""

    delta: float
    se: float
    df: float
    p: float
    ci: tuple[float, float]
    squares: MeanSquares

    @property
    def seed_share(self) -> float:
        """Share of Var(Δ) that comes from the seeds (the rest: the question sampling)."""
        variance = self.se ** 2
        return self.squares.k * self.squares.seed_variance / variance if variance > 0 else 0.0


def crossed_test(first: Arm, second: Arm, confidence: float = 0.95, df_rule: str = "shrunk") -> CrossedTest | None:
    """The test of two arms with questions and seeds as crossed random factors (None with
    fewer than 2 units). Every arm must have >= 2 runs or be fixed; two fixed arms reduce to
    the paired t-test over units. `df_rule` exists to compare the ends (MeanSquares.df)."""
    from scipy import stats

    for arm in (first, second):
        if arm.random and arm.scores.shape[0] < 2:
            raise ValueError("a trained arm needs at least 2 seeds for the crossed test")
    if first.scores.shape[1] < 2 or first.scores.shape[1] != second.scores.shape[1]:
        return None
    squares = mean_squares(first, second)
    delta = float(second.scores.mean() - first.scores.mean())
    variance, df = squares.variance(), squares.df(df_rule)
    if variance <= 0:
        p = 1.0 if delta == 0 else 0.0
        return CrossedTest(delta, 0.0, df, p, (delta, delta), squares)
    se = float(np.sqrt(variance))
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return CrossedTest(delta, se, df, p, (delta - half, delta + half), squares)


@dataclass(frozen=True)
class Decomposition:
    """One arm's scores split into their sources (sd in metric units, from a two-way ANOVA of
    runs × units): `seed` how a run's mean moves with its seed, `question` how questions
    differ, `residual` the seed × question part; `seed_share` of the variance of the arm's mean."""

    seed: float
    question: float
    residual: float
    seed_share: float
    seeds: int
    units: int


def decompose(scores: np.ndarray) -> Decomposition | None:
    """Variance components of one arm's (runs, units) scores (None with fewer than 2 of either)."""
    runs, units = scores.shape
    if runs < 2 or units < 2:
        return None
    residual = float(np.sum((scores - scores.mean(1, keepdims=True) - scores.mean(0, keepdims=True)
                             + scores.mean()) ** 2)) / ((runs - 1) * (units - 1))
    seed = max(float(np.var(scores.mean(1), ddof=1)) - residual / units, 0.0)
    question = max(float(np.var(scores.mean(0), ddof=1)) - residual / runs, 0.0)
    mean_variance = seed / runs + question / units + residual / (runs * units)
    return Decomposition(float(np.sqrt(seed)), float(np.sqrt(question)), float(np.sqrt(residual)),
                         seed / runs / mean_variance if mean_variance > 0 else 0.0, runs, units)
