"""`hbt-tui plan`: the study a wanted effect needs, sized from a pilot.

A pilot's runs give, for every hypothesis of the family, the variance components of its
comparison (engine.parent.power): how much a run moves with its seed, and how much the
per-question difference between the arms varies. From them: the power the pilot's design has,
the seeds per trained arm and the question ids that reach the wanted power, and the cheapest
design (seeds × ids) that reaches it for every hypothesis at once, costed with the pilot's own
run times (training, and evaluation scaled with the number of ids). With `budget_hours`, also
the design that fits that budget and the smallest effect it detects per hypothesis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.contract.errors import RunError
from engine.contract.events import EvalDone, Started, Step, read_events
from engine.parent.power import Components, MAX_SEEDS, detectable_effect, power, seeds_needed, units_needed

# question ids a LAReQA dataset holds (../shared/data/README): the most a slice can take
QUESTION_IDS = {"xquad-r": 1190, "mlqa-r": 1148}
ID_STEPS = (50, 100, 150, 200, 300, 400, 600, 800, 1000)


@dataclass(frozen=True)
class RunCost:
    train_seconds: float
    eval_seconds: float


def run_cost(folder) -> RunCost | None:
    """Seconds a finished run spent training (started to its last step) and evaluating after it."""
    events = read_events(folder.events)
    started = next((event.time for event in events if isinstance(event, Started)), None)
    steps = [event.time for event in events if isinstance(event, Step)]
    done = [event.time for event in events if isinstance(event, EvalDone)]
    if started is None or not done:
        return None
    end_of_training = steps[-1] if steps else started
    return RunCost(max(end_of_training - started, 0.0), max(done[-1] - end_of_training, 0.0))


def pilot_costs(arms: list) -> dict[str, RunCost]:
    """{arm label: mean cost of one run} over the arm's finished runs."""
    found = {}
    for arm in arms:
        costs = [cost for run in arm.system.runs if (cost := run_cost(run.folder)) is not None]
        if costs:
            found[arm.label] = RunCost(sum(c.train_seconds for c in costs) / len(costs),
                                       sum(c.eval_seconds for c in costs) / len(costs))
    return found


def design_seconds(arms: set[str], fixed: set[str], costs: dict[str, RunCost], seeds: int, units: int,
                   pilot_units: int) -> float:
    """Run time of a study of `seeds` runs per trained arm over `units` ids (evaluation scaled
    linearly with the ids: queries and candidates both grow with them)."""
    total = 0.0
    for label in arms:
        cost = costs.get(label)
        if cost is None:
            continue
        runs = 1 if label in fixed else seeds
        total += runs * (cost.train_seconds + cost.eval_seconds * units / pilot_units)
    return total


def plan(family: dict, arms: list, effect: float, wanted: float, available: int,
         budget_hours: float | None = None) -> dict:
    """Per hypothesis: power now, seeds and ids needed; the cheapest design for all; the design a budget buys."""
    items = family["items"]
    untested = [item["id"] for item in items if item["kind"] == "untested"]
    if untested:
        raise RunError(f"hypothesis {untested[0]}: its arms have no common scores in the pilot")
    single = [item for item in items if item["kind"] != "methods"]
    if single:
        item = single[0]
        lonely = item["reference"] if item["seeds"][0] < 2 and not item["fixed"][0] else item["baseline"]
        raise RunError(f"plan needs seed variance: arm {lonely!r} has a single run (hypothesis {item['id']}); "
                       "run a pilot with >= 2 seeds per trained arm")
    level = family["power_level"]
    rows = []
    for item in items:
        components = Components(**item["components"], fixed=(item["fixed"][1], item["fixed"][0]))
        seeds = min(count for count, fixed in zip(item["seeds"], item["fixed"]) if not fixed)
        target = item["margin"] if item["direction"] in (">=", "<=") else effect
        rows.append({"id": item["id"], "claim": item["claim"], "components": components, "effect": target,
                     "seeds": seeds, "units": item["units"],
                     "power": power(components, seeds, item["units"], target, level),
                     "detectable": detectable_effect(components, seeds, item["units"], level, wanted),
                     "seeds_needed": seeds_needed(components, item["units"], target, level, wanted),
                     "seeds_needed_all_ids": seeds_needed(components, available, target, level, wanted),
                     "units_needed": units_needed(components, seeds, target, level, available, wanted),
                     "arms": {item["reference"], item["baseline"]},
                     "fixed": {label for label, fixed in zip((item["reference"], item["baseline"]), item["fixed"])
                               if fixed}})
    costs = pilot_costs(arms)
    arm_labels = set().union(*(row["arms"] for row in rows))
    fixed = set().union(*(row["fixed"] for row in rows))
    pilot_units = max(row["units"] for row in rows)
    candidates = sorted({pilot_units, available, *(units for units in ID_STEPS if units < available)})

    def meets(seeds: int, units: int) -> bool:
        return all(power(row["components"], seeds, units, row["effect"], level) >= wanted for row in rows)

    best = None
    for units in candidates:
        low = next((seeds for seeds in range(2, MAX_SEEDS + 1) if meets(seeds, units)), None)
        if low is not None:
            seconds = design_seconds(arm_labels, fixed, costs, low, units, pilot_units)
            if best is None or seconds < best["seconds"]:
                best = {"seeds": low, "units": units, "seconds": seconds}
    fitting = None
    if budget_hours is not None:
        budget = budget_hours * 3600
        for units in candidates:
            for seeds in range(2, MAX_SEEDS + 1):
                seconds = design_seconds(arm_labels, fixed, costs, seeds, units, pilot_units)
                if seconds > budget:
                    break
                worst = max(detectable_effect(row["components"], seeds, units, level, wanted) for row in rows)
                if fitting is None or worst < fitting["worst"]:
                    fitting = {"seeds": seeds, "units": units, "seconds": seconds, "worst": worst}
        if fitting is not None:
            fitting["detectable"] = {row["id"]: detectable_effect(row["components"], fitting["seeds"],
                                                                  fitting["units"], level, wanted) for row in rows}
    return {"rows": rows, "level": level, "wanted": wanted, "effect": effect, "available": available,
            "costs": costs, "arms": sorted(arm_labels), "best": best, "fitting": fitting,
            "pilot_units": pilot_units,
            "pilot_seconds": design_seconds(arm_labels, fixed, costs, min(row["seeds"] for row in rows),
                                            pilot_units, pilot_units)}


def hours(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "–"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
