"""`hbt-tui evaluate TARGET`: the spec of a zero-shot run (`train.steps: 0`) around any encoder,
so an evaluation is queued, indexed, shown and compared like every other run (and can be
named as a `baseline`).

TARGET is a spec file (its encoder, untrained), a finished run (its trained model), a model
folder, a hub name or `bundled:multilingual-e5-small`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from engine.contract.errors import RunError
from engine.contract.layout import RunFolder, read_json
from engine.contract.validation import parse_spec, read_document


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-.")[:60] or "model"


def _finished_run(target: str, store) -> RunFolder | None:
    if Path(target).is_dir() and (Path(target) / "spec.json").is_file():
        return RunFolder(Path(target))
    if store is None:
        return None
    try:
        return store.folder(store.resolve(target)["id"])
    except RunError:
        return None


def zero_shot_document(target: str, *, store=None, datasets: list[str] | None = None,
                       languages: list[str] | None = None, max_queries: int | None = None,
                       data_dir: str | None = None, name: str | None = None) -> dict[str, Any]:
    run = _finished_run(target, store)
    if run is not None:
        if not run.model.is_dir():
            raise RunError(f"run {run.id} has no trained model yet ({run.model} is missing)")
        document = dict(read_json(run.spec) or {})
        parse_spec(document, str(run.spec))
        document["name"] = f"{document.get('name', run.id)}-eval"
        document["encoder"] = {**document.get("encoder", {}), "name": str(run.model.resolve())}
    elif target.endswith(".json") or Path(target).is_file():
        document = read_document(target)
        parse_spec(document, target)      # refused with the same line `--run` gives
        document = dict(document)
    else:
        document = {"name": f"zero-shot-{_slug(target.split(':')[-1].split('/')[-1])}", "encoder": {"name": target}}
    document["train"] = {**document.get("train", {}), "steps": 0}
    document["train"].pop("epochs", None)
    document.pop("grid", None)
    evaluation = dict(document.get("eval", {}))
    for key, value in (("datasets", datasets), ("languages", languages), ("max_queries", max_queries)):
        if value is not None:
            evaluation[key] = value
    document["eval"] = evaluation
    if data_dir:
        document["data_dir"] = data_dir
    if name:
        document["name"] = name
    return document
