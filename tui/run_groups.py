"""The Runs screen's rows: runs grouped the way a study is made (W&B's run grouping).

A grid's runs (their `group`: the spec's name) form one row per grid; under it, the runs that
differ only in their seed form one row per configuration, with the mean ± sd of their scores;
under that, the seeds themselves. Rows start collapsed (a study of 22 runs is one line until
it is opened); a run outside any grid is a row of its own. Pure: no widgets, so it is tested
on summaries alone.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from engine.contract.layout import SETTINGS
from engine.parent.records import primary_results

_SEED = re.compile(r"-seed=[0-9]+")


def configuration_name(run: dict) -> str:
    """A run's name without its seed: what its seed replicates share."""
    return _SEED.sub("", str(run.get("name") or run["id"]))


@dataclass
class Row:
    key: str                         # "group:<grid>", "config:<grid>:<name>", or the run id
    kind: str                        # group | config | run
    depth: int
    name: str
    runs: list[dict] = field(default_factory=list)      # the runs it stands for
    children: int = 0

    @property
    def run(self) -> dict | None:
        return self.runs[0] if self.kind == "run" else None

    def scores(self) -> dict[str, tuple[float, float | None] | None]:
        """{setting: (mean, sd over its runs)} of the primary metric's macro average (and bias)."""
        found: dict[str, tuple[float, float | None] | None] = {}
        for setting in (*SETTINGS, "bias"):
            values = []
            for run in self.runs:
                results = primary_results(run)[1]
                value = results.get("bias") if setting == "bias" else (results.get("macro") or {}).get(setting)
                if isinstance(value, (int, float)):
                    values.append(float(value))
            found[setting] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None) \
                if values else None
        return found

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.get("status", "?")] = counts.get(run.get("status", "?"), 0) + 1
        return counts


def build_rows(runs: list[dict], expanded: set[str]) -> list[Row]:
    """The rows to show, in the order of `runs` (already sorted and filtered): a grid where its
    first run would be, its configurations in the order of their first runs."""
    rows: list[Row] = []
    grids: dict[str, dict[str, list[dict]]] = {}
    order: list[tuple[str, str | None]] = []
    for run in runs:
        grid = run.get("group")
        if not grid:
            order.append(("run", run["id"]))
            continue
        if grid not in grids:
            grids[grid] = {}
            order.append(("grid", grid))
        grids[grid].setdefault(configuration_name(run), []).append(run)
    by_id = {run["id"]: run for run in runs}
    for kind, name in order:
        if kind == "run":
            rows.append(Row(name, "run", 0, str(by_id[name].get("name") or name), [by_id[name]]))
            continue
        configurations = grids[name]
        members = [run for replicas in configurations.values() for run in replicas]
        group_key = f"group:{name}"
        rows.append(Row(group_key, "group", 0, name, members, len(configurations)))
        if group_key not in expanded:
            continue
        for config, replicas in configurations.items():
            if len(replicas) == 1:
                rows.append(Row(replicas[0]["id"], "run", 1, config, replicas))
                continue
            config_key = f"config:{name}:{config}"
            rows.append(Row(config_key, "config", 1, config, replicas, len(replicas)))
            if config_key in expanded:
                rows += [Row(run["id"], "run", 2, str(run.get("name") or run["id"]), [run]) for run in replicas]
    return rows
