"""The results index: a TinyDB table of run summaries, rebuilt from the run folders at will.

`runs/<id>/` is the source of truth (spec, events, results, checkpoints); `runs/index.json`
is an index of small summaries (status, key spec fields, timings, macro scores) so that
listing and filtering thousands of runs stays fast. Only the parent process writes it.

The storage keeps the parsed document in memory (re-read only when the file changed on
disk), writes through a temporary file and `os.replace` (a crash never leaves half an
index), serialises writers with an advisory lock, and uses orjson when installed. A
corrupt index is moved aside and rebuilt from the run folders, with a message saying so.
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

from engine.errors import RunError

INDEX_FILE = "index.json"
TABLE = "runs"

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


class AtomicJSONStorage(Storage):
    """TinyDB storage: cached parse, atomic replace on write."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._cache: dict | None = None
        self._stamp: tuple[int, int] | None = None

    def _disk_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def read(self) -> dict | None:
        stamp = self._disk_stamp()
        if stamp is None:
            return None
        if stamp != self._stamp:
            raw = self.path.read_bytes()
            try:
                document = _loads(raw) if raw.strip() else {}
            except ValueError as error:
                raise CorruptIndex(str(error)) from None
            if not isinstance(document, dict):
                raise CorruptIndex("top level is not an object")
            self._cache, self._stamp = document, stamp
        return self._cache

    def write(self, data: dict) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(_dumps(data))
        os.replace(temporary, self.path)
        self._cache, self._stamp = data, self._disk_stamp()

    def close(self) -> None:
        pass


class RunStore:
    """Run summaries keyed by run id."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = Path(runs_dir)
        self.messages: list[str] = []
        self._ensure_dir()
        self.path = self.runs_dir / INDEX_FILE
        self._db = TinyDB(str(self.path), storage=AtomicJSONStorage)
        self._table = self._db.table(TABLE, cache_size=0)
        try:
            self._rows()
        except CorruptIndex as error:
            self._recover(str(error))

    def _ensure_dir(self) -> None:
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunError(f"runs directory {self.runs_dir}: {error.strerror or error}") from None
        if not os.access(self.runs_dir, os.W_OK | os.X_OK):
            raise RunError(f"runs directory {self.runs_dir} is not writable")

    def _recover(self, reason: str) -> None:
        aside = self.path.with_name(f"{INDEX_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(self.path, aside)
        self._db = TinyDB(str(self.path), storage=AtomicJSONStorage)
        self._table = self._db.table(TABLE, cache_size=0)
        count = self.rebuild()
        self.messages.append(f"index {self.path} was corrupt ({reason}); moved it to {aside.name} "
                             f"and rebuilt {count} runs from the run folders")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.runs_dir / ".index.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- reads: straight from the cached document (TinyDB's Document objects cost ~10 µs a run)
    def _rows(self) -> list[dict]:
        document = self._db.storage.read() or {}
        table = document.get(TABLE, {})
        if not isinstance(table, dict) or not all(isinstance(row, dict) and "id" in row for row in table.values()):
            raise CorruptIndex(f"table {TABLE!r} is not a mapping of run summaries")
        return list(table.values())

    def all(self) -> list[dict]:
        return [dict(row) for row in self._rows()]

    def get(self, run_id: str) -> dict | None:
        found = next((row for row in self._rows() if row["id"] == run_id), None)
        return dict(found) if found else None

    def find(self, status: str | None = None, text: str | None = None, tag: str | None = None,
             strategy: str | None = None) -> list[dict]:
        """Runs matching every given filter, newest first."""
        def matches(doc: dict) -> bool:
            return ((status is None or doc.get("status") == status)
                    and (text is None or text.lower() in (doc.get("name", "") + " " + doc.get("id", "")).lower())
                    and (tag is None or tag in doc.get("tags", ()))
                    and (strategy is None or doc.get("strategy") == strategy))

        found = [dict(row) for row in self._rows() if matches(row)]
        return sorted(found, key=lambda doc: doc.get("created", 0), reverse=True)

    def resolve(self, reference: str) -> dict:
        """A run by id, unique id prefix, or name (the newest run of that name)."""
        runs = self._rows()
        exact = [dict(run) for run in runs if run["id"] == reference]
        if exact:
            return exact[0]
        by_prefix = [run for run in runs if run["id"].startswith(reference)]
        if len(by_prefix) == 1:
            return dict(by_prefix[0])
        by_name = sorted((run for run in runs if run.get("name") == reference), key=lambda run: run.get("created", 0))
        if by_name:
            return dict(by_name[-1])
        if len(by_prefix) > 1:
            raise RunError(f"run {reference!r} is ambiguous: {', '.join(run['id'] for run in by_prefix[:5])}")
        raise RunError(f"no run {reference!r} in {self.runs_dir} (see `hbt-tui runs`)")

    # --- writes (parent process only) ----------------------------------------------------------
    def upsert(self, summary: dict) -> None:
        with self._locked():
            self._table.upsert(summary, Query().id == summary["id"])

    def update(self, run_id: str, **fields: Any) -> None:
        with self._locked():
            self._table.update(fields, Query().id == run_id)

    def update_many(self, changes: Iterable[tuple[str, dict]]) -> None:
        """Several runs' changes in one write of the index."""
        changes = list(changes)
        if not changes:
            return
        with self._locked():
            wanted = dict(changes)
            self._table.update_multiple([(fields, Query().id == run_id) for run_id, fields in wanted.items()])

    def remove(self, run_id: str) -> None:
        with self._locked():
            self._table.remove(Query().id == run_id)

    def rebuild(self) -> int:
        """Re-create the index from the run folders; returns the number of runs found."""
        from engine.run_record import summarise_run_dir

        summaries = [summary for folder in sorted(self.runs_dir.iterdir()) if folder.is_dir()
                     and (summary := summarise_run_dir(folder)) is not None]
        with self._locked():
            self._table.truncate()
            self._table.insert_multiple(summaries)
        return len(summaries)
