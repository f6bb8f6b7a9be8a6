from __future__ import annotations

import json

import pytest

from engine.child.data.lareqa import load_lareqa
from engine.child.data.pairs import hf_pairs, lareqa_pairs
from engine.contract.errors import DataError
from engine.contract.spec import HFSourceSpec

# ../shared/data/README.md
XQUAD_CANDIDATES = {"ar": 1222, "de": 1276, "el": 1234, "en": 1180, "es": 1215, "hi": 1244, "ru": 1219,
                    "th": 852, "tr": 1167, "vi": 1209, "zh": 1196}
MLQA_COUNTS = {"ar": (517, 2545), "de": (512, 2362), "en": (1148, 6264), "es": (500, 1787),
               "hi": (507, 2426), "vi": (511, 2828), "zh": (504, 2322)}


def test_xquad_r_counts_match_the_data_readme(data_dir):
    corpora = load_lareqa("xquad-r", None, str(data_dir))
    assert {lang: len(c.candidates) for lang, c in corpora.items()} == XQUAD_CANDIDATES
    assert {len(c.questions) for c in corpora.values()} == {1190}
    assert {len(c.paragraphs) for c in corpora.values()} == {240}
    assert sum(len(c.candidates) for c in corpora.values()) == 13014
    assert len({frozenset(c.question_ids) for c in corpora.values()}) == 1  # 11-way parallel


def test_mlqa_r_counts_and_parallelism_match_the_data_readme(data_dir):
    corpora = load_lareqa("mlqa-r", None, str(data_dir))
    assert {lang: (len(c.questions), len(c.candidates)) for lang, c in corpora.items()} == MLQA_COUNTS
    assert sum(len(c.candidates) for c in corpora.values()) == 20534
    languages_per_id: dict[str, int] = {}
    for corpus in corpora.values():
        for key in corpus.question_ids:
            languages_per_id[key] = languages_per_id.get(key, 0) + 1
    assert len(languages_per_id) == 1148
    assert sorted(languages_per_id.values()).count(2) == 65
    assert sorted(languages_per_id.values()).count(3) == 263
    assert sorted(languages_per_id.values()).count(4) == 820
    assert set(languages_per_id) == set(corpora["en"].question_ids)


def test_relevant_candidate_holds_the_answer(data_dir):
    corpus = load_lareqa("xquad-r", ("en",), str(data_dir))["en"]
    raw = json.loads((data_dir / "xquad-r" / "en.json").read_text())
    answers = [qa["answers"][0]["text"] for article in raw["data"] for p in article["paragraphs"] for qa in p["qas"]]
    inside = sum(answer in corpus.candidates[index] for answer, index in zip(answers, corpus.answer_candidate))
    assert inside / len(answers) > 0.97  # the rest cross a sentence break


def test_slice_keeps_questions_and_their_paragraphs(data_dir):
    corpus = load_lareqa("mlqa-r", ("de",), str(data_dir), max_questions=10)["de"]
    assert len(corpus.questions) == 10
    assert all(corpus.candidates[i] for i in corpus.answer_candidate)
    assert len(corpus.paragraphs) <= 10 and len(corpus.candidates) < 2362
    assert len(corpus.candidates) == sum(len(r) for r in corpus.paragraph_candidates)
    for question, answer in zip(corpus.questions, corpus.answer_candidate):
        assert corpus.candidate_paragraph[answer] < len(corpus.paragraphs)


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HBT_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HBT_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError) as caught:
        load_lareqa("xquad-r", ("en",), None)
    message = str(caught.value)
    assert "nowhere/xquad-r" in message and "cache/data/xquad-r" in message
    assert "hbt-tui data fetch xquad-r" in message and "\n" not in message


def test_unknown_language_and_corrupt_file(tmp_path):
    with pytest.raises(DataError, match="has no language 'fr'"):
        load_lareqa("mlqa-r", ("fr",), None)
    (tmp_path / "mlqa-r").mkdir()
    (tmp_path / "mlqa-r" / "en.json").write_text('{"data": [\n  {"paragraphs": [}')
    with pytest.raises(DataError, match=r"mlqa-r/en.json:2: not valid JSON"):
        load_lareqa("mlqa-r", ("en",), str(tmp_path))


def test_pairs_join_questions_and_answers_across_languages(data_dir):
    corpora = load_lareqa("mlqa-r", ("en", "de"), str(data_dir))
    source = lareqa_pairs(corpora, with_paragraph=False)
    shared = source.shared_keys("de", "en")
    assert len(shared) == 512  # every id has an English version
    key = shared[0]
    de = corpora["de"]
    assert source.queries["de"][key] == de.questions[de.question_ids.index(key)]
    en = corpora["en"]
    assert source.passages[source.positives["en"][key]] == en.candidates[en.answer_candidate[en.question_ids.index(key)]]
    # hard negatives are the other sentences of the same paragraph
    positive = source.positives["en"][key]
    paragraph = en.candidate_paragraph[int(positive.split(":")[1])]
    negatives = source.negatives[positive]
    assert positive not in negatives
    assert all(en.candidate_paragraph[int(n.split(":")[1])] == paragraph for n in negatives)


