"""Snapshots of the main screens (regenerate with `pytest --snapshot-update` and look)."""

from __future__ import annotations

import pytest

from tui.screens.compare import CompareScreen
from tui.screens.run_detail import RunDetailScreen
from tui_helpers import grouped_store, replay_app, wait_until


def test_runs_screen_80x24(snap_compare, tmp_path):
    assert snap_compare(replay_app(tmp_path), terminal_size=(80, 24))


def test_runs_screen_160x50(snap_compare, tmp_path):
    assert snap_compare(replay_app(tmp_path), terminal_size=(160, 50))


def filled(pilot) -> bool:
    """The detail screen shows its table with every cell, down to the macro row."""
    screen = pilot.app.screen
    if not isinstance(screen, RunDetailScreen) or screen.folder is None or screen.folder_size is None:
        return False
    log = screen.query_one("#detail-log")
    return (getattr(screen.query_one("#detail-table").get_cell("macro", "multi"), "plain", "·") != "·"
            and log.line_count > 0 and log.scroll_y == log.max_scroll_y)


def test_run_detail_screen(snap_compare, tmp_path):
    async def open_detail(pilot):
        pilot.app.open_run("hybrid-run")
        await wait_until(pilot, lambda: filled(pilot))

    assert snap_compare(replay_app(tmp_path), terminal_size=(110, 32), run_before=open_detail)


def test_failed_run_detail_80x24(snap_compare, tmp_path):
    async def open_detail(pilot):
        pilot.app.open_run("failed-run")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen)
                         and pilot.app.screen.folder is not None and pilot.app.screen.folder_size is not None
                         and pilot.app.screen.query_one("#detail-stderr").display)

    assert snap_compare(replay_app(tmp_path), terminal_size=(80, 24), run_before=open_detail)


def test_compare_screen(snap_compare, tmp_path):
    async def open_compare(pilot):
        pilot.app.open_compare(["hybrid-run", "mono-run"])
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen)
                         and pilot.app.screen.rendered is not None)  # both tables laid out, not just computed

    assert snap_compare(replay_app(tmp_path), terminal_size=(160, 40), run_before=open_compare)


def test_compose_screen_80x24(snap_compare, tmp_path):
    assert snap_compare(replay_app(tmp_path), terminal_size=(80, 24), press=["n"])


# --- a grid's runs grouped, and every screen at 120x36 and 80x24 -------------------------------------

SIZES = [(120, 36), (80, 24)]


async def open_grid(pilot) -> None:
    from tui.screens.runs import RunsScreen

    await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
    screen = pilot.app.screen
    table = screen.query_one("#runs-table")
    table.move_cursor(row=table.get_row_index("group:study"))
    await pilot.press("enter")
    await wait_until(pilot, lambda: "config:study:study-strategy=hybrid" in table.rows)
    table.move_cursor(row=table.get_row_index("config:study:study-strategy=hybrid"))
    await pilot.press("enter")
    await wait_until(pilot, lambda: "grid-hybrid-2" in table.rows)


@pytest.mark.parametrize("size", SIZES, ids=["120x36", "80x24"])
def test_runs_grouped(snap_compare, tmp_path, size):
    assert snap_compare(replay_app(tmp_path, store=grouped_store(tmp_path)), terminal_size=size, run_before=open_grid)


@pytest.mark.parametrize("size", SIZES, ids=["120x36", "80x24"])
def test_run_detail_sizes(snap_compare, tmp_path, size):
    async def open_detail(pilot):
        pilot.app.open_run("hybrid-run")
        await wait_until(pilot, lambda: filled(pilot))

    assert snap_compare(replay_app(tmp_path), terminal_size=size, run_before=open_detail)


@pytest.mark.parametrize("size", SIZES, ids=["120x36", "80x24"])
async def test_detail_log_spans_the_width_below_130_columns(tmp_path, size):
    """Below 130 columns the event log runs under the table and the chart, at the full width
    (it was a 26-column strip at 80×24), with its newest line in view; the history stays whole."""
    app = replay_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        app.open_run("hybrid-run")
        # the layout below 130 columns is a breakpoint class: wait for it to be applied, then measure
        await wait_until(pilot, lambda: filled(pilot)
                         and app.screen.query_one("#detail-log").region.width >= size[0] - 2)
        log, history = app.screen.query_one("#detail-log"), app.screen.query_one("#detail-history")
        assert log.region.width >= size[0] - 2
        assert log.region.y > history.region.y
        body = app.screen.query_one("#detail-body").region
        assert history.region.bottom <= log.region.y <= body.bottom - 6      # 4 lines of log and its border
        assert len(str(history.render()).splitlines()) == 5                  # title, header, steps 0, 6, 12


async def test_detail_log_keeps_its_newest_line_when_the_terminal_narrows(tmp_path):
    """Narrowing the terminal past the breakpoint makes the log shorter; its newest line stays in view
    (Textual's Log follows new lines only: the lines shown stayed put and the tail fell below)."""
    app = replay_app(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        app.open_run("hybrid-run")
        await wait_until(pilot, lambda: filled(pilot))
        log = app.screen.query_one("#detail-log")
        wide_height = log.region.height
        await pilot.resize_terminal(100, 30)
        await wait_until(pilot, lambda: log.region.width >= 98 and log.region.height < wide_height)
        await wait_until(pilot, lambda: log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y)


@pytest.mark.parametrize("size", SIZES, ids=["120x36", "80x24"])
def test_compare_sizes(snap_compare, tmp_path, size):
    async def open_compare(pilot):
        pilot.app.open_compare(["grid-hybrid-1", "grid-hybrid-2", "grid-monolingual-1", "grid-monolingual-2"])
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen)
                         and pilot.app.screen.rendered is not None)

    assert snap_compare(replay_app(tmp_path, store=grouped_store(tmp_path)), terminal_size=size, run_before=open_compare)


@pytest.mark.parametrize("size", SIZES, ids=["120x36", "80x24"])
def test_report_sizes(snap_compare, tmp_path, size):
    from engine.parent.report.build import build
    from engine.parent.report.saved import save_report
    from tui.screens.reports import ReportScreen

    store = grouped_store(tmp_path)
    save_report(store, build(store, ["study"], title="Grouped study"))
    report_id = store.reports()[0]["id"]

    async def open_report(pilot):
        pilot.app.push_screen(ReportScreen(report_id))
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ReportScreen) and pilot.app.screen.drawn)

    assert snap_compare(replay_app(tmp_path, store=store), terminal_size=size, run_before=open_report)
