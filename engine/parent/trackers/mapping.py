"""What a run is, in a tracker's terms, read from its folder alone (the same for MLflow and W&B).

- params: the resolved spec, flattened to dotted keys (`train.lr`), values as JSON text;
- tags: hbt-tui's run id (what a re-export looks up), name, grid, configuration, strategy, α,
  seed, executor, commit, status;
- training metrics per step: loss, lr, samples/s (from events.jsonl);
- evaluation metrics per evaluation step: every language × setting × metric, the macro and
  group rows, language bias — `xquad-r/multi/en/map_at_10` (a tracker's key cannot hold `@`);
- artifacts: results.json, the per-query file, the TREC runs, and a report that includes the run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.contract.arms import arm_name
from engine.contract.errors import RunError
from engine.contract.events import Step, read_events
from engine.contract.layout import RunFolder, read_json
from engine.contract.spec import flatten

ID_TAG = "hbt_tui.run_id"
_SEED = re.compile(r"-seed=[0-9]+")


@dataclass
class Metric:
    key: str
    value: float
    step: int
    time: float | None = None          # seconds since the epoch


@dataclass
class TrackedRun:
    id: str
    name: str
    group: str | None
    configuration: str                 # the name without its seed: what seed replicates share
    replicate: bool                    # one seed of a grid that varies the seed (its siblings share a parent)
    params: dict[str, str]
    tags: dict[str, str]
    metrics: list[Metric] = field(default_factory=list)
    artifacts: list[tuple[Path, str]] = field(default_factory=list)      # (file, folder inside the run)
    started: float | None = None
    ended: float | None = None
    status: str = "finished"


def metric_key(*parts: str) -> str:
    return "/".join(part.replace("@", "_at_").replace(" ", "_") for part in parts)


def evaluation_metrics(results: dict, step: int) -> list[Metric]:
    """Every number of one results.json: per language, group and macro, per setting and metric."""
    dataset = results.get("dataset", "eval")
    found = []
    for language, row in (results.get("per_language") or {}).items():
        for setting, metrics in (row.get("settings") or {}).items():
            found += [Metric(metric_key(dataset, setting, language, name), float(value), step)
                      for name, value in metrics.items() if isinstance(value, (int, float))]
        if isinstance(row.get("bias"), (int, float)):
            found.append(Metric(metric_key(dataset, "bias", language), float(row["bias"]), step))
    rows = {"macro": results.get("macro") or {}, **{name: group for name, group in (results.get("groups") or {}).items()}}
    for row_name, settings in rows.items():
        for setting, metrics in settings.items():
            if isinstance(metrics, dict):
                found += [Metric(metric_key(dataset, setting, row_name, name), float(value), step)
                          for name, value in metrics.items() if isinstance(value, (int, float))]
        if row_name != "macro" and isinstance(settings.get("bias"), (int, float)):
            found.append(Metric(metric_key(dataset, "bias", row_name), float(settings["bias"]), step))
    if isinstance(results.get("bias"), (int, float)):
        found.append(Metric(metric_key(dataset, "bias", "macro"), float(results["bias"]), step))
    return found


def tracked_run(folder: RunFolder, report_files: list[Path] | None = None, spec: dict | None = None) -> TrackedRun:
    """A finished (or stopped) run as trackers see it; a RunError-free read of its folder (its
    spec.json unless the caller has the spec document)."""
    spec = spec if spec is not None else read_json(folder.spec) or {}
    record = read_json(folder.record) or {}
    arm = arm_name(spec)
    name = str(spec.get("name") or folder.id)
    tags = {ID_TAG: folder.id, "hbt_tui.name": name, "hbt_tui.arm": arm.label,
            "strategy": str((spec.get("sampling") or {}).get("strategy", "")), "seed": str((spec.get("train") or {}).get("seed", "")),
            "executor": str(record.get("executor") or "local"), "commit": str(record.get("git_commit") or ""),
            "status": str(record.get("status") or "")}
    if arm.alpha is not None:
        tags["alpha"] = f"{arm.alpha:g}"
    if record.get("group"):
        tags["grid"] = str(record["group"])
    if spec.get("description"):
        tags["mlflow.note.content"] = str(spec["description"])       # MLflow's run description
    params = {key: json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
              for key, value in flatten({key: value for key, value in spec.items()
                                         if key not in ("grid", "hypotheses", "description")}).items()}
    configuration = _SEED.sub("", name)
    run = TrackedRun(folder.id, name, record.get("group"), configuration, bool(record.get("group")) and configuration != name,
                     params, tags,
                     started=record.get("started"), ended=record.get("ended"), status=str(record.get("status") or ""))
    for event in read_events(folder.events):
        if isinstance(event, Step):
            run.metrics += [Metric("train/loss", event.loss, event.step, event.time),
                            Metric("train/lr", event.lr, event.step, event.time),
                            Metric("train/samples_per_s", event.samples_per_s, event.step, event.time)]
    for dataset in folder.evaluated_datasets():
        for step in folder.evaluated_steps(dataset) or [None]:      # no step folders: the one evaluation
            results = read_json(folder.results(dataset, step))
            if results:
                run.metrics += evaluation_metrics(results, int(results.get("step") or 0) if step is None else step)
        for path, where in ((folder.results(dataset), f"eval/{dataset}"), (folder.per_query(dataset), f"eval/{dataset}")):
            if path.is_file():
                run.artifacts.append((path, where))
        trec = folder.trec_dir(dataset)
        if trec.is_dir():
            run.artifacts += [(path, f"eval/{dataset}/trec") for path in sorted(trec.iterdir()) if path.is_file()]
    run.artifacts += [(path, "report") for path in report_files or []]
    return run


def has_evaluation(run: TrackedRun) -> bool:
    return any(not metric.key.startswith("train/") for metric in run.metrics)


def check_evaluated(runs: list[TrackedRun]) -> None:
    """A tracker compares evaluations: runs without one are refused, naming them."""
    bare = [run.id for run in runs if not has_evaluation(run)]
    if bare:
        raise RunError(f"{len(bare)} of the runs have no evaluation yet ({', '.join(bare[:3])}"
                       f"{' …' if len(bare) > 3 else ''}): evaluate them (hbt-tui evaluate RUN) or leave them out")
