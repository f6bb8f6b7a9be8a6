"""Dropout masks drawn from torch's CPU generator, bit for bit as `bernoulli_` draws them, in native code.

The packed training step (engine.child.packed) draws every mask Hugging Face's forward would
draw, so that its losses equal the old step's. On the CPU torch's `bernoulli_(p)` takes each
element from its Mersenne Twister (MT19937) one at a time: two 32-bit words, a 53-bit
uniform, `uniform < p` — serial, and 16 % of the fp32 step. The same stream can be computed
in bulk: the MT19937 recurrence reaches 227 words back, so blocks of 227 words vectorise, and
tempering and the comparison are one vector loop. `MaskStream` reads the generator's state,
draws the masks of a step from it and writes the advanced state back, so what follows (the
next step, a checkpoint's RNG state) sees the generator exactly as `bernoulli_` would have
left it.

The C below is compiled once per machine with the system's C compiler (`cc`, or `$CC`) into
the cache directory, keyed by its source and the CPU it was built for. Before first use in a
process the result is checked against torch's own `bernoulli_` on a private generator; if
there is no compiler, the build fails, the check fails (a torch whose CPU bernoulli draws
another way) or `HBT_NATIVE_MASKS=0` is set, `available()` is False and the step keeps
torch's `bernoulli_`. Either way the masks are the same.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from engine.contract import catalog

SOURCE = r"""
#include <stdint.h>
#define N 624
#define M 397
static inline uint32_t temper(uint32_t y) {
    y ^= y >> 11; y ^= (y << 7) & 0x9d2c5680u; y ^= (y << 15) & 0xefc60000u; y ^= y >> 18; return y;
}
/* x[0..624) holds the state; fills x[624..end) with x[j] = x[j-227] ^ twist(x[j-624], x[j-623]). */
void mt_extend(uint32_t *x, int64_t end) {
    for (int64_t j0 = N; j0 < end; j0 += N - M) {
        int64_t j1 = j0 + (N - M) < end ? j0 + (N - M) : end;
        for (int64_t j = j0; j < j1; j++) {
            uint32_t y = (x[j - N] & 0x80000000u) | (x[j - N + 1] & 0x7fffffffu);
            x[j] = x[j - N + M] ^ (y >> 1) ^ ((0u - (y & 1u)) & 0x9908b0dfu);
        }
    }
}
/* Element i takes words w[2i] (high) and w[2i+1] (low) and is kept when its 53-bit value is below
   threshold. rows x width elements; only rows with keep[r] (every row when keep is NULL) are written. */
void bernoulli_rows(const uint32_t *w, uint64_t threshold, int64_t rows, int64_t width, const uint8_t *keep,
                    float value, float *out) {
    uint32_t thi = (uint32_t)(threshold >> 32), tlo = (uint32_t)threshold;
    for (int64_t r = 0; r < rows; r++) {
        if (keep && !keep[r]) continue;
        const uint32_t *v = w + 2 * r * width;
        for (int64_t c = 0; c < width; c++) {
            uint32_t hi = temper(v[2 * c]) & 0x1FFFFFu, lo = temper(v[2 * c + 1]);
            out[c] = ((hi < thi) | ((hi == thi) & (lo < tlo))) ? value : 0.0f;
        }
        out += width;
    }
}
"""

STATE_WORDS = 624
# torch's CPUGeneratorImplState (CPUGeneratorImpl.cpp): int64 seed, int left, int seeded, uint64 next,
# uint64 state[624], the normal-sampling cache; 5,056 bytes
_LEFT, _NEXT, _STATE = slice(8, 12), slice(16, 24), slice(24, 24 + 8 * STATE_WORDS)
_STATE_BYTES = 5056
_C = ctypes.c_void_p


def _cpu_key() -> str:
    """What the compiled code depends on: the CPU's model and instruction set (it is built for this CPU)."""
    described = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags", "Features", "CPU implementer", "CPU part")):
                described += line         # x86 names its model and flags; Arm its features and part
                if line.startswith(("flags", "Features")):
                    break
    except OSError:
        pass
    return described


