"""Runs in MLflow, through `mlflow.MlflowClient`.

A grid is an experiment (a run outside any grid goes to `hbt-tui`); the seeds of one
configuration share a parent run (nested under it in the UI); every run carries the tag
`hbt_tui.run_id`, which an export looks up first, so exporting again adds what is new (a metric
already logged at a step is not logged twice, params are immutable, artifacts are replaced):
never a second copy of a run. The tracking URI is `--tracking-uri`, `$MLFLOW_TRACKING_URI`, or
the local folder `./mlruns` (MLflow's file store; opted into for the user, as MLflow 3 asks).
"""

from __future__ import annotations

import os
import socket
import time
import urllib.parse
from pathlib import Path

from engine.contract.errors import RunError
from engine.parent.trackers.mapping import ID_TAG, Metric, TrackedRun, has_evaluation

DEFAULT_EXPERIMENT = "hbt-tui"
CONFIG_TAG = "hbt_tui.configuration"
STATUS = {"finished": "FINISHED", "failed": "FAILED", "cancelled": "KILLED", "interrupted": "KILLED"}
BATCH = 900                          # MLflow takes at most 1,000 metrics in one log_batch


def tracking_uri(given: str | None) -> str:
    uri = given or os.environ.get("MLFLOW_TRACKING_URI") or "./mlruns"
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser().resolve()
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")     # a local folder: MLflow's file store
        return path.as_uri()
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "", port), timeout=5).close()
        except OSError as error:
            raise RunError(f"MLflow tracking URI {uri}: cannot reach the server "
                           f"({getattr(error, 'strerror', None) or error})") from None
    return uri


def connect(given: str | None):
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(given)
    return MlflowClient(tracking_uri=uri), uri


def experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def find_run(client, experiment: str, key: str, value: str):
    found = client.search_runs([experiment], filter_string=f"tags.`{key}` = '{value}'", max_results=1)
    return found[0] if found else None


def logged_steps(client, run) -> set[tuple[str, int]]:
    """(key, step) of every metric the run holds already."""
    return {(key, metric.step) for key in run.data.metrics for metric in client.get_metric_history(run.info.run_id, key)}


def log_metrics(client, run_id: str, metrics: list[Metric], skip: set[tuple[str, int]] | None = None) -> int:
    from mlflow.entities import Metric as Entry

    skip = skip or set()
    now = int(time.time() * 1000)
    entries = [Entry(metric.key, metric.value, int((metric.time or 0) * 1000) or now, metric.step)
               for metric in metrics if (metric.key, metric.step) not in skip]
    for start in range(0, len(entries), BATCH):
        client.log_batch(run_id, metrics=entries[start:start + BATCH])
    return len(entries)


def log_params(client, run_id: str, params: dict[str, str], present: dict[str, str]) -> None:
    from mlflow.entities import Param

    new = [Param(key, value[:6000]) for key, value in params.items() if key not in present]
    for start in range(0, len(new), 100):
        client.log_batch(run_id, params=new[start:start + 100])


def parent_run(client, experiment: str, run: TrackedRun, parents: dict[str, str]) -> str:
    """The parent run of a configuration's seeds (found again by its tag, or made)."""
    key = f"{run.group}:{run.configuration}"
    if key not in parents:
        found = find_run(client, experiment, CONFIG_TAG, key)
        parents[key] = found.info.run_id if found else client.create_run(
            experiment, run_name=run.configuration, tags={CONFIG_TAG: key, "grid": run.group or ""}).info.run_id
    return parents[key]


def export(runs: list[TrackedRun], given_uri: str | None = None) -> list[str]:
    """Write (or bring up to date) each run; returns one line per run saying what was done."""
    if not runs:
        return []
    client, uri = connect(given_uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as error:         # a store that is not one: one line
        raise RunError(f"MLflow tracking URI {uri}: {type(error).__name__}: {str(error).splitlines()[0][:200]}") from None
    parents: dict[str, str] = {}
    done = []
    for run in runs:
        experiment = experiment_id(client, run.group or DEFAULT_EXPERIMENT)
        existing = find_run(client, experiment, ID_TAG, run.id)
        tags = dict(run.tags)
        if run.replicate:
            tags["mlflow.parentRunId"] = parent_run(client, experiment, run, parents)
        if existing is None:
            run_id = client.create_run(experiment, run_name=run.name, tags=tags,
                                       start_time=int((run.started or time.time()) * 1000)).info.run_id
            present_params, skip = {}, set()
        else:
            run_id = existing.info.run_id
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            present_params, skip = existing.data.params, logged_steps(client, existing)
        log_params(client, run_id, run.params, present_params)
        added = log_metrics(client, run_id, run.metrics, skip)
        for path, where in run.artifacts:
            client.log_artifact(run_id, str(path), artifact_path=where)
        client.set_terminated(run_id, STATUS.get(run.status, "FINISHED"),
                              end_time=int(run.ended * 1000) if run.ended else None)
        done.append(f"{run.id}: {'updated' if existing else 'exported'} as MLflow run {run_id} ({added} metric values"
                    f"{'' if has_evaluation(run) else ', no evaluation yet'}) in {uri}")
    return done


class Live:
    """A run forwarded while it trains: made at its `started` event, its steps logged in batches,
    each evaluation when it is done, closed at its end."""

    FLUSH_SECONDS = 5.0

    def __init__(self, tracking: str | None = None) -> None:
        self.client, self.uri = connect(tracking)
        self.runs: dict[str, str] = {}             # hbt-tui run id -> MLflow run id
        self.parents: dict[str, str] = {}
        self.pending: dict[str, list[Metric]] = {}
        self.flushed = time.monotonic()

    def started(self, run: TrackedRun) -> None:
        experiment = experiment_id(self.client, run.group or DEFAULT_EXPERIMENT)
        existing = find_run(self.client, experiment, ID_TAG, run.id)       # a resumed run continues its run
        tags = dict(run.tags)
        if run.replicate:
            tags["mlflow.parentRunId"] = parent_run(self.client, experiment, run, self.parents)
        run_id = existing.info.run_id if existing else self.client.create_run(
            experiment, run_name=run.name, tags=tags, start_time=int(time.time() * 1000)).info.run_id
        log_params(self.client, run_id, run.params, existing.data.params if existing else {})
        self.runs[run.id] = run_id

    def metrics(self, run_id: str, metrics: list[Metric]) -> None:
        self.pending.setdefault(run_id, []).extend(metrics)
        if time.monotonic() - self.flushed > self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.flushed = time.monotonic()
        for run_id, metrics in list(self.pending.items()):
            if run_id in self.runs and metrics:
                log_metrics(self.client, self.runs[run_id], metrics)
            self.pending[run_id] = []

    def ended(self, run: TrackedRun) -> None:
        self.flush()
        mlflow_id = self.runs.pop(run.id, None)
        if mlflow_id is None:
            return
        for path, where in run.artifacts:
            self.client.log_artifact(mlflow_id, str(path), artifact_path=where)
        self.client.set_terminated(mlflow_id, STATUS.get(run.status, "FINISHED"))
