"""Everything about a submission that can be refused before any run folder exists.

`prepare(document)` validates the spec, refuses grids above `MAX_GRID_RUNS` unless asked,
expands the grid, checks the baseline names a run, then has the child side check every run
(data on disk and large enough for a batch, the model's configuration, device and precision)
in one short `python -m engine.preflight` subprocess, so the parent never imports torch. Bad
input is one UserError naming the run and the field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from engine.contract.errors import RunError, UserError
from engine.contract.grid import expand_grid, grid_size
from engine.contract.model_names import check_encoder_name
from engine.contract.spec import ExperimentSpec
from engine.contract.validation import parse_spec

MAX_GRID_RUNS = 200
MAX_GRID_RUNS_EVER = 10_000          # even with --yes: more is a mistake in the grid, not a study
CHECK_TIMEOUT_SECONDS = 300


@dataclass
class Prepared:
    """The runs a submission will create, and what the child-side check learnt of each."""

    specs: list[ExperimentSpec]
    facts: list[dict] = field(default_factory=list)
    group: str | None = None
    source: str | None = None           # the spec file, when there is one (a report says how to re-run it)


def prepare(document: Any, source: str | None = None, *, store=None, allow_large: bool = False,
            check: bool = True) -> Prepared:
    spec = parse_spec(document, source)
    size = grid_size(spec)               # counted, never built, before any limit is applied
    if size > MAX_GRID_RUNS_EVER:
        raise RunError(f"{source or spec.name}: the grid expands to {size:,} runs; at most {MAX_GRID_RUNS_EVER:,} "
                       "can be queued at once (split it)")
    if size > MAX_GRID_RUNS and not allow_large:
        raise RunError(f"{source or spec.name}: the grid expands to {size} runs (more than {MAX_GRID_RUNS}); "
                       "add --yes to queue them all")
    specs = expand_grid(spec)
    for run in specs:
        check_encoder_name(run.encoder.name)
    if store is not None:
        check_baseline(specs, store)
    facts = child_check(specs) if check else [{} for _ in specs]
    return Prepared(specs, facts, spec.name if len(specs) > 1 else None, source)


def check_baseline(specs: list[ExperimentSpec], store) -> None:
    """A baseline names a run in the index, or a run of this very submission."""
    names = {run.name for run in specs}
    for run in specs:
        if run.baseline and run.baseline not in names:
            try:
                store.resolve(run.baseline)
            except RunError:
                raise RunError(f"{run.name}: baseline: no run {run.baseline!r} in {store.runs_dir} "
                               "(and none of this name is being queued)") from None


def child_check(specs: list[ExperimentSpec]) -> list[dict]:
    """The child-side checks of every run, in a subprocess; a UserError for the first failure."""
    documents = [run.to_dict() for run in specs]
    from engine.parent.records import PROJECT_ROOT

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        output = subprocess.run([sys.executable, "-m", "engine.preflight"], input=json.dumps(documents),
                                capture_output=True, text=True, timeout=CHECK_TIMEOUT_SECONDS, env=env)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RunError(f"could not check the runs before starting them: {error}") from None
    try:
        verdicts = json.loads(output.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = output.stderr.strip().splitlines()[-1] if output.stderr.strip() else f"exit code {output.returncode}"
        raise RunError(f"could not check the runs before starting them: {tail}") from None
    for run, verdict in zip(specs, verdicts):
        if "error" in verdict:
            prefix = f"{run.name}: " if len(specs) > 1 else ""
            raise UserError(prefix + verdict["error"])
    return [verdict.get("facts", {}) for verdict in verdicts]
