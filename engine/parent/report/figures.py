"""The report's figures, PNG through matplotlib's Agg backend, drawn from report.json alone:

- the α sweep: mono / cross / multi against α (0 = X-Y, 1 = X-X), seed bands, multitask and
  zero-shot as reference lines;
- per language, the reference's (hybrid's) gain over each baseline, significant ones marked;
- language bias by arm;
- the X×Y cross-lingual matrix of hybrid minus its best baseline, as a heat map;
- the learning curve (macro metric against the training step) of runs evaluated at several steps.
"""

from __future__ import annotations

import math
from pathlib import Path

from engine.parent.report.verdict import SETTING_NAMES

DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def saved(figure, folder: Path, name: str) -> str:
    """Lay the figure out, write it as `folder/name` and free it; its name."""
    figure.tight_layout()
    figure.savefig(folder / name, dpi=DPI)
    _plt().close(figure)
    return name


def _slug(text: str) -> str:
    return "".join(character if character.isalnum() else "-" for character in text).strip("-")


def alpha_points(report: dict, section: dict, metric: str, setting: str) -> list[tuple[float, float, float, str]]:
    """(α, mean, sd, arm) for X-Y, every hybrid α and X-X, in α order."""
    table = section["tables"][metric].get(setting, {})
    points = [(arm["alpha"], table[arm["label"]]["all"]["value"], table[arm["label"]]["all"].get("sd") or 0.0,
               arm["label"]) for arm in report["arms"]
              if arm["alpha"] is not None and arm["label"] in table and "all" in table[arm["label"]]]
    return sorted(points)


def alpha_sweep(report: dict, section: dict, metric: str, folder: Path) -> str | None:
    settings = [setting for setting in section["tables"][metric] if len(alpha_points(report, section, metric, setting)) >= 2]
    if not settings:
        return None
    plt = _plt()
    figure, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.6), squeeze=False)
    for axis, setting in zip(axes[0], settings):
        points = alpha_points(report, section, metric, setting)
        alphas, means, sds = [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]
        axis.plot(alphas, means, marker="o", color="#1f77b4", label="X-Y … hybrid … X-X")
        axis.fill_between(alphas, [m - s for m, s in zip(means, sds)], [m + s for m, s in zip(means, sds)],
                          color="#1f77b4", alpha=0.2, label="± sd over seeds")
        table = section["tables"][metric][setting]
        multitask_styles = [("--", "#d62728"), ("-.", "#ff7f0e"), ((0, (5, 1, 1, 1, 1, 1)), "#9467bd")]
        references = [(arm, *multitask_styles[index % len(multitask_styles)]) for index, arm in
                      enumerate(arm for arm in report["arms"] if arm["kind"] == "multitask")]
        references += [(arm, ":", "#7f7f7f") for arm in report["arms"] if arm["kind"] == "zero-shot"]
        for arm, style, color in references:     # each reference line its own style: full and half apart
            if arm["label"] in table and "all" in table[arm["label"]]:
                axis.axhline(table[arm["label"]]["all"]["value"], linestyle=style, linewidth=1.2, color=color,
                             label=arm["label"])
        axis.set_xticks([0, 0.25, 0.5, 0.75, 1])
        axis.set_xticklabels(["0\nX-Y", "0.25", "0.5", "0.75", "1\nX-X"])
        axis.set_title(SETTING_NAMES[setting])
        axis.set_xlabel("α (share of monolingual batches)")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    figure.suptitle(f"{section['dataset']} · {metric}: the α sweep")
    return saved(figure, folder, f"alpha-sweep-{_slug(section['dataset'])}-{_slug(metric)}.png")


def language_gains(report: dict, section: dict, metric: str, setting: str) -> dict[str, list[tuple[str, float, bool]]]:
    """{baseline: [(language, reference - baseline, significant)]}."""
    table = section["tables"][metric].get(setting, {})
    gains = {}
    for arm in report["arms"]:
        cells = table.get(arm["label"], {})
        if arm["kind"] in ("xx", "xy", "multitask") and cells:
            gains[arm["label"]] = [(language, -cells[language]["delta"], bool(cells[language]["significant"]))
                                   for language in section["languages"]
                                   if language in cells and cells[language].get("delta") is not None]
    return gains


