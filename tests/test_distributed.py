"""One run over several processes (torchrun, gloo, 2 ranks on CPU) and GradCache: the step
equals the single-process step on the same global batch, batches keep one language type
across ranks, a 2-rank run checkpoints, resumes exactly and finishes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from runs_helpers import env, events_of, started, step_losses, tiny_spec, write

pytestmark = pytest.mark.slow
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def ddp_step(model, strategy: str, chunk: str = "none", symmetric: str = "plain") -> dict:
    result = subprocess.run([*TORCHRUN, str(ROOT / "tests" / "scripts" / "ddp_step.py"), str(model), strategy, chunk,
                             symmetric], capture_output=True, text=True, env=env(), timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("strategy,chunk,symmetric", [("hybrid", "none", "plain"), ("multitask", "none", "symmetric"),
                                                      ("crosslingual", "2", "symmetric")])
def test_two_ranks_equal_one_process_on_the_same_global_batch(tiny_model, strategy, chunk, symmetric):
    found = ddp_step(tiny_model, strategy, chunk, symmetric)
    assert found["loss"] == pytest.approx(found["reference_loss"], abs=1e-5)
    assert found["max_grad_difference"] < 1e-5
    for position, global_items in enumerate(found["global"]):   # each rank holds half of one global batch
        kinds = {rank[position][0] for rank in found["ranks"]}
        assert len(kinds) == 1                                   # one batch type across ranks
        shards = [pair for rank in found["ranks"] for pair in rank[position][1]]
        assert shards == [list(pair) for pair in global_items]
        if kinds == {"mono"}:
            assert len({tuple(pair) for pair in shards}) == 1    # one language on every rank


def test_gradcache_equals_the_whole_batch_step(tiny_model, data_dir):
    from engine.child.data.lareqa import load_lareqa
    from engine.child.data.pairs import lareqa_pairs
    from engine.child.distributed import World
    from engine.child.encoder import load_encoder
    from engine.child.sampling import BatchSampler
    from engine.child.step import StepContext, backward
    from engine.contract.validation import parse_spec

    source = lareqa_pairs(load_lareqa("mlqa-r", ("en", "de"), str(data_dir), 60), with_paragraph=False)
    results = []
    for chunk in (None, 3):
        spec = parse_spec({"name": "gc", "encoder": {"name": str(tiny_model), "max_query_length": 32,
                                                     "max_passage_length": 48},
                           "loss": {"chunk_size": chunk, "hard_negatives": 1, "symmetric": True},
                           "train": {"batch_size": 8, "languages": ["en", "de"]}})
        batches = BatchSampler(source, spec.sampling, 8, 1, seed=1).next_step()
        torch.manual_seed(0)
        encoder = load_encoder(spec.encoder)
        encoder.eval()
        context = StepContext.for_spec(encoder, source, spec, World(), torch.amp.GradScaler("cpu", enabled=False),
                                       contextlib.nullcontext)
        loss, _, _ = backward(context, batches)
        results.append((loss, [p.grad.clone() for p in encoder.parameters() if p.grad is not None]))
    (whole, whole_grads), (cached, cached_grads) = results
    assert cached == pytest.approx(whole, abs=1e-5)
    assert max(float((a - b).abs().max()) for a, b in zip(whole_grads, cached_grads)) < 1e-5


def test_a_two_rank_run_checkpoints_resumes_exactly_and_finishes(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.devices": 2, "train.steps": 6, "train.checkpoint_every": 0,
                                        "train.batch_size": 8, "eval.at_end": False})
    spec = write(tmp_path / "spec.json", document)

    def train(*arguments) -> subprocess.CompletedProcess:
        return subprocess.run([*TORCHRUN, "-m", "engine.train", *map(str, arguments)], capture_output=True, text=True,
                              env=env(), timeout=300, cwd=ROOT)

    straight = train(spec, "--run-dir", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = train(spec, "--run-dir", tmp_path / "split", "--stop-at-step", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert events_of(first.stdout)[-1].kind == "stopped"
    assert (tmp_path / "split" / "checkpoints" / "step-000003" / "checksums.json").is_file()
    second = train("--resume", "--run-dir", tmp_path / "split")
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = events_of(second.stdout)
    assert started(resumed).resumed_from_step == 3 and started(resumed).world_size == 2
    assert resumed[-1].kind == "finished"
    expected = step_losses(events_of(straight.stdout))
    together = {**step_losses(events_of(first.stdout)), **step_losses(resumed)}
    assert sorted(together) == list(range(1, 7))
    for step, loss in expected.items():
        assert together[step] == pytest.approx(loss, abs=1e-6), step


def test_the_runner_launches_train_devices_under_torchrun(tmp_path, tiny_model):
    document = tiny_spec(tiny_model, **{"train.devices": 2, "train.steps": 3, "train.checkpoint_every": 0,
                                        "train.batch_size": 8, "eval.max_queries": 6})
    result = subprocess.run([sys.executable, "-m", "engine.cli", "--run", str(write(tmp_path / "s.json", document)),
                             "--runs-dir", str(tmp_path / "runs"), "--json"], capture_output=True, text=True, env=env(),
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = json.loads(result.stdout)
    assert summary["status"] == "finished" and summary["device"].endswith("x 2 ranks")
    assert summary["results"]["xquad-r"]["macro"]["multi"] is not None


def test_the_ranks_of_a_run_share_the_encoding_of_a_miracl_corpus(tmp_path, tiny_model):
    """With train.devices 2 each rank encodes every other shard of the corpus into the embedding
    cache before rank 0 evaluates, so rank 0 reads all of them (none encoded twice)."""
    from test_miracl import write_miracl
    from test_miracl_scale import MORE_DOCS

    write_miracl(tmp_path, docs=MORE_DOCS)                 # 46 passages: 3 shards of 16
    document = tiny_spec(tiny_model, **{"train.devices": 2, "train.steps": 2, "train.checkpoint_every": 0,
                                        "train.batch_size": 8, "data_dir": str(tmp_path),
                                        "eval.datasets": ["miracl"], "eval.languages": ["sw"],
                                        "eval.miracl": {"shard_size": 16}})
    spec = write(tmp_path / "spec.json", document)
    done = subprocess.run([*TORCHRUN, "-m", "engine.train", str(spec), "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, env={**env(), "HBT_EMBEDDING_CACHE_DIR": str(tmp_path / "c")},
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    events = events_of(done.stdout)
    shared = [event.message for event in events if event.kind == "notice" and "corpus shards" in event.message]
    assert shared == ["corpus shards encoded by 2 ranks: rank 0 2, rank 1 1"]
    progress = [event.message for event in events if event.kind == "notice" and event.message.startswith("rank 0: ")]
    assert progress == ["rank 0: sw: shard 0 (16 passages from 0)", "rank 0: sw: shard 2 (14 passages from 32)"]
    (evaluated,) = [event for event in events if event.kind == "eval_done" and event.dataset == "miracl"]
    assert evaluated.cached == 3                             # rank 0 found every shard, its own and rank 1's
    assert events[-1].kind == "finished"
