"""Slurm through submitit: an sbatch job per run. Events are read from the run's own
events.jsonl on shared storage, states come from sacct, stop is SIGTERM to the job's steps, and
a preempted or timed-out job requeues itself to resume from its checkpoint."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

from engine.contract.errors import RunError
from engine.contract.layout import RunFolder
from engine.parent.executors.base import PROJECT_ROOT, Outcome, remote_env
from engine.parent.records import pid_alive


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

    def stop_orphan(self, record: dict) -> str | None:
        """scancel the run's job — only a job whose name is this run's id (a job id in a record can
        have been edited, or reused by Slurm for someone else's job)."""
        import subprocess

        job_id = record.get("job_id")
        if not job_id or self.cluster != "slurm":
            return None
        if not str(job_id).replace("_", "").isdigit():
            return f"job id {str(job_id)[:40]!r} is not a Slurm job id: left alone"
        listed = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%j"], capture_output=True, text=True)
        name = listed.stdout.strip()
        if listed.returncode != 0 or not name:
            return None                                   # gone already
        if name != record.get("id"):
            return f"Slurm job {job_id} is now {name!r}, not this run's: left alone"
        subprocess.run(["scancel", "--signal=TERM", str(job_id)], capture_output=True)
        return None
