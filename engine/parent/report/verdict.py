"""The verdict of a report, generated from its numbers: one sentence per claim of the paper and
per part of the research question, each saying supported / not supported / not significant
with the effect, its 95 % CI and the corrected p-value. It claims nothing its tests do not.

A directional claim ("hybrid beats X-X in multilingual retrieval") is *supported* when the
difference is significant in that direction after correction, *not supported* when it is
significant the other way, *not significant* otherwise. A claim of equality or of "matches"
is never called supported by a non-significant test: the sentence gives the CI instead.
"""

from __future__ import annotations

from engine.contract.layout import SETTING_NAMES


# The paper's claims on XQuAD-R (docs/method.md: XLM-R X-X .792/.674/.547, X-Y .755/.700/.593,
# hybrid .798/.705/.593, mAP mono/cross/multi; language bias X-X 410 -> hybrid 287).
PAPER_CLAIMS = (
    ("xx", "mono", ">=", "hybrid matches or beats X-X in monolingual retrieval", ".798 vs .792"),
    ("xx", "cross", ">", "hybrid beats X-X in cross-lingual retrieval", ".705 vs .674"),
    ("xx", "multi", ">", "hybrid beats X-X in multilingual retrieval", ".593 vs .547"),
    ("xy", "mono", ">", "hybrid beats X-Y in monolingual retrieval", ".798 vs .755"),
    ("xy", "cross", ">=", "hybrid matches or beats X-Y in cross-lingual retrieval", ".705 vs .700"),
    ("xy", "multi", "=", "hybrid matches X-Y in multilingual retrieval", ".593 vs .593"),
)


def _first(arms: list[dict], kind: str, label_prefix: str = "") -> dict | None:
    return next((arm for arm in arms if arm["kind"] == kind and arm["label"].startswith(label_prefix)), None)


def judge(cell: dict, direction: str) -> str:
    """supported / not supported / not significant for a cell holding baseline - reference."""
    if cell.get("p_adjusted") is None:
        return "not tested"
    gain = -cell["delta"]                                # the reference (hybrid) minus the baseline
    if not cell["significant"]:
        return "not significant"
    if cell.get("test") == "models":                     # one run per arm: never a claim about a method
        return "these models differ"
    if direction == "=":
        return "not supported"
    return "supported" if gain > 0 else "not supported"


def effect_text(cell: dict, metric: str, lower_is_better: bool = False) -> str:
    gain = -cell["delta"]
    ci = cell.get("ci")
    interval = f" [{-ci[1]:+.3f}, {-ci[0]:+.3f}]" if ci else ""
    p = cell.get("p_adjusted")
    p_text = f"p = {p:.2g} after correction" if p is not None else "untested"
    unit = "questions" if cell.get("units") else "queries"
    better = " (lower is better)" if lower_is_better else ""
    return f"{metric}{better} {gain:+.3f}{interval}, {p_text}, {cell.get('units', 0)} {unit}"


def claims_for(report: dict, dataset: str, metric: str) -> list[dict]:
    section = report["datasets"][dataset]
    tables = section["tables"].get(metric, {})
    arms = report["arms"]
    reference = report["reference"]
    verdicts = []

    def add(claim: str, source: str, baseline: dict | None, setting: str, direction: str, row: str = "all",
            table: dict | None = None, lower_is_better: bool = False) -> None:
        table = tables if table is None else table
        cells = (table.get(setting, {}) if table is tables else table).get(baseline["label"], {}) if baseline else {}
        cell = cells.get(row)
        if baseline is None or cell is None or cell.get("delta") is None:
            return
        verdict = judge({**cell, "delta": -cell["delta"]} if lower_is_better else cell, direction)
        verdicts.append({"dataset": dataset, "metric": metric if not lower_is_better else "language bias",
                         "setting": setting, "row": row, "claim": claim, "source": source, "verdict": verdict,
                         "gain": -cell["delta"],
                         "baseline": baseline["label"], "reference": reference,
                         "effect": effect_text(cell, metric if not lower_is_better else "bias", lower_is_better)})

    if dataset not in ("miracl", "hf:miracl"):
        for kind, setting, direction, claim, numbers in PAPER_CLAIMS:
            add(f"{claim.replace('hybrid', reference)}", f"paper: {numbers} (XLM-R, full XQuAD-R)",
                _first(arms, kind), setting, direction)
        if section.get("bias") and metric == section["metrics"][0]:
            add(f"{reference} has lower language bias than X-X", "paper: 410 vs 287 (XLM-R)",
                _first(arms, "xx"), "multi", ">", table=section["bias"], lower_is_better=True)
    else:
        add(f"{reference} matches X-X in monolingual MIRACL retrieval", "paper: nDCG@10 .405 vs .415 (XLM-R)",
            _first(arms, "xx"), "mono", "=")
    for arm in arms:
        if arm["kind"] == "multitask":
            for setting in tables:
                add(f"{reference} vs {arm['label']} in {SETTING_NAMES[setting]} retrieval",
                    "the research question", arm, setting, "?")
    return verdicts


def interaction_sentences(report: dict, dataset: str, metric: str) -> list[dict]:
    found = []
    for item in report["datasets"][dataset]["interactions"].get(metric, []):
        first, second = item["groups"]
        gains = f"{item['gain'][0]:+.3f} on {first}-, {item['gain'][1]:+.3f} on {second}-resource languages" \
            if first == "high" else f"{item['gain'][0]:+.3f} on {first}, {item['gain'][1]:+.3f} on {second} languages"
        ci = f" [{item['ci'][0]:+.3f}, {item['ci'][1]:+.3f}]" if item.get("ci") else ""
        if item["p_adjusted"] is None:
            continue
        verdict = ("these models differ" if item.get("test") == "models" else "differs") if item["significant"] \
            else "not significantly different"
        found.append({"dataset": dataset, "metric": metric, "setting": item["setting"], "verdict": verdict,
                      "claim": f"{report['reference']}'s gain over {item['baseline']} in {SETTING_NAMES[item['setting']]} "
                               f"retrieval, {first} vs {second}",
                      "effect": f"{metric} gain {gains}; difference {item['difference']:+.3f}{ci}, "
                                f"p = {item['p_adjusted']:.2g} after correction, {item['units']} questions"})
    return found


def verdict(report: dict) -> list[dict]:
    sentences = []
    for dataset, section in report["datasets"].items():
        for metric in section["metrics"]:
            sentences += claims_for(report, dataset, metric)
            sentences += interaction_sentences(report, dataset, metric)
    return sentences


def sentence(item: dict) -> str:
    label = item["verdict"]
    if item.get("source") == "the research question" and label not in ("not significant", "not tested",
                                                                        "these models differ"):
        label = f"{item['reference']} better" if item["gain"] > 0 else f"{item['reference']} worse"
    return f"**{label}** — {item['claim']} on {item['dataset']}: {item['effect']}" + (
        f" ({item['source']})" if item.get("source") and item["source"] != "the research question" else "")
