"""The study's confirmatory hypotheses: which they are, each tested once with both sources of
variance, the correction over that family alone, the power each test had, and the answer.

The family is what the runs' spec declares under `hypotheses` (validated like every field).
Without one, it is the documented default: the research question — the reference (hybrid
α = 0.5) against each multitask arm on mAP@10 for the high- and the low-resource group in
each setting — and the paper's three headline claims on mAP (hybrid ≥ X-X in monolingual,
> X-X in cross-lingual, > X-Y in monolingual retrieval). Every other cell of a report is
exploratory. A claim about a method needs >= 2 seeds in each trained arm; with one run the
test compares two models and its verdict says so.
"""

from __future__ import annotations

from dataclasses import asdict

from engine.contract.arms import match_arm
from engine.contract.errors import RunError
from engine.contract.layout import SETTING_NAMES, SETTINGS
from engine.contract.spec import HypothesisSpec
from engine.contract.validation import parse_hypotheses
from engine.parent.compare import cell_test, unit_matrices
from engine.parent.power import Components, detectable_effect, power
from engine.parent.significance import Arm as Scores, Significance, correct, crossed_test

DEFAULT_EFFECT = 0.01
QUESTION_METRIC = "map@10"         # the research question's metric
PAPER_METRIC = "map"               # the paper reports LAReQA's mAP
PAPER_CLAIMS = (("X-X", "mono", ">=", "{reference} ≥ X-X in monolingual retrieval"),
                ("X-X", "cross", ">", "{reference} > X-X in cross-lingual retrieval"),
                ("X-Y", "mono", ">", "{reference} > X-Y in monolingual retrieval"))


def declared(arms: list) -> list[HypothesisSpec]:
    """The hypotheses the runs' specs declare (one family: runs that disagree are refused)."""
    found: dict[tuple[str, str], HypothesisSpec] = {}      # an id per dataset: a replication repeats its ids
    for arm in arms:
        for run in arm.system.runs:
            for hypothesis in read_hypotheses(run.spec.get("hypotheses") or [], f"{run.id}/spec.json"):
                if found.setdefault((hypothesis.id, hypothesis.dataset), hypothesis) != hypothesis:
                    raise RunError(f"the runs declare hypothesis {hypothesis.id} differently ({run.id}); "
                                   "report runs of one study, or give --hypotheses FILE")
    return list(found.values())


def read_hypotheses(data, source: str) -> tuple[HypothesisSpec, ...]:
    """Validated hypotheses from a list (or a spec document holding one): one error line if bad."""
    from engine.contract.errors import SpecError

    if isinstance(data, dict):
        data = data.get("hypotheses")
    try:
        return parse_hypotheses(data, source)
    except SpecError as error:
        raise RunError(f"{source}: {error.lines()[0]}") from None


def default_family(arms: list, reference: str, dataset: str, metrics: list[str], groups: dict) -> list[HypothesisSpec]:
    """The research question and the paper's headline claims, for the arms these runs have."""
    labels = [arm.label for arm in arms]
    question_metric = QUESTION_METRIC if QUESTION_METRIC in metrics else metrics[0]
    paper_metric = PAPER_METRIC if PAPER_METRIC in metrics else metrics[0]
    family = []
    for label in (label for arm, label in zip(arms, labels) if arm.kind == "multitask"):
        for group in (name for name in ("high", "low") if name in groups):
            for setting in SETTINGS:
                family.append(HypothesisSpec(
                    f"Q{len(family) + 1}", f"{reference} > {label} ({group}-resource, {SETTING_NAMES[setting]})",
                    reference, label, dataset, question_metric, setting, group))
    for number, (baseline, setting, sense, claim) in enumerate(PAPER_CLAIMS, start=1):
        if match_arm(baseline, labels):
            family.append(HypothesisSpec(f"P{number}", claim.format(reference=reference), reference, baseline,
                                         dataset, paper_metric, setting, "all", sense))
    return family


def _arm(arms: list, wanted: str, hypothesis: HypothesisSpec, role: str):
    label = match_arm(wanted, [arm.label for arm in arms])
    if label is None:
        raise RunError(f"hypothesis {hypothesis.id}: {role} {wanted!r} is not an arm of these runs "
                       f"(arms: {', '.join(arm.label for arm in arms)})")
    return next(arm for arm in arms if arm.label == label)


def _members(hypothesis: HypothesisSpec, section: dict) -> list[str]:
    if hypothesis.group == "all":
        return list(section["languages"])
    if hypothesis.group in section["groups"]:
        return list(section["groups"][hypothesis.group])
    if hypothesis.group in section["languages"]:
        return [hypothesis.group]
    raise RunError(f"hypothesis {hypothesis.id}: group {hypothesis.group!r} is not defined on {hypothesis.dataset} "
                   f"(groups: {', '.join(['all', *section['groups']])}, or a language)")


