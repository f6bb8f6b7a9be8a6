"""Embeddings of an unchanged encoder are computed once.

An entry is one `encode` call's output: the embeddings of one side (queries or passages) of
one language of one dataset. Its key hashes everything the numbers depend on:

- the encoder: a hash of every parameter's bytes (so a fine-tuned model never matches its
  base, and the base model at step 0 of every run of a grid always does), the tokenizer
  (its full serialisation), pooling, prefixes and max lengths;
- how it was run: precision (and how a half precision is run: `INFERENCE_SCHEME`) and
  evaluation batch size (padding differs between batch sizes);
- what was encoded: the side and the texts themselves (which fixes the dataset files, the
  languages, the slice and the passage kind).

Entries live in `<cache dir>/embeddings` (`HBT_EMBEDDING_CACHE_DIR` overrides) as `KEY.npy`
with `KEY.json` beside it holding the array's shape and SHA-256; a mismatching, truncated or
unreadable entry is deleted and recomputed, never used. Writes are atomic (temp + rename);
the least recently used entries are removed beyond `HBT_EMBEDDING_CACHE_MB` (default 4096).
A lock file per key makes concurrent runs of a grid compute an entry once: the second waits
for the first. A cache directory that cannot be written turns the cache off for the run,
with one warning — except for a corpus's shards (entries whose `about` says `corpus-shard`):
a disk that fills while one is written fails the evaluation with one line (`ShardDiskFull`),
the shards already complete kept for the next attempt, since going on would encode the rest
of a corpus that cannot be stored.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from engine.contract.embedding_files import cache_root, corpus_shards, evict, limit_bytes
from engine.contract.errors import UserError

LOCK_POLL_SECONDS = 0.2
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)      # out of space, of quota, or of the file-size limit


class ShardDiskFull(UserError):
    """A corpus shard could not be stored for lack of space; the complete ones are kept."""


def tokenizer_identity(tokenizer) -> str:
    """The tokenizer's full serialisation less its truncation and padding, which the fast
    tokenizer keeps from its last call (training pads and truncates differently from
    evaluation): only what maps a text to its ids."""
    if not hasattr(tokenizer, "backend_tokenizer"):
        return json.dumps(tokenizer.get_vocab(), sort_keys=True)
    document = json.loads(tokenizer.backend_tokenizer.to_str())
    document.pop("truncation", None)
    document.pop("padding", None)
    return json.dumps(document, sort_keys=True)


def encoder_fingerprint(encoder, precision: str, batch_size: int) -> str:
    """A hash of the encoder's weights, tokenizer and settings, and how it is run."""
    import torch

    from engine.child.encoder import INFERENCE_SCHEME

    digest = hashlib.blake2b(digest_size=20)
    with torch.no_grad():
        for name, tensor in sorted(encoder.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
            flat = tensor.detach().contiguous().cpu().reshape(-1)
            digest.update(flat.view(torch.uint8).numpy().data if flat.numel() else b"")
    digest.update(hashlib.sha256(tokenizer_identity(encoder.tokenizer).encode()).digest())
    spec = encoder.spec
    scheme = INFERENCE_SCHEME if precision != "fp32" else ""
    settings = [spec.pooling, spec.query_prefix, spec.passage_prefix, spec.max_query_length,
                spec.max_passage_length, precision, scheme, batch_size, getattr(encoder.model.config, "model_type", "")]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()


def texts_key(fingerprint: str, texts: Sequence[str], is_query: bool) -> str:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(fingerprint.encode())
    digest.update(b"q" if is_query else b"p")
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


class EmbeddingCache:
    def __init__(self, root: Path | None = None, warn: Callable[[str], None] = lambda message: None,
                 check_stop: Callable[[], None] = lambda: None, limit: int | None = None) -> None:
        self.root = root or cache_root()
        self.limit = limit                 # bytes kept; None: HBT_EMBEDDING_CACHE_MB
        self.warn = warn
        self.check_stop = check_stop       # raises when the run must stop (called while waiting)
        self.enabled = True
        self.hits = 0
        self.misses = 0
        self.written: set[str] = set()     # keys this process stored
        self.shards_written: set[str] = set()   # of those, corpus shards
        self.evicted_own = 0               # of those, removed again by the size limit

    # --- the one entry point -------------------------------------------------------------------
    def get_or_compute(self, key: str, compute: Callable[[], np.ndarray], rows: int | None = None,
                       mmap: bool = False, about: dict | None = None) -> np.ndarray:
        """The entry for `key` if present, intact and of `rows` rows (one per text); otherwise
        `compute()`, stored. With `mmap`, a stored entry is returned memory-mapped (read-only),
        once its checksum is verified. `about` is kept in the entry's metadata (what it is: a
        corpus shard's encoder, dataset, language, number), for `--dry-run` to count."""
        if not self.enabled or not self._writable():
            self.misses += 1
            return compute()
        found = self._read(key, rows, mmap)
        if found is not None:
            self.hits += 1
            return found
        with self._locked(key, about):
            found = self._read(key, rows, mmap)      # another run may have computed it while this one waited
            if found is not None:
                self.hits += 1
                return found
            value = compute()
            self.misses += 1
            self._write(key, value, about)
        self._evict()
        return value

    # --- files ----------------------------------------------------------------------------------
    def discard_shards(self, fingerprint: str, dataset: str) -> int:
        """Remove `dataset`'s corpus shards encoded by this fingerprint (a trained model's, once
        its evaluation is done), so that they do not push the base encoder's shards, which every
        run of a grid reads, out of the cache's limit. How many went."""
        removed = 0
        for meta_path, about, _ in corpus_shards(self.root):
            if about.get("fingerprint") == fingerprint and about.get("dataset") == dataset:
                meta_path.with_suffix(".npy").unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)
                removed += 1
        return removed

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.npy", self.root / f"{key}.json"

    def _read(self, key: str, rows: int | None = None, mmap: bool = False) -> np.ndarray | None:
        array_path, meta_path = self._paths(key)
        if not array_path.exists() and not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if mmap:
                digest = hashlib.sha256()
                with open(array_path, "rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                if digest.hexdigest() != meta["sha256"]:
                    raise ValueError("checksum mismatch")
                array = np.load(array_path, mmap_mode="r", allow_pickle=False)
            else:
                data = array_path.read_bytes()
                if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                    raise ValueError("checksum mismatch")
                array = np.load(io.BytesIO(data), allow_pickle=False)
            if list(array.shape) != meta["shape"] or str(array.dtype) != meta["dtype"]:
                raise ValueError("shape or dtype mismatch")
            if array.ndim != 2 or (rows is not None and array.shape[0] != rows):   # intact, but not these texts
                raise ValueError(f"shape {tuple(array.shape)} does not fit {rows} texts")
        except (OSError, ValueError, KeyError, TypeError) as error:
            self.warn(f"embedding cache entry {key[:12]} was corrupt ({error}); recomputing it")
            for path in (array_path, meta_path):
                path.unlink(missing_ok=True)
            return None
        now = time.time()
        try:
            os.utime(array_path, (now, now))   # least recently used goes first
        except OSError:
            pass
        return array

    def _write(self, key: str, value: np.ndarray, about: dict | None = None) -> None:
        array_path, meta_path = self._paths(key)
        suffix = f".tmp-{os.getpid()}"
        try:
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
            data = buffer.getvalue()
            temporary = array_path.with_name(array_path.name + suffix)
            temporary.write_bytes(data)
            meta = {"sha256": hashlib.sha256(data).hexdigest(), "shape": list(value.shape), "dtype": str(value.dtype),
                    "created": time.time(), **({"about": about} if about else {})}
            meta_temporary = meta_path.with_name(meta_path.name + suffix)
            meta_temporary.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(temporary, array_path)
            os.replace(meta_temporary, meta_path)
            self.written.add(key)
            if about and about.get("kind") == "corpus-shard":
                self.shards_written.add(key)
        except OSError as error:
            for path in self.root.glob(f"{key}.*{suffix}"):
                path.unlink(missing_ok=True)
            if error.errno in FULL:
                self._full(error, about)
            self._disable(f"could not write to the embedding cache at {self.root} ({error.strerror or error})")

    def _full(self, error: OSError, about: dict | None) -> None:
        """A disk that filled while a corpus shard was stored: ShardDiskFull (the evaluation
        stops, the complete shards stay for the next attempt). Any other entry: nothing here."""
        if not about or about.get("kind") != "corpus-shard":
            return
        kept = sum(1 for stored in self.shards_written if self._paths(stored)[0].exists())
        raise ShardDiskFull(
            f"{self.root}: {error.strerror or error} while writing shard {about.get('shard')} of "
            f"{about.get('dataset')}/{about.get('language')} ({kept} shards written by this process before it, "
            "and every earlier one, are kept; free space and run again to go on from them)") from None

    def _writable(self) -> bool:
        if not self.enabled:
            return False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            self._disable(f"the embedding cache at {self.root} is not writable "
                          f"({error.strerror or error}); continuing without it")
            return False
        return True

    def _disable(self, message: str) -> None:
        if self.enabled:
            self.enabled = False
            self.warn(message)

    @contextmanager
    def _locked(self, key: str, about: dict | None = None) -> Iterator[None]:
        """This key's lock file, held exclusively; while another run holds it, poll (and let a
        stop request end the wait). The file stays: unlinking it would let two holders in."""
        try:
            handle = open(self.root / f"{key}.lock", "a+b")
        except OSError as error:
            if error.errno in FULL:
                self._full(error, about)
            raise
        with handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                self.check_stop()
                time.sleep(LOCK_POLL_SECONDS)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _evict(self) -> None:
        """Keep the cache within its limit; entries this process wrote and loses again mean the
        limit is smaller than one evaluation's needs (a corpus's shards): said once."""
        if not evict(self.root, limit_bytes() if self.limit is None else self.limit):
            return
        gone = {key for key in self.written if not self._paths(key)[0].exists()}
        if gone:
            self.written -= gone
            if not self.evicted_own:
                self.warn(f"the embedding cache at {self.root} is smaller than what this evaluation stores: entries "
                          "it wrote were evicted again (raise HBT_EMBEDDING_CACHE_MB to keep a corpus's shards)")
            self.evicted_own += len(gone)
