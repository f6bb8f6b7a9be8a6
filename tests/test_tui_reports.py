"""The Reports screen: saved reports and comparisons listed, one opened again with its text
and its plots; driven by the Pilot, and a snapshot of the list."""

from __future__ import annotations

from textual.widgets import DataTable, Markdown

from engine.parent.compare import compare, load_run
from engine.parent.report.build import build
from engine.parent.report.saved import save_comparison, save_report
from tui.screens.reports import ReportScreen, ReportsScreen
from tui_helpers import recorded_store, replay_app, wait_until

FIXED = 1795600000.0   # a saved report's time, pinned so the snapshot does not depend on the clock


def saved_reports(tmp_path):
    """A store of recorded runs with one report and one comparison saved (times pinned)."""
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
        pane = screen.query_one("#report-text")
        assert pane.has_focus and pane.max_scroll_y > 0                 # the tables below the answer are reachable
        await pilot.press("end")
        await wait_until(pilot, lambda: pane.scroll_y == pane.max_scroll_y)
        await pilot.press("home")
        await wait_until(pilot, lambda: pane.scroll_y == 0)
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


async def test_reports_are_deleted_and_the_list_follows_what_others_save(tmp_path):
    store = saved_reports(tmp_path)
    app = replay_app(tmp_path, store=store)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ReportsScreen))
        table = app.screen.query_one("#reports-table", DataTable)
        assert table.row_count == 2
        headline = next(str(table.get_row(key)[3]) for key in table.rows if str(table.get_row(key)[1]) == "report")
        assert table.columns[next(iter(k for k in table.columns if str(k.value) == "headline"))].width >= len(headline)
        assert sum(column.get_render_width(table) for column in table.columns.values()) <= table.size.width
        assert headline in "\n".join(strip.text for strip in table.render_lines(table.region.reset_offset))
        runs = [load_run(store.folder(run_id)) for run_id in ("hybrid-run", "failed-run")]
        save_comparison(store, [compare(runs[:1] + [load_run(store.folder("mono-run"))], "xquad-r", "ndcg@10",
                                        with_ci=True)])                        # another process saves one
        await wait_until(pilot, lambda: table.row_count == 3)
        report_id = next(str(key.value) for key in table.rows if str(table.get_row(key)[1]) == "report")
        table.move_cursor(row=table.get_row_index(report_id))
        await pilot.press("d")
        await pilot.press("y")
        await wait_until(pilot, lambda: table.row_count == 2)
        assert report_id not in {record["id"] for record in store.reports()}
        assert not (store.runs_dir / ".reports" / report_id).exists()


async def test_compare_keys_do_not_pile_up_saved_comparisons(tmp_path):
    from tui.screens.compare import CompareScreen

    app = replay_app(tmp_path)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        app.open_compare(["hybrid-run", "mono-run"])
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.rendered is not None)
        for key in ("b", "m", "m", "b"):
            before = app.screen.rendered
            await pilot.press(key)
            await wait_until(pilot, lambda: app.screen.rendered is not before)
        assert app.store.reports() == []
        await pilot.press("s")
        await wait_until(pilot, lambda: len(app.store.reports()) == 1)


def test_wide_tables_become_lists_and_each_plot_has_its_title(tmp_path):
    """A table wider than the pane reads as one bullet per row (Textual squeezes it into "…"
    cells otherwise); plot titles are labels, since plotext drops a title wider than its plot."""
    from tui.screens.reports import narrow_tables

    text = "intro\n\n| id | claim | p |\n|---|---|---:|\n| Q1 | a long claim | 0.5 |\n|  | no id |  |\n\nafter"
    assert narrow_tables(text, 200) == text
    narrow = narrow_tables(text, 10)
    assert "- **id** Q1 · **claim** a long claim · **p** 0.5\n- **claim** no id" in narrow and "|" not in narrow
    assert narrow.startswith("intro\n\n") and narrow.endswith("\n\nafter")


async def test_an_opened_report_fits_its_pane_at_120_columns(tmp_path):
    app = replay_app(tmp_path, store=saved_reports(tmp_path))
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        for kind in ("report", "compare"):
            record = next(record for record in app.store.reports() if record["kind"] == kind)
            app.push_screen(ReportScreen(record["id"]))
            await wait_until(pilot, lambda: isinstance(app.screen, ReportScreen) and app.screen.drawn)
            screen = app.screen
            width = screen.query_one("#report-text").size.width
            source = screen.query_one(Markdown).source
            assert [line for line in source.splitlines() if line.startswith("|") and len(line) > width] == []
            assert str(screen.query_one("#report-gains-title").render()).endswith("(* significant)")
            if kind == "report":
                assert "**corrected p**" in source and "**claim** hybrid α=0.5" in source
            await pilot.press("escape")
            await wait_until(pilot, lambda: not isinstance(app.screen, ReportScreen))
