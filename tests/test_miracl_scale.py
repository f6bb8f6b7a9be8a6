"""MIRACL at scale: the corpus in stored shards searched with faiss, the pooled protocol, and
protocol fingerprints that keep incomparable numbers apart — on MIRACL-layout files, with the
tiny model and the real bm25s, faiss and CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.child.corpus_search import Shard, TopK, encoded_shards, recall_against, search_approximate, search_exact
from engine.child.data import miracl
from engine.child.embedding_cache import EmbeddingCache
from engine.child.eval_miracl import Shards, evaluate_language
from engine.child.evaluator import Evaluator
from engine.contract.errors import DataError
from engine.contract.events import Notice
from engine.contract.layout import RunFolder
from engine.contract.miracl_protocol import mismatch, read_pool
from engine.contract.validation import parse_spec
from runs_helpers import env
from test_miracl import DOCS, QRELS, write_miracl

# a corpus with distractors, so a pool is a strict part of it
MORE_DOCS = DOCS + [(f"{20 + i}#0", f"Makala {i}", f"Hii ni makala ya {i} kuhusu historia ya eneo la {i % 7}.")
                    for i in range(40)]


@pytest.fixture(scope="module")
def encoder(tiny_model):
    from engine.child.encoder import load_encoder
    from engine.contract.spec import EncoderSpec

    return load_encoder(EncoderSpec(name=str(tiny_model)))


def key_of(texts: list[str]) -> str:
    return hashlib.sha1("\n".join(texts).encode()).hexdigest()


def counting_encode(encoder, calls: list, fail_after: int | None = None):
    """The encoder's encode, recording each corpus call's size; optionally dying (as a killed
    evaluation does) on the call after `fail_after` corpus calls."""
    def encode(texts, is_query, progress):
        if not is_query:
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt("killed")
            calls.append(len(texts))
        return encoder.encode(texts, is_query, 4, progress)
    return encode


def streaming_reference(queries: np.ndarray, passages: np.ndarray, k: int, chunk: int) -> TopK:
    """Today's streaming top-k before shards: dense scores per chunk, merged."""
    top = TopK(len(queries), k)
    for start in range(0, len(passages), chunk):
        block = passages[start:start + chunk]
        top.add(queries @ block.T, [f"d{i}" for i in range(start, start + len(block))], start)
    return top


def test_exact_sharded_search_equals_the_streaming_top_k():
    rng = np.random.default_rng(4)
    passages = rng.standard_normal((500, 16)).astype(np.float32)
    passages[[40, 41, 300, 301, 302]] = passages[7]            # ties across and within shards
    queries = rng.standard_normal((9, 16)).astype(np.float32)
    queries[3] = passages[7]                                   # a query whose best five are tied
    reference = streaming_reference(queries, passages, 100, 8192)
    for size in (1, 13, 64, 100, 500):
        shards = [Shard(number, start, [f"d{i}" for i in range(start, min(start + size, 500))],
                        passages[start:start + size]) for number, start in enumerate(range(0, 500, size))]
        top = search_exact(queries, shards, 100)
        assert (top.positions == reference.positions).all(), size
        assert top.ids.tolist() == reference.ids.tolist()
    assert top.ids[3, :6].tolist() == ["d7", "d40", "d41", "d300", "d301", "d302"]   # earlier passage first


def test_approximate_indexes_report_their_recall_against_exact():
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((30, 32)).astype(np.float32)          # clustered, as embeddings are
    passages = centres[rng.integers(0, 30, 3000)] + 0.3 * rng.standard_normal((3000, 32)).astype(np.float32)
    passages /= np.linalg.norm(passages, axis=1, keepdims=True)
    queries = passages[:20] + 0.05 * rng.standard_normal((20, 32)).astype(np.float32)
    shards = [Shard(0, 0, [f"d{i}" for i in range(1500)], passages[:1500]),
              Shard(1, 1500, [f"d{i}" for i in range(1500, 3000)], passages[1500:])]
    exact = search_exact(queries, shards, 100)
    for kind in ("hnsw", "ivf"):
        approximate, seconds = search_approximate(queries, shards, 100, kind)
        found = [len(set(a) & set(e)) / 100 for a, e in zip(approximate.ids.tolist(), exact.ids.tolist())]
        assert recall_against(approximate, exact) == pytest.approx(np.mean(found))
        assert 0.9 < np.mean(found) <= 1.0 and seconds > 0
        assert all(f"d{i}" == row[0] for i, row in enumerate(approximate.ids.tolist()[:5]))   # the planted nearest


