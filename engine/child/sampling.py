"""Batch samplers: monolingual, cross-lingual, hybrid and multitask (docs/method.md); what each
strategy draws per step is declared once, in engine.contract.arms.STRATEGIES.

- monolingual (X-X-mono): each batch is one language X, drawn per batch.
- crosslingual (X-Y), `cross_batch: mixed` (the default, the paper's, after LAReQA's X-Y):
  every item of the batch draws its own (query language X, passage language Y != X), so one
  batch holds several languages on both sides and in-batch negatives come from diverse
  languages. `cross_batch: single` draws one (X, Y) for the whole batch, so every negative
  shares the positive's language (a weaker design, kept as an option).
- hybrid: each batch is monolingual with probability alpha, else cross-lingual.
- multitask: every step yields a monolingual and a cross-lingual batch, optimised as two
  weighted objectives; `multitask_batch: full` (default) gives each the full batch (the same
  in-batch negatives as the other strategies, twice the compute), `half` two half batches.

Languages and language pairs are drawn uniformly or in proportion to their number of pairs;
within a pool, pairs come without replacement in a shuffled order. A batch never holds two
items with the same question id (a translation of the positive would be a false negative)
nor two passages with the same normalised text, and a hard negative never has a positive's
text. The sampler is reseeded at each epoch from (seed, epoch); its state is just (epoch,
index) and is restored by replaying the epoch, which is cheap and exact.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Literal

from engine.child.data.pairs import PairSource
from engine.contract.arms import CROSS, MONO, STRATEGIES
from engine.contract.errors import DataError
from engine.contract.spec import SamplingSpec

SCAN = 64          # how deep a pool's queue is searched for an item that fits the batch


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
        pairs = {(item.query_language, item.passage_language) for item in self.items}
        return f"cross:{first.query_language}>{first.passage_language}" if len(pairs) == 1 else "cross:mixed"


class _Taken:
    """What a batch under construction already holds."""

    def __init__(self, source: PairSource) -> None:
        self.source = source
        self.keys: set[str] = set()
        self.texts: set[str] = set()

    def fits(self, item: Item) -> bool:
        return item.key not in self.keys and self.source.text_key(item.passage_id) not in self.texts

    def add(self, item: Item) -> None:
        self.keys.add(item.key)
        self.texts.add(self.source.text_key(item.passage_id))


class _Pool:
    """The pairs of one language (mono) or one language pair (cross)."""

    def __init__(self, items: list[Item], source: PairSource) -> None:
        self.items = items
        self.source = source
        self.distinct_passages = len({source.text_key(item.passage_id) for item in items})
        self.queue: deque[Item] = deque()

    def reset(self, rng: random.Random) -> None:
        self.queue = deque(rng.sample(self.items, len(self.items)))

    def _refill(self, rng: random.Random) -> None:
        if not self.queue:
            self.queue.extend(rng.sample(self.items, len(self.items)))

    def take(self, count: int, rng: random.Random, taken: _Taken | None = None) -> list[Item]:
        """Up to `count` items that fit the batch; those that do not wait for a later batch."""
        taken = taken or _Taken(self.source)
        picked: list[Item] = []
        skipped: list[Item] = []
        budget = 2 * len(self.items) + 1
        while len(picked) < count and budget > 0:
            self._refill(rng)
            item = self.queue.popleft()
            budget -= 1
            if not taken.fits(item):
                skipped.append(item)
                continue
            picked.append(item)
            taken.add(item)
        self.queue.extendleft(reversed(skipped))
        return picked

    def take_one(self, rng: random.Random, taken: _Taken) -> Item | None:
        """The first of the next few queued items that fits the batch (the others keep their place)."""
        self._refill(rng)
        for position, item in enumerate(self.queue):
            if position >= SCAN:
                return None
            if taken.fits(item):
                del self.queue[position]
                taken.add(item)
                return item
        return None


class BatchSampler:
    def __init__(self, source: PairSource, sampling: SamplingSpec, batch_size: int,
                 hard_negatives: int, seed: int) -> None:
        self.source = source
        self.sampling = sampling
        self.hard_negatives = hard_negatives
        self.seed = seed
        self.strategy = STRATEGIES[sampling.strategy]
        self.part_size = batch_size // 2 if self.strategy.halves(sampling) else batch_size
        self.mixed = sampling.cross_batch == "mixed"
        self.mono = self._eligible({(lang, lang): self._items(lang, lang) for lang in source.languages}, True)
        self.cross = self._eligible({(x, y): self._items(x, y) for x in source.languages
                                     for y in source.languages if x != y}, not self.mixed)
        self._check_pools(batch_size)
        total_pairs = sum(len(pool.items) for pool in self.mono.values())
        self.steps_per_epoch = max(1, math.ceil(total_pairs / batch_size))
        self.set_epoch(0)

    def _items(self, query_language: str, passage_language: str) -> list[Item]:
        positives = self.source.positives[passage_language]
        return [Item(key, query_language, passage_language, positives[key])
                for key in self.source.shared_keys(query_language, passage_language)]

    def _eligible(self, pools: dict[tuple[str, str], list[Item]], whole_batch: bool) -> dict[tuple[str, str], _Pool]:
        """Pools that can serve: a whole batch each (mono, single X-Y), or any item (mixed X-Y)."""
        built = {pair: _Pool(items, self.source) for pair, items in pools.items() if items}
        need = self.part_size if whole_batch else 1
        return {pair: pool for pair, pool in built.items() if pool.distinct_passages >= need}

    def _check_pools(self, batch_size: int) -> None:
        needs = self.strategy.needs(self.sampling)
        needs_mono, needs_cross = MONO in needs, CROSS in needs
        languages = ", ".join(self.source.languages)
        if needs_mono and not self.mono:
            raise DataError(f"no language has enough distinct monolingual training pairs for a batch of "
                            f"{self.part_size} (languages: {languages}); lower train.batch_size or add data")
        if needs_cross and not self.mixed and not self.cross:
            raise DataError(f"no language pair has enough distinct cross-lingual training pairs for a batch of "
                            f"{self.part_size} (languages: {languages}); lower train.batch_size or add data")
        if needs_cross and self.mixed:
            keys = {item.key for pool in self.cross.values() for item in pool.items}
            if len(keys) < self.part_size:
                raise DataError(f"only {len(keys)} question ids exist in two languages or more, too few for a "
                                f"mixed cross-lingual batch of {self.part_size} (languages: {languages}); "
                                "lower train.batch_size or add data")

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
        return tuple(self._batch(kind) for kind in self.strategy.draw(self.sampling, self.rng))

    def _choose(self, pools: list[_Pool]) -> _Pool:
        if self.sampling.language_weighting == "by_size":
            return self.rng.choices(pools, weights=[len(pool.items) for pool in pools])[0]
        return self.rng.choice(pools)

    def _batch(self, kind: Literal["mono", "cross"]) -> Batch:
        taken = _Taken(self.source)
        if kind == "cross" and self.mixed:
            items = self._mixed(taken)
        else:
            pool = self._choose(list((self.mono if kind == "mono" else self.cross).values()))
            items = pool.take(self.part_size, self.rng, taken)
        return Batch(kind, tuple(items), self._hard_negatives(items, taken))

    def _mixed(self, taken: _Taken) -> list[Item]:
        """Each item draws its own language pair, then the next pair of that pool that fits."""
        pools = list(self.cross.values())
        items: list[Item] = []
        attempts = 0
        while len(items) < self.part_size:
            attempts += 1
            if attempts > 50 * self.part_size + 100:
                raise DataError(f"cannot fill a mixed cross-lingual batch of {self.part_size} without repeating a "
                                "question id or a passage; lower train.batch_size")
            item = self._choose(pools).take_one(self.rng, taken)
            if item is not None:
                items.append(item)
        return items

    def _hard_negatives(self, items: list[Item], taken: _Taken) -> tuple[str, ...]:
        if not self.hard_negatives:
            return ()
        chosen: list[str] = []
        for item in items:
            options = [passage for passage in self.source.negatives.get(item.passage_id, ())
                       if self.source.text_key(passage) not in taken.texts]
            for passage in self.rng.sample(options, min(self.hard_negatives, len(options))):
                if self.source.text_key(passage) not in taken.texts:   # two options may share a text
                    chosen.append(passage)
                    taken.texts.add(self.source.text_key(passage))
        return tuple(chosen)
