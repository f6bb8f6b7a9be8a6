"""Where else runs go: MLflow and Weights & Biases, through their own libraries.

`hbt-tui export mlflow|wandb RUN|NAME|GRID…` writes finished runs there (again: updated, never
duplicated); `"trackers": [...]` in ./hbt-tui.json (or `--track`) forwards runs live while they
train — done by the parent from the event stream, so the training process stays tracker-free;
a tracker that fails says so once and never fails a run. The mapping (params, tags, metrics,
artifacts) is in `mapping`; each tracker's calls in its own module.
"""

from __future__ import annotations

from engine.contract.errors import RunError

TRACKERS = ("mlflow", "wandb")
PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}


def require(name: str):
    """The tracker's module (engine.parent.trackers.<name>_tracker), or one line saying what to install."""
    if name not in TRACKERS:
        raise RunError(f"unknown tracker {name!r} (known: {', '.join(TRACKERS)})")
    import importlib
    import importlib.util

    try:
        found = importlib.util.find_spec(PACKAGES[name])
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise RunError(f"the {name} tracker needs the {PACKAGES[name]} package: pip install 'hbt-tui[tracking]' "
                       f"(or pip install {PACKAGES[name]})")
    return importlib.import_module(f"engine.parent.trackers.{name}_tracker")