def test_shards_are_stored_reused_and_a_killed_evaluation_goes_on(tmp_path, encoder):
    write_miracl(tmp_path, docs=MORE_DOCS)
    data = miracl.load_local("sw", "dev", str(tmp_path))
    whole, *_ = evaluate_language(data, counting_encode(encoder, []), lambda event: None, 0, "miracl",
                                  shards=Shards(size=1000, dtype="float32"))
    warnings = []
    store = EmbeddingCache(tmp_path / "shards", warn=warnings.append, limit=2**40)
    shards = Shards(size=10, dtype="float16", store=store, key_of=key_of)
    calls = []
    with pytest.raises(KeyboardInterrupt):                      # killed while encoding the third shard
        evaluate_language(data, counting_encode(encoder, calls, fail_after=2), lambda event: None, 0, "miracl",
                          shards=shards)
    assert calls == [10, 10] and len(list((tmp_path / "shards").glob("*.npy"))) == 2
    calls = []
    resumed = evaluate_language(data, counting_encode(encoder, calls), lambda event: None, 0, "miracl", shards=shards)
    assert calls == [10, 10, 6]                                # only the shards it had not written
    for name in whole:
        np.testing.assert_allclose(resumed.per_query[name], whole[name], atol=1e-6)
    assert np.load(sorted((tmp_path / "shards").glob("*.npy"))[0]).dtype == np.float16
    damaged = sorted((tmp_path / "shards").glob("*.npy"))[0]
    data_bytes = bytearray(damaged.read_bytes())
    data_bytes[-3] ^= 0xFF
    damaged.write_bytes(bytes(data_bytes))
    calls = []
    again = evaluate_language(data, counting_encode(encoder, calls), lambda event: None, 0, "miracl", shards=shards)
    assert calls == [10] and any("corrupt" in warning for warning in warnings)   # recomputed, never used
    assert again.retrieved == resumed.retrieved


def test_memory_mapped_shards_come_back_as_stored(tmp_path):
    store = EmbeddingCache(tmp_path, limit=2**40)
    documents = iter([(f"d{i}", f"text {i}") for i in range(25)])
    rng = np.random.default_rng(1)
    made = {}

    def encode(texts, first):
        made[first] = rng.standard_normal((len(texts), 8)).astype(np.float32)
        return made[first]

    first_pass = list(encoded_shards(documents, 10, encode, store, key_of, "float16"))
    assert [len(shard.ids) for shard in first_pass] == [10, 10, 5]
    for shard in first_pass:
        np.testing.assert_array_equal(shard.embeddings, made[shard.first].astype(np.float16))


def pool_cli(tmp_path, *arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "pool", "--data-dir", str(tmp_path),
                           "--runs-dir", str(tmp_path / "runs"), *arguments],
                          capture_output=True, text=True, env=env(), timeout=600)


def evaluate_spec(tmp_path, tiny_model, name: str, **miracl_options) -> dict:
    spec = parse_spec({"name": name, "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)},
                       "eval": {"datasets": ["miracl"], "languages": ["sw"], "cache": False,
                                "miracl": {"shard_size": 16, **miracl_options}}})
    events = []
    from engine.child.encoder import load_encoder

    assert Evaluator(spec, RunFolder(tmp_path / name), events.append).run(load_encoder(spec.encoder), 0)
    assert not (tmp_path / name / "eval" / "miracl" / "shards").exists()     # the run's own shards: gone once done
    return json.loads((tmp_path / name / "eval" / "miracl" / "results.json").read_text()), events


def test_a_pool_is_built_once_and_evaluated_with_its_fingerprint(tmp_path, tiny_model):
    from engine.parent.compare import compare, load_run

    write_miracl(tmp_path, docs=MORE_DOCS)
    built = pool_cli(tmp_path, "--out", str(tmp_path / "pool.json"), "--depth", "3", "--retrievers",
                     f"bm25,{tiny_model}")
    assert built.returncode == 0, built.stderr
    assert "sw: bm25 added" in built.stdout and "sw: " in built.stdout and "wrote" in built.stdout
    pool, digest = read_pool(tmp_path / "pool.json")
    entry = pool["languages"]["sw"]
    judged = {doc for _, doc, _ in QRELS}
    assert judged <= set(entry["docids"]) and len(entry["docids"]) < len(MORE_DOCS) and entry["corpus_size"] == 46
    pooled, events = evaluate_spec(tmp_path, tiny_model, "pooled", protocol="pooled", pool=str(tmp_path / "pool.json"))
    full, _ = evaluate_spec(tmp_path, tiny_model, "full")
    assert pooled["protocol"]["protocol"] == "pooled" and pooled["protocol"]["pool_sha256"] == digest
    assert pooled["protocol"]["languages"]["sw"]["searched"] == len(entry["docids"])
    assert full["protocol"]["languages"]["sw"] == {**pooled["protocol"]["languages"]["sw"], "searched": 46}
    runs = [load_run(RunFolder(tmp_path / "full")), load_run(RunFolder(tmp_path / "pooled"))]
    with pytest.raises(ValueError, match="MIRACL results of different protocols: full is full · dev, "
                                         "pooled is pooled pool"):
        compare(runs, "miracl")
    assert compare(runs, "miracl", allow_mixed_protocols=True).rows
    # compare and report say it in one line, exit 2
    move_into_runs_dir(tmp_path, ("full", "pooled"))
    for command in (["compare", "full", "pooled"], ["report", "full", "pooled", "--partial"]):
        refused = subprocess.run([sys.executable, "-m", "engine.cli", *command, "--runs-dir", str(tmp_path / "runs")],
                                 capture_output=True, text=True, env=env(), timeout=600)
        (error,) = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert refused.returncode == 2 and "different protocols" in error and "--allow-mixed-protocols" in error, \
            (command, refused.stderr)


