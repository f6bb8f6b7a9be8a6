from __future__ import annotations

import math
from collections import Counter

import pytest

from engine.child.data.lareqa import load_lareqa
from engine.child.data.pairs import lareqa_pairs
from engine.contract.errors import DataError
from engine.child.sampling import BatchSampler
from engine.contract.spec import SamplingSpec

LANGUAGES = ("ar", "de", "en", "es", "zh")


@pytest.fixture(scope="module")
def source(data_dir):
    return lareqa_pairs(load_lareqa("mlqa-r", LANGUAGES, str(data_dir)), with_paragraph=False)


def sampler(source, batch_size=16, hard_negatives=0, seed=7, **sampling):
    return BatchSampler(source, SamplingSpec(**sampling), batch_size, hard_negatives, seed)


def draw(batch_sampler, steps):
    return [batch_sampler.next_step() for _ in range(steps)]


def assert_no_duplicates(batch):
    assert len({item.passage_id for item in batch.items}) == len(batch.items)
    assert len({item.key for item in batch.items}) == len(batch.items)
    assert not set(batch.hard_negatives) & {item.passage_id for item in batch.items}
    assert len(set(batch.hard_negatives)) == len(batch.hard_negatives)


def test_monolingual_batches_are_single_language(source):
    for (batch,) in draw(sampler(source, strategy="monolingual"), 300):
        assert batch.kind == "mono" and len(batch.items) == 16
        assert {(i.query_language, i.passage_language) for i in batch.items} == {(batch.items[0].query_language,) * 2}
        assert_no_duplicates(batch)


def test_crosslingual_batches_never_pair_a_language_with_itself(source):
    pairs = Counter()
    for (batch,) in draw(sampler(source, strategy="crosslingual"), 300):
        assert batch.kind == "cross"
        assert all(item.query_language != item.passage_language for item in batch.items)
        assert_no_duplicates(batch)
        pairs[(batch.items[0].query_language, batch.items[0].passage_language)] += 1
    assert len(pairs) == len(LANGUAGES) * (len(LANGUAGES) - 1)  # every ordered pair is used


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.8])
def test_hybrid_share_of_monolingual_batches_matches_alpha(source, alpha):
    steps = 2000
    kinds = Counter(batch.kind for (batch,) in draw(sampler(source, strategy="hybrid", alpha=alpha), steps))
    tolerance = 4 * math.sqrt(alpha * (1 - alpha) / steps)  # 4 binomial standard deviations
    assert abs(kinds["mono"] / steps - alpha) < tolerance


def test_hybrid_extremes_are_pure(source):
    assert {b.kind for (b,) in draw(sampler(source, strategy="hybrid", alpha=1.0), 200)} == {"mono"}
    assert {b.kind for (b,) in draw(sampler(source, strategy="hybrid", alpha=0.0), 200)} == {"cross"}


@pytest.mark.parametrize("split,size", [("half", 8), ("full", 16)])
def test_multitask_yields_both_objectives_every_step(source, split, size):
    for mono, cross in draw(sampler(source, strategy="multitask", multitask_batch=split), 200):
        assert (mono.kind, cross.kind) == ("mono", "cross")
        assert len(mono.items) == len(cross.items) == size
        assert_no_duplicates(mono)
        assert_no_duplicates(cross)


def test_hard_negatives_come_from_the_positive_paragraph(source):
    for (batch,) in draw(sampler(source, strategy="hybrid", hard_negatives=2), 100):
        assert_no_duplicates(batch)
        assert 0 < len(batch.hard_negatives) <= 2 * len(batch.items)
        own_negatives = set()
        for item in batch.items:
            own_negatives |= set(source.negatives[item.passage_id])
        assert set(batch.hard_negatives) <= own_negatives


def test_deterministic_for_a_seed_and_different_across_seeds(source):
    first = draw(sampler(source, seed=3), 50)
    assert first == draw(sampler(source, seed=3), 50)
    assert first != draw(sampler(source, seed=4), 50)


