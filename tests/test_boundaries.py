"""The shape of the code holds: the import rules of `import_rules` on the real tree, the same
rules failing on a tree built to break each of them, and a fresh interpreter that drives the
UI (queue path included) without loading what the UI must never load."""

from __future__ import annotations

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
        await app.runner.wait(queued)
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