def move_into_runs_dir(tmp_path, names) -> None:
    (tmp_path / "runs").mkdir(exist_ok=True)
    for name in names:
        (tmp_path / name).rename(tmp_path / "runs" / name)
        (tmp_path / "runs" / name / "run.json").write_text(json.dumps({"id": name, "name": name, "status": "finished"}))


async def test_the_compare_screen_refuses_mixed_protocols_and_compares_them_when_asked(tmp_path, tiny_model):
    from textual.widgets import DataTable, Static

    from engine.parent.run_service import open_store
    from tui.screens.compare import CompareScreen
    from tui_helpers import replay_app, wait_until

    write_miracl(tmp_path, docs=MORE_DOCS)
    assert pool_cli(tmp_path, "--out", str(tmp_path / "pool.json"), "--depth", "3").returncode == 0
    evaluate_spec(tmp_path, tiny_model, "pooled", protocol="pooled", pool=str(tmp_path / "pool.json"))
    evaluate_spec(tmp_path, tiny_model, "full")
    move_into_runs_dir(tmp_path, ("full", "pooled"))
    store = open_store(tmp_path / "runs")
    store.rebuild()
    app = replay_app(tmp_path, store=store)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        app.open_compare(["full", "pooled"])

        def title() -> str:
            return "".join(str(widget.render()) for widget in app.screen.query("#compare-title"))

        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen) and "different protocols" in title())
        assert "x compares them anyway" in title() and title().count("\n") == 0
        assert app.screen.query_one("#compare-table", DataTable).row_count == 0
        await pilot.press("x")
        await wait_until(pilot, lambda: app.screen.comparison is not None)
        assert app.screen.query_one("#compare-table", DataTable).row_count > 0
        footnote = str(app.screen.query_one("#compare-footnote", Static).render())
        assert "compared anyway, as asked — MIRACL results of different protocols: full is full" in footnote


