"""Executors on real engines: a Ray head started here on the loopback address (Ray Jobs), a
real single-node Slurm when .ci/slurm-up could start one (skipped otherwise, failed under
HBT_REQUIRE_SLURM=1), submitit's own local executor for the Slurm code path, plus the sacct
state mapping on recorded outputs."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from runs_helpers import env, tiny_spec, wait_for, write

from engine.contract.events import read_events
from engine.parent.executors import from_spec, slurm_status
from engine.parent.records import summarise_run_dir
from engine.parent.store import RunStore

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head --block` on 127.0.0.1 in its own process group; yields ray://HOST:PORT."""
    importlib.import_module("ray.job_submission")
    ray = Path(sys.executable).with_name("ray")
    dashboard = free_port()
    temp = Path(f"/tmp/hbt-ray-{os.getpid()}")   # Ray's socket paths must stay short
    log = tmp_path_factory.mktemp("ray") / "head.log"
    with open(log, "wb") as output:
        head = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={free_port()}",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
             "--num-cpus=2", "--object-store-memory=100000000", "--include-dashboard=true",
             "--disable-usage-stats", f"--temp-dir={temp}"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    from ray.job_submission import JobSubmissionClient

    def reachable():
        if head.poll() is not None:
            raise AssertionError(f"ray start exited {head.returncode}: {log.read_text()[-3000:]}")
        try:
            return JobSubmissionClient(f"http://127.0.0.1:{dashboard}").get_version()
        except Exception:
            return None

    try:
        wait_for(reachable, timeout=240, what="the Ray dashboard", every=0.5)
        yield f"ray://127.0.0.1:{dashboard}"
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(head.pid, signal.SIGKILL)
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def hbt(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env=env(), timeout=timeout)


def folders(runs: Path) -> list[Path]:
    return sorted(path for path in runs.iterdir() if path.is_dir() and not path.name.startswith(".")) \
        if runs.exists() else []


def steps_done(folder: Path) -> int:
    return sum(1 for event in read_events(folder / "events.jsonl") if event.kind == "step")


def training_pid(folder: Path) -> int | None:
    return next((event.pid for event in read_events(folder / "events.jsonl") if event.kind == "started"), None)


