"""The report as text: a self-contained Markdown page (verdict, tables, figures, how to re-run
it), and the same tables as CSV and as LaTeX (booktabs, significance marks) for papers."""

from __future__ import annotations

import csv
import io
import json

from engine.parent.compare_formats import latex_escape
from engine.parent.report.hypotheses import answer_lines
from engine.parent.report.verdict import SETTING_NAMES, sentence, verdict

ROWS = ("all", "high", "low", "seen", "unseen")


def rows_of(section: dict) -> list[str]:
    return [row for row in ROWS if row == "all" or row in section["groups"]]


def value_text(cell: dict | None, latex: bool = False) -> str:
    if cell is None or cell.get("value") is None:
        return "–" if not latex else "--"
    plus_minus = r"$\pm$" if latex else " ± "
    text = f"{cell['value']:.3f}" + (f"{plus_minus}{cell['sd']:.3f}" if cell.get("sd") is not None else "")
    if cell.get("delta") is None:
        return text
    mark = ("$^{*}$" if latex else "*") if cell.get("significant") else ""
    ci = cell.get("ci")
    interval = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci and not latex else ""
    return f"{text} ({cell['delta']:+.3f}{mark}{interval})"


def _clock(seconds: float | None) -> str:
    if not seconds:
        return "–"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def delta_text(value: float | None) -> str:
    return "–" if value is None else f"{value:+.3f}"


def _p_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}" if value >= 0.001 else "<0.001"


