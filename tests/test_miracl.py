"""MIRACL reader and streaming evaluation, on small files in MIRACL's own layout."""

from __future__ import annotations

import gzip
import importlib
import json

import numpy as np
import pytest

from engine.child.data import miracl
from engine.contract.layout import RunFolder
from engine.contract.errors import DataError
from engine.child.eval_miracl import TopK, evaluate_language
from engine.child.evaluator import Evaluator
from engine.contract.validation import parse_spec

DOCS = [("10#0", "Nairobi", "Nairobi ni mji mkuu wa Kenya."), ("10#1", "Nairobi", "Ina wakazi milioni nne."),
        ("11#0", "Mombasa", "Mombasa ni mji wa pwani."), ("12#0", "Kilimanjaro", "Kilimanjaro ni mlima mrefu."),
        ("13#0", "Ziwa Viktoria", "Ziwa kubwa la Afrika."), ("14#0", "Dodoma", "Dodoma ni mji mkuu wa Tanzania.")]
TOPICS = [("1", "Mji mkuu wa Kenya ni upi?"), ("2", "Mlima mrefu zaidi Afrika?"), ("3", "Mji mkuu wa Tanzania?")]
QRELS = [("1", "10#0", 1), ("1", "10#1", 0), ("2", "12#0", 1), ("3", "14#0", 2), ("3", "11#0", 0)]


