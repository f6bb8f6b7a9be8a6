from __future__ import annotations

import json

import pytest

from engine.contract.errors import SpecError
from engine.contract.grid import expand_grid
from engine.contract.spec import ExperimentSpec
from engine.contract.validation import load_spec, parse_spec, parse_spec_text


def problems_of(document) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(document)
    return caught.value.lines()


def test_minimal_spec_gets_documented_defaults():
    spec = parse_spec({"name": "demo"})
    assert spec.sampling.strategy == "hybrid" and spec.sampling.alpha == 0.5
    assert spec.loss.temperature == 0.05
    assert spec.encoder.name == "bundled:multilingual-e5-small"
    assert spec.train.dataset == "mlqa-r" and spec.eval.datasets == ("xquad-r",)


def test_round_trip_through_json_is_identity():
    spec = parse_spec({"name": "demo", "train": {"languages": ["en", "de"], "steps": 5},
                       "eval": {"groups": {"a": ["en"], "b": ["de"]}, "languages": ["en", "de"]}})
    assert parse_spec(json.loads(spec.to_json())) == spec


def test_alpha_out_of_range_names_path_and_value():
    assert problems_of({"name": "x", "sampling": {"alpha": 1.5}}) == ["sampling.alpha: must be in [0, 1], got 1.5"]


def test_every_problem_is_reported_with_its_path():
    lines = problems_of({"name": "x", "sampling": {"strategy": "hybird"}, "train": {"batch_size": 1, "lr": "fast"},
                         "colour": "red"})
    assert "colour: unknown field" in lines
    assert any(line.startswith("sampling.strategy: must be one of monolingual") for line in lines)
    assert "train.batch_size: must be in [2, 65536], got 1" in lines
    assert "train.lr: must be a number, got 'fast'" in lines


def test_unknown_key_suggests_the_closest_field():
    assert problems_of({"name": "x", "loss": {"temprature": 0.1}}) == [
        "loss.temprature: unknown field; did you mean 'temperature'?"]


def test_wrong_types_are_rejected():
    lines = problems_of({"name": "x", "loss": {"symmetric": "yes", "hard_negatives": 1.5},
                         "train": {"languages": "en"}})
    assert "loss.symmetric: must be a boolean, got 'yes'" in lines
    assert "loss.hard_negatives: must be an integer, got 1.5" in lines
    assert "train.languages: must be a list, got 'en'" in lines


def test_language_the_dataset_lacks_is_rejected():
    lines = problems_of({"name": "x", "train": {"dataset": "mlqa-r", "languages": ["en", "el"]}})
    assert lines == ["train.languages[1]: mlqa-r has no language 'el' (it has ar, de, en, es, hi, vi, zh)"]


def test_semantic_checks():
    assert problems_of({"name": "x", "train": {"steps": 5, "epochs": 1}}) == [
        "train.steps: set train.steps or train.epochs, not both"]
    assert problems_of({"name": "x", "eval": {"metrics": ["map", "ndcg"]}})[0].startswith("eval.metrics[1]:")
    assert problems_of({"name": "x", "train": {"languages": ["en"]}}) == [
        "train.languages: hybrid sampling needs at least 2 languages"]
    assert problems_of({"name": "bad name!"})[0].startswith("name:")
    assert problems_of({"sampling": {}}) == ["name: is required"]


def test_malformed_json_reports_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x",\n "train": {"steps": }}')
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(caught.value).startswith(f"{path}: line 2 column 21: malformed JSON")
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.json")
    with pytest.raises(SpecError, match=r"\(top level\): must be an object"):
        parse_spec_text("[1, 2]")


def test_grid_expands_into_named_validated_runs():
    spec = parse_spec({"name": "sweep", "grid": {"sampling.alpha": [0.25, 0.75],
                                                 "sampling.strategy": ["hybrid", "multitask"]}})
    runs = expand_grid(spec)
    assert [run.name for run in runs] == ["sweep-alpha=0.25-strategy=hybrid", "sweep-alpha=0.25-strategy=multitask",
                                          "sweep-alpha=0.75-strategy=hybrid", "sweep-alpha=0.75-strategy=multitask"]
    assert runs[1].sampling.strategy == "multitask" and runs[1].sampling.alpha == 0.25
    assert all(run.grid == {} for run in runs)
    assert len({run.config_hash() for run in runs}) == 4


def test_grid_errors_name_the_combination_and_field():
    spec = parse_spec({"name": "sweep", "grid": {"sampling.alpha": [0.5, 2.0]}})
    with pytest.raises(SpecError) as caught:
        expand_grid(spec)
    assert caught.value.lines() == ["grid (sampling.alpha=2) -> sampling.alpha: must be in [0, 1], got 2"]
    with pytest.raises(SpecError, match="grid.sampling.alfa: no such field"):
        expand_grid(parse_spec({"name": "s", "grid": {"sampling.alfa": [0.5]}}))


def test_config_hash_ignores_names_but_not_settings():
    first = parse_spec({"name": "a"})
    assert first.config_hash() == parse_spec({"name": "b", "description": "same"}).config_hash()
    assert first.config_hash() != parse_spec({"name": "a", "train": {"seed": 1}}).config_hash()


def test_shipped_experiment_specs_are_valid():
    from conftest import ROOT

    paths = sorted((ROOT / "experiments").glob("**/*.json"))
    assert len(paths) >= 5
    for path in paths:
        spec = load_spec(path)
        assert isinstance(spec, ExperimentSpec)
        assert expand_grid(spec)


def test_training_and_evaluating_on_one_dataset_needs_saying_so():
    lines = problems_of({"name": "x", "train": {"dataset": "mlqa-r"}, "eval": {"datasets": ["xquad-r", "mlqa-r"]}})
    assert lines == ["eval.datasets[1]: mlqa-r is also train.dataset: evaluating on the training data is refused "
                     "(set eval.allow_train_overlap: true to allow it; its tables are then marked as seen in training)"]
    assert parse_spec({"name": "x", "eval": {"datasets": ["mlqa-r"], "allow_train_overlap": True}})
    assert parse_spec({"name": "x", "train": {"steps": 0}, "eval": {"datasets": ["mlqa-r"]}})  # zero-shot: no training


def test_cross_batch_choices_and_the_multitask_default():
    assert problems_of({"name": "x", "sampling": {"cross_batch": "pairs"}}) == [
        "sampling.cross_batch: must be one of mixed, single; got 'pairs'"]
    assert parse_spec({"name": "x"}).sampling.multitask_batch == "full"


def test_the_spec_field_reference_is_the_one_the_code_generates():
    """docs/spec.md is written from the spec's dataclasses (`make docs`); editing a field without
    regenerating it fails here, so the page cannot drift from what the validator accepts."""
    from conftest import ROOT
    from engine.contract.spec_reference import render
    from engine.contract.spec import leaf_fields

    page = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    assert page == render(), "docs/spec.md is stale: run `make docs`"
    for leaf in leaf_fields():
        assert f"`{leaf.path}`" in page, leaf.path
