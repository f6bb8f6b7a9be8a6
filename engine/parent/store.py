"""The run index: a TinyDB file of small run summaries, so that listing and filtering
thousands of runs stays fast. The run folders are the truth; the index can always be rebuilt.

Any number of parents (TUIs, `--run`s, `resume`s) may share one runs directory, so every
write takes an advisory lock on `runs/.index.lock` and is made against the file as it is on
disk at that moment: the cached document and TinyDB's next-id counter are dropped first.
Writes go through a temporary file and `os.replace` (a crash never leaves half an index); the
document is encoded before anything is touched, so a value that cannot be stored fails the
write and leaves the old index intact. Reads use the cached document until the file changes.

The index never hides a run: a corrupt index is moved aside and rebuilt, an empty one (or one
missing run folders) is filled from the folders, each with a message; a summary whose folder
is gone reads as `missing`, without its old scores.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from engine.contract.errors import RunError
from engine.contract.layout import INDEX_FILE, INDEX_LOCK, RunFolder, is_run_id, read_json, report_folder, write_atomic
from engine.parent.records import MISSING, RunFilter

TABLE = "runs"
REPORTS_TABLE = "reports"

try:
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)
except ImportError:  # pragma: no cover - orjson is a dependency, but stay usable without it
    def _loads(data: bytes) -> Any:
        return json.loads(data)

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


class CorruptIndex(Exception):
    pass


class IndexWriteError(RunError):
    """The index could not be written (disk full, a value it cannot hold); the old file stands."""


class AtomicJSONStorage(Storage):
    """TinyDB storage: cached parse, atomic replace on write."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._cache: dict | None = None
        self._stamp: tuple[int, int, int] | None = None

    def _disk_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def invalidate(self) -> None:
        self._cache = self._stamp = None

    def read(self) -> dict | None:
        stamp = self._disk_stamp()
        if stamp is None:
            return None
        if stamp != self._stamp:
            try:
                raw = self.path.read_bytes()
            except OSError as error:
                raise CorruptIndex(f"cannot read it: {error.strerror or error}") from None
            try:
                document = _loads(raw) if raw.strip() else {}
            except ValueError as error:
                raise CorruptIndex(str(error)) from None
            if not isinstance(document, dict):
                raise CorruptIndex("top level is not an object")
            self._cache, self._stamp = document, stamp
        return self._cache

    def write(self, data: dict) -> None:
        try:
            encoded = _dumps(data)
            write_atomic(self.path, encoded)
        except (OSError, TypeError, ValueError) as error:
            self.invalidate()
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise IndexWriteError(f"index {self.path} could not be written ({reason}); "
                                  "the run folders keep every result") from None
        self._cache, self._stamp = data, self._disk_stamp()

    def close(self) -> None:
        pass