def check(hypothesis: HypothesisSpec, sections: dict) -> dict:
    section = sections.get(hypothesis.dataset)
    if section is None:
        raise RunError(f"hypothesis {hypothesis.id}: these runs were not evaluated on {hypothesis.dataset} "
                       f"(they have {', '.join(sections)})")
    if hypothesis.metric not in section["evaluated"] and hypothesis.metric != "bias":
        raise RunError(f"hypothesis {hypothesis.id}: metric {hypothesis.metric!r} was not evaluated on "
                       f"{hypothesis.dataset} (metrics: {', '.join(section['evaluated'])})")
    return section


def judge_hypothesis(hypothesis: HypothesisSpec, arms: list, section: dict, test: Significance) -> dict:
    """One hypothesis: Δ = reference - baseline, its test and CI, and the components it came from."""
    reference, baseline = _arm(arms, hypothesis.reference, hypothesis, "reference"), \
        _arm(arms, hypothesis.baseline, hypothesis, "baseline")
    members = _members(hypothesis, section)
    order, (base, ours) = unit_matrices([baseline.system, reference.system], hypothesis.dataset, members,
                                        hypothesis.setting, hypothesis.metric)
    item = {**asdict(hypothesis), "direction": hypothesis.sense, "reference": reference.label,
            "baseline": baseline.label, "units": len(order), "seeds": [ours.shape[0], base.shape[0]],
            "fixed": [reference.system.fixed, baseline.system.fixed], "p": None, "se": None, "df": None,
            "components": None, "seed_share": None, "ci": None}
    if len(order) < 2:                 # a partial report: these arms have no common scores yet
        item.update(kind="untested", delta=None)
        return item
    p, ci, kind = cell_test(baseline.system, base, reference.system, ours, test, with_ci=True)
    item.update(kind=kind, delta=float(ours.mean() - base.mean()), ci=list(ci) if ci else None, p_two_sided=p)
    if kind == "methods":
        result = crossed_test(Scores(base, baseline.system.fixed), Scores(ours, reference.system.fixed),
                              test.confidence)
        components = Components.of(result.squares, (baseline.system.fixed, reference.system.fixed))
        item.update(se=result.se, df=result.df, seed_share=result.seed_share,
                    components={"seed": components.seed, "interaction": components.interaction,
                                "residual": components.residual})
        if hypothesis.sense in (">=", "<="):           # not worse by more than the margin: one-sided
            from scipy import stats

            sign = 1 if hypothesis.sense == ">=" else -1
            shifted = (sign * item["delta"] + hypothesis.margin) / result.se if result.se > 0 else float("inf")
            p = float(min(1.0, 2 * stats.t.sf(shifted, result.df)))     # = the two-sided CI bound test
    item["p"] = p
    return item


def verdict_of(item: dict, level: float) -> str:
    if item["kind"] == "untested":
        return "not tested (no common scores)"
    significant = item["p_adjusted"] is not None and item["p_adjusted"] < level
    sense, delta = item["direction"], item["delta"]
    if item["kind"] == "models":
        return "models differ (one seed per arm)" if significant else "no difference between these models"
    if sense in (">=", "<="):
        return "supported" if significant else "not shown"
    if not significant:
        return "not significant"
    if sense == "!=":
        return "differs"
    return "supported" if (delta > 0) == (sense == ">") else "contradicted"