def write_miracl(root, language="sw", split="dev", docs=DOCS, qrels=QRELS, topics=TOPICS):
    folder = root / "miracl" / language
    (folder / "topics").mkdir(parents=True)
    (folder / "qrels").mkdir()
    (folder / "corpus").mkdir()
    (folder / "topics" / f"topics.miracl-v1.0-{language}-{split}.tsv").write_text(
        "".join(f"{qid}\t{text}\n" for qid, text in topics))
    (folder / "qrels" / f"qrels.miracl-v1.0-{language}-{split}.tsv").write_text(
        "".join(f"{qid} Q0 {doc} {rel}\n" for qid, doc, rel in qrels))
    half = len(docs) // 2
    with gzip.open(folder / "corpus" / "docs-0.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps({"docid": d, "title": t, "text": x}) + "\n" for d, t, x in docs[:half])
    (folder / "corpus" / "docs-1.jsonl").write_text(
        "".join(json.dumps({"docid": d, "title": t, "text": x}) + "\n" for d, t, x in docs[half:]))
    return folder


def test_reader_parses_topics_qrels_and_streams_the_corpus(tmp_path):
    write_miracl(tmp_path)
    data = miracl.load_local("sw", "dev", str(tmp_path))
    assert data.query_ids == ["1", "2", "3"]
    assert data.qrels["3"] == {"14#0": 2, "11#0": 0}
    documents = list(data.documents())
    assert [docid for docid, _ in documents] == [d for d, _, _ in DOCS]
    assert documents[0][1] == "Nairobi Nairobi ni mji mkuu wa Kenya."
    assert miracl.local_languages(str(tmp_path)) == ("sw",)


def test_top_k_streaming_equals_a_full_sort():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((5, 50)).astype(np.float32)
    scores[:, 10] = scores[:, 3]  # a tie: the earlier document wins
    top = TopK(5, 7)
    for start in range(0, 50, 8):
        top.add(scores[:, start:start + 8], [f"d{i}" for i in range(start, min(start + 8, 50))], start)
    expected = np.lexsort((np.broadcast_to(np.arange(50), scores.shape), -scores), axis=1)[:, :7]
    assert (top.positions == expected).all()
    assert top.ids[0, 0] == f"d{expected[0, 0]}"


def test_evaluation_streams_in_chunks_and_matches_pytrec_eval(tmp_path, tiny_model):
    pytrec_eval = importlib.import_module("pytrec_eval")   # in the test extra: missing fails, never skips
    from engine.child.encoder import load_encoder
    from engine.contract.spec import EncoderSpec

    write_miracl(tmp_path)
    encoder = load_encoder(EncoderSpec(name=str(tiny_model)))
    data = miracl.load_local("sw", "dev", str(tmp_path))
    encode = lambda texts, is_query, progress: encoder.encode(texts, is_query, 4, progress)  # noqa: E731
    events = []
    whole, retrieved, qrels, _ = evaluate_language(data, encode, events.append, 0, "miracl", chunk_size=100)
    chunked, retrieved_chunked, _, top = evaluate_language(data, encode, events.append, 0, "miracl", chunk_size=2)
    assert retrieved == retrieved_chunked
    for name in whole:
        np.testing.assert_allclose(whole[name], chunked[name])
    run = {qid: {doc: float(score) for doc, score in zip(docs, scores)}
           for qid, docs, scores in zip(data.query_ids, top.ids, top.scores)}
    judged = {qid: data.qrels[qid] for qid in data.query_ids}
    reference = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10", "recall.100", "map_cut.10"}).evaluate(run)
    for row, qid in enumerate(data.query_ids):
        assert whole["ndcg@10"][row] == pytest.approx(reference[qid]["ndcg_cut_10"], abs=1e-6)
        assert whole["recall@100"][row] == pytest.approx(reference[qid]["recall_100"], abs=1e-6)
        assert whole["map_cut@10"][row] == pytest.approx(reference[qid]["map_cut_10"], abs=1e-6)
    assert sum(event.kind == "eval_progress" for event in events) >= 3


def test_miracl_through_the_evaluator(tmp_path, tiny_model):
    from engine.child.encoder import load_encoder
    from engine.contract.spec import EncoderSpec

    write_miracl(tmp_path)
    spec = parse_spec({"name": "m", "data_dir": str(tmp_path), "eval": {"datasets": ["miracl"], "languages": ["sw"]}})
    events = []
    assert Evaluator(spec, RunFolder(tmp_path / "run"), events.append).run(load_encoder(EncoderSpec(name=str(tiny_model))), 0)
    results = json.loads((tmp_path / "run" / "eval" / "miracl" / "results.json").read_text())
    assert results["primary_metric"] == "ndcg@10"
    assert set(results["per_language"]["sw"]["settings"]["mono"]) == {"ndcg@10", "recall@100", "map_cut@10"}
    assert (tmp_path / "run" / "eval" / "miracl" / "trec" / "sw.mono.run").is_file()


def test_bad_qrels_line_names_file_and_line(tmp_path):
    folder = write_miracl(tmp_path, qrels=QRELS)
    qrels_file = folder / "qrels" / "qrels.miracl-v1.0-sw-dev.tsv"
    qrels_file.write_text("1 Q0 10#0 1\n2 Q0 12#0\n")
    with pytest.raises(DataError, match=r"qrels.miracl-v1.0-sw-dev.tsv:2: expected 'qid Q0 docid relevance'"):
        miracl.load_local("sw", "dev", str(tmp_path))


def test_judged_document_missing_from_corpus_names_the_qrels_line(tmp_path, tiny_model):
    from engine.child.encoder import load_encoder
    from engine.contract.spec import EncoderSpec

    write_miracl(tmp_path, qrels=[*QRELS, ("2", "99#9", 1)])
    data = miracl.load_local("sw", "dev", str(tmp_path))
    encoder = load_encoder(EncoderSpec(name=str(tiny_model)))
    encode = lambda texts, is_query, progress: encoder.encode(texts, is_query, 4, progress)  # noqa: E731
    with pytest.raises(DataError, match=r"qrels.miracl-v1.0-sw-dev.tsv:6: document '99#9' is judged but not in"):
        evaluate_language(data, encode, lambda event: None, 0, "miracl")


def test_bad_topics_and_corpus_lines(tmp_path):
    folder = write_miracl(tmp_path)
    (folder / "topics" / "topics.miracl-v1.0-sw-dev.tsv").write_text("1\tok\nbroken line\n")
    with pytest.raises(DataError, match=r"topics.miracl-v1.0-sw-dev.tsv:2: expected 'qid<TAB>query'"):
        miracl.load_local("sw", "dev", str(tmp_path))
    write_miracl(tmp_path / "second")
    (tmp_path / "second" / "miracl" / "sw" / "corpus" / "docs-1.jsonl").write_text('{"docid": "x"}\nnot json\n')
    data = miracl.load_local("sw", "dev", str(tmp_path / "second"))
    with pytest.raises(DataError, match=r"docs-1.jsonl:1: not a corpus line"):
        list(data.documents())


def test_missing_language_folder_and_hub_offline(tmp_path, monkeypatch):
    write_miracl(tmp_path)
    with pytest.raises(DataError, match="no MIRACL folder for language 'yo'"):
        miracl.load_local("yo", "dev", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DataError, match=r"cannot load MIRACL \(sw\) from the Hugging Face hub") as caught:
        miracl.load_hub("sw", "dev")
    assert "\n" not in str(caught.value)
