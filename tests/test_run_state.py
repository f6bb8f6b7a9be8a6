"""The one fold of a run's events (engine.parent.run_state), its tail of a growing events.jsonl,
and the headless plain view printing from that same fold."""

from __future__ import annotations

import io
import shutil

from engine.contract.events import EvalDone, Finished, Step, read_events
from engine.parent.run_views import PlainView, format_seconds
from engine.parent.run_state import EventTail, fold
from tui_helpers import FIXTURES

EVENTS = FIXTURES / "hybrid" / "events.jsonl"


def test_the_fold_of_a_recorded_run_ends_where_its_events_do():
    events = read_events(EVENTS)
    state = fold(events)
    steps = [event for event in events if isinstance(event, Step)]
    done = [event for event in events if isinstance(event, EvalDone)]
    assert state.step == steps[-1].step == state.total_steps == 12
    assert state.loss == steps[-1].loss and state.samples_per_s == steps[-1].samples_per_s
    assert list(state.losses) == [event.loss for event in steps]
    assert state.evals["xquad-r"].macro == done[-1].macro and state.evals["xquad-r"].done
    assert [cells.step for cells in state.history["xquad-r"]] == [event.step for event in done]
    assert isinstance(state.terminal, Finished) and state.ended == events[-1].time
    assert state.eta_seconds() == 0               # the last step: nothing remains
    halfway = fold([event for event in events if not isinstance(event, Step) or event.step <= 6])
    pace = (steps[5].time - steps[0].time) / 5
    assert abs(halfway.eta_seconds() - pace * 6) < 1e-9     # the pace of the steps seen, times the steps left


def test_the_tail_waits_for_a_whole_line_and_starts_again_when_the_file_is_cut(tmp_path):
    lines = EVENTS.read_bytes().splitlines(keepends=True)
    path = tmp_path / "events.jsonl"
    path.write_bytes(lines[0] + lines[1][:25])                  # the second line half written
    tail = EventTail(path)
    assert len(tail.read_new()) == 1
    assert tail.read_new() == []
    with open(path, "ab") as handle:
        handle.write(lines[1][25:] + lines[2])
    assert [event.kind for event in tail.read_new()] == [parse.kind for parse in read_events_of(lines[1:3], tmp_path)]
    path.write_bytes(lines[0])                                  # replaced by a shorter file: from the top
    assert len(tail.read_new()) == 1
    assert EventTail(tmp_path / "missing.jsonl").read_new() == []


def read_events_of(lines: list[bytes], folder):
    path = folder / "part.jsonl"
    path.write_bytes(b"".join(lines))
    return read_events(path)


def test_the_plain_view_prints_the_folds_step_loss_and_eta(tmp_path):
    shutil.copy(EVENTS, tmp_path / "events.jsonl")
    events = read_events(tmp_path / "events.jsonl")
    stream = io.StringIO()
    view = PlainView(stream, log_every=4)
    view.add("run", "recorded")
    for event in events:
        view.on_event("run", event)
    printed = [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()]
    steps = [line for line in printed if line.startswith("step ")]
    assert [line.split(" · ")[0] for line in steps] == ["step 4/12", "step 8/12", "step 12/12"]
    at_eight = fold([event for event in events if not isinstance(event, Step) or event.step <= 8])
    assert steps[1].endswith(f"ETA {format_seconds(at_eight.eta_seconds())}")
    assert f"loss {at_eight.loss:.4f}" in steps[1]
    assert any(line.startswith("eval xquad-r at step 12: map") for line in printed)