def test_ray_jobs_finish_cancel_and_sigkill_with_states_the_index_and_folders_agree_on(tmp_path, tiny_model, ray_head):
    document = tiny_spec(tiny_model, **{"train.checkpoint_every": 0})
    document["grid"] = {"train.steps": [5, 100000, 100001]}
    runs = tmp_path / "runs"
    grid = str(write(tmp_path / "grid.json", document))
    parent = subprocess.Popen([sys.executable, "-m", "engine.cli", "--run", grid,
                               "--jobs", "3", "--runs-dir", str(runs), "--executor", ray_head, "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    by_steps = lambda steps: next((f for f in folders(runs) if f"-steps={steps}-" in f.name), None)  # noqa: E731
    cancelled = wait_for(lambda: (f := by_steps(100000)) and steps_done(f) >= 2 and f, what="a Ray job to train")
    killed = wait_for(lambda: (f := by_steps(100001)) and steps_done(f) >= 2 and f, what="another Ray job to train")
    assert hbt("cancel", cancelled.name, "--runs-dir", runs).returncode == 0
    os.kill(training_pid(killed), signal.SIGKILL)
    stdout, stderr = parent.communicate(timeout=600)
    assert parent.returncode == 1, stderr[-3000:]
    reported = {run["name"]: run for run in json.loads(stdout)}
    store = RunStore(runs)
    assert reported["tiny-steps=5"]["status"] == "finished"
    assert reported["tiny-steps=100000"]["status"] == "cancelled"
    assert reported["tiny-steps=100001"]["status"] == "failed"
    assert store.get(killed.name)["error"] == "killed by SIGKILL"
    # the checkpoint the SIGTERM of stop_job made is kept, ready to resume
    assert list((cancelled / "checkpoints").glob("step-*/trainer_state.json"))
    for folder in folders(runs):
        indexed, on_disk = store.get(folder.name), summarise_run_dir(folder)
        assert indexed["status"] == on_disk["status"]
        assert indexed["executor"] == ray_head and indexed["where"].startswith(f"ray http://{ray_head[6:]} (job hbt-")
        assert indexed["job_id"].startswith(f"hbt-{folder.name}")
    # the finished run's events came through the job's log tail: every step and the results
    finished = store.get(by_steps(5).name)
    assert finished["step"] == 5 and finished["results"]["xquad-r"]["macro"]["multi"] > 0
    listed = subprocess.run([sys.executable, "-m", "engine.cli", "runs", "--runs-dir", str(runs)], capture_output=True,
                            text=True, env={**env(), "COLUMNS": "220"}, timeout=300)   # the width we parse, pinned
    assert listed.returncode == 0 and listed.stdout.count(f"ray {ray_head[6:]}") == 3


@pytest.mark.parametrize("cluster", ["ray", "slurm"])
def test_miracl_encode_parts_run_as_cluster_jobs(tmp_path, tiny_model, cluster, request):
    """`hbt-tui miracl encode --parts 2 --executor ray://…|slurm`: two jobs on the real head or
    single-node Slurm, their lines followed and prefixed with their part, every shard in the
    embedding cache the evaluations read."""
    from test_miracl import write_miracl
    from test_miracl_scale import MORE_DOCS

    executor = ["--executor", request.getfixturevalue("ray_head")] if cluster == "ray" else \
        (request.getfixturevalue("slurm"), ["--executor", "slurm", "--partition", "debug"])[1]
    write_miracl(tmp_path, docs=MORE_DOCS)
    document = {"name": "parts", "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)},
                "eval": {"datasets": ["miracl"], "languages": ["sw"], "miracl": {"shard_size": 16}}}
    (tmp_path / "spec.json").write_text(json.dumps(document))
    done = subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json"),
                           "--parts", "2", *executor, "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, env={**env(), "HBT_EMBEDDING_CACHE_DIR": str(tmp_path / "c")},
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"part 1/2: {cluster} " in done.stdout and f"part 2/2: {cluster} " in done.stdout, done.stdout
    assert "[1/2] part 1/2: 2 shards" in done.stdout and "[2/2] part 2/2: 1 shards" in done.stdout
    stored = [json.loads(path.read_text()).get("about", {}).get("shard") for path in (tmp_path / "c").glob("*.json")]
    assert sorted(shard for shard in stored if shard is not None) == [0, 1, 2]


def test_unreachable_ray_address_is_one_line_and_makes_no_folder(tmp_path, tiny_model):
    importlib.import_module("ray.job_submission")
    runs = tmp_path / "runs"
    result = hbt("--run", write(tmp_path / "spec.json", tiny_spec(tiny_model)), "--runs-dir", runs,
                 "--executor", f"ray://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot reach the Ray dashboard at http://127.0.0.1:" in result.stderr
    assert folders(runs) == []


def test_miracl_encode_parts_on_an_executor_that_cannot_run_them_is_one_line(tmp_path, tiny_model):
    """`miracl encode --parts` on an unreachable Ray head or without Slurm's commands: one line,
    exit 2, no part folder; --executor without --parts is refused, not ignored."""
    importlib.import_module("ray.job_submission")
    (tmp_path / "spec.json").write_text(json.dumps({"name": "parts", "encoder": {"name": str(tiny_model)},
                                                    "eval": {"datasets": ["miracl"], "languages": ["sw"]}}))
    runs = tmp_path / "runs"
    base = [sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json"), "--runs-dir", str(runs)]
    cases = [(["--parts", "2", "--executor", f"ray://127.0.0.1:{free_port()}"], env(),
              "cannot reach the Ray dashboard at http://127.0.0.1:"),
             (["--parts", "2", "--executor", "slurm", "--partition", "gpu"],
              {**env(), "PATH": str(Path(sys.executable).parent)}, "--executor slurm: sbatch, sacct, scancel not found"),
             (["--part", "1/2", "--executor", "slurm"], env(), "add --parts n")]
    for flags, variables, message in cases:
        result = subprocess.run(base + flags, capture_output=True, text=True, env=variables, timeout=300)
        assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
        assert message in result.stderr, result.stderr
    assert not (runs / ".miracl-encode").exists() or not list((runs / ".miracl-encode").iterdir())


def test_missing_slurm_commands_are_one_line_and_make_no_folder(tmp_path, tiny_model):
    runs = tmp_path / "runs"
    variables = {**env(), "PATH": str(Path(sys.executable).parent)}   # python, no sbatch
    spec = str(write(tmp_path / "s.json", tiny_spec(tiny_model)))
    result = subprocess.run([sys.executable, "-m", "engine.cli", "--run", spec,
                             "--runs-dir", str(runs), "--executor", "slurm", "--partition", "gpu"],
                            capture_output=True, text=True, env=variables, timeout=300)
    assert result.returncode == 2
    assert "--executor slurm: sbatch, sacct, scancel not found on PATH" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and folders(runs) == []


@pytest.mark.parametrize("overrides, flags, message", [
    ({}, ["--nproc", "3"], "train.devices: train.batch_size (8) does not split over 3 devices"),
    ({"loss.chunk_size": 64}, [], "loss.chunk_size: 64 is larger than the batch each device embeds (8)"),
])
def test_a_world_size_or_chunk_that_does_not_fit_the_batch_is_one_line(tmp_path, tiny_model, overrides, flags, message):
    runs = tmp_path / "runs"
    (runs / "kept").mkdir(parents=True)   # something already there stays
    result = hbt("--run", write(tmp_path / "s.json", tiny_spec(tiny_model, **overrides)), "--runs-dir", runs, *flags)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert [path.name for path in runs.iterdir()] == ["kept"]


def test_unknown_executor_is_one_line(tmp_path, tiny_model):
    result = hbt("--run", write(tmp_path / "s.json", tiny_spec(tiny_model)), "--runs-dir", tmp_path / "runs",
                 "--executor", "kubernetes")
    assert result.returncode == 2 and "--executor 'kubernetes': use local, ray://HOST:PORT" in result.stderr


def test_submitit_path_runs_a_tiny_run_to_the_end(tmp_path, tiny_model):
    """The Slurm executor's code path (submitit job, events from the run folder, states) on
    submitit's own local executor."""
    importlib.import_module("submitit")
    document = tiny_spec(tiny_model, **{"train.steps": 4, "train.checkpoint_every": 0})
    runs = tmp_path / "runs"
    result = hbt("--run", write(tmp_path / "spec.json", document), "--runs-dir", runs, "--executor", "submitit-local",
                 "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = folders(runs)
    indexed = RunStore(runs).get(folder.name)
    assert indexed["status"] == summarise_run_dir(folder)["status"] == "finished"
    assert indexed["executor"] == "submitit-local" and indexed["where"].startswith("slurm (job ")
    assert indexed["step"] == 4 and indexed["results"]["xquad-r"]["macro"]["multi"] > 0


def test_submitit_logs_never_reach_stdout():
    """submitit logs INFO lines and "Bypassing sacct error" warnings to stdout by default, which
    broke `--json` output once; ours keeps stdout for the command's own output."""
    importlib.import_module("submitit")
    code = ("import logging\nfrom engine.parent.executors import load_submitit\nload_submitit()\n"
            "logging.getLogger('submitit').info('an info line')\n"
            "logging.getLogger('submitit').warning('Bypassing sacct error')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "Bypassing sacct error" in result.stderr


def slurm_up() -> str | None:
    """None when a Slurm answers here (.ci/slurm-up starts one); else why not."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (.ci/slurm-up starts a single-node Slurm where it can)"
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"sinfo: {error}"
    return None if "idle" in answer.stdout or "mix" in answer.stdout or "alloc" in answer.stdout else \
        f"no Slurm node is up ({(answer.stderr or answer.stdout).strip()[:200]})"


@pytest.fixture
def slurm():
    why = slurm_up()
    if why is not None:
        if os.environ.get("HBT_REQUIRE_SLURM") == "1":
            pytest.fail(f"HBT_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)


def job_of(folder: Path) -> str | None:
    try:
        return json.loads((folder / "run.json").read_text()).get("job_id")
    except (FileNotFoundError, ValueError):
        return None


def test_slurm_runs_finish_requeue_from_their_checkpoint_and_cancel(tmp_path, tiny_model, slurm):
    """A real single-node Slurm: one run finishes; the other gets Slurm's SIGUSR2 warning (what
    a preemption or a near time limit sends), checkpoints, requeues itself and resumes from the
    checkpoint, then is cancelled with `hbt-tui cancel` (scancel SIGTERM: it checkpoints again)."""
    document = tiny_spec(tiny_model, **{"train.checkpoint_every": 0})
    document["grid"] = {"train.steps": [4, 100000]}
    runs = tmp_path / "runs"
    grid = str(write(tmp_path / "grid.json", document))
    parent = subprocess.Popen([sys.executable, "-m", "engine.cli", "--run", grid,
                               "--jobs", "2", "--runs-dir", str(runs), "--executor", "slurm", "--partition", "debug",
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                              cwd=tmp_path)
    try:
        check_slurm_requeue_and_cancel(runs, parent)
    finally:   # a failing test leaves no job behind on the cluster
        parent.kill()
        for folder in folders(runs):
            if job_of(folder):
                subprocess.run(["scancel", job_of(folder)], capture_output=True)


def check_slurm_requeue_and_cancel(runs: Path, parent: subprocess.Popen) -> None:
    long_run = wait_for(lambda: next((f for f in folders(runs) if "-steps=100000-" in f.name and steps_done(f) >= 2),
                                     None), what="the Slurm job to train")
    job = job_of(long_run)
    subprocess.run(["scancel", "--signal=USR2", job], check=True, capture_output=True)
    events = lambda: read_events(long_run / "events.jsonl")  # noqa: E731
    starts = lambda: [e for e in events() if e.kind == "started"]  # noqa: E731
    # the run checkpoints (on the warning itself or on the SIGTERM submitit's checkpoint hook sends)
    stopped = wait_for(lambda: next((e for e in events() if e.kind == "stopped"), None), what="the checkpoint")
    assert stopped.signal in ("SIGUSR2", "SIGTERM") and stopped.checkpoint

    def resumed():   # Slurm holds a requeued job ~2 minutes before it may start again: start it now
        if len(starts()) < 2:
            subprocess.run(["scontrol", "update", f"JobId={job}", "BeginTime=now"], capture_output=True)
        return len(starts()) == 2 and any(e.kind == "step" and e.step > stopped.step for e in events())

    wait_for(resumed, what="the requeued job to resume and train", every=1.0)   # scontrol once a second
    assert starts()[1].resumed_from_step == stopped.step
    assert hbt("cancel", long_run.name, "--runs-dir", runs).returncode == 0
    stdout, stderr = parent.communicate(timeout=600)
    assert parent.returncode == 1, stderr[-3000:]
    reported = {run["name"]: run for run in json.loads(stdout)}
    assert reported["tiny-steps=4"]["status"] == "finished"
    assert reported["tiny-steps=100000"]["status"] == "cancelled"
    store = RunStore(runs)
    for folder in folders(runs):
        indexed = store.get(folder.name)
        assert indexed["status"] == summarise_run_dir(folder)["status"]
        assert indexed["executor"] == "slurm" and indexed["where"] == f"slurm (job {job_of(folder)})"
    assert store.get(long_run.name)["job_id"] == job   # requeued under the same job id
    kept = [json.loads(path.read_text())["step"]
            for path in (long_run / "checkpoints").glob("step-*/trainer_state.json")]
    assert max(kept) > stopped.step   # the cancel's SIGTERM checkpointed the resumed run again


@pytest.mark.parametrize("state, status", [
    ("PENDING", "queued"), ("RUNNING", "running"), ("COMPLETED", "finished"), ("FAILED", "failed"),
    ("CANCELLED by 1000", "cancelled"), ("CANCELLED+", "cancelled"), ("TIMEOUT", "interrupted"),
    ("PREEMPTED", "interrupted"), ("OUT_OF_MEMORY", "failed"), ("NODE_FAIL", "failed"), ("REQUEUED", "queued"),
    ("", "queued"), ("SOMETHING_NEW", "failed"),
])
def test_sacct_states_map_onto_ours(state, status):
    assert slurm_status(state) == status


def test_recorded_sacct_output_maps_per_job(tmp_path):
    """`sacct -o JobID,State,ExitCode -P` as Slurm 22.05 (Debian's slurm-wlm, single node)
    printed it for a finished, a scancel'd, a failing (exit 3), a timed-out (-t 1) and a just
    started job (the database still says PENDING): the job's own line decides, not its steps."""
    recorded = (Path(__file__).parent / "fixtures" / "sacct").read_text().splitlines()
    header, *rows = recorded
    assert header == "JobID|State|ExitCode"
    states = {job: state for job, state, _ in (row.split("|") for row in rows) if "." not in job}
    assert {job: slurm_status(state) for job, state in states.items()} == {
        "2": "finished", "3": "cancelled", "4": "failed", "5": "interrupted", "6": "queued"}


def test_executor_defaults_come_from_the_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hbt-tui.json").write_text(json.dumps({"executor": "slurm", "partition": "gpu"}))
    executor = from_spec(None)
    assert executor.spec == "slurm" and executor.partition == "gpu"
    (tmp_path / "hbt-tui.json").write_text("{not json")
    with pytest.raises(Exception, match="hbt-tui.json: not a JSON config"):
        from_spec(None)