class RunStore:
    """Run summaries keyed by run id."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = Path(runs_dir)
        self.messages: list[str] = []
        self.read_only = False
        self._ensure_dir()
        self.path = self.runs_dir / INDEX_FILE
        self._db = TinyDB(str(self.path), storage=AtomicJSONStorage)
        self._table = self._db.table(TABLE, cache_size=0)
        try:
            rows = self._rows()
        except CorruptIndex as error:
            if self.read_only:
                raise RunError(f"index {self.path} is corrupt ({error}) and the runs directory is read-only: "
                               "it cannot be rebuilt here") from None
            self._recover(str(error))
        else:
            if not self.read_only:
                self._catch_up(rows)
                self._settle(rows)

    def _ensure_dir(self) -> None:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunError(f"runs directory {self.runs_dir}: {error.strerror or error}") from None
        if not self.runs_dir.is_dir():
            raise RunError(f"runs directory {self.runs_dir} is not a directory")
        if not os.access(self.runs_dir, os.R_OK | os.X_OK):
            raise RunError(f"runs directory {self.runs_dir} cannot be read")
        if not os.access(self.runs_dir, os.W_OK):     # runs can be listed and shown; nothing is written
            self.read_only = True
            self.messages.append(f"runs directory {self.runs_dir} is read-only: showing it as it is")

    def check_writable(self) -> None:
        if self.read_only:
            raise RunError(f"runs directory {self.runs_dir} is read-only; nothing can be queued, changed or "
                           "deleted there")

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever any process writes the index (for views that follow it)."""
        return self._db.storage._disk_stamp()

    def folder(self, run_id: str) -> RunFolder:
        """The folder of a run (its id checked to be one plain folder name)."""
        return RunFolder.of(self.runs_dir, run_id)

    # --- keeping the index honest ----------------------------------------------------------------
    def _recover(self, reason: str) -> None:
        aside = self.path.with_name(f"{INDEX_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        with self.lock():
            if self.path.exists():
                os.replace(self.path, aside)
        count = self.rebuild()
        self.messages.append(f"index {self.path} was corrupt ({reason}); moved it to {aside.name} "
                             f"and rebuilt {count} runs from the run folders")

    def _catch_up(self, rows: list[dict]) -> None:
        """Index run folders the index lacks: all of them when it is empty (a 0-byte or `{}`
        file), or the few another writer missed."""
        from engine.parent.records import summarise_run_dir

        indexed = {row["id"] for row in rows}
        summaries = [summary for name in sorted(self.folder_names()) if name not in indexed
                     and (summary := summarise_run_dir(self.runs_dir / name)) is not None]
        if not summaries:
            return
        if not rows:
            count = self.rebuild()
            self.messages.append(f"index {self.path} was empty; rebuilt {count} runs from the run folders")
            return
        for summary in summaries:
            self.upsert(summary)
        self.messages.append(f"index {self.path} lacked {len(summaries)} run folders; added them")

    def _settle(self, rows: list[dict]) -> None:
        """Rows the index still shows active whose parent is gone, brought in line with their
        run.json (the truth): a parent that could not write the index — a full disk — leaves
        the final state only there."""
        from engine.parent.records import ACTIVE, clean_record, owner_alive, owner_of

        changes = []
        for row in rows:
            if row.get("status") not in ACTIVE or owner_alive(owner_of(row)):
                continue
            record = clean_record(read_json(self.folder(row["id"]).record) or {})
            if record.get("status") not in (None, *ACTIVE) and record.get("status") != row.get("status"):
                changes.append((row["id"], {key: record[key] for key in ("status", "error", "ended", "exit_code")
                                            if key in record}))
        if changes:
            try:
                self.update_many(changes)
            except IndexWriteError:
                return
            self.messages.append(f"index {self.path}: {len(changes)} run(s) brought in line with their folders")

    def folder_names(self) -> set[str]:
        """Names of the run folders on disk (one directory listing, no stats)."""
        try:
            with os.scandir(self.runs_dir) as entries:
                return {entry.name for entry in entries if entry.is_dir() and is_run_id(entry.name)}
        except FileNotFoundError:
            return set()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise against every other writer, then read the file as it is now. Not
        re-entrant: nothing inside may write the index again."""
        self.check_writable()
        with open(self.runs_dir / INDEX_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._db.storage.invalidate()
                self._table._next_id = None  # TinyDB caches it per process: recount from the file
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- reads: straight from the cached document (TinyDB's Document objects cost ~10 µs a run)
    def _rows(self) -> list[dict]:
        document = self._db.storage.read() or {}
        if not isinstance(document, dict):
            raise CorruptIndex("the index is not a JSON object")
        table = document.get(TABLE, {})
        if not isinstance(table, dict) or not all(isinstance(row, dict) and "id" in row for row in table.values()):
            raise CorruptIndex(f"table {TABLE!r} is not a mapping of run summaries")
        if not all(isinstance(key, str) and key.isdigit() for key in table):   # TinyDB's document ids
            raise CorruptIndex(f"table {TABLE!r} has keys that are not document numbers")
        bad = next((row["id"] for row in table.values() if not is_run_id(row["id"])), None)
        if bad is not None:
            raise CorruptIndex(f"run id {str(bad)[:60]!r} is not a plain folder name")
        return list(table.values())

    def _shown(self, rows: Iterable[dict]) -> list[dict]:
        """Copies of the rows; a run whose folder is gone reads as missing, without scores."""
        present = self.folder_names()
        return [dict(row) if row["id"] in present else {**row, "status": MISSING, "results": {}}
                for row in rows]

    def all(self) -> list[dict]:
        return self._shown(self._rows())

    def get(self, run_id: str) -> dict | None:
        found = next((row for row in self._rows() if row["id"] == run_id), None)
        if found is None:
            return None
        if not (self.runs_dir / run_id).is_dir():
            return {**found, "status": MISSING, "results": {}}
        return dict(found)

    def find(self, run_filter: RunFilter = RunFilter()) -> list[dict]:
        """Runs the filter keeps, newest first."""
        found = [row for row in self.all() if run_filter.matches(row)]
        return sorted(found, key=lambda doc: doc.get("created", 0), reverse=True)

    def resolve(self, reference: str) -> dict:
        """A run by id, unique id prefix, or name (the newest run of that name)."""
        runs = self.all()
        exact = [run for run in runs if run["id"] == reference]
        if exact:
            return exact[0]
        by_prefix = [run for run in runs if run["id"].startswith(reference)]
        if len(by_prefix) == 1:
            return by_prefix[0]
        by_name = sorted((run for run in runs if run.get("name") == reference), key=lambda run: run.get("created", 0))
        if by_name:
            return by_name[-1]
        if len(by_prefix) > 1:
            raise RunError(f"run {reference!r} is ambiguous: {', '.join(run['id'] for run in by_prefix[:5])}")
        raise RunError(f"no run {reference!r} in {self.runs_dir} (see `hbt-tui runs`)")

    # --- writes (parent processes only) -------------------------------------------------------------
    def upsert(self, summary: dict) -> None:
        with self.lock():
            self._table.upsert(summary, Query().id == summary["id"])

    def update(self, run_id: str, **fields: Any) -> None:
        with self.lock():
            self._table.update(fields, Query().id == run_id)

    def update_many(self, changes: Iterable[tuple[str, dict]]) -> None:
        """Several runs' changes in one write of the index."""
        wanted = dict(changes)
        if not wanted:
            return
        with self.lock():
            self._table.update_multiple([(fields, Query().id == run_id) for run_id, fields in wanted.items()])

    def remove(self, run_id: str) -> None:
        with self.lock():
            self._table.remove(Query().id == run_id)

    # --- saved reports and comparisons (their files live in runs/.reports/<id>/) ----------------------
    def reports(self) -> list[dict]:
        """Saved reports and comparisons, newest first (those whose folder is gone are left out)."""
        try:
            document = self._db.storage.read() or {}
        except CorruptIndex:
            return []
        table = document.get(REPORTS_TABLE) if isinstance(document, dict) else None
        rows = [dict(row) for row in (table.values() if isinstance(table, dict) else ())
                if isinstance(row, dict) and is_run_id(row.get("id"))]
        present = [row for row in rows if report_folder(self.runs_dir, row["id"]).is_dir()]
        return sorted(present, key=lambda row: row.get("created", 0), reverse=True)

    def remove_report(self, report_id: str) -> None:
        """A saved report or comparison: its index row and its folder under .reports."""
        import shutil

        with self.lock():
            self._db.table(REPORTS_TABLE, cache_size=0).remove(Query().id == report_id)
        if is_run_id(report_id):
            shutil.rmtree(report_folder(self.runs_dir, report_id), ignore_errors=True)

    def save_report(self, record: dict) -> None:
        with self.lock():
            document = self._db.storage.read() or {}
            table = document.get(REPORTS_TABLE)
            if table is not None and not (isinstance(table, dict) and all(
                    isinstance(key, str) and key.isdigit() and isinstance(row, dict) for key, row in table.items())):
                self._db.storage.write({**document, REPORTS_TABLE: {}})   # damaged: its folders stay, listed again
                self.messages.append(f"the index's {REPORTS_TABLE} table was damaged; it was started afresh "
                                     "(the report folders under .reports are kept)")
            reports = self._db.table(REPORTS_TABLE, cache_size=0)
            reports._next_id = None
            reports.upsert(record, Query().id == record["id"])

    def rebuild(self) -> int:
        """Re-create the index from the run folders in one atomic write (the old index stands
        until the new one is complete); returns the number of runs found."""
        from engine.parent.records import summarise_run_dir

        with self.lock():
            summaries = [summary for name in sorted(self.folder_names())
                         if (summary := summarise_run_dir(self.runs_dir / name)) is not None]
            try:
                reports = (self._db.storage.read() or {}).get(REPORTS_TABLE) or {}
            except CorruptIndex:
                reports = {}
            self._db.storage.write({TABLE: {str(number): summary for number, summary in enumerate(summaries, 1)},
                                    REPORTS_TABLE: reports})
        return len(summaries)
