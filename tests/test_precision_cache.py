"""Evaluation precision (auto | fp32 | bf16) and the embedding cache, on real models and data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.child.embedding_cache import EmbeddingCache
from engine.child.evaluator import Evaluator
from engine.contract import embedding_files
from engine.contract.events import read_events
from engine.contract.layout import RunFolder
from engine.contract.validation import parse_spec
from runs_helpers import env, tiny_spec, write

BUNDLED = "bundled:multilingual-e5-small"


def cli(*args, extra_env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**env(), **(extra_env or {})}, timeout=timeout)


def eval_done(folder: Path, step: int | None = None) -> list:
    return [event for event in read_events(folder / "events.jsonl")
            if event.kind == "eval_done" and (step is None or event.step == step)]


def run_folders(runs: Path) -> list[Path]:
    return sorted(path for path in runs.iterdir() if path.is_dir() and not path.name.startswith("."))


def notices(folder: Path) -> list[str]:
    return [event.message for event in read_events(folder / "events.jsonl") if event.kind == "notice"]


@pytest.mark.slow
def test_bf16_encoding_scores_like_fp32_on_the_real_model(tmp_path, monkeypatch):
    """e5-small in bf16 (Linear layers; residual stream and pooling fp32) against fp32 on a
    slice of XQuAD-R; the bounds on the full benchmark (0.001 macro, 0.002 per language) are
    printed by benchmarks/eval_speed.py; a slice's few queries get a looser bound."""
    from engine.child.encoder import load_encoder

    monkeypatch.setenv("HBT_CPU_FLAGS", "avx512_bf16")
    results = {}
    for precision in ("fp32", "bf16"):
        spec = parse_spec({"name": f"p-{precision}", "encoder": {"name": BUNDLED},
                           "eval": {"datasets": ["xquad-r"], "languages": ["en", "de", "zh", "th"], "max_queries": 40,
                                    "precision": precision, "cache": False, "trec_runs": "none"}})
        folder = RunFolder(tmp_path / precision)
        events = []
        assert Evaluator(spec, folder, events.append).run(load_encoder(spec.encoder), 0)
        (done,) = [event for event in events if event.kind == "eval_done"]
        assert done.precision == precision
        results[precision] = json.loads((folder.path / "eval" / "xquad-r" / "results.json").read_text())
    for setting in ("mono", "cross", "multi"):
        assert abs(results["bf16"]["macro"][setting]["map"] - results["fp32"]["macro"][setting]["map"]) <= 0.005
        for language in ("en", "de", "zh", "th"):
            bf16 = results["bf16"]["per_language"][language]["settings"][setting]["map"]
            fp32 = results["fp32"]["per_language"][language]["settings"][setting]["map"]
            assert abs(bf16 - fp32) <= 0.02, (setting, language)
    assert results["bf16"]["precision"] == "bf16" and results["fp32"]["precision"] == "fp32"


def test_bf16_inference_runs_matmuls_in_bf16_and_keeps_the_residual_stream_fp32(tiny_model, data_dir):
    """`for_inference("bf16")`: Linear layers bf16; embeddings and layer norms fp32; the
    original encoder untouched; embeddings closer to fp32 than the whole model cast."""
    import copy

    import torch

    from engine.child.data.lareqa import load_lareqa
    from engine.child.encoder import DualEncoder, load_encoder
    from engine.contract.spec import EncoderSpec

    encoder = load_encoder(EncoderSpec(name=str(tiny_model)))
    texts = list(load_lareqa("xquad-r", ("en", "zh"), data_dir, 20)["zh"].candidates)
    inference = encoder.for_inference("bf16")
    dtypes = {type(module).__name__: {p.dtype for p in module.parameters(recurse=False)}
              for module in inference.model.modules() if list(module.parameters(recurse=False))}
    assert dtypes["Linear"] == {torch.bfloat16}
    assert dtypes["LayerNorm"] == {torch.float32} and dtypes["Embedding"] == {torch.float32}
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float32}
    reference = encoder.encode(texts, False)
    half = inference.encode(texts, False)
    whole = DualEncoder(copy.deepcopy(encoder.model).to(torch.bfloat16), encoder.tokenizer, encoder.spec).encode(texts, False)
    assert half.dtype == np.float32 and np.allclose(np.linalg.norm(half, axis=1), 1, atol=1e-5)
    distance_half = 1 - (half * reference).sum(1)
    distance_whole = 1 - (whole * reference).sum(1)
    assert distance_half.mean() < distance_whole.mean() / 2, (distance_half.mean(), distance_whole.mean())


@pytest.mark.parametrize("flags, expected", [("avx512f avx512_bf16", "bf16"), ("amx_bf16 amx_tile", "bf16"),
                                             ("avx512f avx2", "fp32"), ("", "fp32")])
def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch, flags, expected):
    import torch

    from engine.child.runtime import pick_eval_precision, pick_precision

    monkeypatch.setenv("HBT_CPU_FLAGS", flags)
    assert pick_eval_precision("auto", torch.device("cpu")) == expected
    assert pick_precision("auto", torch.device("cpu")) == expected      # training's autocast likewise
    assert pick_precision("fp32", torch.device("cpu")) == "fp32"


@pytest.mark.slow
@pytest.mark.parametrize("value", ["lots", "-5", "nan"])
def test_a_malformed_cache_size_is_one_line_and_exit_2(tmp_path, tiny_model, value):
    info = cli("cache", "info", extra_env={"HBT_EMBEDDING_CACHE_MB": value})
    runs = tmp_path / "runs"
    run = cli("--run", write(tmp_path / "s.json", tiny_spec(tiny_model)), "--runs-dir", runs,
              extra_env={"HBT_EMBEDDING_CACHE_MB": value})
    for result in (info, run):
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0 and "HBT_EMBEDDING_CACHE_MB" in result.stderr
    assert not runs.exists() or run_folders(runs) == []


