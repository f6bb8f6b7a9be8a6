"""The native dropout masks are torch's bernoulli_ masks, bit for bit, and leave the generator where it would."""

import os
import subprocess
import sys

import torch

from engine.child import native_masks

SHAPES = [((7, 13), 0.9), ((16, 12, 48, 48), 0.9), ((312,), 0.5), ((624,), 0.9), ((1, 1), 0.9), ((96 * 3, 384), 0.9)]


def test_the_native_path_is_built_here():
    # CI machines have a C compiler; without one the step falls back to bernoulli_ (same masks, slower)
    assert native_masks.available(), "engine.child.native_masks did not build or disagreed with torch (is `cc` there?)"


def test_native_masks_equal_bernoulli_and_leave_the_generator_as_it_would():
    for seed in range(5):
        torch.manual_seed(seed)
        torch.rand(seed * 311)                    # start at every kind of position in the state block
        expected = [torch.empty(shape).bernoulli_(keep).div_(keep) for shape, keep in SHAPES]
        rows = torch.arange(0, 96 * 3, 7)
        expected_rows = torch.empty(96 * 3, 384).bernoulli_(0.9).div_(0.9)[rows]
        after = torch.rand(5)

        torch.manual_seed(seed)
        torch.rand(seed * 311)
        stream = native_masks.open_stream()
        drawn = [stream.draw(shape, keep) for shape, keep in SHAPES]
        drawn_rows = stream.draw((96 * 3, 384), 0.9, rows)
        stream.close()
        for ours, theirs in zip(drawn, expected):
            assert ours.shape == theirs.shape and torch.equal(ours, theirs)
        assert torch.equal(drawn_rows, expected_rows)
        assert torch.equal(torch.rand(5), after)


def test_switched_off_it_is_not_used(monkeypatch):
    native_masks._library.cache_clear()
    monkeypatch.setenv("HBT_NATIVE_MASKS", "0")
    try:
        assert not native_masks.available() and native_masks.open_stream() is None
    finally:
        native_masks._library.cache_clear()


def test_a_damaged_build_in_the_cache_is_built_again(tmp_path):
    # a process loads the library once; another process finding it damaged builds it again
    env = {**os.environ, "HBT_CACHE_DIR": str(tmp_path)}
    probe = [sys.executable, "-c", "from engine.child import native_masks; print(native_masks.available())"]
    assert subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.strip() == "True"
    (library,) = (tmp_path / "native").glob("masks-*.so")
    library.write_bytes(b"not a shared object")
    assert subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.strip() == "True"
    assert library.read_bytes()[:4] == b"\x7fELF"
