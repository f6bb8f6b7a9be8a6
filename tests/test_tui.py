"""Pilot-driven tests of every screen, with a runner that replays recorded runs."""

from __future__ import annotations

import json
import shutil

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, Input, Log, Static

from engine.contract.events import Notice, Started, read_events
from engine.contract.validation import load_spec
from tui.messages import RunEventReceived, StepReceived
from tui.screens.compare import CompareScreen, cell_text
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.run_detail import RunDetailScreen
from tui.screens.runs import RunsScreen
from tui_helpers import FIXTURES, replay_app, wait_until

QUICK_DOCUMENT = {"name": "queued", "train": {"languages": ["en", "de"], "steps": 12},
                  "eval": {"datasets": ["xquad-r"], "languages": ["en", "de", "zh"], "max_queries": 10}}


def plain(cell) -> str:
    return getattr(cell, "plain", str(cell))


def runs_table(app) -> DataTable:
    return app.screen.query_one("#runs-table", DataTable)


async def test_runs_screen_lists_filters_and_sorts(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        table = runs_table(app)
        assert set(key.value for key in table.rows) == {"hybrid-run", "mono-run", "failed-run"}
        assert plain(table.get_cell("failed-run", "status")).endswith("failed")
        assert plain(table.get_cell("hybrid-run", "progress")).endswith("12/12")
        await pilot.press("slash")
        await pilot.press(*"status:failed")
        await pilot.pause()
        assert [key.value for key in table.rows] == ["failed-run"]
        app.screen.query_one("#runs-filter", Input).value = ""
        await pilot.pause()
        await pilot.press("enter")  # leave the filter
        for _ in range(3):  # created -> name -> status -> strategy
            await pilot.press("s")
        await pilot.pause()
        assert app.screen.sort_key == "strategy"
        assert len(table.rows) == 3


async def test_queued_run_updates_its_row_live_and_finishes(tmp_path):
    app = replay_app(tmp_path, rate=30)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        (run_id,) = app.queue_document(QUICK_DOCUMENT)
        table = runs_table(app)
        await wait_until(pilot, lambda: run_id in table.rows)
        await wait_until(pilot, lambda: plain(table.get_cell(run_id, "status")).endswith("running"))
        seen_progress = set()
        await wait_until(pilot, lambda: seen_progress.add(plain(table.get_cell(run_id, "progress"))) or
                         plain(table.get_cell(run_id, "status")).endswith("finished"))
        assert plain(table.get_cell(run_id, "progress")).endswith("12/12")
        assert len(seen_progress) >= 3  # the cell changed as steps arrived
        assert plain(table.get_cell(run_id, "multi")) != "–"
        assert app.store.get(run_id)["status"] == "finished"


async def test_step_messages_for_one_run_replace_each_other():
    from engine.contract.events import Step

    older = StepReceived("a", Step(step=1, total_steps=9, loss=1.0, lr=0.1, samples_per_s=1, tokens_per_s=1))
    newer = StepReceived("a", Step(step=2, total_steps=9, loss=0.9, lr=0.1, samples_per_s=1, tokens_per_s=1))
    other = StepReceived("b", Step(step=2, total_steps=9, loss=0.9, lr=0.1, samples_per_s=1, tokens_per_s=1))
    assert older.can_replace(newer) and not older.can_replace(other)
    assert not RunEventReceived("a", newer.event).can_replace(newer)


async def test_run_detail_fills_the_table_cell_by_cell(tmp_path):
    app = replay_app(tmp_path, runs={"live-run": "hybrid"})
    events = read_events(FIXTURES / "hybrid" / "events.jsonl")
    shutil.rmtree(app.store.runs_dir / "live-run" / "eval")
    (app.store.runs_dir / "live-run" / "events.jsonl").write_text("")  # as if it had just been queued
    async with app.run_test(size=(100, 34)) as pilot:
        await pilot.pause()
        app.open_run("live-run")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        table = screen.query_one("#detail-table")
        final_evals = [e for e in events if e.kind == "eval" and e.step == 12]
        first_mono = next(e for e in final_evals if set(e.settings) == {"mono"})
        for event in events:
            app.post_message(RunEventReceived("live-run", event))
            await pilot.pause()
            if event is first_mono:  # mono for one language arrived, nothing else yet
                row = first_mono.language
                assert plain(table.get_cell(row, "mono")) == f"{first_mono.settings['mono']['map']:.3f}"
                assert plain(table.get_cell(row, "multi")) == "·"
                assert plain(table.get_cell("macro", "mono")) == "·"
        results = json.loads((FIXTURES / "hybrid" / "eval" / "xquad-r" / "results.json").read_text())
        for language, row in results["per_language"].items():
            for setting in ("mono", "cross", "multi"):
                assert plain(table.get_cell(language, setting)) == f"{row['settings'][setting]['map']:.3f}"
            assert plain(table.get_cell(language, "bias")) == f"{row['bias']:.1f}"
        assert plain(table.get_cell("macro", "multi")) == f"{results['macro']['multi']['map']:.3f}"
        assert len(screen.query_one("#detail-loss").data) == 12
        assert screen.query_one("#detail-log", Log).line_count > 5
        await pilot.press("m")  # next metric: the same cells, another metric
        await pilot.pause()
        assert table.metric == "map@20"


async def test_failed_run_shows_error_and_stderr_tail(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.open_run("failed-run")
        await pilot.pause()
        stderr = app.screen.query_one("#detail-stderr", Static)
        assert stderr.display
        assert "no language has enough distinct monolingual training pairs" in str(stderr.render())


async def test_compare_screen_deltas_significance_diff_and_export(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        table = runs_table(app)
        table.move_cursor(row=table.get_row_index("hybrid-run"))
        await pilot.press("space")
        table.move_cursor(row=table.get_row_index("mono-run"))
        await pilot.press("space", "m")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        screen = app.screen
        comparison = screen.comparison
        assert [run.id for run in comparison.runs] == ["hybrid-run", "mono-run"]
        compare_table = screen.query_one("#compare-table", DataTable)
        assert {key.value for key in compare_table.rows} >= {"en", "de", "zh", "high", "macro avg"}
        cell = comparison.rows[0][2][("multi", 1)]
        assert cell.delta == pytest.approx(cell.value - comparison.rows[0][2][("multi", 0)].value)
        assert plain(compare_table.get_cell(comparison.rows[0][0], "multi:1")) == plain(cell_text(cell))
        diff = screen.query_one("#compare-diff", DataTable)
        assert "sampling.strategy" in {plain(diff.get_row_at(i)[0]) for i in range(diff.row_count)}
        await pilot.press("b")  # the other run becomes the baseline
        await wait_until(pilot, lambda: screen.comparison.runs and screen.baseline == 1 and
                         screen.comparison.rows[0][2][("multi", 0)].delta is not None)
        await pilot.press("e")
        await wait_until(pilot, lambda: len(list((tmp_path / "exports").glob("*"))) == 3 if (tmp_path / "exports").exists()
                         else False)
        exported = sorted(path.suffix for path in (tmp_path / "exports").iterdir())
        assert exported == [".csv", ".md", ".tex"]


def drop_languages(folder, keep: set[str]) -> None:
    """Make a recorded run one that was evaluated on `keep` only (results and per-query scores)."""
    import gzip

    results_dir = folder / "eval" / "xquad-r"
    results = json.loads((results_dir / "results.json").read_text())
    results["languages"] = [language for language in results["languages"] if language in keep]
    results["per_language"] = {language: value for language, value in results["per_language"].items()
                               if language in keep}
    (results_dir / "results.json").write_text(json.dumps(results))
    lines = gzip.decompress((results_dir / "per_query.tsv.gz").read_bytes()).decode().splitlines()
    kept = [lines[0]] + [line for line in lines[1:] if line.split("\t")[0] in keep]
    (results_dir / "per_query.tsv.gz").write_bytes(gzip.compress(("\n".join(kept) + "\n").encode()))


async def test_compare_over_different_language_sets_says_what_it_left_out(tmp_path):
    """Runs evaluated on en/de/zh and en/de are compared on en and de, and the footnote names
    zh; with no language in common the screen says so in one line (it showed a macro Δ over
    different sets, and "Holm-corrected over the 0 cells")."""
    from tui_helpers import recorded_store

    store = recorded_store(tmp_path, {"hybrid-run": "hybrid", "mono-run": "monolingual", "zh-run": "hybrid"})
    drop_languages(store.runs_dir / "mono-run", {"en", "de"})
    drop_languages(store.runs_dir / "zh-run", {"zh"})
    store.rebuild()
    app = replay_app(tmp_path, store=store)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        app.open_compare(["hybrid-run", "mono-run"])
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None)
        screen = app.screen
        rows = {key.value for key in screen.query_one("#compare-table", DataTable).rows}
        assert {"en", "de"} <= rows and "zh" not in rows
        footnote = str(screen.query_one("#compare-footnote", Static).render())
        assert "compared on the 2 languages every run was evaluated on — left out: zh" in footnote
        assert "over the 0 cells" not in footnote
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        app.open_compare(["mono-run", "zh-run"])
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen) and any(
            "share no language" in str(title.render()) for title in app.screen.query("#compare-title")))
        title = str(app.screen.query_one("#compare-title", Static).render())
        assert title.count("\n") == 0 and "xquad-r" in title
        assert app.screen.query_one("#compare-table", DataTable).row_count == 0