def test_bad_pools_get_one_line_each(tmp_path, tiny_model):
    write_miracl(tmp_path, docs=MORE_DOCS)
    assert pool_cli(tmp_path, "--out", str(tmp_path / "pool.json"), "--depth", "2").returncode == 0
    with pytest.raises(DataError, match="none.json: cannot read the MIRACL pool file"):
        evaluate_spec(tmp_path, tiny_model, "nowhere", protocol="pooled", pool=str(tmp_path / "none.json"))
    document = json.loads((tmp_path / "pool.json").read_text())
    other = {**document, "languages": {"yo": document["languages"]["sw"]}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(DataError, match=r"other.json: no pool for sw \(it has yo\)"):
        evaluate_spec(tmp_path, tiny_model, "a", protocol="pooled", pool=str(tmp_path / "other.json"))
    stale = {**document, "languages": {"sw": {**document["languages"]["sw"], "qrels_sha256": "0" * 64}}}
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    with pytest.raises(DataError, match="built on other judgements than these"):
        evaluate_spec(tmp_path, tiny_model, "b", protocol="pooled", pool=str(tmp_path / "stale.json"))
    grown = {**document, "languages": {"sw": {**document["languages"]["sw"], "corpus_size": 45}}}
    (tmp_path / "grown.json").write_text(json.dumps(grown))
    with pytest.raises(DataError, match="built on a corpus of 45 passages; this one has 46"):
        evaluate_spec(tmp_path, tiny_model, "c", protocol="pooled", pool=str(tmp_path / "grown.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match="broken.json: not a MIRACL pool file"):
        evaluate_spec(tmp_path, tiny_model, "d", protocol="pooled", pool=str(tmp_path / "broken.json"))
    missing = pool_cli(tmp_path, "--out", str(tmp_path / "x.json"), "--languages", "xx")
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "'xx'" in missing.stderr
    exists = pool_cli(tmp_path, "--out", str(tmp_path / "pool.json"))
    assert exists.returncode == 2 and "exists (--force replaces it)" in exists.stderr
    with pytest.raises(Exception, match="eval.miracl.pool"):
        parse_spec({"name": "p", "eval": {"datasets": ["miracl"], "miracl": {"protocol": "pooled"}}})


def test_an_approximate_index_says_its_recall(tmp_path, tiny_model):
    write_miracl(tmp_path, docs=MORE_DOCS)
    results, events = evaluate_spec(tmp_path, tiny_model, "hnsw", index="hnsw")
    recall = results["per_language"]["sw"]["index_recall"]
    assert 0 < recall <= 1
    assert any(isinstance(event, Notice) and "hnsw search recall@100 against exact" in event.message for event in events)


def test_two_encode_processes_share_the_shards_every_evaluation_reads(tmp_path, tiny_model, monkeypatch):
    """`hbt-tui miracl encode SPEC --part 1/2` and `--part 2/2` at once (as on two GPUs or as two
    cluster jobs) write the corpus's shards into the embedding cache; the evaluation then
    encodes no passage and scores exactly as one that encoded everything itself."""
    write_miracl(tmp_path, docs=MORE_DOCS)
    cache = tmp_path / "cache"
    monkeypatch.setenv("HBT_EMBEDDING_CACHE_DIR", str(cache))
    document = {"name": "enc", "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)},
                "eval": {"datasets": ["miracl"], "languages": ["sw"], "miracl": {"shard_size": 16}}}
    (tmp_path / "spec.json").write_text(json.dumps(document))
    environment = {**env(), "HBT_EMBEDDING_CACHE_DIR": str(cache)}
    parts = [subprocess.Popen([sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json"),
                               "--part", f"{k}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=environment) for k in (1, 2)]
    outputs = [process.communicate(timeout=600) for process in parts]
    assert [process.returncode for process in parts] == [0, 0], outputs
    assert "sw: shard 0 " in outputs[0][0] and "sw: shard 2 " in outputs[0][0] and "sw: shard 1 " in outputs[1][0]
    shards = [json.loads(path.read_text())["about"] for path in cache.glob("*.json")
              if "about" in json.loads(path.read_text())]
    assert sorted(about["shard"] for about in shards) == [0, 1, 2] and {about["language"] for about in shards} == {"sw"}
    from engine.child.encoder import load_encoder

    spec = parse_spec(document)
    events = []
    evaluator = Evaluator(spec, RunFolder(tmp_path / "run"), events.append)
    assert evaluator.run(load_encoder(spec.encoder), 0)
    assert (evaluator.cache.hits, evaluator.cache.misses) == (3, 0)            # every shard read, none encoded
    results = json.loads((tmp_path / "run" / "eval" / "miracl" / "results.json").read_text())
    monkeypatch.setenv("HBT_EMBEDDING_CACHE_DIR", str(tmp_path / "empty-cache"))
    alone = Evaluator(spec, RunFolder(tmp_path / "alone"), [].append)
    assert alone.run(load_encoder(spec.encoder), 0) and alone.cache.hits == 0
    assert json.loads((tmp_path / "alone" / "eval" / "miracl" / "results.json").read_text())["per_language"] \
        == results["per_language"]
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json"),
                          "--part", "3/2"], capture_output=True, text=True, env=environment, timeout=600)
    assert bad.returncode == 2 and "expected 1 <= k <= n" in bad.stderr


def test_a_dry_run_says_what_the_miracl_evaluations_will_cost(tmp_path, tiny_model, data_dir):
    """Per language: passages under the protocol, shards, the base encoder's shards already
    cached (after `miracl encode --part 1/2`: 2 of 3), and the passages left to encode."""
    write_miracl(tmp_path, docs=MORE_DOCS)
    spec = {"name": "cost", "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)},
            "train": {"dataset": "xquad-r", "steps": 10, "batch_size": 8, "eval_every": 5, "languages": ["en", "de"],
                      "max_questions": 40},
            "eval": {"datasets": ["miracl"], "at_start": True, "miracl": {"shard_size": 16}}, "grid": {"train.seed": [1, 2]}}
    for name in ("xquad-r", "mlqa-r"):
        (tmp_path / name).symlink_to(data_dir / name)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    environment = {**env(), "HBT_EMBEDDING_CACHE_DIR": str(tmp_path / "cache")}

    def dry_run() -> str:
        done = subprocess.run([sys.executable, "-m", "engine.cli", "--run", str(tmp_path / "spec.json"), "--runs-dir",
                               str(tmp_path / "runs"), "--dry-run"], capture_output=True, text=True, env=environment,
                              timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    before = dry_run()
    assert "2 runs: 4 trained evaluations + the base encoder once" in before
    assert "sw             46 passages · 3 shards · 0 of the base encoder's cached · 230 to encode" in before
    assert "at 100 passages/s (assumed for cpu: no MIRACL evaluation of this encoder here)" in before
    encoded = subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json"),
                              "--part", "1/2"], capture_output=True, text=True, env=environment, timeout=600)
    assert encoded.returncode == 0, encoded.stderr
    assert "46 passages · 3 shards · 2 of the base encoder's cached · 200 to encode" in dry_run()   # shard 1: 16 left


def test_fingerprints_refuse_what_differs_and_name_what_is_missing():
    from engine.contract.miracl_protocol import mismatch

    full = {"protocol": "full", "split": "dev", "pool_sha256": None, "index": "exact",
            "languages": {"sw": {"corpus_size": 46, "qrels_sha256": "a"}, "yo": {"corpus_size": 9, "qrels_sha256": "b"}}}
    assert mismatch([("a", full), ("b", dict(full))]) is None
    assert "without a protocol fingerprint: a vs old (evaluate the older one again" in mismatch([("a", full), ("old", {})])
    assert mismatch([("old", {}), ("older", {})]) is None
    hnsw = {**full, "index": "hnsw"}
    assert "a is full · dev, h is full · dev · hnsw search" in mismatch([("a", full), ("h", hnsw)])
    assert mismatch([("a", full), ("f16", {**full, "shard_dtype": "float16"})]) is None      # recorded, not refused
    other = {**full, "languages": {**full["languages"], "yo": {"corpus_size": 10, "qrels_sha256": "b"}}}
    assert "MIRACL yo: a and b were evaluated on different corpus sizes (9 vs 10)" in mismatch([("a", full), ("b", other)])
    assert mismatch([("a", full), ("b", other)], languages=["sw"]) is None      # compared on sw only: comparable


def test_damaged_pools_and_stale_ones_fail_before_encoding(tmp_path, encoder):
    import gzip

    write_miracl(tmp_path, docs=MORE_DOCS)
    data = miracl.load_local("sw", "dev", str(tmp_path))
    packed = gzip.compress(b'{"format": "hbt-tui-miracl-pool/1", "languages": {}}' * 50)
    damaged = bytearray(packed)
    damaged[len(damaged) // 2] ^= 0xFF
    (tmp_path / "damaged.json.gz").write_bytes(bytes(damaged))
    with pytest.raises(DataError, match="damaged.json.gz: not a MIRACL pool file"):
        read_pool(tmp_path / "damaged.json.gz")
    from engine.contract.miracl_protocol import qrels_sha256

    stale = {"corpus_size": 46, "docids": ["10#0"],
             "qrels_sha256": qrels_sha256({qid: data.qrels[qid] for qid in data.query_ids})}
    calls = []
    with pytest.raises(DataError, match=r"lacks judged passage '10#1' \(4 such; .*qrels.miracl-v1.0-sw-dev.tsv:2\)"):
        evaluate_language(data, counting_encode(encoder, calls), lambda event: None, 0, "miracl", pool=stale)
    assert calls == []                                         # nothing was encoded first


def test_a_cache_too_small_for_the_shards_is_said_and_encode_fails(tmp_path, tiny_model):
    write_miracl(tmp_path, docs=MORE_DOCS)
    document = {"name": "small", "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)},
                "eval": {"datasets": ["miracl"], "languages": ["sw"], "miracl": {"shard_size": 8}}}
    (tmp_path / "spec.json").write_text(json.dumps(document))
    environment = {**env(), "HBT_EMBEDDING_CACHE_DIR": str(tmp_path / "cache"), "HBT_EMBEDDING_CACHE_MB": "0.002"}
    done = subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json")],
                          capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 2 and "smaller than these shards" in done.stderr and "raise it" in done.stderr
    (tmp_path / "off.json").write_text(json.dumps({**document, "eval": {**document["eval"], "cache": False}}))
    off = subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "off.json")],
                         capture_output=True, text=True, env=environment, timeout=600)
    assert off.returncode == 2 and "eval.cache is false" in off.stderr


def test_encode_parts_run_as_executor_jobs(tmp_path, tiny_model):
    """`--parts 2` starts both parts itself through the project's executor (local here: the cores
    shared between them), prints their lines with their part, and every shard lands in the cache."""
    write_miracl(tmp_path, docs=MORE_DOCS)
    document = {"name": "parts", "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)},
                "eval": {"datasets": ["miracl"], "languages": ["sw"], "miracl": {"shard_size": 16}}}
    (tmp_path / "spec.json").write_text(json.dumps(document))
    environment = {**env(), "HBT_EMBEDDING_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json"),
                           "--parts", "2", "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True,
                          env=environment, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "part 1/2: local (pid" in done.stdout and "[2/2] sw: shard 1 " in done.stdout
    assert "[1/2] part 1/2: 2 shards" in done.stdout and "[2/2] part 2/2: 1 shards" in done.stdout
    stored = [json.loads(path.read_text()).get("about", {}).get("shard") for path in (tmp_path / "cache").glob("*.json")]
    assert sorted(shard for shard in stored if shard is not None) == [0, 1, 2]
    bad = subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json"),
                          "--parts", "0"], capture_output=True, text=True, env=environment, timeout=600)
    assert bad.returncode == 2 and "--parts must be between 1 and 4096" in bad.stderr


