"""Metrics against hand-computed values and against pytrec_eval (trec_eval) on generated runs."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from engine.child.metrics import PAD, compute, language_bias, ranks_from_topk, relevant_ranks


def test_ranks_and_every_metric_by_hand():
    # one query, 6 candidates; relevant: 1 and 4. Scores put them at ranks 2 and 5.
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.1]])
    ranks = relevant_ranks(scores, np.array([[1, 4]]))
    assert ranks.tolist() == [[2.0, 5.0]]
    values = {name: float(v[0]) for name, v in compute(
        ["map", "map@3", "map_cut@3", "ndcg@3", "recall@1", "recall@3", "mrr@1", "mrr@10", "success@2", "mrr"],
        ranks, np.array([2])).items()}
    assert values["map"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert values["map@3"] == pytest.approx((1 / 2) / 2)        # LAReQA: divide by min(R, k) = 2
    assert values["map_cut@3"] == pytest.approx((1 / 2) / 2)    # trec_eval: divide by R = 2
    assert values["ndcg@3"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert values["recall@1"] == 0 and values["recall@3"] == 0.5
    assert values["mrr@1"] == 0 and values["mrr@10"] == 0.5 and values["mrr"] == 0.5
    assert values["success@2"] == 1


def test_lareqa_and_trec_conventions_differ_when_relevant_exceed_k():
    ranks = np.array([[1.0, 2.0, 3.0]])  # 3 relevant, all on top
    values = compute(["map@2", "map_cut@2"], ranks, np.array([3]))
    assert values["map@2"][0] == pytest.approx(1.0)            # (1 + 1) / min(3, 2)
    assert values["map_cut@2"][0] == pytest.approx(2 / 3)      # (1 + 1) / 3


def test_ties_are_broken_by_candidate_order():
    scores = np.array([[0.5, 0.5, 0.5, 0.9]])
    assert relevant_ranks(scores, np.array([[0]])).tolist() == [[2.0]]   # behind 3 only
    assert relevant_ranks(scores, np.array([[2]])).tolist() == [[4.0]]   # behind 3, 0 and 1
    assert relevant_ranks(scores, np.array([[2, 0, -1]])).tolist() == [[2.0, 4.0, PAD]]


def test_language_bias_by_hand():
    ranks = np.array([[1.0, 4.0, 10.0], [3.0, PAD, PAD], [2.0, 2.5, PAD]])
    bias = language_bias(ranks)
    assert bias[0] == 9 and math.isnan(bias[1]) and bias[2] == 0.5


def test_ranks_from_topk_and_unretrieved_relevant():
    ranks = ranks_from_topk([["d3", "d1", "d9"]], [{"d1": 1, "d7": 2, "d9": 0}])
    assert ranks.tolist() == [[2.0, PAD]]
    values = compute(["recall@3", "map_cut@3"], ranks, np.array([2]))
    assert values["recall@3"][0] == 0.5 and values["map_cut@3"][0] == pytest.approx(0.25)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pytrec_eval_on_generated_runs(seed):
    pytrec_eval = importlib.import_module("pytrec_eval")
    rng = np.random.default_rng(seed)
    queries, candidates = 60, 300
    scores = rng.standard_normal((queries, candidates)).astype(np.float64)  # no ties
    relevant = [rng.choice(candidates, size=rng.integers(1, 12), replace=False) for _ in range(queries)]
    matrix = np.full((queries, 12), -1)
    for row, items in enumerate(relevant):
        matrix[row, :len(items)] = items
    ours = compute(["map", "map_cut@10", "ndcg@10", "ndcg@20", "recall@1", "recall@10", "recall@100", "success@1",
                    "success@10", "mrr", "mrr@10"], relevant_ranks(scores, matrix), np.array(list(map(len, relevant))))
    qrels = {f"q{i}": {f"d{j}": 1 for j in items} for i, items in enumerate(relevant)}
    run = {f"q{i}": {f"d{j}": float(scores[i, j]) for j in range(candidates)} for i in range(queries)}
    measures = {"map", "map_cut.10", "ndcg_cut.10,20", "recall.1,10,100", "success.1,10", "recip_rank"}
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    top10 = {q: dict(sorted(docs.items(), key=lambda item: -item[1])[:10]) for q, docs in run.items()}
    reference_top10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    pairs = {"map": "map", "map_cut@10": "map_cut_10", "ndcg@10": "ndcg_cut_10", "ndcg@20": "ndcg_cut_20",
             "recall@1": "recall_1", "recall@10": "recall_10", "recall@100": "recall_100", "success@1": "success_1",
             "success@10": "success_10", "mrr": "recip_rank"}
    for name, trec_name in pairs.items():
        expected = np.array([reference[f"q{i}"][trec_name] for i in range(queries)])
        np.testing.assert_allclose(ours[name], expected, atol=1e-9, err_msg=name)
    expected = np.array([reference_top10[f"q{i}"]["recip_rank"] for i in range(queries)])
    np.testing.assert_allclose(ours["mrr@10"], expected, atol=1e-9)


def test_graded_ndcg_agrees_with_pytrec_eval():
    pytrec_eval = importlib.import_module("pytrec_eval")
    retrieved = [["a", "b", "c", "d", "e"], ["x", "y", "z"]]
    qrels = [{"b": 2, "d": 1, "q": 3}, {"z": 1}]
    ranks = ranks_from_topk(retrieved, qrels)
    gains = np.array([[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    ideal = np.array([[3.0, 2.0, 1.0], [1.0, 0.0, 0.0]])
    ours = compute(["ndcg@5", "recall@5"], ranks, np.array([3, 1]), gains, ideal)
    run = {f"q{i}": {doc: 10.0 - rank for rank, doc in enumerate(docs)} for i, docs in enumerate(retrieved)}
    judged = {f"q{i}": judgements for i, judgements in enumerate(qrels)}
    reference = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.5", "recall.5"}).evaluate(run)
    for row in range(2):
        assert ours["ndcg@5"][row] == pytest.approx(reference[f"q{row}"]["ndcg_cut_5"])
        assert ours["recall@5"][row] == pytest.approx(reference[f"q{row}"]["recall_5"])