def test_significance_mark_and_colour():
    from engine.parent.compare import Cell

    better = cell_text(Cell(0.8, delta=0.05, p_value=0.001, p_adjusted=0.004))
    assert better.plain.endswith("+0.050*") and "green" in str(better.spans)
    worse = cell_text(Cell(0.7, delta=-0.02, p_value=0.01, p_adjusted=0.4))   # significant only before correction
    assert worse.plain.endswith("-0.020 ") and "red" in str(worse.spans)


async def test_compose_validates_as_you_type(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ComposeScreen)
        alpha = screen.query_one("#f-sampling-alpha", Input)
        alpha.focus()
        await pilot.press(*"1.5")
        await pilot.pause()
        errors = str(screen.query_one("#compose-errors", Static).render())
        assert "sampling.alpha: must be in [0, 1], got 1.5" in errors
        assert alpha.has_class("-invalid")
        await pilot.press("backspace", "backspace", "backspace", *"0.25")
        await pilot.pause()
        assert "valid" in str(screen.query_one("#compose-errors", Static).render())
        assert not alpha.has_class("-invalid")


async def test_compose_grid_save_and_queue(tmp_path):
    app = replay_app(tmp_path, rate=400)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        app.push_screen(ComposeScreen(dict(QUICK_DOCUMENT, name="sweep")))
        await pilot.pause()
        screen = app.screen
        screen.query_one("#grid-strategies").press()
        await pilot.pause()
        assert "4 runs" in str(screen.query_one("#compose-errors", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        saved = load_spec(tmp_path / "experiments" / "sweep.json")
        assert saved.grid["sampling.strategy"] == ("monolingual", "crosslingual", "hybrid", "multitask")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not isinstance(app.screen, ComposeScreen))  # checked in a worker, then queued
        assert isinstance(app.screen, RunsScreen)
        queued = [run for run in app.store.all() if run["name"].startswith("sweep-strategy=")]
        assert len(queued) == 4
        await app.service.wait([run["id"] for run in queued])
        await pilot.pause()
        assert {app.store.get(run["id"])["status"] for run in queued} == {"finished"}


async def test_invalid_spec_file_opens_in_compose_with_its_errors(tmp_path):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"name": "bad", "sampling": {"alpha": 3}, "train": {"languages": ["en", "xx"]}}))
    app = replay_app(tmp_path, open_spec=spec)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ComposeScreen)
        errors = str(screen.query_one("#compose-errors", Static).render())
        assert "sampling.alpha: must be in [0, 1], got 3" in errors
        assert screen.query_one("#f-sampling-alpha", Input).value == "3"
        assert screen.query_one("#f-sampling-alpha", Input).has_class("-invalid")


