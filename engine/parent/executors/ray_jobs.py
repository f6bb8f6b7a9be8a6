"""Ray Jobs (`ray.job_submission.JobSubmissionClient`): events come from the job's log tail;
stop is `stop_job`, which sends SIGTERM and waits `RAY_JOB_STOP_WAIT_TIME_S` (set to the
runner's grace) before SIGKILL. The exit code is the job's driver exit code (the entrypoint is
`exec`'d, so a signal shows as a negative code)."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import AsyncIterator

from engine.contract.errors import RunError
from engine.contract.layout import RunFolder
from engine.parent.executors.base import PROJECT_ROOT, Outcome, remote_env

RAY_TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
RAY_EXCLUDES = ("runs/", ".venv/", ".git/", "benchmarks/results/", "docs/", "**/__pycache__/", "tests/")


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

    def stop_orphan(self, record: dict) -> str | None:
        """Stop the run's job — only one whose submission id is this run's (`hbt-<run id>-…`)."""
        job_id = record.get("job_id")
        if not job_id:
            return None
        if not str(job_id).startswith(f"hbt-{record.get('id')}-"):
            return f"Ray job {str(job_id)[:60]!r} is not this run's: left alone"
        try:
            self.client().stop_job(job_id)
        except Exception:   # the job may be gone already; the record still becomes interrupted
            pass
        return None
