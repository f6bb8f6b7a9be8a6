"""The run folder, in one place: every file and folder name of a run, and the one way to
write a file into it.

    runs/index.json                         the parent's TinyDB index of run summaries (and of reports)
    runs/.reports/<id>/                     a saved report or comparison: report.md, report.json,
                                            tables.csv, tables.tex, figures/
    runs/<id>/spec.json                     the resolved spec
    runs/<id>/run.json                      the parent's record: status, owner, timings, error
    runs/<id>/events.jsonl                  every event the run emitted (the child writes it)
    runs/<id>/stderr.log                    the run's log
    runs/<id>/cancel.request                another process asks the run's owner to cancel it
    runs/<id>/model/                        the final model (Hugging Face format)
    runs/<id>/checkpoints/step-NNNNNN/      model/, training_state.pt, trainer_state.json,
                                            spec.json, checksums.json
    runs/<id>/eval/<dataset>/results.json   the latest evaluation (also step-NNNNNN/results.json)
    runs/<id>/eval/<dataset>/per_query.tsv.gz
    runs/<id>/eval/<dataset>/trec/<X>.<setting>.run (+ .qrels)

Both processes ask `RunFolder` for these paths; nothing else spells them. A run id is a
single path segment and always the folder's own name (`validate_run_id`), so an id read
from a file can never reach outside the runs directory. Stdlib only.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.contract.errors import RunError

INDEX_FILE = "index.json"
INDEX_LOCK = ".index.lock"
REPORTS_DIR = ".reports"
REPORT_FILE = "report.md"
REPORT_DATA_FILE = "report.json"
REPORT_CSV_FILE = "tables.csv"
REPORT_LATEX_FILE = "tables.tex"
FIGURES_DIR = "figures"
REPORT_MARKER = ".hbt-report"           # in every report folder: what `report --out DIR --force` may replace
REPORT_README = "README.md"
SPEC_FILE = "spec.json"
RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
STDERR_FILE = "stderr.log"
CANCEL_REQUEST = "cancel.request"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
EVAL_DIR = "eval"
RESULTS_FILE = "results.json"
PER_QUERY_FILE = "per_query.tsv.gz"
TREC_DIR = "trec"
TRAINING_STATE_FILE = "training_state.pt"
TRAINER_STATE_FILE = "trainer_state.json"
CHECKSUMS_FILE = "checksums.json"
STEP_PREFIX = "step-"

SETTINGS = ("mono", "cross", "multi")
"""The three LAReQA retrieval settings, in table order."""
SETTING_NAMES = {"mono": "monolingual", "cross": "cross-lingual", "multi": "multilingual"}

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+,@-]{0,159}$")


def is_run_id(run_id: object) -> bool:
    return isinstance(run_id, str) and bool(_RUN_ID.match(run_id)) and ".." not in run_id


def validate_run_id(run_id: object) -> str:
    """The id itself, or a RunError: an id is one plain path segment (no '/', no '..')."""
    if not is_run_id(run_id):
        raise RunError(f"{str(run_id)[:80]!r} is not a valid run id (one folder name: letters, digits, ._=+,@-)")
    return str(run_id)


def step_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:06d}"


def step_of(folder: Path) -> int:
    return int(folder.name[len(STEP_PREFIX):])


class RunFolder:
    """The paths of one run folder."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, runs_dir: Path | str, run_id: str) -> RunFolder:
        return cls(Path(runs_dir) / validate_run_id(run_id))

    @property
    def id(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.path.is_dir()

    # --- top-level files ---------------------------------------------------------------------
    @property
    def spec(self) -> Path:
        return self.path / SPEC_FILE

    @property
    def record(self) -> Path:
        return self.path / RUN_FILE

    @property
    def events(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def stderr(self) -> Path:
        return self.path / STDERR_FILE

    @property
    def cancel_request(self) -> Path:
        return self.path / CANCEL_REQUEST

    @property
    def model(self) -> Path:
        return self.path / MODEL_DIR

    # --- evaluation ----------------------------------------------------------------------------
    @property
    def eval_root(self) -> Path:
        return self.path / EVAL_DIR

    def eval_dir(self, dataset: str, step: int | None = None) -> Path:
        """The dataset's folder (its latest evaluation), or one step's folder inside it."""
        folder = self.eval_root / dataset
        return folder if step is None else folder / step_name(step)

    def results(self, dataset: str, step: int | None = None) -> Path:
        return self.eval_dir(dataset, step) / RESULTS_FILE

    def per_query(self, dataset: str, step: int | None = None) -> Path:
        return self.eval_dir(dataset, step) / PER_QUERY_FILE

    def trec_dir(self, dataset: str) -> Path:
        return self.eval_dir(dataset) / TREC_DIR

    def evaluated_datasets(self) -> list[str]:
        """Datasets with a results file, in name order."""
        if not self.eval_root.is_dir():
            return []
        return sorted(folder.name for folder in self.eval_root.iterdir() if (folder / RESULTS_FILE).is_file())

    def evaluated_steps(self, dataset: str) -> list[int]:
        folder = self.eval_dir(dataset)
        if not folder.is_dir():
            return []
        return sorted(step_of(path) for path in folder.glob(f"{STEP_PREFIX}*") if (path / RESULTS_FILE).is_file())

    # --- checkpoints ---------------------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / step_name(step)

    def staging_checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / f".staging-{step:06d}"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints (renamed into place), oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        complete = [path for path in self.checkpoints_dir.glob(f"{STEP_PREFIX}*")
                    if (path / TRAINER_STATE_FILE).is_file()]
        return sorted(complete, key=step_of)

    def has_checkpoint(self) -> bool:
        return bool(self.checkpoints())


def report_folder(runs_dir: Path | str, report_id: str) -> Path:
    """Where a saved report or comparison lives (its id checked like a run id)."""
    return Path(runs_dir) / REPORTS_DIR / validate_run_id(report_id)


# --- writing and reading -------------------------------------------------------------------------

def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file beside `path` and rename it into place: a reader sees
    the old file or the new one, never half of one; a failed write leaves no temporary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_record(path: Path, value: Any) -> None:
    """A run's record, atomically; on a full disk, where no temporary copy fits, rewritten in
    place instead (its blocks are already allocated): the final state of a run must be written
    even when the run failed because the disk filled."""
    data = json.dumps(value, indent=1).encode("utf-8")
    try:
        write_atomic(path, data)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT) or not path.exists():
            raise
        with open(path, "r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())


def write_json_atomic(path: Path, value: Any, indent: int | None = 1) -> None:
    write_atomic(path, json.dumps(value, indent=indent, ensure_ascii=False).encode("utf-8"))


def read_json(path: Path) -> dict | None:
    """A JSON object from a file, or None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_json_object(path: Path, refuse: Callable[[str], Exception]) -> dict:
    """A file that must hold one JSON object; otherwise `refuse(why)` is raised (unreadable, not
    JSON, not an object), the caller's error naming what the file is for."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise refuse(f"cannot read it as JSON ({error})") from None
    if not isinstance(value, dict):
        raise refuse("it is not a JSON object")
    return value


def repair_torn_line(path: Path) -> bool:
    """Cut a file of lines back to its last complete line (a writer killed mid-line leaves a
    torn one, which the next append would glue onto). True if something was cut."""
    try:
        with open(path, "rb+") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size == 0:
                return False
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return False
            position = size
            while position > 0:
                step = min(65536, position)
                handle.seek(position - step)
                chunk = handle.read(step)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    handle.truncate(position - step + newline + 1)
                    return True
                position -= step
            handle.truncate(0)
            return True
    except FileNotFoundError:
        return False