@pytest.mark.slow
@pytest.mark.parametrize("precision, flags, message", [
    ("bf16", "avx2", "eval.precision: bf16 asked for but this CPU has neither AVX-512 BF16 nor AMX; use auto or fp32"),
    ("fp16", "avx512_bf16", "eval.precision: fp16 needs a CUDA device"),
])
def test_a_precision_the_hardware_lacks_is_one_line_and_exit_2(tmp_path, tiny_model, precision, flags, message):
    runs = tmp_path / "runs"
    result = cli("--run", write(tmp_path / "s.json", tiny_spec(tiny_model, **{"eval.precision": precision})),
                 "--runs-dir", runs, extra_env={"HBT_CPU_FLAGS": flags})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert not runs.exists() or run_folders(runs) == []


@pytest.mark.slow
def test_a_grids_step_0_evaluations_are_computed_once(tmp_path, tiny_model):
    """Two runs at once, each evaluating the untrained model at step 0: each encoding is
    computed by one of them while the other waits for it and reuses it (which run computes
    which is up to the scheduler); the trained models are never reused."""
    document = tiny_spec(tiny_model, **{"train.steps": 3, "train.checkpoint_every": 0, "eval.at_start": True})
    document["grid"] = {"train.seed": [1, 2]}
    runs = tmp_path / "runs"
    cache = tmp_path / "cache"
    result = cli("--run", write(tmp_path / "grid.json", document), "--runs-dir", runs, "--jobs", "2",
                 extra_env={"HBT_EMBEDDING_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (eval_done(folder, 0)[0] for folder in run_folders(runs))
    encodings = 2 * 3                       # queries and candidates of en, de, zh
    assert first.cached + second.cached == encodings
    assert first.macro == second.macro
    finals = [eval_done(folder, 3)[0] for folder in run_folders(runs)]
    assert [done.cached for done in finals] == [0, 0]          # trained weights differ from the base
    assert embedding_files.info(cache)["entries"] == 3 * encodings   # step 0 once, and each final model
    # a finished model evaluated again in a fresh process (its tokenizer not touched by training)
    again = cli("evaluate", run_folders(runs)[0].name, "--runs-dir", runs, "--name", "again",
                extra_env={"HBT_EMBEDDING_CACHE_DIR": str(cache)})
    assert again.returncode == 0, again.stderr[-3000:]
    (folder,) = [path for path in run_folders(runs) if path.name.startswith("again")]
    (done,) = eval_done(folder)
    assert done.cached == encodings and done.macro == finals[0].macro


@pytest.mark.slow
def test_a_corrupt_entry_is_recomputed_never_used_and_an_unwritable_cache_is_said_once(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.steps": 0})
    cache = tmp_path / "cache"
    spec_path = write(tmp_path / "zero.json", document)
    assert cli("--run", spec_path, "--runs-dir", tmp_path / "a", extra_env={"HBT_EMBEDDING_CACHE_DIR": str(cache)}
               ).returncode == 0
    entries = sorted(cache.glob("*.npy"))
    assert len(entries) == 6
    data = bytearray(entries[0].read_bytes())
    data[-7] ^= 0xFF                                           # one flipped byte in the embeddings
    entries[0].write_bytes(bytes(data))
    entries[1].write_bytes(entries[1].read_bytes()[:100])      # a truncated one
    again = cli("--run", spec_path, "--runs-dir", tmp_path / "b", extra_env={"HBT_EMBEDDING_CACHE_DIR": str(cache)})
    assert again.returncode == 0, again.stderr[-2000:]
    (first,), (second,) = run_folders(tmp_path / "a"), run_folders(tmp_path / "b")
    assert eval_done(second)[0].cached == 4 and eval_done(second)[0].macro == eval_done(first)[0].macro
    corrupt = [message for message in notices(second) if "was corrupt" in message]
    assert len(corrupt) == 2
    assert len(list(cache.glob("*.npy"))) == 6                 # recomputed and stored again

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    blocked = cli("--run", spec_path, "--runs-dir", tmp_path / "c",
                  extra_env={"HBT_EMBEDDING_CACHE_DIR": str(blocker / "embeddings")})
    assert blocked.returncode == 0, blocked.stderr[-2000:]
    (third,) = run_folders(tmp_path / "c")
    warnings = [message for message in notices(third) if "embedding cache" in message]
    assert len(warnings) == 1 and "is not writable" in warnings[0] and "continuing without it" in warnings[0]
    assert eval_done(third)[0].macro == eval_done(first)[0].macro


def test_least_recently_used_entries_go_beyond_the_limit_and_clear_empties_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HBT_EMBEDDING_CACHE_MB", str(3.5 * 4300 / 2**20))   # room for three ~4.3 kB entries
    cache = EmbeddingCache(tmp_path)
    keys = [f"{number}" * 40 for number in range(5)]                       # keys are 40 hex digits
    for number, key in enumerate(keys):
        cache.get_or_compute(key, lambda: np.full((10, 100), number, dtype=np.float32))
        os.utime(tmp_path / f"{key}.npy", (number + 1, number + 1))     # a clear order of use
    kept = sorted(path.stem for path in tmp_path.glob("*.npy"))
    assert kept == keys[2:]
    assert cache.get_or_compute(keys[3], lambda: pytest.fail("recomputed")).sum() == 3 * 1000
    result = cli("cache", "clear", extra_env={"HBT_EMBEDDING_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0 and "removed 3 cached embedding entries" in result.stdout
    assert list(tmp_path.glob("*.npy")) == [] and list(tmp_path.glob("*.json")) == []
