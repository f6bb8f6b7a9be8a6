"""Simulated studies with known seed and question variance: how often each test calls a null
difference significant, and how often it finds a real one.

A simulated arm's score on question q from the run with seed s is

    y = 0.5 + question[q] + arm_question[arm, q] + seed[arm, s] + noise[arm, s, q]

(a per-question base shared by every arm, a per-question arm effect, a per-seed shift, and
per-run-per-question noise — what real runs look like). Under the null the two arms have the
same mean; with `effect` the second is better by that much. `rates` runs the crossed test
(engine.parent.significance) and the old test, a paired t-test over per-question scores
averaged over seeds, on the same studies. The suite checks the crossed test's false-positive
rate; `benchmarks/inference_calibration.py` prints the table the README quotes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.parent.significance import Arm, crossed_test


@dataclass(frozen=True)
class Scenario:
    """Standard deviations of the simulated components, in metric units."""

    question: float = 0.25
    arm_question: float = 0.03
    seed: float = 0.01
    noise: float = 0.12
    units: int = 100


def simulate(scenario: Scenario, seeds: int, effect: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One study: two arms' (seeds, units) scores."""
    base = rng.normal(0, scenario.question, scenario.units)
    arms = []
    for shift in (0.0, effect):
        arm_question = rng.normal(0, scenario.arm_question, scenario.units)
        seed_shift = rng.normal(0, scenario.seed, (seeds, 1))
        noise = rng.normal(0, scenario.noise, (seeds, scenario.units))
        arms.append(0.5 + shift + base + arm_question + seed_shift + noise)
    return arms[0], arms[1]


DF_RULES = {"crossed": "shrunk", "crossed, Satterthwaite df": "satterthwaite", "crossed, run df": "runs"}


def rates(scenario: Scenario, seeds: int, studies: int, effect: float = 0.0, level: float = 0.05,
          seed: int = 0) -> dict[str, float]:
    """{test: share of `studies` it called significant at `level}`: the crossed test (and the
    same with each end of its degrees of freedom), and the old seed-averaged test."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    rejected = {**dict.fromkeys(DF_RULES, 0), "seed-averaged t": 0}
    for _ in range(studies):
        first, second = simulate(scenario, seeds, effect, rng)
        for name, rule in DF_RULES.items():
            rejected[name] += crossed_test(Arm(first), Arm(second), df_rule=rule).p < level
        rejected["seed-averaged t"] += stats.ttest_rel(second.mean(0), first.mean(0)).pvalue < level
    return {test: count / studies for test, count in rejected.items()}


def monte_carlo_error(rate: float, studies: int) -> float:
    """The standard error of a rate estimated from `studies` simulations."""
    return float(np.sqrt(rate * (1 - rate) / studies))
