"""Where a run's process runs, behind one interface the runner uses: launch it, read its
stdout (the JSON-lines events), wait for its outcome, stop it (SIGTERM first, so it
checkpoints), and tail its log.

- `LocalExecutor`: a subprocess of this parent in its own process group (the default).
- `RayExecutor`: a Ray job (`ray.job_submission.JobSubmissionClient`). Events come from the
  job's log tail; stop is `stop_job`, which sends SIGTERM and waits `RAY_JOB_STOP_WAIT_TIME_S`
  (set to the runner's grace) before SIGKILL. The exit code is the job's driver exit code (the
  entrypoint is `exec`'d, so a signal shows as a negative code).
- `SlurmExecutor`: an sbatch job through submitit; events are read from the run's own
  events.jsonl on shared storage, states come from sacct, stop is SIGTERM to the job's steps, and a
  preempted or timed-out job requeues itself to resume from its checkpoint.

Run folders must be on storage the parent and the workers both see (the README says how).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.contract.errors import RunError
from engine.contract.layout import RunFolder
from engine.parent.records import pid_alive

RAY_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RAY_EXCLUDES = ("runs/", ".venv/", ".git/", "benchmarks/results/", "docs/", "**/__pycache__/", "tests/")
STREAM_LIMIT = 16 * 1024 * 1024     # the longest event line a local run may print


@dataclass
class Outcome:
    returncode: int | None            # negative: killed by that signal; None: the job ended before the run
    ended_as: str | None = None       # the cluster's verdict on such a job: cancelled (Ray STOPPED, Slurm
    detail: str = ""                  # CANCELLED) or interrupted (Slurm TIMEOUT, PREEMPTED)


class Handle(Protocol):
    where: str                        # shown in the TUI and the CLI
    pid: int | None                   # a local process group, when there is one
    job_id: str | None

    def lines(self) -> AsyncIterator[bytes]: ...
    async def wait(self) -> Outcome: ...
    async def terminate(self, grace_seconds: float) -> None: ...


class Executor(Protocol):
    name: str

    def check(self) -> None: ...                       # reachable, or a RunError (before any folder exists)
    async def launch(self, command: list[str], env: dict[str, str], folder: RunFolder,
                     devices: int = 1) -> Handle: ...           # devices: GPUs the run asks for (train.devices)
    def stop_orphan(self, record: dict) -> None: ...    # a run whose parent died: stop its job


# --- local ------------------------------------------------------------------------------------------

class LocalHandle:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.job_id = None
        self.where = f"local (pid {process.pid})"

    def lines(self) -> AsyncIterator[bytes]:
        assert self.process.stdout is not None
        return self.process.stdout.__aiter__()

    async def wait(self) -> Outcome:
        return Outcome(await self.process.wait())

    async def terminate(self, grace_seconds: float) -> None:
        await terminate_group(self.pid, grace_seconds, lambda: self.process.returncode is not None)


class LocalExecutor:
    name = "local"
    spec = "local"

    def check(self) -> None:
        return None

    async def launch(self, command: list[str], env: dict[str, str], folder: RunFolder,
                     devices: int = 1) -> LocalHandle:   # local GPUs are the runner's slots
        with open(folder.stderr, "ab") as stderr:
            process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                                                           start_new_session=True, env=env, limit=STREAM_LIMIT)
        return LocalHandle(process)

    def stop_orphan(self, record: dict) -> None:
        if pid_alive(record.get("pid")):
            kill_group_now(record["pid"])


def remote_env(env: dict[str, str]) -> dict[str, str]:
    """A job on a cluster outlives no parent process of ours: it does not follow our pid."""
    return {key: value for key, value in env.items() if key != "HBT_PARENT_PID"}


# --- Ray Jobs ---------------------------------------------------------------------------------------

def ray_address(spec: str) -> str:
    """`ray://HOST:PORT` (our notation, the dashboard's port) -> the dashboard's HTTP address."""
    address = spec[len("ray://"):] if spec.startswith("ray://") else spec
    return address if address.startswith(("http://", "https://")) else f"http://{address}"


class RayHandle:
    def __init__(self, client, job_id: str, folder: RunFolder, address: str) -> None:
        self.client, self.job_id, self.folder = client, job_id, folder
        self.pid = None
        self.where = f"ray {address} (job {job_id})"

    async def lines(self) -> AsyncIterator[bytes]:
        """The job's log, line by line: events are parsed by the runner, the rest is its log."""
        pending = ""
        with open(self.folder.stderr, "a", encoding="utf-8") as log:
            async for chunk in self.client.tail_job_logs(self.job_id):
                pending += chunk
                *complete, pending = pending.split("\n")
                for line in complete:
                    if not line.startswith('{"v":'):
                        log.write(line + "\n")
                    yield line.encode()
        if pending:
            yield pending.encode()

    async def wait(self) -> Outcome:
        while True:
            info = await asyncio.to_thread(self.client.get_job_info, self.job_id)
            status = str(getattr(info.status, "value", info.status))
            if status in RAY_TERMINAL:
                code = getattr(info, "driver_exit_code", None)
                return Outcome(0 if status == "SUCCEEDED" else code, "cancelled" if status == "STOPPED" else None,
                               detail=(info.message or "").splitlines()[0] if info.message else "")
            await asyncio.sleep(0.5)

    async def terminate(self, grace_seconds: float) -> None:
        await asyncio.to_thread(self.client.stop_job, self.job_id)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str, python: str | None = None, grace_seconds: float = 60.0,
                 gpus: bool = False) -> None:
        self.spec = address if address.startswith("ray://") else f"ray://{address.split('://')[-1]}"
        self.address = ray_address(address)
        self.python = python or os.environ.get("HBT_RAY_PYTHON") or sys.executable
        self.grace_seconds = grace_seconds
        self.gpus = gpus   # each job asks Ray for train.devices GPUs (Ray sets CUDA_VISIBLE_DEVICES)
        self._client = None

    def client(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.address)
            except Exception as error:  # ConnectionError, ValueError, RuntimeError: one line
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise RunError(f"--executor ray: cannot reach the Ray dashboard at {self.address} ({first})") from None
        return self._client

    def check(self) -> None:
        self.client()

    async def launch(self, command: list[str], env: dict[str, str], folder: RunFolder,
                     devices: int = 1) -> RayHandle:
        arguments = command[1:] if command and command[0] == sys.executable else command
        entrypoint = "exec " + " ".join(shlex.quote(part) for part in [self.python, *arguments])
        passed = {key: value for key, value in remote_env(env).items()
                  if key.startswith(("HBT_", "HF_", "OMP_", "CUDA_", "TOKENIZERS_", "PYTHONUNBUFFERED"))}
        passed["RAY_JOB_STOP_WAIT_TIME_S"] = str(int(self.grace_seconds))
        # the job runs this code as submitted (Ray uploads the project, .gitignored paths left out);
        # the run folder itself is on storage both sides see
        runtime_env = {"working_dir": str(PROJECT_ROOT), "excludes": list(RAY_EXCLUDES), "env_vars": passed}
        job_id = await asyncio.to_thread(self.client().submit_job, entrypoint=entrypoint,
                                         submission_id=f"hbt-{folder.id}-{os.urandom(2).hex()}",
                                         runtime_env=runtime_env, entrypoint_num_gpus=devices if self.gpus else 0)
        return RayHandle(self.client(), job_id, folder, self.address)

    def stop_orphan(self, record: dict) -> None:
        if record.get("job_id"):
            try:
                self.client().stop_job(record["job_id"])
            except Exception:   # the job may be gone already; the record still becomes interrupted
                pass