def test_passage_with_paragraph_context(data_dir):
    corpora = load_lareqa("xquad-r", ("en",), str(data_dir), max_questions=3)
    source = lareqa_pairs(corpora, with_paragraph=True)
    text = source.passages[source.positives["en"][corpora["en"].question_ids[0]]]
    sentence, context = text.split("\n", 1)
    assert sentence in context


def _write_hf_folder(root, rows_by_language):
    """A dataset folder laid out like a hub repo: one config per language, declared in README.md."""
    configs = []
    for language, rows in rows_by_language.items():
        (root / language).mkdir(parents=True)
        with open(root / language / "train.jsonl", "w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        configs.append(f"- config_name: {language}\n  data_files:\n  - split: train\n    path: {language}/train.jsonl\n")
    (root / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n")


def test_hugging_face_source_reads_pairs_per_language(tmp_path):
    rows = {"en": [{"qid": "1", "query": "capital of France", "positive": "Paris is the capital.", "negative": "Rome."},
                   {"qid": "2", "query": "largest ocean", "positive": "The Pacific.", "negative": "A lake."}],
            "de": [{"qid": "1", "query": "Hauptstadt Frankreichs", "positive": "Paris ist die Hauptstadt.",
                    "negative": "Rom."}]}
    _write_hf_folder(tmp_path / "pairs", rows)
    spec = HFSourceSpec(path=str(tmp_path / "pairs"), config="{language}", negative_field="negative", id_field="qid")
    source = hf_pairs(spec, ("en", "de"))
    assert source.shared_keys("de", "en") == ["1"]
    assert source.queries["en"]["2"] == "largest ocean"
    positive = source.positives["de"]["1"]
    assert source.passages[positive] == "Paris ist die Hauptstadt."
    assert [source.passages[n] for n in source.negatives[positive]] == ["Rom."]


def test_hugging_face_source_errors_are_one_line(tmp_path):
    spec = HFSourceSpec(path=str(tmp_path / "absent"), config=None)
    with pytest.raises(DataError, match="cannot load Hugging Face dataset") as caught:
        hf_pairs(spec, ("en",))
    assert "\n" not in str(caught.value)
    _write_hf_folder(tmp_path / "bad", {"en": [{"question": "q", "positive": "p"}]})
    with pytest.raises(DataError, match=r"row 0: no field 'query'"):
        hf_pairs(HFSourceSpec(path=str(tmp_path / "bad")), ("en",))


def test_data_fetch_error_is_one_line_and_leaves_nothing(tmp_path):
    import subprocess
    import sys

    from runs_helpers import env

    variables = env()
    variables["HBT_DATA_URL"] = "http://127.0.0.1:9"  # nothing listens there: refused at once
    result = subprocess.run([sys.executable, "-m", "engine.cli", "data", "fetch", "xquad-r", "--to", str(tmp_path)],
                            capture_output=True, text=True, env=variables, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: cannot download http://127.0.0.1:9/master/xquad-r/ar.json: [Errno 111] Connection refused"]
    assert list(tmp_path.iterdir()) == []
    result = subprocess.run([sys.executable, "-m", "engine.cli", "data", "fetch", "squad"], capture_output=True,
                            text=True, env=variables, timeout=60)
    assert result.returncode == 2 and "cannot fetch 'squad'" in result.stderr


def test_slices_are_seeded_samples_spread_over_articles(data_dir):
    from engine.child.data.lareqa import load_lareqa as load

    full = load("xquad-r", ("en", "de"), str(data_dir))["en"]
    article_of = dict(zip(full.question_ids, full.question_article))
    first_sixty = {article_of[key] for key in full.question_ids[:60]}
    sliced = load("xquad-r", ("en", "de"), str(data_dir), max_questions=60)
    assert len(first_sixty) == 1                                  # the first N ids: one article
    assert len({article_of[key] for key in sliced["en"].question_ids}) >= 40
    assert set(sliced["en"].question_ids) == set(sliced["de"].question_ids)   # the same ids in every language
    assert len(sliced["en"].question_ids) == 60
    again = load("xquad-r", ("en",), str(data_dir), max_questions=60)["en"]
    other = load("xquad-r", ("en",), str(data_dir), max_questions=60, slice_seed=1)["en"]
    assert set(again.question_ids) == set(sliced["en"].question_ids) != set(other.question_ids)
    with pytest.raises(DataError, match="eval.max_queries: 5000 questions is more than the 1190 question ids"):
        load("xquad-r", ("en",), str(data_dir), max_questions=5000, what="eval.max_queries")