async def test_deleted_run_folder_shows_missing_not_a_crash(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        shutil.rmtree(app.store.runs_dir / "mono-run")
        app.screen.check_missing()
        await pilot.pause()
        assert plain(runs_table(app).get_cell("mono-run", "status")).endswith("missing")
        app.open_run("mono-run")
        await pilot.pause()
        assert "folder is missing" in str(app.screen.query_one("#detail-header", Static).render())
        await pilot.press("escape", "space")
        table = runs_table(app)
        table.move_cursor(row=table.get_row_index("hybrid-run"))
        await pilot.press("space", "m")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.rendered is not None)
        assert isinstance(app.screen, CompareScreen)  # the comparison worker finished; the app is still alive


async def queued_and_stepping(pilot, app, steps: int = 1) -> str:
    """Queue the quick document and wait until its replay has made `steps` steps."""
    await pilot.pause()
    (run_id,) = app.queue_document(QUICK_DOCUMENT)
    await wait_until(pilot, lambda: app.ensure_live(run_id).step >= steps)
    return run_id


async def test_resize_mid_run_keeps_the_tables(tmp_path):
    app = replay_app(tmp_path, rate=60)
    async with app.run_test(size=(160, 50)) as pilot:
        run_id = await queued_and_stepping(pilot, app, 2)
        app.open_run(run_id)
        await pilot.pause()
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.resize_terminal(160, 50)
        await app.service.wait([run_id])
        await pilot.pause()
        table = app.screen.query_one("#detail-table")
        assert {key.value for key in table.rows} >= {"en", "de", "zh", "macro"}
        assert plain(table.get_cell("macro", "multi")) != "·"