def test_a_disk_that_fills_while_shards_are_written_fails_cleanly_and_keeps_the_complete_ones(tmp_path, tiny_model):
    """The file-size limit of the encode process (RLIMIT_FSIZE: a write past it fails as a full
    disk does) is set below one shard's size: the command stops at the first shard it cannot
    store with one line and exit 2, leaves no half-written file, and the shards written before
    are intact — the next attempt, with room, encodes only what is missing."""
    import resource

    write_miracl(tmp_path, docs=MORE_DOCS)
    document = {"name": "full", "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)},
                "eval": {"datasets": ["miracl"], "languages": ["sw"], "miracl": {"shard_size": 16}}}
    (tmp_path / "spec.json").write_text(json.dumps(document))
    cache = tmp_path / "cache"
    environment = {**env(), "HBT_EMBEDDING_CACHE_DIR": str(cache)}
    command = [sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json")]
    first = subprocess.run(command + ["--part", "1/2"], capture_output=True, text=True, env=environment, timeout=600)
    assert first.returncode == 0, first.stderr                                  # shards 0 and 2
    before = {path.name: path.read_bytes() for path in cache.iterdir() if path.suffix in (".npy", ".json")}
    limit = max(path.stat().st_size for path in cache.glob("*.npy")) - 1       # a full shard no longer fits

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600,
                          preexec_fn=small_disk)
    assert full.returncode == 2, full.stderr
    lines = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "while writing shard 1 of miracl/sw" in lines[0] and "are kept" in lines[0], full.stderr
    assert "Traceback" not in full.stderr
    after = {path.name: path.read_bytes() for path in cache.iterdir() if path.suffix in (".npy", ".json")}
    assert after == before and not [path for path in cache.iterdir() if ".tmp-" in path.name]
    again = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert again.returncode == 0 and "(1 encoded, 2 already there)" in again.stdout, again.stdout + again.stderr


