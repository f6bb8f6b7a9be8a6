from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from engine.child.losses import info_nce

QUERIES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
PASSAGES = torch.tensor([[1.0, 0.0], [0.6, 0.8]])


def log1p_exp(x: float) -> float:
    return math.log(1 + math.exp(x))


def test_in_batch_infonce_by_hand():
    # scores q1: [1, .6] (positive 1), q2: [0, .8] (positive .8)
    expected = (log1p_exp(-0.4) + log1p_exp(-0.8)) / 2
    assert info_nce(QUERIES, PASSAGES, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)
    expected_half = (log1p_exp(-0.8) + log1p_exp(-1.6)) / 2
    assert info_nce(QUERIES, PASSAGES, temperature=0.5).item() == pytest.approx(expected_half, abs=1e-6)


def test_symmetric_term_by_hand():
    forward = (log1p_exp(-0.4) + log1p_exp(-0.8)) / 2
    # passages against queries: p1: [1, 0] (label 0), p2: [.6, .8] (label 1)
    backward = (log1p_exp(-1.0) + log1p_exp(-0.2)) / 2
    value = info_nce(QUERIES, PASSAGES, temperature=1.0, symmetric=True).item()
    assert value == pytest.approx((forward + backward) / 2, abs=1e-6)


def test_hard_negatives_join_the_denominator():
    passages = torch.cat([PASSAGES, torch.tensor([[0.0, 1.0]])])
    first = math.log(1 + math.exp(-0.4) + math.exp(-1.0))
    second = math.log(math.exp(-0.8) + 1 + math.exp(0.2))
    assert info_nce(QUERIES, passages, temperature=1.0).item() == pytest.approx((first + second) / 2, abs=1e-6)


def test_matches_an_explicit_loop_on_4_by_8():
    torch.manual_seed(0)
    queries = F.normalize(torch.randn(4, 8), dim=-1)
    passages = F.normalize(torch.randn(6, 8), dim=-1)  # 4 positives + 2 hard negatives
    total = 0.0
    for i in range(4):
        logits = [float(queries[i] @ passages[j]) / 0.05 for j in range(6)]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    assert info_nce(queries, passages, 0.05).item() == pytest.approx(total / 4, rel=1e-5)


def test_gradient_pulls_positives_together():
    queries = F.normalize(torch.randn(4, 8), dim=-1).requires_grad_()
    passages = F.normalize(torch.randn(4, 8), dim=-1)
    loss = info_nce(queries, passages, 0.1)
    loss.backward()
    before = (queries * passages).sum(-1)
    after = ((queries - 0.1 * queries.grad) * passages).sum(-1)
    assert (after > before).all()