async def ask_to_delete(pilot, app, run_id: str) -> None:
    """Cursor on the run's row, `d`, until the question is shown."""
    await pilot.pause()
    table = runs_table(app)
    table.move_cursor(row=table.get_row_index(run_id))
    await pilot.press("d")
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))


async def test_delete_asks_first(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await ask_to_delete(pilot, app, "failed-run")
        question = str(app.screen.query_one("#confirm-question", Static).render())
        assert "and its folder (" in question and "kB)" in question             # the size, measured first
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert app.store.get("failed-run") is not None
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: app.store.get("failed-run") is None)   # removed in a worker
        assert not (app.store.runs_dir / "failed-run").exists()
        await wait_until(pilot, lambda: "failed-run" not in {key.value for key in runs_table(app).rows})


async def test_deleting_a_big_folder_leaves_the_screen_live(tmp_path, monkeypatch):
    """The removal runs in a worker: while it is held, the app still takes keys (here `?` opens
    help); the row goes once the removal is done. (It ran inside the key's callback, so the
    screen froze for as long as a 1.7 GB folder took to remove.)"""
    import threading

    import engine.parent.run_service as run_service

    started, gate, released = threading.Event(), threading.Event(), []
    real_rmtree = run_service.shutil.rmtree

    def slow_rmtree(path, *args, **kwargs):
        started.set()
        released.append(gate.wait(timeout=60))      # False if nothing released it: the UI was stuck
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(run_service.shutil, "rmtree", slow_rmtree)
    app = replay_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await ask_to_delete(pilot, app, "failed-run")
        await pilot.press("y")
        await wait_until(pilot, started.is_set)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert app.store.get("failed-run") is not None and not gate.is_set()   # still removing, screen live
        gate.set()
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.store.get("failed-run") is None)
        await wait_until(pilot, lambda: "failed-run" not in {key.value for key in runs_table(app).rows})
    assert released == [True]


async def test_quitting_with_runs_going_asks_first(tmp_path):
    from tui.screens.confirm import ChoiceScreen

    app = replay_app(tmp_path, rate=5)
    async with app.run_test(size=(120, 30)) as pilot:
        run_id = await queued_and_stepping(pilot, app)
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        assert "1 run is queued or running" in str(app.screen.query_one("#confirm-question", Static).render())
        await pilot.press("s")                                   # stay: nothing is cancelled
        await wait_until(pilot, lambda: not isinstance(app.screen, ChoiceScreen))
        assert app.service.status_here(run_id) == "running" and app.is_running
        await pilot.press("ctrl+q")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen))
        await pilot.press("c")
        await wait_until(pilot, lambda: not app.is_running, tries=6000)
    assert app.store.get(run_id)["status"] == "cancelled"


