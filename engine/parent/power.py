"""Power of the crossed test, and the design a wanted effect needs.

The variance of an arm difference in a study with `seeds` runs per trained arm and `units`
question ids is, in the components `engine.parent.significance.MeanSquares` estimates,

    Var(Δ) = k·σ²_seed + (2σ²_arm:question + k·σ²_res) / Q,   k = Σ 1 / seeds over trained arms,

so seeds buy down the first term and question ids the second. `power` plugs the expected mean
squares of a design into the same variance and degrees of freedom the test uses and reads the
power off the noncentral t distribution (scipy). It assumes the per-question components stay
what the pilot measured when ids are added (a larger slice also adds candidates, which can
move them: the plan says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.parent.significance import MeanSquares

MAX_SEEDS = 200


@dataclass(frozen=True)
class Components:
    """What a pilot measured for one comparison: σ²_seed, 2σ²_arm:question and σ²_res, and
    which of the two arms are fixed (a zero-shot model has no seeds)."""

    seed: float
    interaction: float
    residual: float
    fixed: tuple[bool, bool] = (False, False)

    @classmethod
    def of(cls, squares: MeanSquares, fixed: tuple[bool, bool]) -> Components:
        return cls(squares.seed_variance, squares.interaction_variance, squares.residual, fixed)

    def expected(self, seeds: int, units: int) -> MeanSquares:
        """The mean squares a design of `seeds` runs per trained arm and `units` ids would show."""
        random = [seeds for fixed in self.fixed if not fixed]
        k = sum(1 / count for count in random)
        runs_df = sum(count - 1 for count in random)
        return MeanSquares(runs=self.seed + self.residual / units, runs_df=runs_df,
                           differences=self.interaction + k * self.residual, residual=self.residual,
                           residual_df=runs_df * (units - 1), units=units, k=k, seeds=tuple(random))


def power(components: Components, seeds: int, units: int, effect: float, level: float) -> float:
    """The probability that the two-sided crossed test at `level` rejects for a true Δ = effect."""
    from scipy import stats

    squares = components.expected(seeds, units)
    variance, df = squares.variance(), squares.df()
    if variance <= 0:
        return 1.0 if effect else level
    noncentrality = abs(effect) / math.sqrt(variance)
    critical = float(stats.t.ppf(1 - level / 2, df))
    found = float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))
    if not math.isfinite(found):             # far in the tail scipy's nct gives NaN: the normal limit
        found = float(stats.norm.sf(critical - noncentrality) + stats.norm.cdf(-critical - noncentrality))
    return min(max(found, 0.0), 1.0)


def detectable_effect(components: Components, seeds: int, units: int, level: float, wanted: float = 0.8) -> float:
    """The smallest |Δ| the design detects with probability `wanted` at `level`."""
    from scipy import optimize

    squares = components.expected(seeds, units)
    if squares.variance() <= 0:                  # nothing varies: any difference is seen
        return 0.0
    scale = math.sqrt(squares.variance())
    if power(components, seeds, units, 40 * scale, level) < wanted:
        return math.inf
    return float(optimize.brentq(lambda effect: power(components, seeds, units, effect, level) - wanted,
                                 1e-12, 40 * scale, xtol=1e-9))


def seeds_needed(components: Components, units: int, effect: float, level: float, wanted: float = 0.8) -> int | None:
    """The fewest seeds per trained arm (>= 2) that reach `wanted` power with `units` ids, or None."""
    if all(components.fixed):
        return None
    for seeds in range(2, MAX_SEEDS + 1):
        if power(components, seeds, units, effect, level) >= wanted:
            return seeds
    return None


def units_needed(components: Components, seeds: int, effect: float, level: float, available: int,
                 wanted: float = 0.8) -> int | None:
    """The fewest question ids (up to `available`) that reach `wanted` power with `seeds` seeds, or None."""
    if power(components, seeds, available, effect, level) < wanted:
        return None
    low, high = 2, available
    while low < high:                               # power grows with the ids: bisect
        middle = (low + high) // 2
        if power(components, seeds, middle, effect, level) >= wanted:
            high = middle
        else:
            low = middle + 1
    return low
