"""Batch samplers: monolingual, cross-lingual, hybrid and multitask (DESIGN.md).

- monolingual (X-X-mono): each batch is one language X, drawn per batch.
- crosslingual (X-Y): each batch pairs queries in X with passages in Y != X, (X, Y) drawn
  per batch, so in-batch negatives share the positive's language.
- hybrid: each batch is monolingual with probability alpha, else cross-lingual.
- multitask: every step yields a monolingual and a cross-lingual batch (half or full
  size each), optimised as two weighted objectives.

Languages (or language pairs) are drawn uniformly or in proportion to their number of
pairs. Within a pool, pairs are drawn without replacement in a shuffled order. A batch
never holds the same passage twice (it would be a false negative) nor the same key
twice. The sampler is reseeded at each epoch from (seed, epoch); its state is just
(epoch, index) and is restored by replaying the epoch, which is cheap and exact.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Literal

from engine.child.data.pairs import PairSource
from engine.contract.errors import DataError
from engine.contract.spec import SamplingSpec


@dataclass(frozen=True)
class Item:
    key: str
    query_language: str
    passage_language: str
    passage_id: str


@dataclass(frozen=True)
class Batch:
    kind: Literal["mono", "cross"]
    items: tuple[Item, ...]
    hard_negatives: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        first = self.items[0]
        if self.kind == "mono":
            return f"mono:{first.query_language}"
        return f"cross:{first.query_language}>{first.passage_language}"


class _Pool:
    """The pairs of one language (mono) or one language pair (cross)."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.distinct_passages = len({item.passage_id for item in items})
        self.queue: deque[Item] = deque()

    def reset(self, rng: random.Random) -> None:
        self.queue = deque(rng.sample(self.items, len(self.items)))

    def take(self, count: int, rng: random.Random) -> list[Item]:
        picked: list[Item] = []
        skipped: list[Item] = []
        keys: set[str] = set()
        passages: set[str] = set()
        budget = 2 * len(self.items) + 1
        while len(picked) < count and budget > 0:
            if not self.queue:
                self.queue.extend(rng.sample(self.items, len(self.items)))
            item = self.queue.popleft()
            budget -= 1
            if item.key in keys or item.passage_id in passages:
                skipped.append(item)
                continue
            picked.append(item)
            keys.add(item.key)
            passages.add(item.passage_id)
        self.queue.extendleft(reversed(skipped))  # duplicates wait for the next batch
        return picked


class BatchSampler:
    def __init__(self, source: PairSource, sampling: SamplingSpec, batch_size: int,
                 hard_negatives: int, seed: int) -> None:
        self.source = source
        self.sampling = sampling
        self.hard_negatives = hard_negatives
        self.seed = seed
        multitask_half = sampling.strategy == "multitask" and sampling.multitask_batch == "half"
        self.part_size = batch_size // 2 if multitask_half else batch_size
        self.mono = self._eligible({(lang, lang): self._items(lang, lang) for lang in source.languages})
        self.cross = self._eligible({(x, y): self._items(x, y) for x in source.languages
                                     for y in source.languages if x != y})
        self._check_pools(batch_size)
        total_pairs = sum(len(pool.items) for pool in self.mono.values())
        self.steps_per_epoch = max(1, math.ceil(total_pairs / batch_size))
        self.set_epoch(0)

    def _items(self, query_language: str, passage_language: str) -> list[Item]:
        positives = self.source.positives[passage_language]
        return [Item(key, query_language, passage_language, positives[key])
                for key in self.source.shared_keys(query_language, passage_language)]

    def _eligible(self, pools: dict[tuple[str, str], list[Item]]) -> dict[tuple[str, str], _Pool]:
        built = {pair: _Pool(items) for pair, items in pools.items()}
        return {pair: pool for pair, pool in built.items() if pool.distinct_passages >= self.part_size}

    def _check_pools(self, batch_size: int) -> None:
        strategy = self.sampling.strategy
        needs_mono = strategy in ("monolingual", "multitask") or (strategy == "hybrid" and self.sampling.alpha > 0)
        needs_cross = strategy in ("crosslingual", "multitask") or (strategy == "hybrid" and self.sampling.alpha < 1)
        for needed, pools, what in ((needs_mono, self.mono, "monolingual"), (needs_cross, self.cross, "cross-lingual")):
            if needed and not pools:
                raise DataError(f"no language {'pair ' if what != 'monolingual' else ''}has enough distinct "
                                f"{what} training pairs for a batch of {self.part_size} "
                                f"(languages: {', '.join(self.source.languages)}); lower train.batch_size "
                                f"or add data")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.index = 0
        self.rng = random.Random(self.seed * 1_000_003 + epoch)
        for pool in (*self.mono.values(), *self.cross.values()):
            pool.reset(self.rng)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict[str, int]) -> None:
        self.set_epoch(state["epoch"])
        for _ in range(state["index"]):
            self.next_step()

    def next_step(self) -> tuple[Batch, ...]:
        """The batches of one step: one, or (mono, cross) under multitask."""
        if self.index >= self.steps_per_epoch:
            self.set_epoch(self.epoch + 1)
        self.index += 1
        strategy = self.sampling.strategy
        if strategy == "multitask":
            return (self._batch("mono"), self._batch("cross"))
        if strategy == "monolingual":
            return (self._batch("mono"),)
        if strategy == "crosslingual":
            return (self._batch("cross"),)
        kind = "mono" if self.rng.random() < self.sampling.alpha else "cross"
        return (self._batch(kind),)

    def _choose(self, pools: dict[tuple[str, str], _Pool]) -> _Pool:
        candidates = list(pools.values())
        if self.sampling.language_weighting == "by_size":
            return self.rng.choices(candidates, weights=[len(pool.items) for pool in candidates])[0]
        return self.rng.choice(candidates)

    def _batch(self, kind: Literal["mono", "cross"]) -> Batch:
        pool = self._choose(self.mono if kind == "mono" else self.cross)
        items = tuple(pool.take(self.part_size, self.rng))
        return Batch(kind, items, self._hard_negatives(items))

    def _hard_negatives(self, items: tuple[Item, ...]) -> tuple[str, ...]:
        if not self.hard_negatives:
            return ()
        taken = {item.passage_id for item in items}
        chosen: list[str] = []
        for item in items:
            options = [passage for passage in self.source.negatives.get(item.passage_id, ()) if passage not in taken]
            for passage in self.rng.sample(options, min(self.hard_negatives, len(options))):
                chosen.append(passage)
                taken.add(passage)
        return tuple(chosen)