# --- Slurm through submitit ----------------------------------------------------------------------------

def load_submitit():
    """submitit, with its log kept off stdout: its logger prints INFO lines (and "Bypassing sacct
    error" warnings) to stdout, which would corrupt `--json` output. Warnings still go to stderr."""
    import logging

    import submitit

    logger = logging.getLogger("submitit")
    for handler in list(logger.handlers):
        if handler.get_name() == "submitit_out" or getattr(handler, "stream", None) is sys.stdout:
            logger.removeHandler(handler)
    return submitit


SACCT_STATES = {  # sacct's State -> (our status while it lasts, or the outcome when it ends)
    "PENDING": "queued", "CONFIGURING": "queued", "REQUEUED": "queued", "RESIZING": "queued",
    "RUNNING": "running", "COMPLETING": "running", "SUSPENDED": "running",
    "COMPLETED": "finished", "FAILED": "failed", "TIMEOUT": "interrupted", "PREEMPTED": "interrupted",
    "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "CANCELLED": "cancelled", "BOOT_FAIL": "failed",
    "DEADLINE": "interrupted",
}


def slurm_status(state: str) -> str:
    """Our status for a sacct State ("CANCELLED by 1000" -> cancelled; unknown -> failed)."""
    return SACCT_STATES.get(state.split()[0].rstrip("+").upper(), "failed") if state else "queued"