async def test_cancel_then_resume_from_the_keyboard(tmp_path):
    app = replay_app(tmp_path, rate=20)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        (run_id,) = app.queue_document(QUICK_DOCUMENT)
        await wait_until(pilot, lambda: app.ensure_live(run_id).step >= 1)
        table = runs_table(app)
        table.move_cursor(row=table.get_row_index(run_id))
        await pilot.press("c")
        await app.service.wait([run_id])
        await pilot.pause()
        assert app.store.get(run_id)["status"] == "cancelled"
        assert plain(table.get_cell(run_id, "status")).endswith("cancelled")
        await pilot.press("r")
        await wait_until(pilot, lambda: app.store.get(run_id)["status"] in ("queued", "running"))
        await app.service.wait([run_id])
        await pilot.pause()
        assert app.store.get(run_id)["status"] == "finished"
        assert plain(table.get_cell(run_id, "status")).endswith("finished")


async def test_help_screen_and_command_palette(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        listed = app.screen.query_one(CommandList)                      # before a key is typed: our actions
        await wait_until(pilot, lambda: listed.option_count >= 7)
        prompts = [str(listed.get_option_at_index(index).prompt) for index in range(listed.option_count)]
        assert any("New experiment (compose)" in prompt for prompt in prompts)
        assert any("Reports and past comparisons" in prompt for prompt in prompts)
        await pilot.press(*"new experiment")
        options = app.screen.query_one(CommandList)
        await wait_until(pilot, lambda: options.option_count > 0 and options.highlighted is not None)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen))


async def test_compose_asks_before_overwriting_a_spec_file(tmp_path):
    app = replay_app(tmp_path)
    existing = tmp_path / "experiments" / "sweep.json"
    existing.parent.mkdir()
    existing.write_text(json.dumps({"name": "sweep", "description": "my own notes"}))
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        app.push_screen(ComposeScreen(dict(QUICK_DOCUMENT, name="sweep")))
        await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen))
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen))
        assert json.loads(existing.read_text())["description"] == "my own notes"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: "my own notes" not in existing.read_text())
        assert load_spec(existing).train.steps == 12


async def test_run_detail_says_what_a_preparing_run_is_doing(tmp_path):
    app = replay_app(tmp_path, runs={"live-run": "hybrid"})
    shutil.rmtree(app.store.runs_dir / "live-run" / "eval")
    (app.store.runs_dir / "live-run" / "events.jsonl").write_text("")  # as if it had just been launched
    from engine.parent.records import current_owner

    (app.store.runs_dir / "live-run" / "run.json").write_text(json.dumps({"status": "running", "owner": current_owner()}))
    app.store.update("live-run", status="running")
    async with app.run_test(size=(120, 34)) as pilot:
        await pilot.pause()
        app.open_run("live-run")
        await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.folder is not None)
        header = app.screen.query_one("#detail-header", Static)
        app.post_message(RunEventReceived("live-run", Notice(message="loading model bundled:multilingual-e5-small …")))
        await wait_until(pilot, lambda: "loading model bundled:multilingual-e5-small …" in str(header.render()))
        app.post_message(RunEventReceived("live-run", Started(run_name="x", pid=1, device="cpu", precision="fp32",
                                                              total_steps=12, parameters=1, trainable_parameters=1)))
        await wait_until(pilot, lambda: "loading model" not in str(header.render()))
        assert "loading model bundled:multilingual-e5-small …" in "\n".join(app.screen.query_one(Log).lines)


