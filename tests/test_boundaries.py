"""The shape of the code holds: the import rules of `import_rules` on the real tree, the same
rules failing on a tree built to break each of them, and a fresh interpreter that drives the
UI (queue path included) without loading what the UI must never load."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT
from import_rules import violations
from runs_helpers import env
from tui_helpers import FIXTURES


def test_the_project_keeps_its_floors_and_has_no_import_circles():
    assert violations(ROOT) == []


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_the_rules_fail_on_deliberate_violations(tmp_path):
    tree = write_tree(tmp_path, {
        "engine/__init__.py": "",
        "engine/contract/__init__.py": "",
        "engine/contract/spec.py": "import json\nimport numpy\n",
        "engine/parent/__init__.py": "",
        "engine/parent/runner.py": "def later():\n    from engine.child import loop\n",
        "engine/parent/store.py": "import torch.nn\n",
        "engine/child/__init__.py": "",
        "engine/child/loop.py": "from engine.child.evaluator import Evaluator\nfrom engine.parent import store\n",
        "engine/child/evaluator.py": "def run():\n    from engine.child import loop\n",
        "engine/child/widgets.py": "import textual\n",
        "engine/train.py": "from engine.child import loop\n",
        "engine/child/uses_entry.py": "import engine.train\n",
        "tui/__init__.py": "",
        "tui/app.py": "from . import screens\nimport transformers\n",
        "tui/screens.py": "from engine.child.loop import run\n",
    })
    found = violations(tree)
    expected = [
        "engine/contract/spec.py:2: the contract imports numpy (standard library only)",
        "engine/parent/runner.py:2: parent imports the child side (engine.child.loop)",
        "engine/parent/store.py:1: parent imports torch.nn",
        "engine/child/loop.py:2: the child side imports the parent side (engine.parent.store)",
        "engine/child/widgets.py:1: the engine imports textual (textual)",
        "engine/child/uses_entry.py:1: engine.train is an entry point; nothing may import it",
        "tui/app.py:2: tui imports transformers",
        "tui/screens.py:1: tui imports the child side (engine.child.loop)",
        "import circle: engine.child.evaluator -> engine.child.loop -> engine.child.evaluator",
    ]
    assert sorted(found) == sorted(expected)


STARTUP_AND_QUEUE = """
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from tui_helpers import replay_app
HEAVY = ("torch", "transformers", "faiss", "datasets", "sentence_transformers", "tokenizers")

def loaded(names):
    return ",".join(sorted(name for name in names if name in sys.modules))

async def main():
    app = replay_app(Path({tmp!r}), rate=400)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        print("STARTUP:" + loaded(("numpy", "scipy") + HEAVY))
        queued = app.queue_document({{"name": "queued", "train": {{"languages": ["en", "de"], "steps": 12}},
                                      "eval": {{"languages": ["en", "de"], "max_queries": 10}}}})
        await app.service.wait(queued)
        for keys in (["enter"], ["escape", "n"], ["escape", "space", "space", "m"], ["escape", "question_mark"]):
            await pilot.press(*keys)
            await pilot.pause(0.3)
        print("STATUS:" + app.store.get(queued[0])["status"])
asyncio.run(main())
print("AFTER:" + loaded(HEAVY))
"""


def test_the_ui_starts_without_numpy_and_never_loads_the_training_stack(tmp_path):
    script = STARTUP_AND_QUEUE.format(tests=str(FIXTURES.parent.parent), tmp=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    assert lines["STARTUP"] == ""          # start-up path: neither numpy nor scipy nor anything heavy
    assert lines["STATUS"] == "finished"   # the queue path ran: checked in a subprocess, queued, replayed
    assert lines["AFTER"] == ""            # Runs, detail, compose, compare, help: still no torch & co.


def runtime_imports_of_runner(path: Path) -> list[int]:
    """Lines of `path` that import engine.parent.runner, outside `if TYPE_CHECKING:` blocks."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for statement in block.body for node in ast.walk(statement)}
    lines = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module == "engine.parent.runner" or (
                node.module == "engine.parent" and any(alias.name == "runner" for alias in node.names))):
            lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(alias.name == "engine.parent.runner" for alias in node.names):
            lines.append(node.lineno)
    return lines


