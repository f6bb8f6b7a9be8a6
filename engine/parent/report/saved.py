"""Reports and comparisons are kept: each is written to `runs/.reports/<id>/` and listed in the
index's `reports` table, so the TUI's Reports screen (and `hbt-tui reports`) can show them
again. The id comes from what was compared, so asking again replaces the earlier copy.

A folder is written beside its place and renamed into it: a failure leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from engine.contract.errors import RunError
from engine.contract.layout import (FIGURES_DIR, REPORT_CSV_FILE, REPORT_DATA_FILE, REPORT_FILE, REPORT_LATEX_FILE,
                                    REPORT_MARKER, REPORT_README, report_folder, write_atomic)


def report_id(kind: str, title: str, key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    slug = "".join(c if c.isalnum() or c in "._=-" else "-" for c in title)[:40].strip("-.") or kind
    return f"{kind}-{slug}-{digest}"


REPORT_ENTRIES = (REPORT_FILE, REPORT_DATA_FILE, REPORT_CSV_FILE, REPORT_LATEX_FILE, FIGURES_DIR, REPORT_MARKER,
                  REPORT_README)


def is_report_folder(path: Path) -> bool:
    """A folder a report of this tool wrote: its marker file, or (a report from before the marker)
    nothing but a report's files, with report.md among them."""
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / REPORT_MARKER).is_file():
        return True
    entries = {entry.name for entry in path.iterdir()}
    figures = path / FIGURES_DIR
    return REPORT_FILE in entries and entries <= set(REPORT_ENTRIES) and (
        not figures.exists() or all(item.suffix == ".png" and item.is_file() for item in figures.iterdir()))


def protected(path: Path, runs_dir: Path | None) -> str | None:
    """Why `path` must never be replaced (or None): the runs directory, a run folder, a parent of
    either, the home directory, the project."""
    from engine.parent.records import PROJECT_ROOT

    resolved = path.resolve()
    guarded = [(Path.home().resolve(), "the home directory"), (PROJECT_ROOT.resolve(), "the project")]
    if runs_dir is not None:
        guarded.append((runs_dir.resolve(), "the runs directory"))
    for place, name in guarded:
        if resolved == place or resolved in place.parents:
            return name if resolved == place else f"a parent of {name}"
    if runs_dir is not None and runs_dir.resolve() in resolved.parents:
        inside = resolved.relative_to(runs_dir.resolve()).parts[0]
        if not inside.startswith("."):
            return "a run folder (inside the runs directory)"
    return None


def check_out_dir(out: Path | None, force: bool, runs_dir: Path | None = None) -> None:
    """Refuse an output folder that exists (unless --force, and then only one holding a report
    this tool wrote), and never one that holds runs or the project, before any work is done."""
    if out is None:
        return
    reason = protected(out, runs_dir)
    if reason:
        raise RunError(f"--out {out}: is {reason}; give a new folder for the report")
    if out.is_symlink():
        raise RunError(f"--out {out}: is a symbolic link; give a real folder")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: is a file")
    if out.exists() and not force:
        raise RunError(f"--out {out}: exists; add --force to replace it")
    if out.exists() and not is_report_folder(out) and any(out.iterdir()):
        raise RunError(f"--out {out}: holds files that are not a report of hbt-tui (no {REPORT_MARKER}); "
                       "--force replaces only a report folder — give a new folder")
    for parent in out.parents:       # missing parents are made when the report is published
        if parent.exists():
            if not parent.is_dir():
                raise RunError(f"--out {out}: {parent} is a file")
            break


def _scratch(beside: Path) -> Path:
    """A new, empty folder of our own next to `beside` (never a name that exists already)."""
    import tempfile

    beside.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{beside.name}.", dir=beside.parent))


def _publish(staging: Path, target: Path) -> None:
    """Put a finished folder in place of `target` (replacing an older one of ours)."""
    old = None
    if target.exists():
        old = _scratch(target)
        os.replace(target, old / target.name)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_report_files(report: dict, folder: Path, out: Path | None = None) -> None:
    from engine.parent.report import figures, writers

    drawn = figures.render(report, folder / FIGURES_DIR)
    write_atomic(folder / REPORT_DATA_FILE, json.dumps(report, indent=1, sort_keys=True).encode())
    write_atomic(folder / REPORT_FILE, writers.markdown(report, drawn).encode())
    write_atomic(folder / REPORT_CSV_FILE, writers.csv_tables(report).encode())
    write_atomic(folder / REPORT_LATEX_FILE, writers.latex_tables(report).encode())
    write_atomic(folder / REPORT_README, writers.study_readme(report, str(out) if out is not None else None).encode())
    write_atomic(folder / REPORT_MARKER, b"written by hbt-tui report: `report --out DIR --force` may replace this folder\n")