async def test_the_detail_screen_shows_deltas_history_throughput_and_config(tmp_path):
    """What trackers show: Δ against step 0 per cell (tested), every evaluation so far, the
    configuration; a loss chart whose ticks are whole steps."""
    from textual.widgets import Log

    from tui.widgets.loss_chart import step_ticks, value_ticks

    app = replay_app(tmp_path)
    async with app.run_test(size=(140, 44)) as pilot:
        await pilot.pause()
        app.open_run("hybrid-run")
        await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.results.get("xquad-r"))
        screen = app.screen
        await wait_until(pilot, lambda: "45.9 kB on disk" in str(screen.query_one("#detail-header", Static).render()))
        table = screen.query_one("#detail-table")
        await wait_until(pilot, lambda: plain(table.get_cell("macro", "multi")) != "·")
        history = str(screen.query_one("#detail-history", Static).render())
        assert "evaluations (macro map)" in history and "\n     0  " in history and "\n    12  " in history
        assert "\\x0a" not in history          # lines are lines, not escapes
        final = plain(table.get_cell("macro", "multi"))
        await pilot.press("v")
        await wait_until(pilot, lambda: plain(table.get_cell("macro", "multi")).startswith(("+", "-")))
        results = json.loads((app.store.runs_dir / "hybrid-run" / "eval" / "xquad-r" / "results.json").read_text())
        before = json.loads((app.store.runs_dir / "hybrid-run" / "eval" / "xquad-r" / "step-000000" /
                             "results.json").read_text())
        delta = results["macro"]["multi"]["map"] - before["macro"]["multi"]["map"]
        assert plain(table.get_cell("macro", "multi")).rstrip("*") == f"{delta:+.3f}"
        assert "Δ vs step 0" in str(screen.query_one("#detail-table-title", Static).render())
        assert "compares these trained models" in str(screen.query_one("#detail-eval-progress", Static).render())
        await pilot.press("v", "v")                          # step 6, then off again
        await wait_until(pilot, lambda: plain(table.get_cell("macro", "multi")) == final)
        await pilot.press("k")
        config = screen.query_one("#detail-config", Static)
        assert config.display and not screen.query_one("#detail-log", Log).display
        assert "sampling.strategy" in str(config.render()) and '"hybrid"' in str(config.render())
    assert step_ticks(1) == [1] and step_ticks(12) == [1, 4, 7, 10, 12]
    assert value_ticks(2.0, 2.0) == [1.9, 1.966667, 2.033333, 2.1]


async def test_compose_keeps_what_it_loads_and_shows_every_problem(tmp_path):
    """A loaded spec with an unknown language and strategy is not rewritten silently: the values
    stay, marked, with the validator's lines — all of them at once."""
    document = dict(QUICK_DOCUMENT, name="kept", sampling={"strategy": "hybird"},
                    train={"languages": ["en", "xx"], "steps": 12, "lr": "fast"}, notes_for_me="keep")
    app = replay_app(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        app.push_screen(ComposeScreen(document))
        await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.screen.ready)
        form = app.screen.read_form()
        assert form["train"]["languages"] == ["en", "xx"] and form["sampling"]["strategy"] == "hybird"
        assert form["notes_for_me"] == "keep"
        errors = str(app.screen.query_one("#compose-errors", Static).render())
        for line in ("sampling.strategy: must be one of", "train.lr: must be a number, got 'fast'",
                     "notes_for_me: unknown field", "train.languages[1]: mlqa-r has no language 'xx'"):
            assert line in errors, errors


async def test_compose_shows_a_refused_pre_queue_check_and_asks_before_discarding_edits(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        app.push_screen(ComposeScreen(dict(QUICK_DOCUMENT, name="refused", data_dir=str(tmp_path / "nowhere"))))
        await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.screen.ready)
        screen = app.screen
        assert "✔ valid" in str(screen.query_one("#compose-errors", Static).render())
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: screen.refused is not None, tries=6000)      # the real check, in a worker
        errors = str(screen.query_one("#compose-errors", Static).render())
        assert "refused by the pre-queue check" in errors and "nowhere does not exist" in errors
        assert isinstance(app.screen, ComposeScreen) and app.store.all() and len(app.store.all()) == 3
        await pilot.press("escape")                               # nothing edited since it opened: back at once
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        app.push_screen(ComposeScreen(dict(QUICK_DOCUMENT, name="edited")))
        await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen) and app.screen.ready)
        app.screen.query_one("#f-name", Input).value = "edited-more"
        await pilot.pause()
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposeScreen))
        assert app.screen.query_one("#f-name", Input).value == "edited-more"
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_an_empty_runs_screen_says_how_to_start(tmp_path):
    from engine.parent.store import RunStore

    app = replay_app(tmp_path, store=RunStore(tmp_path / "empty"))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                         and "press n" in app.screen.query_one("#runs-filter", Input).placeholder)
        assert len(runs_table(app).rows) == 0