def per_language_gains(report: dict, section: dict, metric: str, folder: Path) -> str | None:
    settings = [setting for setting in section["tables"][metric] if language_gains(report, section, metric, setting)]
    if not settings:
        return None
    plt = _plt()
    languages = section["languages"]
    figure, axes = plt.subplots(len(settings), 1, figsize=(max(6.0, 0.75 * len(languages) + 2), 2.6 * len(settings)),
                                squeeze=False)
    colours = ["#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
    for axis, setting in zip(axes[:, 0], settings):
        gains = language_gains(report, section, metric, setting)
        width = 0.8 / max(1, len(gains))
        for number, (baseline, values) in enumerate(gains.items()):
            positions = [languages.index(language) + (number - (len(gains) - 1) / 2) * width for language, _, _ in values]
            heights = [gain for _, gain, _ in values]
            from matplotlib.colors import to_rgba

            colour = colours[number % len(colours)]
            axis.bar(positions, heights, width=width, label=f"vs {baseline}",
                     color=[to_rgba(colour, 1.0 if significant else 0.35) for _, _, significant in values])
            for position, (_, gain, significant) in zip(positions, values):
                if significant:
                    axis.text(position, gain, "*", ha="center", va="bottom" if gain >= 0 else "top", fontsize=11)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xticks(range(len(languages)))
        axis.set_xticklabels(languages)
        axis.set_ylabel(f"Δ {metric}")
        axis.set_title(f"{report['reference']} minus each baseline, {SETTING_NAMES[setting]} "
                       "(solid, *: significant after correction)", fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=len(language_gains(report, section, metric, settings[0])))
    return saved(figure, folder, f"language-gains-{_slug(section['dataset'])}-{_slug(metric)}.png")


def language_bias(report: dict, section: dict, folder: Path) -> str | None:
    if not section.get("bias"):
        return None
    plt = _plt()
    arms = [arm["label"] for arm in report["arms"] if arm["label"] in section["bias"]]
    values = [section["bias"][arm]["all"]["value"] for arm in arms]
    errors = [section["bias"][arm]["all"].get("sd") or 0.0 for arm in arms]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.9 * len(arms) + 1.5), 3.4))
    colours = ["#1f77b4" if arm == report["reference"] else "#aec7e8" for arm in arms]
    axis.bar(range(len(arms)), values, yerr=errors, color=colours, capsize=3)
    axis.set_xticks(range(len(arms)))
    axis.set_xticklabels(arms, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("language bias (mean rank spread; lower is better)")
    axis.set_title(f"{section['dataset']}: language bias by arm (± sd over seeds)", fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    return saved(figure, folder, f"language-bias-{_slug(section['dataset'])}.png")


def cross_matrix(section: dict, folder: Path) -> str | None:
    matrix = section.get("cross_matrix")
    if not matrix:
        return None
    plt = _plt()
    values = [[math.nan if value is None else value for value in row] for row in matrix["values"]]
    finite = [abs(value) for row in values for value in row if not math.isnan(value)]
    limit = max(finite, default=0.01) or 0.01
    languages = matrix["languages"]
    figure, axis = plt.subplots(figsize=(0.55 * len(languages) + 2.6, 0.5 * len(languages) + 1.6))
    image = axis.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit)
    for row, source in enumerate(languages):
        for column, _ in enumerate(languages):
            if not math.isnan(values[row][column]):
                axis.text(column, row, f"{values[row][column] * 100:+.1f}", ha="center", va="center", fontsize=6)
    axis.set_xticks(range(len(languages)))
    axis.set_xticklabels(languages)
    axis.set_yticks(range(len(languages)))
    axis.set_yticklabels(languages)
    axis.set_xlabel("passage language Y")
    axis.set_ylabel("query language X")
    axis.set_title(f"{matrix['reference']} minus {matrix['baseline']}\n(cross-lingual, ×100)", fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    return saved(figure, folder, f"cross-matrix-{_slug(section['dataset'])}.png")


def learning_curve(report: dict, section: dict, metric: str, folder: Path) -> str | None:
    curve = section.get("learning_curve")
    if not curve:
        return None
    plt = _plt()
    settings = [setting for setting in SETTING_NAMES if any(setting in point for steps in curve.values()
                                                             for point in steps.values())]
    figure, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.6), squeeze=False)
    for axis, setting in zip(axes[0], settings):
        for arm in report["arms"]:
            steps = curve.get(arm["label"], {})
            points = [(int(step), point[setting]["value"]) for step, point in steps.items() if setting in point]
            if len(points) >= 2:
                axis.plot(*zip(*points), marker="o", markersize=3, label=arm["label"])
            elif points:                                   # one evaluation (the zero-shot run): a reference line
                axis.axhline(points[0][1], linestyle=":", color="#7f7f7f", label=arm["label"])
        axis.set_title(SETTING_NAMES[setting])
        axis.set_xlabel("training step")
        axis.set_ylabel(f"macro {metric}")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    figure.suptitle(f"{section['dataset']} · {metric}: the learning curve (mean over each arm's runs)")
    return saved(figure, folder, f"learning-curve-{_slug(section['dataset'])}-{_slug(metric)}.png")


def render(report: dict, folder: Path) -> dict[str, list[str]]:
    """Every figure of every dataset, written into `folder`; {dataset: [file names]}."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    for dataset, section in report["datasets"].items():
        metric = section["metrics"][0]
        names = [alpha_sweep(report, section, metric, folder), per_language_gains(report, section, metric, folder),
                 language_bias(report, section, folder), cross_matrix(section, folder),
                 learning_curve(report, section, metric, folder)]
        written[dataset] = [name for name in names if name]
    return written
