"""Training pairs: (question in X, answer passage in Y) for keys present in both X and Y.

A `PairSource` holds, per language, each key's question and positive passage id, the
passage texts, and for each positive the passages that make hard negatives for it (the
other sentences of its paragraph in LAReQA data; the given negatives in HF data). The
samplers only draw keys and languages; texts are looked up when a batch is collated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from engine.child.data.lareqa import LareqaLanguage
from engine.contract.errors import DataError
from engine.contract.spec import HFSourceSpec


@dataclass
class PairSource:
    languages: tuple[str, ...]
    queries: dict[str, dict[str, str]] = field(default_factory=dict)      # language -> key -> question
    positives: dict[str, dict[str, str]] = field(default_factory=dict)    # language -> key -> passage id
    passages: dict[str, str] = field(default_factory=dict)               # passage id -> text
    negatives: dict[str, tuple[str, ...]] = field(default_factory=dict)  # passage id -> hard negatives
    _text_keys: dict[str, str] = field(default_factory=dict, repr=False)

    def text_key(self, passage_id: str) -> str:
        """The passage's text, normalised (case, spacing): two passages with the same key are
        the same passage for a batch, whatever their ids or languages."""
        key = self._text_keys.get(passage_id)
        if key is None:
            key = self._text_keys[passage_id] = " ".join(self.passages[passage_id].casefold().split())
        return key

    def keys(self, language: str) -> list[str]:
        return list(self.queries[language])

    def shared_keys(self, query_language: str, passage_language: str) -> list[str]:
        targets = self.positives[passage_language]
        return [key for key in self.queries[query_language] if key in targets]


def lareqa_pairs(corpora: dict[str, LareqaLanguage], with_paragraph: bool) -> PairSource:
    source = PairSource(tuple(corpora))
    for language, corpus in corpora.items():
        ids = [f"{language}:{index}" for index in range(len(corpus.candidates))]
        source.queries[language] = dict(zip(corpus.question_ids, corpus.questions))
        source.positives[language] = {key: ids[answer] for key, answer in
                                      zip(corpus.question_ids, corpus.answer_candidate)}
        for index, passage_id in enumerate(ids):
            source.passages[passage_id] = corpus.candidate_text(index, with_paragraph)
        for answer in set(corpus.answer_candidate):
            siblings = corpus.paragraph_candidates[corpus.candidate_paragraph[answer]]
            source.negatives[ids[answer]] = tuple(ids[other] for other in siblings if other != answer)
    return source


def _passage_id(language: str, text: str) -> str:
    return f"{language}:{hashlib.blake2b(text.encode(), digest_size=8).hexdigest()}"


def hf_pairs(spec: HFSourceSpec, languages: tuple[str, ...]) -> PairSource:
    """Query-passage pairs from a Hugging Face dataset, one config per language.

    `spec.path` is a hub name or a local folder (`datasets.load_dataset` semantics);
    `spec.config` is formatted with the language. The cross-lingual key is `id_field`,
    or the row number for datasets whose languages are row-aligned translations (mMARCO).
    """
    source = PairSource(languages)
    for language in languages:
        rows = _load_rows(spec, language)
        queries, positives = source.queries.setdefault(language, {}), source.positives.setdefault(language, {})
        for number, row in enumerate(rows):
            try:
                key = str(row[spec.id_field]) if spec.id_field else str(number)
                query, positive = row[spec.query_field], row[spec.positive_field]
            except KeyError as error:
                raise DataError(f"{spec.path} ({language}) row {number}: no field {error}") from None
            if key in queries:
                continue
            passage_id = _passage_id(language, positive)
            queries[key], positives[key] = query, passage_id
            source.passages[passage_id] = positive
            if spec.negative_field and row.get(spec.negative_field):
                negative_id = _passage_id(language, row[spec.negative_field])
                source.passages[negative_id] = row[spec.negative_field]
                source.negatives[passage_id] = (*source.negatives.get(passage_id, ()), negative_id)
    return source


def _load_rows(spec: HFSourceSpec, language: str):
    import datasets

    config = spec.config.format(language=language) if spec.config else None
    split = f"{spec.split}[:{spec.max_rows}]" if spec.max_rows else spec.split
    try:
        return datasets.load_dataset(spec.path, config, split=split)
    except Exception as error:  # datasets raises many types; the user needs one line
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot load Hugging Face dataset {spec.path!r} (config {config!r}): {message}") from None