def _build(again: bool = False) -> Path | None:
    """The compiled library's path (built now unless it is there and `again` is False), or None."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    key = hashlib.sha256((SOURCE + _cpu_key() + compiler).encode()).hexdigest()[:16]
    folder = catalog.cache_dir() / "native"
    library = folder / f"masks-{key}.so"
    if library.exists() and not again:
        return library
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as scratch:
            source = Path(scratch) / "masks.c"
            source.write_text(SOURCE)
            built = Path(scratch) / "masks.so"
            subprocess.run([compiler, "-O3", "-march=native", "-shared", "-fPIC", "-o", str(built), str(source)],
                           check=True, capture_output=True, timeout=120)
            os.replace(built, library)          # atomic: concurrent builders leave one whole file
    except (OSError, subprocess.SubprocessError):
        return None
    return library


@functools.cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("HBT_NATIVE_MASKS", "1") == "0" or torch.get_rng_state().numel() != _STATE_BYTES:
        return None
    for again in (False, True):                 # a damaged cached build is built once more
        path = _build(again)
        if path is None:
            return None
        try:
            library = ctypes.CDLL(str(path))
        except OSError:
            continue
        library.mt_extend.restype = library.bernoulli_rows.restype = None
        return library if _agrees_with_torch(library) else None
    return None


def _agrees_with_torch(library: ctypes.CDLL) -> bool:
    """The native masks equal torch's `bernoulli_` on a private generator (odd sizes, two probabilities)."""
    generator = torch.Generator().manual_seed(20240607)
    torch.rand(333, generator=generator)
    state = generator.get_state()
    expected = [torch.empty(shape).bernoulli_(p, generator=generator).div_(p)
                for shape, p in (((37, 29), 0.9), ((5, 3, 11, 11), 0.9), ((700,), 0.5))]
    after = torch.rand(4, generator=generator)
    generator.set_state(state)
    stream = MaskStream(library, generator)
    drawn = [stream.draw((37, 29), 0.9), stream.draw((5, 3, 11, 11), 0.9), stream.draw((700,), 0.5)]
    stream.close()
    return (all(torch.equal(a.reshape(-1), b.reshape(-1)) for a, b in zip(expected, drawn))
            and torch.equal(after, torch.rand(4, generator=generator)))


def available() -> bool:
    return _library() is not None


def open_stream() -> MaskStream | None:
    """A stream on torch's default CPU generator, or None where the native code is not available."""
    library = _library()
    return None if library is None else MaskStream(library, torch.default_generator)


class MaskStream:
    """Draws masks from `generator`'s MT19937 stream; `close()` writes the advanced state back."""

    def __init__(self, library: ctypes.CDLL, generator: torch.Generator) -> None:
        self.library = library
        self.generator = generator
        self.raw = generator.get_state().numpy().copy()
        self.words = self.raw[_STATE].view(np.uint64).astype(np.uint32)      # the 624 words, then room to extend
        left, following = int(self.raw[_LEFT].view(np.int32)[0]), int(self.raw[_NEXT].view(np.uint64)[0])
        self.position = STATE_WORDS if left == 1 else following               # 624: the block is used up
        self._kept: dict[int, tuple[torch.Tensor, np.ndarray]] = {}   # per rows tensor (a group's, many sites)
        self._scales: dict[float, float] = {}

    def draw(self, shape: tuple[int, ...], keep: float, rows: torch.Tensor | None = None) -> torch.Tensor:
        """`torch.empty(shape).bernoulli_(keep).div_(keep)`, as a (rows, shape[-1]) matrix of the given
        rows of it (ascending, distinct flat indices over the leading dimensions: a layout's real
        tokens) or, without rows, in `shape`."""
        width = shape[-1]
        count = math.prod(shape) // width
        end = self.position + 2 * count * width
        blocks = -(-end // STATE_WORDS)
        if blocks * STATE_WORDS > self.words.size:
            grown = np.empty(blocks * STATE_WORDS, np.uint32)
            grown[:STATE_WORDS] = self.words[:STATE_WORDS]
            self.words = grown
        self.library.mt_extend(self.words.ctypes.data_as(_C), ctypes.c_int64(blocks * STATE_WORDS))
        keep_rows = None
        written = count
        if rows is not None:
            held = self._kept.get(id(rows))
            if held is not None and held[0] is rows and held[1].size == count:
                keep_rows = held[1]
            else:
                keep_rows = np.zeros(count, np.uint8)
                keep_rows[rows.cpu().numpy()] = 1
                self._kept[id(rows)] = (rows, keep_rows)     # the tensor held: its id is not reused
            written = rows.numel()
        out = np.empty((written, width), np.float32)
        scale = self._scales.get(keep)
        if scale is None:                                                   # as div_ rounds 1/keep
            scale = self._scales[keep] = torch.ones((), dtype=torch.float32).div_(keep).item()
        self.library.bernoulli_rows(
            self.words[self.position:].ctypes.data_as(_C), ctypes.c_uint64(math.ceil(keep * 2.0 ** 53)),
            ctypes.c_int64(count), ctypes.c_int64(width),
            None if keep_rows is None else keep_rows.ctypes.data_as(_C), ctypes.c_float(scale), out.ctypes.data_as(_C))
        # the block that holds the next word becomes the state; at a block's end the next draw regenerates
        block = end // STATE_WORDS - (1 if end % STATE_WORDS == 0 else 0)
        self.words[:STATE_WORDS] = self.words[block * STATE_WORDS:(block + 1) * STATE_WORDS].copy()
        self.position = end - block * STATE_WORDS
        masks = torch.from_numpy(out)
        return masks if rows is not None else masks.view(shape)

    def close(self) -> None:
        raw = self.raw
        raw[_STATE].view(np.uint64)[:] = self.words[:STATE_WORDS]
        left, following = (1, STATE_WORDS) if self.position >= STATE_WORDS else (625 - self.position, self.position)
        raw[_LEFT].view(np.int32)[0] = left
        raw[_NEXT].view(np.uint64)[0] = following
        self.generator.set_state(torch.from_numpy(raw))
