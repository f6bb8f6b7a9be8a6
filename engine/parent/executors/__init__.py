"""Where a run's process runs, behind one interface the runner uses: launch it, read its
stdout (the JSON-lines events), wait for its outcome, stop it (SIGTERM first, so it
checkpoints), and tail its log.

- `local.LocalExecutor`: a subprocess of this parent in its own process group (the default).
- `ray_jobs.RayExecutor`: a Ray job through the Jobs API.
- `slurm.SlurmExecutor`: an sbatch job through submitit, requeued from its checkpoint when
  preempted or timed out.

`base` holds the interface (`Executor`, `Handle`, `Outcome`); this module picks one
(`from_spec`, with defaults from `config`).

Run folders must be on storage the parent and the workers both see (the README says how).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.contract.errors import RunError
from engine.contract.layout import read_json_object
from engine.parent.executors.base import Executor, Handle, Outcome
from engine.parent.executors.local import LocalExecutor
from engine.parent.executors.ray_jobs import RayExecutor
from engine.parent.executors.slurm import SlurmExecutor, load_submitit, slurm_status

__all__ = ["Executor", "Handle", "LocalExecutor", "Outcome", "RayExecutor", "SlurmExecutor", "config", "from_spec",
           "load_submitit", "slurm_status"]


def from_spec(spec: str | None, partition: str | None = None, grace_seconds: float = 60.0) -> Executor:
    """`local` (default), `ray://HOST:PORT`, `slurm`, or `submitit-local` (submitit's own local
    executor: the Slurm path without a cluster)."""
    spec = spec or os.environ.get("HBT_EXECUTOR") or config().get("executor") or "local"
    partition = partition or config().get("partition")
    if spec == "local":
        return LocalExecutor()
    if spec.startswith(("ray://", "http://", "https://")):
        return RayExecutor(spec, config().get("ray_python"), grace_seconds, gpus=bool(config().get("gpus")))
    if spec == "slurm":
        return SlurmExecutor(partition, gpus=bool(config().get("gpus")), cpus=config().get("cpus_per_task"),
                             timeout_min=int(config().get("time_limit_min", 24 * 60)))
    if spec == "submitit-local":
        return SlurmExecutor(cluster="local")
    raise RunError(f"--executor {spec!r}: use local, ray://HOST:PORT, slurm or submitit-local")


def config() -> dict:
    """Defaults from `$HBT_CONFIG` or ./hbt-tui.json, e.g. {"executor": "slurm", "partition": "gpu",
    "gpus": true, "cpus_per_task": 8, "time_limit_min": 240} or {"executor": "ray://head:8265",
    "ray_python": "/shared/venv/bin/python", "gpus": true}. `gpus`: each run asks for
    train.devices GPUs."""
    path = Path(os.environ.get("HBT_CONFIG") or "hbt-tui.json")
    if not path.is_file():
        return {}
    value = read_json_object(path, lambda why: RunError(f"{path}: not a JSON config: {why}"))
    for key, (kinds, low, high) in CONFIG_FIELDS.items():
        if key in value and value[key] is not None:
            item = value[key]
            if not isinstance(item, kinds) or (isinstance(item, bool) and bool not in kinds):
                raise RunError(f"{path}: {key} must be {' or '.join(kind.__name__ for kind in kinds)}, got {item!r:.40}")
            if low is not None and not low <= item <= high:
                raise RunError(f"{path}: {key} must be in [{low}, {high}], got {item}")
    return value


# what ./hbt-tui.json may set: (types, low, high)
CONFIG_FIELDS = {"executor": ((str,), None, None), "partition": ((str,), None, None), "ray_python": ((str,), None, None),
                 "gpus": ((bool,), None, None), "cpus_per_task": ((int,), 1, 4096),
                 "time_limit_min": ((int,), 1, 60 * 24 * 365), "trackers": ((list,), None, None)}