def evaluate(arms: list, sections: dict, reference: str, test: Significance, hypotheses: list[HypothesisSpec] | None,
             effect: float = DEFAULT_EFFECT) -> dict:
    """The family's table: every hypothesis tested, corrected over the family, its power and verdict."""
    source = "declared" if hypotheses else "default"
    if not hypotheses:
        chosen = [name for name in sections if not name.endswith("miracl")] or list(sections)[:1]
        hypotheses = [hypothesis for dataset in chosen for hypothesis in
                      default_family(arms, reference, dataset, sections[dataset]["evaluated"],
                                     sections[dataset]["groups"])]
    if not hypotheses:
        raise RunError("no hypothesis can be tested: the family is empty (declare `hypotheses` in the spec, or "
                       "report runs that include a multitask, X-X or X-Y arm)")
    items = [judge_hypothesis(hypothesis, arms, check(hypothesis, sections), test) for hypothesis in hypotheses]
    datasets = list(dict.fromkeys(item["dataset"] for item in items))
    for dataset in datasets:        # one family per dataset: a replication is a study of its own
        tested = [item for item in items if item["p"] is not None and item["dataset"] == dataset]
        for item, adjusted in zip(tested, correct([item["p"] for item in tested], test)):
            item["p_adjusted"] = adjusted
    size = max(sum(item["dataset"] == dataset for item in items) for dataset in datasets)
    level = test.level / max(size, 1)       # Bonferroni: a floor on the power Holm has
    for item in items:
        item.setdefault("p_adjusted", None)
        item["verdict"] = verdict_of(item, test.level)
        item["power"] = item["detectable"] = None
        if item["kind"] == "methods":
            components = Components(**item["components"], fixed=(item["fixed"][1], item["fixed"][0]))
            seeds = min(count for count, fixed in zip(item["seeds"], item["fixed"]) if not fixed) \
                if not all(item["fixed"]) else 1
            wanted = item["margin"] if item["direction"] in (">=", "<=") else effect
            item["power"] = power(components, seeds, item["units"], wanted, level)
            item["detectable"] = detectable_effect(components, seeds, item["units"], level)
    return {"source": source, "effect": effect, "correction": test.correction, "level": test.level,
            "power_level": level, "items": items, "datasets": datasets}


def span(values: list[float], digits: int) -> str:
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}–{high}"


def _interval(item: dict) -> str:
    return f"[{item['ci'][0]:+.3f}, {item['ci'][1]:+.3f}]" if item.get("ci") else ""


DECIDED = ("supported", "contradicted", "differs", "models differ (one seed per arm)")


def agreement(family: dict) -> dict[str, list[str]]:
    """With two directions or more: the ids whose verdict is the same in every direction, and those
    where it is not."""
    verdicts: dict[str, dict[str, str]] = {}
    for item in family["items"]:
        verdicts.setdefault(item["id"], {})[item["dataset"]] = item["verdict"]
    found: dict[str, list[str]] = {"agree": [], "differ": []}
    for identifier, by_dataset in verdicts.items():
        if len(by_dataset) > 1:
            found["agree" if len(set(by_dataset.values())) == 1 else "differ"].append(identifier)
    return found


def answer_lines(family: dict) -> list[str]:
    """At most ten lines: the design, what is supported or contradicted (in which direction), what
    could not be told, and where the directions agree."""
    items = family["items"]
    several = len(family.get("datasets") or ()) > 1
    methods = [item for item in items if item["kind"] == "methods"]
    seeds = sorted({count for item in methods for count, fixed in zip(item["seeds"], item["fixed"]) if not fixed})
    units = sorted({item["units"] for item in items})
    correction = family["correction"].upper() if family["correction"] == "bh" else family["correction"].capitalize()
    per = f" within each of {len(family['datasets'])} directions ({', '.join(family['datasets'])})" if several else " over them alone"
    lines = [f"{len(items)} {family['source']} hypotheses, {correction}{per}; {'/'.join(map(str, seeds)) or 'one'} "
             f"seed(s) per trained arm × {'/'.join(map(str, units))} question ids; questions and seeds both enter every "
             "test."]
    decided = [item for item in items if item["verdict"] in DECIDED]
    for item in decided[:6]:
        where = f" on {item['dataset']}" if several else ""
        lines.append(f"{item['id']}{where} {item['verdict']}: {item['claim']} — {item['metric']} Δ {item['delta']:+.3f} "
                     f"{_interval(item)}, corrected p = {item['p_adjusted']:.2g}.")
    if len(decided) > 6:
        lines.append(f"… and {len(decided) - 6} more decided (the table above).")
    undecided = [item for item in items if item not in decided]
    if undecided:
        detectable = [item["detectable"] for item in undecided if item.get("detectable") not in (None, float("inf"))]
        powers = [item["power"] for item in undecided if item.get("power") is not None]
        names = list(dict.fromkeys(item["id"] for item in undecided))
        text = f"Not told apart from noise: {', '.join(names)}" + (" (in some direction)" if several else "")
        if powers and detectable:
            text += (f" (power to detect ±{family['effect']:g}: {span(powers, 2)}; smallest effect detectable at "
                     f"80 %: {span(detectable, 3)})")
        lines.append(text + ".")
    if several:
        found = agreement(family)
        lines.append(f"The directions agree on {len(found['agree'])} of {len(found['agree']) + len(found['differ'])} "
                     "hypotheses" + (f"; they differ on {', '.join(found['differ'])}." if found["differ"] else "."))
    if any(item["kind"] == "models" for item in items):
        lines.append("Arms with a single trained run compare these models only: no claim about a method is made "
                     "from one seed.")
    return lines[:10]