def test_the_cli_and_the_tui_reach_the_runner_through_the_run_service_only():
    """The walk of `--run` and of the UI: CLI → run service → runner. Only the run service (and
    the runner's own floor) imports the runner; nothing in the UI or the commands reaches into
    a runner's attributes."""
    import ast

    allowed = {"engine/parent/run_service.py", "engine/parent/runner.py"}
    modules = [path for folder in ("engine", "tui") for path in (ROOT / folder).rglob("*.py")]
    offenders = [f"{path.relative_to(ROOT)}:{line}" for path in modules
                 if str(path.relative_to(ROOT)) not in allowed for line in runtime_imports_of_runner(path)]
    assert offenders == []
    reaching = []
    for path in [*(ROOT / "tui").rglob("*.py"), *(ROOT / "engine" / "parent").glob("*commands.py"),
                 ROOT / "engine" / "parent" / "run_views.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "runner":
                reaching.append(f"{path.relative_to(ROOT)}:{node.lineno}: .runner.{node.attr}")
    assert reaching == []


def test_the_parent_never_reads_back_the_spec_of_a_run_it_launched(tmp_path):
    """A run queued, launched, followed to its end and resumed through the run service: the
    parent writes each run's spec.json once and never opens it again (it keeps what it needs,
    `train.devices` included, from the spec it was given and the run's record). Checked with an
    audit hook on every `open` of this process."""
    import asyncio
    import json

    from engine.child.replay import replay_command
    from engine.contract.validation import parse_spec
    from engine.parent.run_service import RunService
    from engine.parent.store import RunStore

    store = RunStore(tmp_path / "runs")
    opened: list[tuple[str, str]] = []
    watching = [True]                       # an audit hook cannot be removed: it goes quiet after the test

    def audit(event: str, arguments: tuple) -> None:
        if watching[0] and event == "open" and isinstance(arguments[0], (str, Path)) \
                and Path(arguments[0]).name == "spec.json":
            opened.append((str(arguments[0]), str(arguments[1])))

    sys.addaudithook(audit)
    spec = parse_spec({"name": "walk", "train": {"steps": 2, "devices": 1}})

    async def walk() -> str:
        service = RunService.start(store, 1, command=replay_command(FIXTURES / "hybrid", rate=500))
        run_id = service.submit(spec)
        await service.wait([run_id])
        record = json.loads((store.folder(run_id).record).read_text())
        record["status"] = "interrupted"
        (store.folder(run_id).record).write_text(json.dumps(record))
        service.resume(run_id)
        await service.wait([run_id])
        return run_id

    async def tracked_walk() -> str:     # with a live tracker (MLflow, a file store): the same
        service = RunService.start(store, 1, command=replay_command(FIXTURES / "hybrid", rate=500),
                                   trackers=["mlflow"])
        run_id = service.submit(parse_spec({"name": "tracked-walk", "train": {"steps": 2}}))
        await service.wait([run_id])
        return run_id

    async def resumed_elsewhere(run_id: str) -> None:   # a tracked run a later parent resumes: read once
        record = json.loads((store.folder(run_id).record).read_text())
        (store.folder(run_id).record).write_text(json.dumps({**record, "status": "interrupted"}))
        service = RunService.start(store, 1, command=replay_command(FIXTURES / "hybrid", rate=500),
                                   trackers=["mlflow"])
        service.resume(run_id)
        await service.wait([run_id])

    def reads() -> list[tuple[str, str]]:
        return [(path, mode) for path, mode in opened if "r" in mode and "+" not in mode]

    os.environ["MLFLOW_TRACKING_URI"] = (tmp_path / "mlruns").as_uri()
    try:
        run_id = asyncio.run(walk())
        tracked_id = asyncio.run(tracked_walk())
        assert reads() == []
        asyncio.run(resumed_elsewhere(tracked_id))
    finally:
        watching[0] = False
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    assert (store.folder(run_id).path / "spec.json").exists()
    assert reads() == [(str(store.folder(tracked_id).spec), "r")], reads()
    assert store.get(tracked_id)["status"] == "finished"
    assert list((tmp_path / "mlruns").rglob("tracked-walk*")) or list((tmp_path / "mlruns").rglob("meta.yaml"))


def test_the_code_map_names_every_module():
    """docs/code.md is the way into the house: a module it does not name is a room no map shows."""
    page = (ROOT / "docs" / "code.md").read_text(encoding="utf-8")
    named = {Path(token).name for token in re.findall(r"[\w/]+\.py|\b\w+\b", page)}
    missing = [str(path.relative_to(ROOT)) for folder in ("engine", "tui") for path in (ROOT / folder).rglob("*.py")
               if path.name != "__init__.py" and path.name not in named and path.stem not in named]
    assert missing == [], f"docs/code.md does not name {missing}"