class RunCommand:
    """What the Slurm job runs: the training command. Slurm's advance warning (SIGUSR2,
    `slurm_signal_delay_s` before a time limit or a preemption) reaches the run, which
    checkpoints; submitit then calls `checkpoint`, which waits for that and requeues the job
    with `--resume`. The return value is the run's exit code (negative: killed by that signal)."""

    def __init__(self, command: list[str], env: dict[str, str], stderr: str) -> None:
        self.command, self.env, self.stderr = command, env, stderr
        self.process = None

    def __call__(self) -> int:
        import subprocess

        # events go to the run's events.jsonl (its stdout copy is not needed); its log to stderr.log
        with open(self.stderr, "ab") as log:
            self.process = subprocess.Popen(self.command, env={**os.environ, **self.env}, cwd=PROJECT_ROOT,
                                            stdout=subprocess.DEVNULL, stderr=log)
        return self.process.wait()

    def checkpoint(self, *args, **kwargs):
        submitit = load_submitit()

        # this runs in submitit's signal handler while __call__ sits in Popen.wait(), which holds
        # the Popen's lock: look at the process through /proc, not through Popen
        if self.process is not None and pid_alive(self.process.pid):
            try:
                os.kill(self.process.pid, signal.SIGTERM)     # the run checkpoints and stops
            except ProcessLookupError:
                pass
            while pid_alive(self.process.pid):
                time.sleep(0.2)
        command = self.command if "--resume" in self.command else [*self.command, "--resume"]
        return submitit.helpers.DelayedSubmission(RunCommand(command, self.env, self.stderr))


class SlurmHandle:
    FORCE_CHECK_SECONDS = 15.0   # a job that died without a result is seen by sacct this often

    def __init__(self, job, folder: RunFolder) -> None:
        self.job, self.folder = job, folder
        self.pid = None
        self.job_id = str(job.job_id)
        self.where = f"slurm (job {job.job_id})"

    async def lines(self) -> AsyncIterator[bytes]:
        """The run's events.jsonl as it grows (the job writes it on shared storage)."""
        position, last_forced = 0, time.monotonic()
        while True:
            force = time.monotonic() - last_forced > self.FORCE_CHECK_SECONDS
            last_forced = time.monotonic() if force else last_forced
            done = await asyncio.to_thread(self.job.done, force)
            try:
                with open(self.folder.events, "rb") as handle:
                    handle.seek(position)
                    chunk = handle.read()
            except FileNotFoundError:
                chunk = b""
            complete = chunk[:chunk.rfind(b"\n") + 1]
            position += len(complete)
            for line in complete.splitlines():
                yield line
            if done:
                return
            await asyncio.sleep(1.0)

    async def wait(self) -> Outcome:
        try:   # RunCommand's return value: the run's own exit code
            return Outcome(int(await asyncio.to_thread(self.job.result)))
        except Exception as error:   # the job itself ended early: scancel, a time limit, a node failure
            state = await asyncio.to_thread(self.job.get_info)
            state = str(state.get("State", "")) if isinstance(state, dict) else ""
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            verdict = slurm_status(state)
            return Outcome(None, verdict if verdict in ("cancelled", "interrupted") else None,
                           detail=f"{state or 'unknown'}: {first}")

    async def terminate(self, grace_seconds: float) -> None:
        """SIGTERM to the job's steps only (not its batch shell, whose death would end the job at
        once): the run checkpoints and exits, and the job completes. A job still queued, or one
        that outlives the grace period, is scancel'd outright."""
        import subprocess

        info = await asyncio.to_thread(self.job.get_info)
        if slurm_status(str(info.get("State", ""))) == "queued":
            await asyncio.to_thread(subprocess.run, ["scancel", self.job_id], capture_output=True)
            return
        await asyncio.to_thread(subprocess.run, ["scancel", "--signal=TERM", self.job_id], capture_output=True)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            if await asyncio.to_thread(self.job.done, True):
                return
            await asyncio.sleep(1.0)
        await asyncio.to_thread(subprocess.run, ["scancel", self.job_id], capture_output=True)


