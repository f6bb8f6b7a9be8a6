"""Reader for the LAReQA layout (XQuAD-R, MLQA-R).

Each `<lang>.json` is SQuAD v1.1 plus `sentence_breaks` ([start, end) character offsets
into `context`). Candidates are the sentences cut at those breaks (never the `sentences`
field: one paragraph of XQuAD-R's tr.json disagrees with its context). A question's
relevant candidate is the sentence holding `answers[0].answer_start`; the question `id`
is shared by the translations of a question and is the cross-lingual key.

A slice (`max_questions`, `max_queries`) is a seeded sample of question ids spread over the
articles — round-robin over the articles in a shuffled order, a shuffled question from each
— and every language keeps the sampled ids it has (all of them on XQuAD-R, which is
parallel). Never the first N: on XQuAD-R the first 60 ids are five paragraphs of one article.
"""

from __future__ import annotations

import bisect
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from engine.contract import catalog
from engine.contract.errors import DataError


@dataclass
class LareqaLanguage:
    """One language of a LAReQA-layout dataset, as parallel lists."""

    dataset: str
    language: str
    question_ids: list[str] = field(default_factory=list)
    question_article: list[int] = field(default_factory=list)      # the article (in file order) of each question
    questions: list[str] = field(default_factory=list)
    answer_candidate: list[int] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    candidate_paragraph: list[int] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    paragraph_candidates: list[range] = field(default_factory=list)

    def candidate_text(self, index: int, with_paragraph: bool) -> str:
        sentence = self.candidates[index]
        if not with_paragraph:
            return sentence
        return f"{sentence}\n{self.paragraphs[self.candidate_paragraph[index]]}"

    def restricted(self, keys: set[str]) -> LareqaLanguage:
        """Only the questions whose id is in `keys`, with only their paragraphs' candidates."""
        keep = [index for index, key in enumerate(self.question_ids) if key in keys]
        paragraphs = sorted({self.candidate_paragraph[self.answer_candidate[i]] for i in keep})
        subset = LareqaLanguage(self.dataset, self.language)
        remap: dict[int, int] = {}
        for paragraph in paragraphs:
            first = len(subset.candidates)
            for old in self.paragraph_candidates[paragraph]:
                remap[old] = len(subset.candidates)
                subset.candidates.append(self.candidates[old])
                subset.candidate_paragraph.append(len(subset.paragraphs))
            subset.paragraphs.append(self.paragraphs[paragraph])
            subset.paragraph_candidates.append(range(first, len(subset.candidates)))
        for index in keep:
            subset.question_ids.append(self.question_ids[index])
            subset.question_article.append(self.question_article[index])
            subset.questions.append(self.questions[index])
            subset.answer_candidate.append(remap[self.answer_candidate[index]])
        return subset


def representative_slice(corpora: dict[str, LareqaLanguage], count: int, seed: int,
                         what: str = "the slice") -> dict[str, LareqaLanguage]:
    """`count` question ids sampled over the articles (see the module docstring), the same ids
    in every language that has them; a DataError when the data has fewer ids."""
    article_of: dict[str, tuple[str, int]] = {}
    for corpus in corpora.values():
        for key, article in zip(corpus.question_ids, corpus.question_article):
            article_of.setdefault(key, (corpus.language, article))
    if count > len(article_of):
        dataset = next(iter(corpora.values())).dataset if corpora else "the dataset"
        raise DataError(f"{what}: {count} questions is more than the {len(article_of)} question ids of {dataset}")
    rng = random.Random(seed)
    by_article: dict[tuple[str, int], list[str]] = {}
    for key, article in article_of.items():
        by_article.setdefault(article, []).append(key)
    articles = list(by_article)
    rng.shuffle(articles)
    for article in articles:
        rng.shuffle(by_article[article])
    chosen: list[str] = []
    while len(chosen) < count:
        for article in articles:
            if by_article[article] and len(chosen) < count:
                chosen.append(by_article[article].pop())
    keys = set(chosen)
    return {language: corpus.restricted(keys) for language, corpus in corpora.items()}


def missing_data_message(dataset: str, spec_data_dir: str | None) -> str:
    looked = "; ".join(f"{label} {path / dataset}" for label, path in catalog.data_dir_candidates(spec_data_dir))
    return (f"dataset {dataset!r} not found (looked in: {looked}); set data_dir in the spec or "
            f"${catalog.DATA_DIR_ENV}, or run `hbt-tui data fetch {dataset}`")


def dataset_dir(dataset: str, spec_data_dir: str | None) -> Path:
    found = catalog.resolve_dataset_dir(dataset, spec_data_dir)
    if found is None:
        raise DataError(missing_data_message(dataset, spec_data_dir))
    return found


def read_language(path: Path, dataset: str, language: str) -> LareqaLanguage:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing file for language {language!r} of {dataset}") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    parsed = LareqaLanguage(dataset, language)
    try:
        for number, article in enumerate(document["data"]):
            for paragraph in article["paragraphs"]:
                _add_paragraph(parsed, paragraph, number)
    except (KeyError, TypeError, IndexError) as error:
        raise DataError(f"{path}: not in the LAReQA layout (missing or bad {error})") from None
    return parsed


def _add_paragraph(parsed: LareqaLanguage, paragraph: dict, article: int) -> None:
    context: str = paragraph["context"]
    breaks = paragraph["sentence_breaks"]
    first = len(parsed.candidates)
    paragraph_index = len(parsed.paragraphs)
    parsed.paragraphs.append(context)
    for start, end in breaks:
        parsed.candidates.append(context[start:end].strip())
        parsed.candidate_paragraph.append(paragraph_index)
    parsed.paragraph_candidates.append(range(first, len(parsed.candidates)))
    starts = [start for start, _ in breaks]
    for qa in paragraph["qas"]:
        answer_start = qa["answers"][0]["answer_start"]
        # the sentence that holds the answer start: the last one starting at or before it
        sentence = max(bisect.bisect_right(starts, answer_start) - 1, 0)
        parsed.question_ids.append(str(qa["id"]))
        parsed.question_article.append(article)
        parsed.questions.append(qa["question"])
        parsed.answer_candidate.append(first + sentence)


def load_lareqa(dataset: str, languages: tuple[str, ...] | None, data_dir: str | None,
                max_questions: int | None = None, slice_seed: int = 0,
                what: str = "the slice") -> dict[str, LareqaLanguage]:
    """Read the given languages (all the dataset has when None) of a LAReQA dataset;
    `max_questions` keeps a representative slice of that many question ids."""
    known = catalog.dataset_languages(dataset)
    if known is None or dataset not in catalog.LAREQA_DATASETS:
        raise DataError(f"{dataset!r} is not a LAReQA-layout dataset (known: {', '.join(catalog.LAREQA_DATASETS)})")
    for language in languages or ():
        if language not in known:
            raise DataError(f"{dataset} has no language {language!r} (it has {', '.join(known)})")
    root = dataset_dir(dataset, data_dir)
    corpora = {language: read_language(root / f"{language}.json", dataset, language)
               for language in (languages or known)}
    if max_questions is None:
        return corpora
    return representative_slice(corpora, max_questions, slice_seed, what)