async def test_grid_runs_filter_by_seed_and_sort_by_duration(tmp_path):
    from tui_helpers import grouped_store

    store = grouped_store(tmp_path)
    record = store.runs_dir / "grid-hybrid-1" / "run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "ended": 1795600301.0}))   # the older seed ran longer
    store.rebuild()
    app = replay_app(tmp_path, store=store)
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and len(runs_table(app).rows) > 0)
        screen = app.screen
        for _ in range(2):               # the grid, then its configurations: every group open
            screen.expanded.update(row.key for row in screen.rows if row.kind != "run")
            screen.rebuild()
        await wait_until(pilot, lambda: sum(row.kind == "run" for row in screen.rows) == 5)
        await pilot.press("slash")
        await pilot.press(*"seed:2")
        await wait_until(pilot, lambda: {row.key for row in screen.rows if row.kind == "run"}
                         == {"grid-hybrid-2", "grid-monolingual-2"})
        assert plain(runs_table(app).get_cell("grid-hybrid-2", "seed")) == "2"
        screen.query_one("#runs-filter", Input).value = ""
        await pilot.press("enter")
        while screen.sort_key != "duration":
            await pilot.press("s")
        await wait_until(pilot, lambda: sum(row.kind == "run" for row in screen.rows) == 5)
        durations = [plain(runs_table(app).get_cell(key, "duration")) for key in ("grid-hybrid-1", "grid-hybrid-2")]
        assert durations == ["5m00s", "1m42s"]           # ended - started of each seed's record
        order = [row.key for row in screen.rows if row.kind == "run"]
        assert order.index("grid-hybrid-1") < order.index("grid-hybrid-2")      # longest first (created: newest first)


async def test_intermediate_scores_of_a_cancelled_run_carry_their_step(tmp_path):
    """A run stopped at step 6 of 12 shows the scores of its step-6 evaluation marked `@6`, so
    they are not taken for final ones; a finished run's are unmarked."""
    from tui_helpers import recorded_store

    store = recorded_store(tmp_path, {"hybrid-run": "hybrid"})
    cut = store.runs_dir / "cut-run"
    shutil.copytree(FIXTURES / "hybrid", cut)
    lines, kept, done = (cut / "events.jsonl").read_text().splitlines(), [], 0
    for line in lines:
        kept.append(line)
        done += '"event":"eval_done"' in line
        if done == 2:                       # step 0's and step 6's evaluations
            break
    time_of = json.loads(kept[-1])["time"]
    kept.append(json.dumps({"v": 1, "event": "stopped", "time": time_of + 1, "step": 6, "signal": "SIGTERM"}))
    (cut / "events.jsonl").write_text("\n".join(kept) + "\n")
    store.rebuild()
    app = replay_app(tmp_path, store=store)
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and "cut-run" in runs_table(app).rows)
        table = runs_table(app)
        assert plain(table.get_cell("cut-run", "mono")).endswith("@6")
        assert "@" not in plain(table.get_cell("hybrid-run", "mono"))


async def test_a_running_runs_detail_header_shows_samples_per_second_and_eta(tmp_path):
    app = replay_app(tmp_path, rate=3)       # slow enough that the run is still stepping when looked at
    async with app.run_test(size=(140, 36)) as pilot:
        await pilot.pause()
        (run_id,) = app.queue_document(QUICK_DOCUMENT)
        await wait_until(pilot, lambda: app.ensure_live(run_id).step >= 2)
        app.open_run(run_id)

        def header() -> str:
            found = app.screen.query("#detail-header") if isinstance(app.screen, RunDetailScreen) else []
            return str(found.first().render()) if found else ""

        await wait_until(pilot, lambda: " samples/s · ETA " in header())   # shown while it runs
