"""From the keyboard: compose a tiny hybrid run, queue it on the real runner, and watch
the per-language table fill from the real training subprocess."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from textual.widgets import SelectionList

from engine.parent.runner import Runner
from engine.parent.store import RunStore
from tui.app import create_app
from tui.screens.compose import ComposeScreen
from tui.screens.run_detail import RunDetailScreen
from tui_helpers import wait_until

pytestmark = pytest.mark.slow


async def tab_to(pilot, widget_id: str) -> None:
    for _ in range(400):
        if pilot.app.focused is not None and pilot.app.focused.id == widget_id:
            return
        await pilot.press("tab")
    raise AssertionError(f"could not tab to #{widget_id}")


async def replace_text(pilot, widget_id: str, text: str) -> None:
    await tab_to(pilot, widget_id)
    await pilot.press("end", "ctrl+u", *text)


async def choose(pilot, widget_id: str, values: list[str]) -> None:
    await tab_to(pilot, widget_id)
    widget = pilot.app.focused
    assert isinstance(widget, SelectionList)
    options = [str(widget.get_option_at_index(i).value) for i in range(widget.option_count)]
    for value in values:
        target = options.index(value)
        for _ in range(len(options) * 2):
            if widget.highlighted == target:
                break
            await pilot.press("down" if widget.highlighted is None or widget.highlighted < target else "up")
        await pilot.press("space")
    assert sorted(widget.selected) == sorted(values)


async def test_compose_queue_and_watch_a_real_run(tmp_path, tiny_model):
    store = RunStore(tmp_path / "runs")
    app = create_app(store, Runner(store, cpu_slots=1, gpus=[]), experiments_dir=tmp_path / "experiments")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen))
        await replace_text(pilot, "f-name", "e2e-hybrid")
        await replace_text(pilot, "f-encoder-name", str(tiny_model))
        await choose(pilot, "f-train-languages", ["de", "en"])
        await replace_text(pilot, "f-train-max-questions", "40")
        await replace_text(pilot, "f-train-steps", "3")
        await replace_text(pilot, "f-train-batch-size", "8")
        await choose(pilot, "f-eval-languages", ["de", "en"])
        await replace_text(pilot, "f-eval-max-queries", "8")
        await pilot.pause()
        assert app.screen.problems == [], app.screen.problems
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not isinstance(app.screen, ComposeScreen))
        (run,) = store.all()
        assert run["name"] == "e2e-hybrid" and run["strategy"] == "hybrid"
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen))
        table = app.screen.query_one("#detail-table")
        filled = []

        def progress() -> bool:
            cells = {(row, col): getattr(table.get_cell(row, col), "plain", "")
                     for row in ("en", "de") for col in ("mono", "cross", "multi")}
            filled.append(sum(value not in ("·", "") for value in cells.values()))
            return store.get(run["id"])["status"] in ("finished", "failed")

        await wait_until(pilot, progress, tries=3000)
        assert store.get(run["id"])["status"] == "finished", store.get(run["id"]).get("error")
        await pilot.pause()
        progress()
        assert filled[0] == 0 and filled[-1] == 6   # empty when opened, every cell once the run reported
        assert getattr(table.get_cell("macro", "multi"), "plain", "·") != "·"


async def test_cancel_a_run_that_another_process_owns(tmp_path, tiny_model):
    import json
    import subprocess
    import sys

    from runs_helpers import env, tiny_spec, write

    runs = tmp_path / "runs"
    spec = write(tmp_path / "long.json", tiny_spec(tiny_model, **{"train.steps": 100000, "train.checkpoint_every": 0}))
    owner = subprocess.Popen([sys.executable, "-m", "engine.cli", "--run", str(spec), "--runs-dir", str(runs)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        store = RunStore(runs)
        app = create_app(store, Runner(store, cpu_slots=1, gpus=[]), experiments_dir=tmp_path / "experiments")
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_until(pilot, lambda: any(run["status"] == "running" and (run.get("step") or 0) >= 0
                                                for run in store.all()), tries=6000)
            (run,) = store.all()
            await wait_until(pilot, lambda: run["id"] in app.screen.query_one("#runs-table").rows)
            table = app.screen.query_one("#runs-table")
            table.move_cursor(row=table.get_row_index(run["id"]))
            await pilot.press("c")
            await wait_until(pilot, lambda: (store.get(run["id"]) or {}).get("status") == "cancelled", tries=6000)
            record = json.loads((runs / run["id"] / "run.json").read_text())
            assert record["status"] == "cancelled" and record["owner"]["pid"] == owner.pid
        assert owner.wait(timeout=300) == 1   # the owner stopped its own run and exited
    finally:
        if owner.poll() is None:
            owner.kill()


def children_of(pid: int, module: str) -> list[int]:
    """The processes whose parent is `pid` running `python -m module` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and module.encode() in command:
            found.append(int(stat.parent.name))
    return found