class SlurmExecutor:
    name = "slurm"

    def __init__(self, partition: str | None = None, cluster: str = "slurm", timeout_min: int = 24 * 60,
                 gpus: bool = False, cpus: int | None = None) -> None:
        self.spec = "slurm" if cluster == "slurm" else "submitit-local"
        self.partition, self.cluster = partition, cluster
        self.timeout_min, self.gpus, self.cpus = timeout_min, gpus, cpus

    def check(self) -> None:
        import shutil

        if self.cluster == "slurm":
            missing = [command for command in ("sbatch", "sacct", "scancel") if shutil.which(command) is None]
            if missing:
                raise RunError(f"--executor slurm: {', '.join(missing)} not found on PATH "
                               "(is this a Slurm login node?)")

    def executor(self, folder: RunFolder, devices: int = 1):
        submitit = load_submitit()

        executor = submitit.AutoExecutor(folder=str(folder.path / ".submitit"), cluster=self.cluster)
        parameters = {"timeout_min": self.timeout_min, "name": folder.id}
        if self.cluster == "slurm":
            parameters.update({"slurm_partition": self.partition, "slurm_signal_delay_s": 120,
                               "gpus_per_node": devices if self.gpus else None, "cpus_per_task": self.cpus})
        executor.update_parameters(**{key: value for key, value in parameters.items() if value is not None})
        return executor

    async def launch(self, command: list[str], env: dict[str, str], folder: RunFolder,
                     devices: int = 1) -> SlurmHandle:
        job = await asyncio.to_thread(self.executor(folder, devices).submit,
                                      RunCommand(command, remote_env(env), str(folder.stderr)))
        return SlurmHandle(job, folder)

    def stop_orphan(self, record: dict) -> None:
        import subprocess

        if record.get("job_id") and self.cluster == "slurm":
            subprocess.run(["scancel", "--signal=TERM", str(record["job_id"])], capture_output=True)


# --- choosing one ---------------------------------------------------------------------------------------

def from_spec(spec: str | None, partition: str | None = None, grace_seconds: float = 60.0) -> Executor:
    """`local` (default), `ray://HOST:PORT`, `slurm`, or `submitit-local` (submitit's own local
    executor: the Slurm path without a cluster)."""
    spec = spec or os.environ.get("HBT_EXECUTOR") or config().get("executor") or "local"
    partition = partition or config().get("partition")
    if spec == "local":
        return LocalExecutor()
    if spec.startswith(("ray://", "http://", "https://")):
        return RayExecutor(spec, config().get("ray_python"), grace_seconds, gpus=bool(config().get("gpus")))
    if spec == "slurm":
        return SlurmExecutor(partition, gpus=bool(config().get("gpus")), cpus=config().get("cpus_per_task"),
                             timeout_min=int(config().get("time_limit_min", 24 * 60)))
    if spec == "submitit-local":
        return SlurmExecutor(cluster="local")
    raise RunError(f"--executor {spec!r}: use local, ray://HOST:PORT, slurm or submitit-local")


def config() -> dict:
    """Defaults from `$HBT_CONFIG` or ./hbt-tui.json, e.g. {"executor": "slurm", "partition": "gpu",
    "gpus": true, "cpus_per_task": 8, "time_limit_min": 240} or {"executor": "ray://head:8265",
    "ray_python": "/shared/venv/bin/python", "gpus": true}. `gpus`: each run asks for
    train.devices GPUs."""
    import json

    path = Path(os.environ.get("HBT_CONFIG") or "hbt-tui.json")
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RunError(f"{path}: not a JSON config ({error})") from None
    return value if isinstance(value, dict) else {}


# --- process groups (local runs) ------------------------------------------------------------------

async def terminate_group(pgid: int, grace_seconds: float, exited: Callable[[], bool]) -> None:
    """SIGTERM to the process group, then SIGKILL if it is still there after the grace period."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while not exited() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if not exited():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_group_now(pgid: int, grace_seconds: float = 10.0) -> None:
    """For orphans found at start-up: SIGTERM, wait, SIGKILL (blocking, no event loop yet)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while pid_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
