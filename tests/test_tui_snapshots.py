"""Snapshots of the main screens (regenerate with `pytest --snapshot-update` and look)."""

from __future__ import annotations

from tui.screens.compare import CompareScreen
from tui.screens.run_detail import RunDetailScreen
from tui_helpers import replay_app, wait_until


def test_runs_screen_80x24(snap_compare, tmp_path):
    assert snap_compare(replay_app(tmp_path), terminal_size=(80, 24))


def test_runs_screen_160x50(snap_compare, tmp_path):
    assert snap_compare(replay_app(tmp_path), terminal_size=(160, 50))


def filled(pilot) -> bool:
    """The detail screen shows its table with every cell, down to the macro row."""
    screen = pilot.app.screen
    if not isinstance(screen, RunDetailScreen) or screen.folder is None:
        return False
    return getattr(screen.query_one("#detail-table").get_cell("macro", "multi"), "plain", "·") != "·"


def test_run_detail_screen(snap_compare, tmp_path):
    async def open_detail(pilot):
        pilot.app.open_run("hybrid-run")
        await wait_until(pilot, lambda: filled(pilot))

    assert snap_compare(replay_app(tmp_path), terminal_size=(110, 32), run_before=open_detail)


def test_failed_run_detail_80x24(snap_compare, tmp_path):
    async def open_detail(pilot):
        pilot.app.open_run("failed-run")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen)
                         and pilot.app.screen.folder is not None
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