async def test_a_run_started_by_another_process_looks_the_same_on_its_detail_screen(tmp_path, tiny_model):
    """The TUI on D; `hbt-tui --run` in another process; the run opened while it trains: when that
    process ends, the detail screen shows its final step, status and scores (it showed step 4/10
    and the step-0 scores until the TUI was restarted)."""
    import json
    import subprocess
    import sys

    from textual.widgets import Static

    from runs_helpers import env, tiny_spec, write
    from tui.screens.runs import RunsScreen

    runs, held = tmp_path / "runs", []
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, **{"train.steps": 24, "train.checkpoint_every": 0,
                                                                  "eval.at_start": True}))
    other = subprocess.Popen([sys.executable, "-m", "engine.cli", "--run", str(spec), "--runs-dir", str(runs)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    try:
        from runs_helpers import wait_for

        # the training process is held (SIGSTOP) from the moment it exists, so the screen is
        # certainly opened while the run is running, whatever the machine's speed
        trainer = wait_for(lambda: next(iter(children_of(other.pid, "engine.train")), None), what="the training process", every=0.01)
        os.kill(trainer, signal.SIGSTOP)
        held.append(trainer)
        store = RunStore(runs)
        app = create_app(store, Runner(store, cpu_slots=1, gpus=[]), experiments_dir=tmp_path / "experiments")
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
            run_id = next(path.name for path in runs.iterdir() if path.is_dir() and not path.name.startswith("."))
            await wait_until(pilot, lambda: (app.store.get(run_id) or {}).get("status") == "running", tries=6000)
            app.open_run(run_id)
            await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.folder is not None)
            opened = str(app.screen.query_one("#detail-header", Static).render())
            assert other.poll() is None and "running" in opened and "step 0/" in opened   # open before it trains
            os.kill(trainer, signal.SIGCONT)
            held.clear()
            await wait_until(pilot, lambda: other.poll() is not None, tries=12000)
            results = json.loads((runs / run_id / "eval" / "xquad-r" / "results.json").read_text())
            assert results["step"] == 24
            screen = app.screen
            await wait_until(pilot, lambda: app.ensure_live(run_id).step == 24 and
                             "finished" in str(screen.query_one("#detail-header", Static).render()), tries=6000)
            header = str(screen.query_one("#detail-header", Static).render())
            assert "step 24/24" in header
            await wait_until(pilot, lambda: screen.table_key == ("xquad-r", 24), tries=6000)
            table = screen.query_one("#detail-table")
            macro = results["macro"]["multi"][results["primary_metric"]]
            await wait_until(pilot, lambda: str(table.get_cell("macro", "multi")) == f"{macro:.3f}", tries=6000)
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
            loss = app.ensure_live(run_id).loss
            runs_table = app.screen.query_one("#runs-table")
            assert str(runs_table.get_cell(run_id, "loss")) == f"{loss:.3f}"
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)
        other.kill()
        other.wait()


async def test_quitting_can_leave_the_runs_training_in_the_background(tmp_path, tiny_model):
    """ctrl+q → b: the run checkpoints, a detached `hbt-tui resume` claims it and goes on from
    that step after the TUI has exited; it owns the run from then on (here it is then cancelled
    from the command line, as any run another process owns)."""
    import json
    import re

    from engine.contract.events import Started, Step, read_events
    from engine.contract.validation import parse_spec
    from engine.parent.orphans import cancel_elsewhere
    from runs_helpers import tiny_spec, wait_for
    from tui.screens.confirm import ChoiceScreen

    runs = tmp_path / "runs"
    store = RunStore(runs)
    app = create_app(store, Runner(store, cpu_slots=1, gpus=[]), experiments_dir=tmp_path / "experiments")
    spec = parse_spec(tiny_spec(tiny_model, **{"train.steps": 100000, "train.checkpoint_every": 0}))
    background = None
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            run_id = app.service.submit(spec)
            await wait_until(pilot, lambda: app.ensure_live(run_id).step >= 2, tries=6000)
            await pilot.press("ctrl+q")
            await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
            await pilot.press("b")
            await wait_until(pilot, lambda: not app.is_running, tries=6000)
        said = app.return_value
        assert isinstance(said, str) and "1 run continue in the background" in said
        background = int(re.search(r"\(pid (\d+)\)", said).group(1))
        folder = runs / run_id

        def resumed_and_stepping():
            events = read_events(folder / "events.jsonl")
            starts = [index for index, event in enumerate(events) if isinstance(event, Started)]
            later = [event for event in events[starts[-1]:] if isinstance(event, Step)] if len(starts) > 1 else []
            return events[starts[-1]] if len(later) >= 2 else None

        started = wait_for(resumed_and_stepping, what="the background process to resume the run")
        assert started.resumed_from_step >= 2                     # from the checkpoint, not from step 0
        record = json.loads((folder / "run.json").read_text())
        assert record["status"] == "running" and record["owner"]["pid"] == background
        assert await cancel_elsewhere(RunStore(runs), run_id) == "cancelled"
        assert os.waitpid(background, 0)[0] == background
        background = None
    finally:
        if background is not None:
            os.killpg(background, signal.SIGKILL)
            os.waitpid(background, 0)