def test_a_disk_that_fills_during_a_runs_evaluation_fails_the_run_in_one_line_and_keeps_its_shards(tmp_path,
                                                                                                    tiny_model):
    """The same full disk inside a run (`--run`, the evaluation writing its shards): the run
    fails with the one line (its status and error in the index), the shards stored before are
    intact, and the run again, with room, goes on from them."""
    import resource

    write_miracl(tmp_path, docs=MORE_DOCS)
    document = {"name": "zero", "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)}, "train": {"steps": 0},
                "eval": {"datasets": ["miracl"], "languages": ["sw"], "miracl": {"shard_size": 16}}}
    (tmp_path / "spec.json").write_text(json.dumps(document))
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    environment = {**env(), "HBT_EMBEDDING_CACHE_DIR": str(cache)}
    encoded = subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "encode", str(tmp_path / "spec.json"),
                              "--part", "1/2"], capture_output=True, text=True, env=environment, timeout=600)
    assert encoded.returncode == 0, encoded.stderr                               # shards 0 and 2
    before = {path.name: path.read_bytes() for path in cache.iterdir() if path.suffix in (".npy", ".json")}
    limit = max(path.stat().st_size for path in cache.glob("*.npy")) - 1
    run = [sys.executable, "-m", "engine.cli", "--run", str(tmp_path / "spec.json"), "--runs-dir", str(runs)]
    failed = subprocess.run(run, capture_output=True, text=True, env=environment, timeout=600,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert failed.returncode == 1 and "Traceback" not in failed.stdout + failed.stderr, failed.stdout + failed.stderr
    (summary,) = json.loads((runs / "index.json").read_text())["runs"].values()
    assert summary["status"] == "failed" and "while writing shard 1 of miracl/sw" in summary["error"]
    assert "\n" not in summary["error"] and "are kept" in summary["error"]
    after = {path.name: path.read_bytes() for path in cache.iterdir() if path.suffix in (".npy", ".json")}
    assert after == before and not [path for path in cache.iterdir() if ".tmp-" in path.name]
    again = subprocess.run(run + ["--retry-failed"], capture_output=True, text=True, env=environment, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    results = json.loads(next(runs.glob("*/eval/miracl/results.json")).read_text())
    assert results["protocol"]["languages"]["sw"]["searched"] == 46


def test_a_trained_models_shards_leave_the_cache_when_its_evaluation_is_done(tmp_path, tiny_model, data_dir):
    """A run evaluated on MIRACL at step 0 (the base encoder), at step 2 and at its end (step 4):
    the base encoder's shards stay in the shared cache for every other run of a grid, the final
    model's too (an evaluation resumed after a stop goes on from them); step 2's, never read
    again, are removed once that evaluation is done, so they cannot push the base encoder's out
    of the cache's limit."""
    write_miracl(tmp_path, docs=MORE_DOCS)
    for name in ("xquad-r", "mlqa-r"):
        (tmp_path / name).symlink_to(data_dir / name)
    document = {"name": "trained", "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)},
                "train": {"dataset": "xquad-r", "steps": 4, "eval_every": 2, "batch_size": 4,
                          "languages": ["en", "de"], "max_questions": 20, "checkpoint_every": 0},
                "eval": {"datasets": ["miracl"], "languages": ["sw"], "at_start": True, "miracl": {"shard_size": 16}}}
    (tmp_path / "spec.json").write_text(json.dumps(document))
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--run", str(tmp_path / "spec.json"), "--runs-dir",
                           str(tmp_path / "runs")], capture_output=True, text=True,
                          env={**env(), "HBT_EMBEDDING_CACHE_DIR": str(cache)}, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = sorted((tmp_path / "runs").glob("*/eval/miracl/step-*/results.json"))
    assert len(results) == 3                                       # steps 0, 2 and 4 were evaluated
    shards = [json.loads(path.read_text())["about"] for path in cache.glob("*.json")
              if (json.loads(path.read_text()).get("about") or {}).get("kind") == "corpus-shard"]
    assert len(shards) == 6 and len({about["fingerprint"] for about in shards}) == 2   # step 0's and step 4's


def write_hub_pool(folder, language: str, docids: list[str]) -> None:
    """A pool in the layout of MTEB's `mteb/miracl-hard-negatives` on the Hugging Face hub (a
    `corpus-LANG` configuration, split `corpus`, column `_id`), as a local dataset folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: corpus-{language}\n  data_files:\n"
                                      f"  - split: corpus\n    path: corpus-{language}.jsonl\n---\n")
    (folder / f"corpus-{language}.jsonl").write_text(
        "".join(json.dumps({"_id": docid, "title": "", "text": "…"}) + "\n" for docid in docids))


def test_a_pool_published_as_a_hugging_face_dataset_is_read_like_a_pool_file(tmp_path, tiny_model):
    """`eval.miracl.pool: "hf:NAME"` and `hbt-tui miracl pool --retrievers hf:NAME` read a pool in
    MTEB's hard-negative layout (here a local folder in it: no network): every judged passage
    joins it, a passage the corpus lacks is left out, and both ways score the same."""
    write_miracl(tmp_path, docs=MORE_DOCS)
    judged = sorted({doc for _, doc, _ in QRELS})
    distractors = [f"{20 + i}#0" for i in range(0, 40, 3)]
    published = tmp_path / "hard-negatives"
    write_hub_pool(published, "sw", distractors + judged[:1] + ["not-in-this-corpus"])
    direct, _ = evaluate_spec(tmp_path, tiny_model, "hub", protocol="pooled", pool=f"hf:{published}")
    fingerprint = direct["protocol"]
    assert fingerprint["protocol"] == "pooled" and fingerprint["pool_sha256"] == f"hf:{published}"
    assert fingerprint["languages"]["sw"]["searched"] == len(set(distractors) | set(judged))
    assert len(fingerprint["languages"]["sw"]["pool_sha256"]) == 64          # the ids of the language's pool
    built = pool_cli(tmp_path, "--out", str(tmp_path / "pool.json"), "--retrievers", f"hf:{published}")
    assert built.returncode == 0, built.stderr
    pool, _ = read_pool(tmp_path / "pool.json")
    assert pool["retrievers"] == [f"hf:{published}"]
    assert sorted(pool["languages"]["sw"]["docids"]) == sorted(set(distractors) | set(judged))
    from_file, _ = evaluate_spec(tmp_path, tiny_model, "file", protocol="pooled", pool=str(tmp_path / "pool.json"))
    assert from_file["per_language"] == direct["per_language"]
    again, _ = evaluate_spec(tmp_path, tiny_model, "again", protocol="pooled", pool=f"hf:{published}")
    assert again["protocol"] == fingerprint                                     # the same pool, the same fingerprint
    write_hub_pool(published, "sw", distractors[1:] + judged[:1])              # the pool published again, changed
    changed, _ = evaluate_spec(tmp_path, tiny_model, "changed", protocol="pooled", pool=f"hf:{published}")
    assert "different pools" in mismatch([("again", again["protocol"]), ("changed", changed["protocol"])])
    with pytest.raises(DataError, match=r"hf:.*nowhere: cannot read the pool of sw \(configuration corpus-sw"):
        evaluate_spec(tmp_path, tiny_model, "gone", protocol="pooled", pool=f"hf:{tmp_path / 'nowhere'}")
    bad = pool_cli(tmp_path, "--out", str(tmp_path / "x.json"), "--retrievers", f"hf:{tmp_path / 'nowhere'}")
    assert bad.returncode == 2 and "cannot read the pool of sw" in bad.stderr and "Traceback" not in bad.stderr


def test_a_pool_that_lacks_a_language_is_refused_before_the_run_starts(tmp_path, tiny_model):
    """The pool is checked with the rest of a submission (engine.preflight): a published pool
    without a configuration for an evaluated language, a pool file without it, one built on other
    judgements or for another split, is one line before any run folder exists — not a failure at
    the final evaluation, after training."""
    write_miracl(tmp_path, docs=MORE_DOCS)
    published = tmp_path / "hard-negatives"
    write_hub_pool(published, "yo", ["20#0"])
    runs = tmp_path / "runs"
    assert pool_cli(tmp_path, "--out", str(tmp_path / "built.json"), "--depth", "2").returncode == 0
    built = json.loads((tmp_path / "built.json").read_text())
    stale = {**built, "languages": {"sw": {**built["languages"]["sw"], "qrels_sha256": "0" * 64}}}
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    (tmp_path / "test-split.json").write_text(json.dumps({**built, "split": "test"}))
    expected = {f"hf:{published}": "no configuration corpus-sw", str(tmp_path / "pool.json"): "no pool for sw (it has yo)",
                str(tmp_path / "stale.json"): "the MIRACL pool for sw was built on other judgements than these",
                str(tmp_path / "test-split.json"): "a pool of the 'test' split; eval.miracl_split is 'dev'"}
    for pool, said in expected.items():
        if pool.endswith("pool.json"):
            (tmp_path / "pool.json").write_text(json.dumps({"format": "hbt-tui-miracl-pool/1", "split": "dev",
                                                            "languages": {"yo": {"docids": [], "corpus_size": 1,
                                                                                 "qrels_sha256": "0" * 64}}}))
        document = {"name": "pooled", "data_dir": str(tmp_path), "encoder": {"name": str(tiny_model)},
                    "train": {"steps": 0},
                    "eval": {"datasets": ["miracl"], "languages": ["sw"],
                             "miracl": {"protocol": "pooled", "pool": pool}}}
        (tmp_path / "spec.json").write_text(json.dumps(document))
        refused = subprocess.run([sys.executable, "-m", "engine.cli", "--run", str(tmp_path / "spec.json"),
                                  "--runs-dir", str(runs)], capture_output=True, text=True, env=env(), timeout=600)
        lines = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert refused.returncode == 2 and len(lines) == 1, refused.stderr
        assert said in lines[0], lines[0]
        assert not runs.exists() or not [path for path in runs.iterdir() if not path.name.startswith(".")]


def test_the_paper_grids_cost_is_counted_from_miracls_published_sizes(tmp_path):
    """hf:miracl is only known streamed: the estimate counts MIRACL's published corpus sizes (all
    16 dev languages, English included), says so, and never reports an empty corpus."""
    from engine.contract.grid import expand_grid
    from engine.contract.validation import load_spec
    from engine.parent.miracl_cost import cost_lines
    from engine.parent.run_service import open_store

    specs = expand_grid(load_spec(Path(__file__).resolve().parents[1] / "experiments" / "study" / "paper-xlmr.json"))
    lines = cost_lines(specs, open_store(tmp_path / "runs"), "cpu")
    text = "\n".join(lines)
    assert "fr     14,636,953 passages" in text and "en     32,893,221 passages" in text
    assert "MIRACL's published corpus sizes" in text
    encoded = next(line for line in lines if line.startswith("  encoding:"))
    passages = int(encoded.split()[1].replace(",", ""))
    assert passages % 90_416_887 == 0 and passages > 0     # every evaluation encodes all 16 languages' 90.4 M
