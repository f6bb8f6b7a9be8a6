"""What a run needs that can be checked before it starts: data on disk and large enough for a
batch, a model whose configuration suits the spec, the device and precision it asks for.

The training subprocess runs these checks before it touches its run folder; the parent runs
them for a whole grid through `python -m engine.preflight` before it creates any run folder, so
bad input never starts a run. torch is imported only when the spec asks for a GPU or a
reduced precision.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from engine.contract import catalog
from engine.contract.errors import DataError, ModelError, UserError
from engine.contract.layout import read_json_object
from engine.contract.model_names import (BUNDLED_PREFIX, check_encoder_name, check_model_folder, hub_unreachable,
                                        looks_like_path)
from engine.contract.spec import ExperimentSpec

HUB_PROBE_SECONDS = 5.0
POSITION_OFFSETS = {"xlm-roberta": 2, "roberta": 2, "camembert": 2}  # positions taken by the padding index


def check_runnable(spec: ExperimentSpec, train: bool = True) -> dict:
    """Every check a run can fail before it starts; returns what it learnt (model positions,
    device), raises a UserError naming the field otherwise."""
    check_data_dir(spec.data_dir)
    check_datasets(spec, train)
    facts = check_model(spec)
    facts.update(check_device(spec))
    if train and spec.train.steps != 0:
        facts.update(check_batches(spec))
    return facts


# --- data ------------------------------------------------------------------------------------------

def check_data_dir(data_dir: str | None) -> None:
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        what = "is not a directory" if Path(data_dir).expanduser().exists() else "does not exist"
        raise DataError(f"data_dir: {data_dir} {what}")


def check_lareqa(dataset: str, languages: tuple[str, ...] | None, data_dir: str | None) -> None:
    from engine.child.data.lareqa import dataset_dir

    root = dataset_dir(dataset, data_dir)
    for language in languages or catalog.LAREQA_DATASETS[dataset]:
        if not (root / f"{language}.json").is_file():
            raise DataError(f"{root / f'{language}.json'}: missing file for language {language!r} of {dataset}")


def check_datasets(spec: ExperimentSpec, train: bool = True) -> None:
    from engine.child.data.lareqa import dataset_dir

    if train and spec.train.steps != 0 and spec.train.dataset in catalog.LAREQA_DATASETS:
        check_lareqa(spec.train.dataset, spec.train.languages, spec.data_dir)
    for dataset in spec.eval.datasets:
        if dataset in catalog.LAREQA_DATASETS:
            check_lareqa(dataset, spec.eval.languages, spec.data_dir)
            if spec.eval.max_queries is not None:
                check_eval_slice(dataset, spec.eval.languages, spec.data_dir, spec.eval.max_queries,
                                 spec.eval.slice_seed)
        elif dataset == "miracl":
            dataset_dir(dataset, spec.data_dir)
            check_miracl_pool(spec, dataset)
        elif dataset.startswith(catalog.HF_PREFIX):          # hf:miracl streams its corpus: always the hub
            check_hub_dataset(f"eval.datasets: {dataset}", "miracl/miracl", streaming=True)
            check_miracl_pool(spec, dataset)
    if train and spec.train.steps != 0 and spec.train.dataset.startswith(catalog.HF_PREFIX) and spec.train.hf:
        check_hub_dataset(f"train.dataset: {spec.train.dataset}", spec.train.hf.path, streaming=False)


def check_miracl_pool(spec: ExperimentSpec, dataset: str) -> None:
    """The pooled protocol's pool exists and has every language evaluated, before any training
    (a pool that fails at the final evaluation would cost the run). A pool file is read; a pool
    on the hub is asked for its configurations, not downloaded."""
    options = spec.eval.miracl
    if options.protocol != "pooled" or not options.pool:
        return
    from engine.child.eval_miracl import check_judgements, miracl_languages, pools_of

    languages, load = miracl_languages(spec, dataset)
    if not options.pool.startswith("hf:"):
        pools, _ = pools_of(spec, languages)             # its split, every language there
        if dataset == "miracl":                          # local judgements are cheap to read: the same ones
            for language in languages:
                check_judgements(pools[language], load(language))
        return
    name, _, revision = options.pool[3:].partition("@")
    try:
        import datasets

        configurations = set(datasets.get_dataset_config_names(name, revision=revision or None))
    except Exception as error:  # noqa: BLE001 - offline, no such dataset: the hub's errors vary
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"eval.miracl.pool: cannot read {options.pool}'s configurations: {first}") from None
    absent = [language for language in languages if f"corpus-{language}" not in configurations]
    if absent:
        raise DataError(f"eval.miracl.pool: {options.pool} has no configuration "
                        f"{', '.join(f'corpus-{language}' for language in absent)}")


def datasets_cached(path: str) -> bool:
    """Whether `datasets` has a copy of the hub dataset `path` in its cache."""
    root = Path(os.environ.get("HF_DATASETS_CACHE") or Path(os.environ.get("HF_HOME") or
                                                             Path.home() / ".cache" / "huggingface") / "datasets")
    return (root / path.replace("/", "___")).is_dir()


def check_hub_dataset(what: str, path: str, streaming: bool) -> None:
    """A Hugging Face dataset the run will load: a local folder, a cached copy (unless it is
    streamed), or a reachable hub — refused in seconds, not after the run has trained."""
    if Path(path).expanduser().is_dir():
        return
    if not streaming and datasets_cached(path):
        return
    offline = [name for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
               if os.environ.get(name, "").lower() in ("1", "true", "yes")]
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    reason = f"{offline[0]} is set" if offline else hub_unreachable(endpoint)
    if reason:
        copy = "it is streamed from the hub" if streaming else "it is not in the local datasets cache"
        raise DataError(f"{what}: needs the Hugging Face hub ({endpoint}), which cannot be used here ({reason}), "
                        f"and {copy}")


@lru_cache(maxsize=8)
def _pair_source(dataset: str, languages: tuple[str, ...] | None, data_dir: str | None,
                 max_questions: int | None, slice_seed: int, passage: str):
    from engine.child.data.lareqa import load_lareqa
    from engine.child.data.pairs import lareqa_pairs

    corpora = load_lareqa(dataset, languages, data_dir, max_questions, slice_seed, "train.max_questions")
    return lareqa_pairs(corpora, passage == "sentence+paragraph")


@lru_cache(maxsize=8)
def check_eval_slice(dataset: str, languages: tuple[str, ...] | None, data_dir: str | None,
                     max_queries: int, slice_seed: int) -> None:
    """An evaluation slice no larger than the data (reads the files once per distinct slice)."""
    from engine.child.data.lareqa import load_lareqa

    load_lareqa(dataset, languages, data_dir, max_queries, slice_seed, "eval.max_queries")


def check_batches(spec: ExperimentSpec) -> dict:
    """The sampler can fill every kind of batch the strategy draws (LAReQA training data)."""
    from engine.child.sampling import BatchSampler

    train = spec.train
    if train.dataset not in catalog.LAREQA_DATASETS:
        return {}
    source = _pair_source(train.dataset, train.languages, spec.data_dir, train.max_questions, train.slice_seed,
                          train.passage)
    try:
        sampler = BatchSampler(source, spec.sampling, train.batch_size, spec.loss.hard_negatives, train.seed)
    except DataError as error:
        raise DataError(f"train.batch_size: {error}") from None
    return {"training_pairs": sum(len(pool.items) for pool in sampler.mono.values()),
            "steps_per_epoch": sampler.steps_per_epoch}


# --- the model -------------------------------------------------------------------------------------

def check_model(spec: ExperimentSpec) -> dict:
    """The encoder exists and can take the spec's lengths: its configuration is read from the
    bundled file, a local folder or the Hugging Face cache (the hub only when reachable)."""
    name = spec.encoder.name
    check_encoder_name(name)
    config = model_config(name)
    if config.get("auto_map"):
        raise ModelError(f"encoder.name: {name!r} needs custom code (trust_remote_code), which hbt-tui never runs")
    if "auto_map" in config:
        raise ModelError(f"encoder.name: {name!r}: config.json has an empty auto_map ({json.dumps(config['auto_map'])}); "
                         "remove the entry")
    positions_value = config.get("max_position_embeddings")
    if positions_value is not None and (not isinstance(positions_value, int) or isinstance(positions_value, bool)):
        raise ModelError(f"encoder.name: {name!r}: config.json's max_position_embeddings is not an integer")
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int):
        usable = positions - POSITION_OFFSETS.get(config.get("model_type", ""), 0)
        for field in ("max_query_length", "max_passage_length"):
            length = getattr(spec.encoder, field)
            if length > usable:
                raise ModelError(f"encoder.{field}: {length} is longer than {name!r} can encode ({usable} positions)")
    usable = positions - POSITION_OFFSETS.get(config.get("model_type", ""), 0) if isinstance(positions, int) else None
    return {"model_type": config.get("model_type"), "positions": usable}


def model_config(name: str) -> dict:
    if name.startswith(BUNDLED_PREFIX):
        from engine.child.bundled import bundled_config

        return bundled_config(name[len(BUNDLED_PREFIX):])
    if looks_like_path(name):
        return _read_config(check_model_folder(name) / "config.json", name)
    return _read_config(Path(hub_file(name, "config.json")), name)


def _read_config(path: Path, name: str) -> dict:
    return read_json_object(path, lambda why: ModelError(f"encoder {name!r}: {path.name}: {why}"))


def hub_file(name: str, filename: str) -> str:
    """A file of a hub model: from the local cache, else downloaded, failing within seconds
    (not after the hub client's minute of retries) when the hub cannot be reached."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(name, filename)
    if isinstance(cached, str):
        return cached
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelError(f"encoder {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    reason = hub_unreachable(endpoint)
    if reason:
        raise ModelError(f"encoder {name!r} is not in the local Hugging Face cache and the hub ({endpoint}) "
                         f"cannot be reached: {reason}")
    try:
        return hf_hub_download(name, filename, etag_timeout=HUB_PROBE_SECONDS)
    except Exception as error:  # gated, missing, renamed: the user needs one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"encoder {name!r}: cannot get {filename} from the hub: {first}") from None


# --- device and precision --------------------------------------------------------------------------

def check_device(spec: ExperimentSpec) -> dict:
    train = spec.train
    if spec.eval.cache:
        from engine.contract.embedding_files import limit_bytes

        limit_bytes()   # a malformed HBT_EMBEDDING_CACHE_MB is refused before the run starts
    if spec.eval.precision in ("bf16", "fp16"):
        from engine.child.runtime import pick_device, pick_eval_precision

        pick_eval_precision(spec.eval.precision, pick_device(train.device))
    if train.device != "cuda" and train.precision in ("auto", "fp32"):
        return {}
    import torch

    has_cuda = torch.cuda.is_available()
    if train.device == "cuda" and not has_cuda:
        raise UserError("train.device: 'cuda' was asked for but no CUDA device is visible")
    if train.precision == "fp16" and not has_cuda:
        raise UserError("train.precision: fp16 needs a CUDA device; use bf16 or fp32 on a CPU")
    if train.precision == "bf16" and has_cuda and train.device != "cpu" and not torch.cuda.is_bf16_supported():
        raise UserError("train.precision: this GPU has no bf16; use fp16 or fp32")
    return {"cuda": has_cuda}


# --- python -m engine.preflight ------------------------------------------------------------------------

def check_documents(documents: list[dict]) -> list[dict]:
    """One verdict per spec document: {"ok": true, "facts": {...}} or {"error": "..."}."""
    from engine.contract.validation import parse_spec

    verdicts = []
    for document in documents:
        try:
            spec = parse_spec(document)
            verdicts.append({"ok": True, "facts": check_runnable(spec)})
        except UserError as error:
            verdicts.append({"error": str(error)})
    return verdicts
