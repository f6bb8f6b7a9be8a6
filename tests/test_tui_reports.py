"""The Reports screen: saved reports and comparisons listed, one opened again with its text
and its plots; driven by the Pilot, and a snapshot of the list."""

from __future__ import annotations

from textual.widgets import DataTable, Markdown

from engine.parent.report.build import build
from engine.parent.report.saved import save_comparison, save_report
from tui.screens.reports import ReportScreen, ReportsScreen
from tui_helpers import recorded_store, replay_app, wait_until

FIXED = 1795600000.0   # a saved report's time, pinned so the snapshot does not depend on the clock


def saved_reports(tmp_path):
    """A store of recorded runs with one report and one comparison saved (times pinned)."""
    from engine.parent.compare import compare, load_run

    store = recorded_store(tmp_path)
    save_report(store, build(store, ["hybrid-run", "mono-run"], title="Recorded: hybrid vs X-X"))
    runs = [load_run(store.folder(run_id)) for run_id in ("hybrid-run", "mono-run")]
    save_comparison(store, [compare(runs, "xquad-r", with_ci=True)])
    for number, record in enumerate(store.reports()):
        store.save_report({**record, "created": FIXED + number})
    return store


async def test_reports_are_listed_and_one_opens_with_its_text_and_plots(tmp_path):
    app = replay_app(tmp_path, store=saved_reports(tmp_path))
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ReportsScreen))
        table = app.screen.query_one("#reports-table", DataTable)
        rows = {str(key.value): table.get_row(key) for key in table.rows}
        assert len(rows) == 2
        report_id = next(key for key, row in rows.items() if str(row[1]) == "report")
        assert str(rows[report_id][3]).startswith("hybrid α=0.5 vs X-X: xquad-r multi map")
        table.move_cursor(row=table.get_row_index(report_id))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ReportScreen) and app.screen.drawn)
        screen = app.screen
        assert screen.query_one(Markdown).source.split("\n", 2)[2].startswith("## The answer")  # the family first
        assert "hybrid α=0.5 beats X-X in multilingual retrieval on xquad-r" in screen.query_one(Markdown).source
        assert screen.query_one("#report-gains").display
        await pilot.press("escape")
        compare_id = next(key for key, row in rows.items() if str(row[1]) == "compare")
        table = app.screen.query_one("#reports-table", DataTable)
        table.move_cursor(row=table.get_row_index(compare_id))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ReportScreen) and app.screen.drawn)
        assert "**xquad-r · map**" in app.screen.query_one(Markdown).source
        assert not app.screen.query_one("#report-sweep").display        # a comparison has no α sweep


def test_reports_screen_snapshot(snap_compare, tmp_path):
    store = saved_reports(tmp_path)

    async def open_reports(pilot):
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ReportsScreen))

    assert snap_compare(replay_app(tmp_path, store=store), terminal_size=(140, 30), run_before=open_reports)
