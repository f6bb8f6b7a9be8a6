"""Nothing killed, deleted or printed that was not ours: a reused pid left alone, escape
sequences and markup shown as text, `--force` and the cache deleting only what this tool wrote,
damaged run folders listed as damaged while the rest work, every number bounded before anything
starts. Real processes, real files, a real full disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.contract.layout import RunFolder
from runs_helpers import env, small_filesystem, tiny_spec, wait_for, write

pytestmark = pytest.mark.slow


def hbt(*args, timeout: float = 600, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**env(), "COLUMNS": "200", **(extra_env or {})}, timeout=timeout)


def record_of(runs: Path) -> tuple[RunFolder, dict] | None:
    """The one run folder under `runs` and its record; None while the runs directory or the
    folder does not exist yet."""
    folders = [path for path in runs.iterdir() if path.is_dir() and not path.name.startswith(".")] \
        if runs.exists() else []
    if not folders:
        return None
    folder = RunFolder(folders[0])
    try:
        return folder, json.loads(folder.record.read_text())
    except (FileNotFoundError, ValueError):
        return folder, {}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def process_with_pid(pid: int) -> subprocess.Popen:
    """An unrelated process (`sleep`, leading its own session and process group, as daemons and
    shells do) that the kernel gives exactly `pid`: through /proc/sys/kernel/ns_last_pid where it
    can be written (root), else by spawning until the pid comes round."""
    last_pid = Path("/proc/sys/kernel/ns_last_pid")
    for _ in range(20):
        try:
            last_pid.write_text(str(pid - 1))
        except OSError:
            break
        process = subprocess.Popen(["sleep", "600"], start_new_session=True)
        if process.pid == pid:
            return process
        process.kill()
        process.wait()
    with open(os.devnull, "wb") as null:
        for _ in range(200_000):
            process = subprocess.Popen(["sleep", "600"], stdout=null, start_new_session=True)
            if process.pid == pid:
                return process
            process.kill()
            process.wait()
    pytest.fail(f"no process could be given pid {pid}")


def test_a_reused_pid_is_left_alone_by_resume(tmp_path, tiny_model):
    """The parent is SIGKILLed, its child exits, an unrelated process gets the child's pid:
    resuming the run must not signal it."""
    runs = tmp_path / "runs"
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, **{"train.steps": 40, "train.checkpoint_every": 2}))
    parent = subprocess.Popen([sys.executable, "-m", "engine.cli", "--run", spec, "--runs-dir", runs],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    folder, record = wait_for(lambda: (found := record_of(runs)) and
                              found[1].get("status") == "running" and found[1].get("pid") and found,
                              what="the run to start")
    child = record["pid"]
    assert isinstance(record.get("pid_start"), int)
    wait_for(lambda: folder.events.exists() and '"event":"step"' in folder.events.read_text(), what="a step")
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not alive(child), what="the child to follow its parent")
    stranger = process_with_pid(child)
    try:
        result = hbt("resume", folder.id, "--runs-dir", runs, timeout=600)
        assert alive(stranger.pid), "resume signalled a process that is not the run's"
        assert f"pid {child} now belongs to another process" in result.stderr, result.stderr[-2000:]
    finally:
        stranger.kill()
        stranger.wait()


# --- text from specs and files is shown as text ---------------------------------------------------

HOSTILE = "[/][v2]\x1b[2J\x1b]0;pwned\x07\u202e"
ESCAPED = "[/][v2]\\x1b[2J\\x1b]0;pwned\\x07\\u202e"


def hostile_runs(root: Path) -> Path:
    """Two recorded runs in a folder whose path is markup, one of them with a name, a description
    and a language group that hold markup and escape sequences (as a hand-edited file could)."""
    from engine.parent.store import RunStore
    from tui_helpers import FIXTURES

    runs = root / "[v2] runs"
    for run_id, fixture in (("hostile-run", "hybrid"), ("other-run", "monolingual")):
        shutil.copytree(FIXTURES / fixture, runs / run_id)
    folder = RunFolder(runs / "hostile-run")
    spec = json.loads(folder.spec.read_text())
    folder.spec.write_text(json.dumps({**spec, "name": f"hostile {HOSTILE}", "description": HOSTILE}))
    for path in (runs / "hostile-run" / "eval").rglob("results.json"):
        results = json.loads(path.read_text())
        results["groups"] = {HOSTILE: group for group in results["groups"].values()}
        path.write_text(json.dumps(results))
    RunStore(runs).rebuild()
    return runs


def test_markup_and_escape_sequences_in_names_groups_and_paths_are_shown_as_text(tmp_path):
    runs = hostile_runs(tmp_path)
    for command in (["show", "hostile-run"], ["runs"], ["compare", "hostile-run", "other-run"],
                    ["report", "hostile-run", "other-run", "--allow-mixed"], ["reports"]):
        result = hbt(*command, "--runs-dir", runs)
        assert result.returncode == 0, (command, result.stderr[-2000:])
        output = result.stdout + result.stderr
        assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output, (command, output[-800:])
    shown = hbt("show", "hostile-run", "--runs-dir", runs).stdout
    assert ESCAPED in shown and "[v2] runs" in shown          # the group row and the folder path, as text


def test_a_spec_with_control_characters_is_refused_with_the_character_shown(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"eval.groups": {"high\x1b[2J": ["en"]}, "description": "ok\nfine"})
    result = hbt("--run", write(tmp_path / "spec.json", document), "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "\x1b" not in result.stderr
    assert "eval.groups.high\\x1b[2J: its name must not hold a control character (\\x1b)" in result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    lone = '{"name": "x\\ud800"}'
    (tmp_path / "lone.json").write_text(lone)
    refused = hbt("--run", tmp_path / "lone.json", "--runs-dir", tmp_path / "runs")
    assert refused.returncode == 2 and "name: must not hold a lone surrogate (\\ud800)" in refused.stderr


def test_a_markup_group_name_does_not_break_the_end_of_a_run(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.steps": 2, "train.checkpoint_every": 0,
                                        "eval.groups": {"[v2]": ["en", "de"], "[/]": ["zh"]}})
    result = hbt("--run", write(tmp_path / "spec.json", document), "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[v2] (en,de)" in result.stdout and "[/] (zh)" in result.stdout


async def test_the_tui_shows_hostile_text_as_text(tmp_path):
    from textual.widgets import DataTable, Static

    from engine.parent.runner import Runner
    from engine.parent.store import RunStore
    from tui.app import create_app
    from tui.screens.run_detail import RunDetailScreen
    from tui_helpers import wait_until

    store = RunStore(hostile_runs(tmp_path))
    app = create_app(store, Runner(store, cpu_slots=1, gpus=[]), experiments_dir=tmp_path / "experiments",
                     exports_dir=tmp_path / "exports")
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#runs-table", DataTable)
        names = [str(table.get_cell(key, "name")) for key in table.rows]
        assert f"hostile {ESCAPED}" in names
        table.move_cursor(row=table.get_row_index("hostile-run"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.results)
        screen = app.screen
        header = str(screen.query_one("#detail-header", Static).render())
        assert ESCAPED in header and "\x1b" not in header
        rows = screen.query_one("#detail-table", DataTable)
        await wait_until(pilot, lambda: rows.row_count > 3)
        labels = [str(rows.get_cell(key, "language")) for key in rows.rows]
        assert any(label.startswith(ESCAPED) for label in labels), labels
        assert app.is_running


# --- delete only what is ours -------------------------------------------------------------------------

def test_report_force_replaces_only_a_report_folder(tmp_path):
    runs = hostile_runs(tmp_path)
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    (unrelated / "thesis.tex").write_text("mine")
    sibling = tmp_path / ".report.old"
    sibling.mkdir()
    (sibling / "keep.txt").write_text("mine")
    for out, message in ((runs, "is the runs directory"), (runs / "hostile-run", "is a run folder"),
                         (tmp_path, "is a parent of the runs directory"), (unrelated, "holds files that are not a "
                                                                                      "report of hbt-tui")):
        result = hbt("report", "hostile-run", "other-run", "--runs-dir", runs, "--out", out, "--force")
        assert result.returncode == 2 and message in result.stderr, (out, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert (unrelated / "thesis.tex").read_text() == "mine"
    assert sorted(path.name for path in runs.iterdir() if not path.name.startswith(".")) == \
        ["hostile-run", "index.json", "other-run"]
    report = tmp_path / "report"
    for _ in range(2):        # a new folder, then --force over the report this tool wrote
        result = hbt("report", "hostile-run", "other-run", "--runs-dir", runs, "--out", report, "--force")
        assert result.returncode == 0, result.stderr
        assert (report / ".hbt-report").is_file() and (report / "report.md").is_file()
    assert (sibling / "keep.txt").read_text() == "mine"
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".report.") and path != sibling]


def test_the_embedding_cache_removes_only_its_own_entries(tmp_path):
    from engine.contract import embedding_files

    cache = tmp_path / "cache"
    cache.mkdir()
    user = {"notes.npy": b"mine", "notes.json": b"{}", "build.lock": b"", "0" * 40 + ".txt": b"mine",
            "ab" * 20 + ".npy": b"not an entry: no metadata"}
    for name, data in user.items():
        (cache / name).write_bytes(data)
    key = "cd" * 20
    (cache / f"{key}.npy").write_bytes(b"\x93NUMPY" + b"0" * 100)
    (cache / f"{key}.json").write_text(json.dumps({"sha256": "x", "shape": [1, 2], "dtype": "float32"}))
    (cache / f"{key}.lock").write_bytes(b"")
    assert [path.name for path, _, _ in embedding_files.entries(cache)] == [f"{key}.npy"]
    assert embedding_files.evict(cache, 0) == 1
    assert sorted(path.name for path in cache.iterdir()) == sorted([*user, f"{key}.lock"])
    result = hbt("cache", "clear", extra_env={"HBT_EMBEDDING_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in cache.iterdir()) == sorted(user)
    assert all((cache / name).read_bytes() == data for name, data in user.items())


def test_deleting_a_run_whose_folder_is_a_link_removes_the_link_only(tmp_path):
    runs = hostile_runs(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (runs / "other-run").rename(elsewhere)
    (runs / "other-run").symlink_to(elsewhere, target_is_directory=True)
    result = hbt("delete", "other-run", "--yes", "--runs-dir", runs)
    assert result.returncode == 0 and "removed the link" in result.stderr, result.stderr
    assert not (runs / "other-run").exists() and (elsewhere / "spec.json").is_file()
    listed = json.loads(hbt("runs", "--json", "--runs-dir", runs).stdout)
    assert [run["id"] for run in listed] == ["hostile-run"]
    rebuilt = hbt("index", "rebuild", "--runs-dir", runs)
    assert rebuilt.returncode == 0 and "1 runs" in rebuilt.stdout


# --- one damaged folder is listed as damaged; the rest work --------------------------------------------

@pytest.mark.parametrize("damage", ["truncated spec", "run.json a list", "run.json wrong types", "events wrong types"])
def test_a_damaged_run_folder_is_listed_and_the_rest_work(tmp_path, damage):
    runs = hostile_runs(tmp_path)
    folder = RunFolder(runs / "other-run")
    if damage == "truncated spec":
        folder.spec.write_text(folder.spec.read_text()[:40])
    elif damage == "run.json a list":
        folder.record.write_text("[1, 2, 3]")
    elif damage == "run.json wrong types":
        folder.record.write_text(json.dumps({"status": 5, "created": "yesterday", "owner": "me", "pid": "x",
                                             "step": [1], "name": {"a": 1}}))
    else:
        folder.events.write_text('{"v":1,"event":"step","time":"now","step":"x","total_steps":3,"loss":"low",'
                                 '"lr":0.1,"samples_per_s":1,"tokens_per_s":1}\n{"v":1,"event":"eval_done",'
                                 '"time":1,"step":1,"dataset":5,"macro":[],"groups":3,"bias":"x","results_path":1}\n')
    rebuilt = hbt("index", "rebuild", "--runs-dir", runs)
    assert rebuilt.returncode == 0, rebuilt.stderr
    listed = {run["id"]: run for run in json.loads(hbt("runs", "--json", "--runs-dir", runs).stdout)}
    assert set(listed) == {"hostile-run", "other-run"}
    if damage in ("truncated spec", "run.json a list"):
        assert listed["other-run"]["status"] == "damaged" and listed["other-run"]["error"]
    shown = hbt("show", "hostile-run", "--runs-dir", runs)
    assert shown.returncode == 0 and "macro avg" in shown.stdout, shown.stderr
    other = hbt("show", "other-run", "--runs-dir", runs)
    assert other.returncode == 0, other.stderr


def test_an_index_with_wrong_keys_or_a_wrong_reports_table_is_repaired(tmp_path):
    runs = hostile_runs(tmp_path)
    index = runs / "index.json"
    document = json.loads(index.read_text())
    document["runs"] = {f"run-{number}": row for number, row in enumerate(document["runs"].values())}
    document["reports"] = ["not", "a", "table"]
    index.write_text(json.dumps(document))
    listed = hbt("runs", "--json", "--runs-dir", runs)
    assert listed.returncode == 0 and {run["id"] for run in json.loads(listed.stdout)} == {"hostile-run", "other-run"}
    assert "was corrupt" in listed.stderr
    assert hbt("reports", "--runs-dir", runs).returncode == 0
    deleted = hbt("delete", "other-run", "--yes", "--runs-dir", runs)
    assert deleted.returncode == 0 and not (runs / "other-run").exists()
    document = json.loads(index.read_text())
    document["reports"] = {"x": 5}
    index.write_text(json.dumps(document))
    assert hbt("reports", "--runs-dir", runs).returncode == 0
    made = hbt("compare", "hostile-run", "hostile-run", "--runs-dir", runs)
    assert made.returncode == 0, made.stderr


def test_a_read_only_runs_directory_can_still_be_listed_and_shown(tmp_path):
    """On a file system mounted read-only (root included): listing and showing work, changes are
    refused in one line."""
    source = hostile_runs(tmp_path / "source")
    with small_filesystem(tmp_path / "read-only", "8m") as mount:
        runs = mount / "runs"
        shutil.copytree(source, runs)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        for command in (["runs"], ["show", "hostile-run"]):
            result = hbt(*command, "--runs-dir", runs)
            assert result.returncode == 0, (command, result.stderr)
            assert "read-only" in result.stderr and "hostile-run" in result.stdout
        refused = hbt("delete", "other-run", "--yes", "--runs-dir", runs)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().splitlines()[-1] == f"error: runs directory {runs} is read-only; nothing can be " \
            "queued, changed or deleted there"
        assert (runs / "other-run").is_dir()


# --- a disk that fills during evaluation ---------------------------------------------------------------

def test_a_disk_that_fills_during_evaluation_fails_the_run_with_the_reason(tmp_path, tiny_model):
    """The disk is filled to the last byte while the run evaluates: the run ends failed, saying
    why, in run.json and in the final line — also when its parent had no room for a new file."""
    with small_filesystem(tmp_path / "disk", "2m") as mount:
        runs = mount / "runs"
        spec = write(tmp_path / "spec.json", tiny_spec(tiny_model, **{
            "train.steps": 0, "eval.languages": None, "eval.max_queries": 300, "eval.cache": False}))
        parent = subprocess.Popen([sys.executable, "-m", "engine.cli", "--run", spec, "--runs-dir", runs],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        folder = wait_for(lambda: runs.exists() and next((RunFolder(path) for path in runs.iterdir()
                                                          if path.is_dir() and not path.name.startswith(".")), None),
                          what="the run folder")
        wait_for(lambda: folder.events.exists() and '"event":"eval_progress"' in folder.events.read_text(),
                 what="the evaluation to start", every=0.02)
        filler = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)       # every last block
        try:
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        stdout, stderr = parent.communicate(timeout=600)
        (mount / "filler").unlink()
        record = json.loads(folder.record.read_text())
        assert record["status"] == "failed" and "no space left on device" in record["error"], record
        assert "failed — no space left on device" in stdout, stdout[-2000:]
        listed = {run["id"]: run for run in json.loads(hbt("runs", "--json", "--runs-dir", runs).stdout)}
        assert listed[folder.id]["status"] == "failed"


# --- every input bounded before anything starts ---------------------------------------------------------

@pytest.mark.parametrize("document, message", [
    ('{"name": "x", "sampling": {"alpha": 1' + "0" * 400 + '}}',
     "sampling.alpha: must be a finite number, got an integer of 401 digits"),
    ('{"name": "x", "train": {"steps": 10000000000}}', "train.steps: must be in [0, 1,000,000,000], got 10,000,000,000"),
    ('{"name": "x", "eval": {"metrics": ["map", "ndcg@100000000000"]}}',
     "eval.metrics[1]: metric 'ndcg@100000000000': the cut-off must be at most 10,000"),
    ('{"name": "x", "train": {"seed": -1}}', "train.seed: must be in [0, 4,294,967,295], got -1"),
    ('{"name": "x\\ud800"}', "name: must not hold a lone surrogate (\\ud800)"),
    ('[1, 2]', "(top level): must be an object, got a list"),
    ('{"name": "x", "train": 5}', "train: must be an object, got 5"),
])
def test_bad_numbers_and_shapes_get_one_line_from_run_and_evaluate_alike(tmp_path, document, message):
    path = tmp_path / "spec.json"
    path.write_text(document)
    for command in (["--run", path], ["evaluate", path]):
        result = hbt(*command, "--runs-dir", tmp_path / "runs")
        assert result.returncode == 2, (command, result.stderr[-1500:])
        assert result.stderr.strip().splitlines() == [f"error: {path}: {message}"], (command, result.stderr[-1500:])
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]


@pytest.mark.parametrize("arguments, message", [
    (["--jobs", "1000000000"], "argument --jobs: must be in [1, 1024], got 1000000000"),
    (["--log-every", "0"], "argument --log-every: must be in [1, 1e+09], got 0"),
    (["--nproc", "nan"], "argument --nproc: expected an integer, got 'nan'"),
])
def test_command_line_numbers_are_bounded(tmp_path, tiny_model, arguments, message):
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model))
    result = hbt("--run", spec, *arguments, "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == \
        [f"error: {message} (see `hbt-tui --help`)"], result.stderr


def test_a_spec_path_that_is_a_fifo_or_too_large_is_refused_unread(tmp_path):
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    result = hbt("--run", fifo, "--runs-dir", tmp_path / "runs", timeout=60)
    assert result.returncode == 2 and "is not a regular file (a FIFO, a device or a socket)" in result.stderr
    large = tmp_path / "large.json"
    large.write_text('{"name": "x", "description": "' + "a" * (2 * 1024 * 1024) + '"}')
    result = hbt("--run", large, "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "a spec is at most 1,048,576" in result.stderr


def test_a_huge_grid_is_refused_before_it_is_built_even_with_yes(tmp_path):
    grid = {f"train.{field}": list(range(1, 41)) for field in ("seed", "slice_seed", "log_every")}
    grid["train.warmup_steps"] = list(range(1, 41))        # 40^4 = 2,560,000 runs
    spec = write(tmp_path / "spec.json", {"name": "huge", "grid": grid})
    started = time.monotonic()
    result = hbt("--run", spec, "--yes", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "the grid expands to 2,560,000 runs; at most 10,000" in result.stderr
    assert time.monotonic() - started < 60


def test_ctrl_c_during_the_pre_run_check_ends_cleanly(tmp_path, tiny_model):
    spec = write(tmp_path / "spec.json", tiny_spec(tiny_model))
    parent = subprocess.Popen([sys.executable, "-m", "engine.cli", "--run", spec, "--runs-dir", tmp_path / "runs"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())

    def checking() -> bool:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if b"engine.preflight" in (entry / "cmdline").read_bytes() and \
                            int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent.pid:
                        return True
                except (OSError, ValueError, IndexError):
                    continue
        return False

    wait_for(checking, what="the pre-run check", every=0.01)
    parent.send_signal(signal.SIGINT)
    _, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted; nothing was started or written"
    assert not (tmp_path / "runs").exists() or not [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]


# --- the pre-run check catches what it can ------------------------------------------------------------

def test_the_pre_run_check_catches_offline_hub_data_weightless_models_and_empty_auto_map(tmp_path, tiny_model):
    offline = {"HF_HUB_OFFLINE": "1"}
    hub = write(tmp_path / "hub.json", tiny_spec(tiny_model, **{"eval.datasets": ["hf:miracl"], "eval.languages": ["sw"]}))
    result = hbt("--run", hub, "--runs-dir", tmp_path / "runs", extra_env=offline)
    assert result.returncode == 2 and "eval.datasets: hf:miracl: needs the Hugging Face hub" in result.stderr
    assert "HF_HUB_OFFLINE is set" in result.stderr
    weightless = tmp_path / "weightless"
    shutil.copytree(tiny_model, weightless, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    result = hbt("--run", write(tmp_path / "w.json", tiny_spec(weightless)), "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "has no weights (model.safetensors" in result.stderr, result.stderr
    empty = tmp_path / "empty-auto-map"
    shutil.copytree(tiny_model, empty)
    config = json.loads((empty / "config.json").read_text())
    (empty / "config.json").write_text(json.dumps({**config, "auto_map": None}))
    result = hbt("--run", write(tmp_path / "a.json", tiny_spec(empty)), "--runs-dir", tmp_path / "runs")
    assert result.returncode == 2 and "config.json has an empty auto_map (null)" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists() or not [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]


def test_a_grid_over_encoder_names_and_prefixes_expands(tmp_path, tiny_model):
    document = tiny_spec(tiny_model)
    document["grid"] = {"encoder.name": [str(tiny_model), str(tiny_model) + "/"],
                        "encoder.query_prefix": ["query: ", ""]}
    result = hbt("--run", write(tmp_path / "g.json", document), "--dry-run", "--runs-dir", tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    assert "4 runs would be created" in result.stdout and "query_prefix=query__" in result.stdout


def test_a_cache_entry_of_the_wrong_shape_is_recomputed_never_used(tmp_path):
    import numpy as np

    from engine.child.embedding_cache import EmbeddingCache

    warnings = []
    cache = EmbeddingCache(tmp_path / "cache", warn=warnings.append)
    key = "ef" * 20
    cache.get_or_compute(key, lambda: np.ones((3, 4), dtype=np.float32), rows=3)   # intact, for 3 texts
    value = cache.get_or_compute(key, lambda: np.zeros((5, 4), dtype=np.float32), rows=5)
    assert value.shape == (5, 4) and not value.any()
    assert any("does not fit 5 texts" in warning for warning in warnings), warnings