def test_state_restores_the_exact_sequence_across_epochs(source):
    reference = sampler(source, batch_size=64)
    epoch_length = reference.steps_per_epoch
    draw(reference, epoch_length + 3)
    state = reference.state()
    assert state == {"epoch": 1, "index": 3}
    expected = draw(reference, 20)
    restored = sampler(source, batch_size=64)
    restored.load_state(state)
    assert draw(restored, 20) == expected


def test_every_pair_is_seen_once_per_epoch_within_a_pool(source):
    batch_sampler = sampler(source, strategy="monolingual", batch_size=16)
    pool = batch_sampler.mono[("es", "es")]
    seen = Counter()
    for _ in range(len(pool.items) // 16):
        seen.update(item.key for item in pool.take(16, batch_sampler.rng))
    assert max(seen.values()) == 1  # no repeats before the pool is exhausted


def test_batches_larger_than_the_data_are_refused(source):
    with pytest.raises(DataError, match="not enough|no language"):
        sampler(source, batch_size=5000, strategy="monolingual")


def test_mixed_cross_batches_draw_a_language_pair_per_item(source):
    pairs = Counter()
    steps = 300
    for (batch,) in draw(sampler(source, strategy="crosslingual"), steps):
        assert batch.kind == "cross" and batch.label == "cross:mixed" and len(batch.items) == 16
        assert all(item.query_language != item.passage_language for item in batch.items)
        assert len({item.query_language for item in batch.items}) >= 3       # several languages on both sides
        assert len({item.passage_language for item in batch.items}) >= 3
        assert_no_duplicates(batch)
        pairs.update((item.query_language, item.passage_language) for item in batch.items)
    ordered_pairs = len(LANGUAGES) * (len(LANGUAGES) - 1)
    assert len(pairs) == ordered_pairs
    items, share = 16 * steps, 1 / ordered_pairs
    tolerance = 4 * math.sqrt(items * share * (1 - share))                   # 4 binomial standard deviations
    assert all(abs(count - items * share) < tolerance for count in pairs.values()), pairs


def test_single_pair_cross_batches_stay_an_option(source):
    for (batch,) in draw(sampler(source, strategy="crosslingual", cross_batch="single"), 100):
        assert len({(item.query_language, item.passage_language) for item in batch.items}) == 1
        assert batch.label == f"cross:{batch.items[0].query_language}>{batch.items[0].passage_language}"


def test_no_batch_repeats_a_passage_text_or_gives_a_positive_as_hard_negative(source):
    for strategy in ("monolingual", "crosslingual", "multitask"):
        for batches in draw(sampler(source, strategy=strategy, hard_negatives=2), 150):
            for batch in batches:
                texts = [source.text_key(item.passage_id) for item in batch.items]
                negatives = [source.text_key(passage) for passage in batch.hard_negatives]
                assert len(set(texts)) == len(texts)
                assert not set(negatives) & set(texts) and len(set(negatives)) == len(negatives)


def test_mixed_batches_are_deterministic_and_resume_exactly(source):
    first = draw(sampler(source, strategy="hybrid", seed=5), 40)
    assert first == draw(sampler(source, strategy="hybrid", seed=5), 40)
    reference = sampler(source, strategy="crosslingual", batch_size=64)
    draw(reference, reference.steps_per_epoch + 2)
    state = reference.state()
    expected = draw(reference, 10)
    restored = sampler(source, strategy="crosslingual", batch_size=64)
    restored.load_state(state)
    assert draw(restored, 10) == expected


def test_multitask_gives_each_objective_the_full_batch_by_default(source):
    assert SamplingSpec().multitask_batch == "full" and SamplingSpec().cross_batch == "mixed"
    mono, cross = sampler(source, strategy="multitask").next_step()
    assert len(mono.items) == len(cross.items) == 16


def test_every_strategy_is_declared_once_and_the_spec_accepts_exactly_those():
    import typing

    from engine.contract import arms, spec

    hints = typing.get_type_hints(spec.SamplingSpec)
    assert typing.get_args(hints["strategy"]) == tuple(arms.STRATEGIES) == spec.STRATEGIES