def hypothesis_markdown(report: dict) -> list[str]:
    """The answer first: one row per confirmatory hypothesis, then at most ten lines of verdict."""
    found = report["hypotheses"]
    correction = {"holm": "Holm", "bh": "Benjamini-Hochberg", "none": "no"}[found["correction"]]
    directions = len(found.get("datasets") or ()) or 1
    counted = (f"{len(found['items']) // directions} per direction, {len(found['items'])} in all; {correction} "
               "correction within each direction, over these alone" if directions > 1
               else f"{len(found['items'])}; {correction} correction over these alone")
    lines = ["## The answer", "",
             f"{'Declared' if found['source'] == 'declared' else 'Default'} confirmatory hypotheses "
             f"({counted}). Δ = reference − baseline; "
             "the CI and p carry both sources of variance (questions × training seeds) where both arms have "
             f"seeds; power is at Δ = ±{found['effect']:g} (Bonferroni level {found['power_level']:.2g}, a floor "
             "for Holm), *detectable* the smallest |Δ| found with 80 % power.", "",
             "| id | claim | data · metric · setting · group | Δ [95 % CI] | seeds × questions | seed share | "
             "corrected p | power | detectable | verdict |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    if len(found.get("datasets") or ()) > 1:
        lines[-2:] = replication_markdown(found) + ["Each direction in full:", "", *lines[-2:]]
    for item in found["items"]:
        interval = f" [{item['ci'][0]:+.3f}, {item['ci'][1]:+.3f}]" if item.get("ci") else ""
        seeds = " vs ".join(str(count) if not fixed else "0-shot" for count, fixed in zip(item["seeds"], item["fixed"]))
        share = "–" if item.get("seed_share") is None else f"{item['seed_share']:.0%}"
        power = "–" if item.get("power") is None else f"{item['power']:.2f}"
        detectable = "–" if item.get("detectable") is None else "∞" if item["detectable"] == float("inf") \
            else f"{item['detectable']:.3f}"
        lines.append(f"| {item['id']} | {item['claim']} | {item['dataset']} · {item['metric']} · {item['setting']} · "
                     f"{item['group']} | {delta_text(item['delta'])}{interval} | {seeds} seeds × {item['units']} | {share} | "
                     f"{_p_text(item.get('p_adjusted'))} | {power} | {detectable} | **{item['verdict']}** |")
    lines += ["", "### Verdict", ""]
    lines += [f"- {line}" for line in answer_lines(found)]
    return lines


def replication_markdown(found: dict) -> list[str]:
    """Both directions side by side: each hypothesis's effect, corrected p and verdict per direction."""
    datasets = found["datasets"]
    by_id: dict[str, dict[str, dict]] = {}
    for item in found["items"]:
        by_id.setdefault(item["id"], {})[item["dataset"]] = item
    header = "| id | claim | metric · setting · group | " + " | ".join(
        f"{dataset}: Δ [95 % CI] | p | verdict" for dataset in datasets) + " | same verdict |"
    lines = ["### Both directions", "", header, "|---|---|---|" + "---:|---:|---|" * len(datasets) + "---|"]
    for identifier, items in by_id.items():
        first = next(iter(items.values()))
        cells = []
        for dataset in datasets:
            item = items.get(dataset)
            if item is None:
                cells += ["–", "–", "–"]
                continue
            interval = f" [{item['ci'][0]:+.3f}, {item['ci'][1]:+.3f}]" if item.get("ci") else ""
            cells += [f"{delta_text(item['delta'])}{interval}", _p_text(item.get("p_adjusted")), item["verdict"]]
        same = "yes" if len({item["verdict"] for item in items.values()}) == 1 and len(items) > 1 else "no"
        lines.append(f"| {identifier} | {first['claim']} | {first['metric']} · {first['setting']} · {first['group']} | "
                     + " | ".join(cells) + f" | {same} |")
    return lines + [""]


def markdown(report: dict, figures: dict[str, list[str]]) -> str:
    arms = report["arms"]
    lines = [f"# {report['title']}", ""]
    lines += hypothesis_markdown(report)
    lines += ["", "## Exploratory tables", "",
              f"{len(arms)} arms, {sum(len(arm['runs']) for arm in arms)} runs ({', '.join(report['selection'])}); "
              f"every Δ is the arm minus the reference, **{report['reference']}**. Values are means ± sd over seeds. "
              "Everything below is exploratory: marks are Benjamini-Hochberg within each table; intervals are "
              f"{int(report['test']['confidence'] * 100)} % CIs, not adjusted for multiplicity. Cells of arms with "
              ">= 2 seeds each are tested with questions and seeds as crossed random factors; cells where an arm "
              "has a single trained run compare those two models only."]
    for dataset, section in report["datasets"].items():
        lines += dataset_markdown(report, section, figures.get(dataset, []))
    lines += ["", "## Appendix: every claim, exploratory", "",
              "One sentence per claim of the paper and per part of the research question, judged on the exploratory "
              "tables above (not on the confirmatory family).", ""]
    sentences = verdict(report)
    lines += [f"- {sentence(item)}" for item in sentences] or ["- (no claim could be tested: the arms it needs are missing)"]
    lines += reproduction_markdown(report)
    return "\n".join(lines) + "\n"


def decomposition_markdown(section: dict) -> list[str]:
    metric = section["metrics"][0]
    table = section.get("decomposition", {}).get(metric) or {}
    if not table:
        return []
    lines = [f"### where the variance comes from · {metric} (macro units)", "",
             "Per arm and setting: how a run's mean moves with its seed (seed sd), how questions differ (question "
             "sd), the seed × question remainder, and the seeds' share of the variance of the arm's mean.", "",
             "| arm | setting | seeds × questions | seed sd | question sd | residual sd | seed share |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for arm, settings in table.items():
        for setting, parts in settings.items():
            lines.append(f"| {arm} | {setting} | {parts['seeds']} × {parts['units']} | {parts['seed_sd']:.4f} | "
                         f"{parts['question_sd']:.4f} | {parts['residual_sd']:.4f} | {parts['seed_share']:.0%} |")
    return lines + [""]


def learning_curve_markdown(section: dict) -> list[str]:
    curve = section.get("learning_curve") or {}
    if not curve:
        return []
    metric = section["metrics"][0]
    steps = sorted({int(step) for points in curve.values() for step in points})
    lines = [f"### learning curve · macro {metric}", "",
             "Each arm's macro value at every step its runs were evaluated at (`train.eval_every`), the mean over "
             "its runs; a blank cell: not evaluated at that step.", "",
             "| arm | setting | " + " | ".join(f"step {step}" for step in steps) + " |",
             "|---|---|" + "---:|" * len(steps)]
    for arm, points in curve.items():
        for setting in SETTING_NAMES:
            cells = [points.get(str(step), {}).get(setting) for step in steps]
            if any(cells):
                lines.append(f"| {arm} | {setting} | " + " | ".join("" if cell is None else f"{cell['value']:.4f}"
                                                                    for cell in cells) + " |")
    return lines + [""]


def dataset_markdown(report: dict, section: dict, figures: list[str]) -> list[str]:
    dataset = section["dataset"]
    lines = ["", f"## {dataset}", ""]
    if section.get("seen_in_training"):
        lines += [f"*{dataset} was seen in training (`eval.allow_train_overlap`): these are not zero-shot numbers.*", ""]
    groups = ", ".join(f"{name}: {', '.join(members)}" for name, members in section["groups"].items())
    lines += [f"Languages: {', '.join(section['languages'])}." + (f" Groups — {groups}." if groups else ""), ""]
    rows = rows_of(section)
    for metric in section["metrics"]:
        for setting, table in section["tables"][metric].items():
            lines += [f"### {SETTING_NAMES[setting]} retrieval · {metric}", "",
                      "| arm | seeds | " + " | ".join(rows) + " |", "|---|---:|" + "---:|" * len(rows)]
            for arm in report["arms"]:
                cells = table.get(arm["label"])
                if cells:
                    seeds = next(iter(cells.values()))["seeds"]
                    lines.append(f"| {arm['label']} | {seeds} | " + " | ".join(value_text(cells.get(row)) for row in rows)
                                 + " |")
            lines += ["", f"<sub>{section['footnotes'][metric]}</sub>", ""]
    lines += decomposition_markdown(section)
    lines += learning_curve_markdown(section)
    if section.get("bias"):
        lines += ["### language bias (multilingual ranking; lower is better)", "",
                  "| arm | " + " | ".join(rows) + " |", "|---|" + "---:|" * len(rows)]
        lines += [f"| {arm['label']} | " + " | ".join(value_text(section["bias"][arm["label"]].get(row)) for row in rows)
                  + " |" for arm in report["arms"] if arm["label"] in section["bias"]]
        lines += ["", f"<sub>{section['footnotes']['bias']}</sub>", ""]
    for name in figures:
        lines += [f"![{name.rsplit('.', 1)[0]}](figures/{name})", ""]
    metric = section["metrics"][0]
    for setting, table in section["tables"][metric].items():
        labels = [arm["label"] for arm in report["arms"] if arm["label"] in table]
        lines += [f"### per language · {SETTING_NAMES[setting]} · {metric}", "",
                  "| language | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        lines += [f"| {language} | " + " | ".join(value_text(table[label].get(language)) for label in labels) + " |"
                  for language in section["languages"]]
        lines.append("")
    return lines


def reproduction_markdown(report: dict) -> list[str]:
    provenance = report["provenance"]
    runs = provenance["runs"]
    versions = {}
    for run in runs:
        for package, version in run["versions"].items():
            versions.setdefault(package, set()).add(version)
    devices = sorted({run["device"] for run in runs if run["device"]})
    hosts = sorted({run["host"] for run in runs if run["host"]})
    machines = sorted({machine_text(run["hardware"]) for run in runs if run.get("hardware")})
    precisions = sorted({run["precision"] for run in runs if run.get("precision")})
    sources = sorted({run["source"] for run in runs if run.get("source")})
    lines = ["", "## Reproducing this report", "",
             *(f"- Runs: `hbt-tui --run {source}` (continues a grid that is partly there: finished runs are skipped, "
               "interrupted ones resumed)" for source in sources),
             f"- Report: `hbt-tui report {' '.join(report['selection'])}` over the runs below; the same runs give the "
             "same numbers (bootstrap and permutations are seeded). `report.json` keeps every run's own values "
             "(`datasets.<name>.per_run`).",
             f"- Code: commit{'s' if len(provenance['commits']) != 1 else ''} "
             f"{', '.join(f'`{commit}`' for commit in provenance['commits']) or 'unknown'}.",
             "- Libraries: " + ", ".join(f"{package} {'/'.join(sorted(found))}" for package, found in sorted(versions.items())),
             f"- Hardware: {', '.join(devices) or 'unknown device'} on {', '.join(hosts) or 'an unknown host'}"
             + (f"; {'; '.join(machines)}" if machines else "")
             + (f"; training precision {', '.join(precisions)}" if precisions else "") + ".",
             f"- Time: {_clock(provenance['wall_seconds'])} from the first run's start to the last run's end "
             f"({_clock(provenance['run_seconds'])} of runs).", "", "| run | arm | seed | spec hash | commit |",
             "|---|---|---:|---|---|"]
    lines += [f"| `{run['id']}` | {run['arm']} | {run['seed']} | `{run['spec_hash']}` | `{run['git_commit']}` |"
              for run in runs]
    lines += ["", "The spec of each arm (its first run; seeds differ only in `train.seed`):", ""]
    for label, spec in provenance["specs"].items():
        lines += [f"<details><summary>{label}</summary>", "", "```json", json.dumps(spec, indent=1), "```", "",
                  "</details>", ""]
    return lines


def study_readme(report: dict, out: str | None = None) -> str:
    """README.md of a report folder: what it holds, the commands that made it (writing into `out`,
    the folder it was asked for), and how to run the same study on a Ray cluster or on Slurm with
    the executors hbt-tui has."""
    provenance = report["provenance"]
    sources = sorted({run["source"] for run in provenance["runs"] if run.get("source")}) or ["SPEC.json"]
    selection = " ".join(report["selection"])
    runs = len(provenance["runs"])
    lines = [f"# {report['title']}", "",
             "Written by `hbt-tui report` (this folder is replaced as a whole by `--out … --force`; edit nothing "
             "here by hand).", "",
             "- `report.md`: the answer first (the confirmatory hypotheses), then the exploratory tables and figures;",
             "- `report.json`: everything the report shows, with every run's own values (`datasets.<name>.per_run`);",
             "- `tables.csv`, `tables.tex`: the tables for papers; `figures/`: the PNG figures.", "",
             "## Making it again", "", "```bash"]
    lines += [f"hbt-tui --run {source}" for source in sources]
    out = out or "REPORT_DIR"
    lines += [f"hbt-tui report {selection} --out {out} --force", "```", "",
              f"{runs} runs took {_clock(provenance['run_seconds'])} of run time on the machine the report's "
              "*Reproducing* section names. A grid that is interrupted continues where it stopped: run the same "
              "`--run` again (finished runs are skipped, interrupted ones resumed from their checkpoints).", "",
              "## On a Ray cluster or Slurm", "",
              "Put the runs directory, the data (`HBT_DATA_DIR`) and the model cache (`HBT_CACHE_DIR`, `HF_HOME`) on "
              "storage every node sees, then:", "", "```bash",
              "# Ray: the dashboard's address; --jobs is how many runs are in the cluster at once"]
    lines += [f"hbt-tui --run {source} --runs-dir /shared/runs --executor ray://HEAD:8265 --jobs 16" for source in sources]
    lines += ["# Slurm, from a login node (each run is one sbatch job through submitit)"]
    lines += [f"hbt-tui --run {source} --runs-dir /shared/runs --executor slurm --partition PARTITION --jobs 32"
              for source in sources]
    lines += [f"hbt-tui report {selection} --runs-dir /shared/runs --out {out} --force", "```", ""]
    return "\n".join(lines)


def machine_text(machine: dict) -> str:
    """`Intel(R) Xeon(R) Processor, 2 cores (2 threads), avx512_bf16 amx_bf16 …`."""
    parts = [str(machine.get("cpu") or "an unknown CPU"),
             f"{machine.get('cores')} cores ({machine.get('threads')} threads)"]
    if machine.get("flags"):
        parts.append(" ".join(machine["flags"]))
    if machine.get("gpu"):
        parts.append(str(machine["gpu"]))
    return ", ".join(parts)


def csv_tables(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["dataset", "metric", "setting", "row", "arm", "seeds", "value", "sd", "delta_vs_reference",
                     "ci_low", "ci_high", "p", "p_adjusted", "significant", "units", "reference", "test", "correction"])

    def number(value) -> str:
        return "" if value is None else f"{value:.6f}"

    for dataset, section in report["datasets"].items():
        tables = [(metric, setting, table) for metric in section["metrics"]
                  for setting, table in section["tables"][metric].items()]
        if section.get("bias"):
            tables.append(("bias", "multi", section["bias"]))
        for metric, setting, table in tables:
            for arm in report["arms"]:
                for row, cell in table.get(arm["label"], {}).items():
                    ci = cell.get("ci") or (None, None)
                    writer.writerow([dataset, metric, setting, row, arm["label"], cell["seeds"], number(cell["value"]),
                                     number(cell.get("sd")), number(cell.get("delta")), number(ci[0]), number(ci[1]),
                                     number(cell.get("p")), number(cell.get("p_adjusted")),
                                     "" if cell.get("delta") is None else str(cell["significant"]).lower(),
                                     cell.get("units") or "", report["reference"], report["test"]["test"],
                                     report["test"]["correction"]])
    return buffer.getvalue()


def latex_tables(report: dict) -> str:
    found = report["hypotheses"]
    parts = [f"% {report['title']}: confirmatory hypotheses ({found['source']}), {found['correction']} over them; "
             "delta = reference - baseline, 95 % CI with questions x seeds",
             r"\begin{tabular}{llrrrl}", r"\toprule",
             r"id & claim & $\Delta$ & 95 \% CI & corrected $p$ & verdict \\", r"\midrule"]
    for item in found["items"]:
        interval = f"[{item['ci'][0]:+.3f}, {item['ci'][1]:+.3f}]" if item.get("ci") else "--"
        parts.append(" & ".join([latex_escape(item["id"]), latex_escape(item["claim"]), delta_text(item["delta"]),
                                 interval, _p_text(item.get("p_adjusted")).replace("<", "$<$"),
                                 latex_escape(item["verdict"])]) + r" \\")
    parts += [r"\bottomrule", r"\end{tabular}", "",
              f"% exploratory tables: every delta is the arm minus {report['reference']}; "
              "$^{*}$ significant after Benjamini-Hochberg within the table (see each table's note)"]
    for dataset, section in report["datasets"].items():
        rows = rows_of(section)
        for metric in section["metrics"]:
            for setting, table in section["tables"][metric].items():
                parts += ["", rf"% {dataset}, {metric}, {SETTING_NAMES[setting]}: {section['footnotes'][metric]}",
                          r"\begin{tabular}{l" + "r" * len(rows) + "}", r"\toprule",
                          "arm & " + " & ".join(rows) + r" \\", r"\midrule"]
                for arm in report["arms"]:
                    cells = table.get(arm["label"])
                    if cells:
                        parts.append(latex_escape(arm["label"]) + " & "
                                     + " & ".join(value_text(cells.get(row), latex=True) for row in rows) + r" \\")
                parts += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(parts) + "\n"