def headline(report: dict) -> str:
    """One line for the list: the reference's multilingual (else first) macro gain over X-X (else the first arm)."""
    sections = sorted(report["datasets"].items(), key=lambda item: "multi" not in item[1]["tables"][item[1]["metrics"][0]])
    for dataset, section in sections:
        metric = section["metrics"][0]
        tables = section["tables"][metric]
        setting = "multi" if "multi" in tables else next(iter(tables), None)
        if setting is None:
            continue
        candidates = [arm for arm in report["arms"] if arm["label"] != report["reference"]
                      and arm["label"] in tables[setting]]
        baseline = next((arm for arm in candidates if arm["kind"] == "xx"), candidates[0] if candidates else None)
        if baseline is None:
            continue
        cell = tables[setting][baseline["label"]]["all"]
        mark = "*" if cell.get("significant") else ""
        return f"{report['reference']} vs {baseline['label']}: {dataset} {setting} {metric} {-cell['delta']:+.3f}{mark}"
    return ""


def save(store, kind: str, title: str, key: dict, write, record: dict, out: Path | None = None,
         force: bool = False) -> Path:
    """Write a report or comparison into runs/.reports/<id>/ (and a copy into `out`), then index it."""
    identifier = report_id(kind, title, key)
    target = report_folder(store.runs_dir, identifier)
    scratch = _scratch(target)
    staging = scratch / identifier
    try:
        write(staging)
        if out is not None:
            out_scratch = _scratch(out)
            try:
                shutil.copytree(staging, out_scratch / out.name)
                _publish(out_scratch / out.name, out)
            finally:
                shutil.rmtree(out_scratch, ignore_errors=True)
        _publish(staging, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    store.save_report({"id": identifier, "kind": kind, "title": title, "created": time.time(), **record})
    return target


def save_report(store, report: dict, out: Path | None = None, force: bool = False) -> Path:
    key = {"selection": report["selection"], "reference": report["reference"], "test": report["test"],
           "metrics": {dataset: section["metrics"] for dataset, section in report["datasets"].items()}}
    record = {"runs": [run for arm in report["arms"] for run in arm["runs"]], "datasets": list(report["datasets"]),
              "reference": report["reference"], "headline": headline(report), "arms": len(report["arms"])}
    return save(store, "report", report["title"], key, lambda folder: write_report_files(report, folder, out), record,
                out, force)


def save_comparison(store, comparisons: list) -> Path:
    """A comparison (CLI or TUI): its Markdown and CSV with CIs, and the data the Reports screen draws."""
    from engine.parent.compare_formats import to_csv, to_markdown

    first = comparisons[0]
    systems = [system.name for system in first.runs]
    title = f"{' vs '.join(systems)}"
    key = {"runs": [system.id for system in first.runs], "baseline": first.baseline, "metric": first.metric,
           "datasets": [comparison.dataset for comparison in comparisons],
           "test": [first.test.test, first.test.correction, first.test.permutations, first.test.seed]}

    def write(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / REPORT_FILE, "\n".join(to_markdown(comparison) for comparison in comparisons).encode())
        write_atomic(folder / REPORT_CSV_FILE, "".join(to_csv(comparison) for comparison in comparisons).encode())
        write_atomic(folder / REPORT_DATA_FILE, json.dumps(comparison_data(comparisons), indent=1).encode())

    macro = next(cells for label, _, cells in first.rows if label == "macro avg")
    other = next((index for index in range(len(first.runs)) if index != first.baseline), None)
    setting = "multi" if "multi" in first.settings else first.settings[0]
    cell = macro.get((setting, other)) if other is not None else None
    line = "" if cell is None or cell.delta is None else (
        f"{systems[other]} vs {systems[first.baseline]}: {first.dataset} {setting} {first.metric} "
        f"{cell.delta:+.3f}{'*' if cell.significant else ''}")
    record = {"runs": [run.id for system in first.runs for run in system.runs],
              "datasets": [comparison.dataset for comparison in comparisons], "headline": line}
    return save(store, "compare", title, key, write, record)


def comparison_data(comparisons: list) -> dict:
    """What the Reports screen draws for a comparison: per-language deltas per setting."""
    data = {}
    for comparison in comparisons:
        deltas = {}
        for label, summary, cells in comparison.rows:
            if summary:
                continue
            for (setting, index), cell in cells.items():
                if cell.delta is not None:
                    deltas.setdefault(setting, {}).setdefault(comparison.runs[index].name, {})[label] = \
                        {"delta": cell.delta, "significant": cell.significant}
        data[comparison.dataset] = {"metric": comparison.metric, "baseline": comparison.runs[comparison.baseline].name,
                                    "deltas": deltas, "footnote": comparison.footnote}
    return {"kind": "compare", "datasets": data}
