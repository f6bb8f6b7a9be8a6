"""The experiment spec: frozen dataclasses read from JSON, strictly validated.

A spec names one experiment: encoder x batch-sampling strategy x loss x languages, how to
train it and how to evaluate it. `load_spec` / `parse_spec` turn JSON into an
`ExperimentSpec` or raise `SpecError` naming the JSON path of every bad field
(`sampling.alpha: must be in [0, 1], got 1.5`). A `grid` sweeps dotted fields and
`expand_grid` turns one spec into many runs (see `engine.contract.grid`). Stdlib only: the UI
validates as the user types.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from engine.contract import arms

BUNDLED_ENCODER = "bundled:multilingual-e5-small"
STRATEGIES = tuple(arms.STRATEGIES)        # the names, in the table's order
MAX_STEPS = 10**9                   # every count of steps is bounded: a billion steps is no run anyone waits for


def _range(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> dict:
    return {"range": (low, high, low_open)}


@dataclass(frozen=True)
class EncoderSpec:
    name: str = BUNDLED_ENCODER                             # a model folder, hub name or bundled:…
    pooling: Literal["mean", "cls"] = "mean"                # how token vectors become one embedding
    max_query_length: int = field(default=64, metadata=_range(4, 8192))  # tokens
    max_passage_length: int = field(default=128, metadata=_range(4, 8192))  # tokens
    query_prefix: str = "query: "                           # prepended to every query (e5's convention)
    passage_prefix: str = "passage: "                       # prepended to every passage
    freeze_word_embeddings: bool = False                    # keep the word-embedding table fixed while training


@dataclass(frozen=True)
class SamplingSpec:
    # how a batch is drawn (docs/method.md)
    strategy: Literal["monolingual", "crosslingual", "hybrid", "multitask"] = "hybrid"
    alpha: float = field(default=0.5, metadata=_range(0, 1))  # hybrid: the share of monolingual batches
    mono_weight: float = field(default=0.5, metadata=_range(0, 1000))  # multitask: the monolingual objective's weight
    # multitask: the cross-lingual objective's weight
    cross_weight: float = field(default=0.5, metadata=_range(0, 1000))
    multitask_batch: Literal["full", "half"] = "full"     # full: the same in-batch negatives as the others
    language_weighting: Literal["uniform", "by_size"] = "uniform"  # how a batch's language (pair) is chosen
    cross_batch: Literal["mixed", "single"] = "mixed"     # mixed: each item its own (X, Y), the paper's X-Y


@dataclass(frozen=True)
class LossSpec:
    temperature: float = field(default=0.05, metadata=_range(0, 10, low_open=True))  # InfoNCE's softmax temperature
    symmetric: bool = False                                 # add the passage-to-query direction
    hard_negatives: int = field(default=0, metadata=_range(0, 16))  # mined negatives per query
    chunk_size: int | None = field(default=None, metadata=_range(1, 65536))   # GradCache: embed in chunks


@dataclass(frozen=True)
class HFSourceSpec:
    """A Hugging Face dataset of query-passage pairs (mMARCO and friends)."""

    path: str = ""                                          # the dataset's hub name
    config: str | None = "{language}"                       # its configuration ({language} is replaced)
    split: str = "train"
    query_field: str = "query"                              # column of the query
    positive_field: str = "positive"                        # column of the positive passage
    negative_field: str | None = None                       # column of a negative passage
    id_field: str | None = None                             # column of the question id shared across languages
    max_rows: int | None = field(default=None, metadata=_range(1, 10**10))  # read at most this many rows


@dataclass(frozen=True)
class TrainSpec:
    dataset: str = "mlqa-r"                                 # mlqa-r, xquad-r or hf (train.hf)
    languages: tuple[str, ...] | None = None                # default: every language of the dataset
    passage: Literal["sentence", "sentence+paragraph"] = "sentence"  # what a passage is
    max_questions: int | None = field(default=None, metadata=_range(1, 10**7))   # a representative slice
    slice_seed: int = field(default=0, metadata=_range(0, 2**32 - 1))  # which slice max_questions takes
    hf: HFSourceSpec | None = None                          # see train.hf below
    batch_size: int = field(default=16, metadata=_range(2, 65536))  # pairs per batch (the in-batch negatives)
    lr: float = field(default=2e-5, metadata=_range(0, 1, low_open=True))  # AdamW's peak learning rate
    weight_decay: float = field(default=0.01, metadata=_range(0, 1))
    warmup_steps: int = field(default=0, metadata=_range(0, MAX_STEPS))  # linear warm-up, then linear decay
    steps: int | None = field(default=None, metadata=_range(0, MAX_STEPS))  # 0: evaluate only
    epochs: float | None = field(default=None, metadata=_range(0, 1000, low_open=True))  # instead of steps
    grad_accumulation: int = field(default=1, metadata=_range(1, 1024))  # batches per optimizer step
    max_grad_norm: float = field(default=1.0, metadata=_range(0, 10**6))  # gradient clipping
    seed: int = field(default=42, metadata=_range(0, 2**32 - 1))  # the training seed (a source of variance)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the hardware runs it
    device: Literal["auto", "cpu", "cuda"] = "auto"
    devices: int = field(default=1, metadata=_range(1, 1024))     # > 1: one run over N processes (torchrun)
    num_threads: int | None = field(default=None, metadata=_range(1, 1024))  # torch threads (default: the slot's cores)
    log_every: int = field(default=1, metadata=_range(1, MAX_STEPS))  # steps between step events
    eval_every: int = field(default=0, metadata=_range(0, MAX_STEPS))  # 0: only at the end
    checkpoint_every: int = field(default=0, metadata=_range(0, MAX_STEPS))  # 0: only on stop and at the end
    keep_checkpoints: int = field(default=2, metadata=_range(1, 10000))  # the newest kept


@dataclass(frozen=True)
class MiraclEvalSpec:
    """How MIRACL is evaluated. `full`: every passage of each language's corpus; `pooled`: the
    candidates of a pool file (`hbt-tui miracl pool`: every judged passage plus the union of
    reference retrievers' top-k), or of a pool published as a Hugging Face dataset in MTEB's
    layout (`hf:mteb/miracl-hard-negatives[@REVISION]`). The corpus is encoded in shards of `shard_size` passages,
    stored as `shard_dtype` with a checksum and reused when present (a killed evaluation goes
    on from its shards); `index` is the search over them (exact inner product, or faiss IVF /
    HNSW, whose recall against exact search is reported)."""

    protocol: Literal["full", "pooled"] = "full"            # every passage, or a pool's candidates
    pool: str | None = None                                 # a pool file or hf:NAME[@REVISION]
    shard_size: int = field(default=65536, metadata=_range(1, 10**8))  # passages per stored shard
    shard_dtype: Literal["float16", "float32"] = "float16"  # how shard embeddings are stored
    index: Literal["exact", "ivf", "hnsw"] = "exact"        # the search over the shards


@dataclass(frozen=True)
class EvalSpec:
    datasets: tuple[str, ...] = ("xquad-r",)                # xquad-r, mlqa-r, miracl, hf:miracl
    languages: tuple[str, ...] | None = None                # default: every language of the dataset
    metrics: tuple[str, ...] = ("map", "map@20", "ndcg@10", "recall@1", "recall@10", "mrr@10")
    primary_metric: str = "map"                             # the one tables lead with
    groups: dict[str, tuple[str, ...]] | None = None        # named language groups (high, low, …)
    passage: Literal["sentence", "sentence+paragraph"] = "sentence"  # what a passage is
    max_queries: int | None = field(default=None, metadata=_range(1, 10**7))     # a representative slice
    slice_seed: int = field(default=0, metadata=_range(0, 2**32 - 1))  # which slice max_queries takes
    allow_train_overlap: bool = False                     # evaluate on the training dataset (marked seen)
    batch_size: int = field(default=64, metadata=_range(1, 65536))  # texts per encoding batch
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"   # auto: bf16 where the hardware runs it fast
    cache: bool = True                    # reuse embeddings of an unchanged encoder (engine.child.embedding_cache)
    at_start: bool = False                                  # evaluate the untrained model too
    at_end: bool = True
    trec_runs: Literal["none", "mono+multi", "all"] = "mono+multi"  # which TREC run files to write
    trec_depth: int = field(default=100, metadata=_range(1, 10000))  # passages per query in them
    miracl_split: str = "dev"
    miracl: MiraclEvalSpec = MiraclEvalSpec()               # see eval.miracl below


@dataclass(frozen=True)
class HypothesisSpec:
    """A confirmatory hypothesis of a study, declared before the numbers: `reference` against
    `baseline` (arm labels: "hybrid α=0.5", "multitask (full)", "X-X", ...) on one dataset,
    metric, setting and language group. `direction` ">" / "<" claims a difference in that
    direction, "!=" any difference, ">=" / "<=" that the reference is not worse (better) by more
    than `margin` (non-inferiority). Omitted, it is read from the claim ("hybrid > multitask")."""

    id: str                                                 # its name in the report
    claim: str                                              # as written ("hybrid > multitask")
    reference: str                                          # an arm label
    baseline: str                                           # an arm label
    dataset: str = "xquad-r"
    metric: str = "map@10"
    setting: Literal["mono", "cross", "multi"] = "multi"
    group: str = "all"                                      # a language group of eval.groups, or all
    direction: Literal[">", "<", "!=", ">=", "<="] | None = None  # default: read from the claim
    margin: float = field(default=0.01, metadata=_range(0, 1, low_open=True))  # non-inferiority margin

    @property
    def sense(self) -> str:
        """The direction, given or read from the claim (two-sided when the claim has none)."""
        if self.direction:
            return self.direction
        for spelled, sense in (("≥", ">="), (">=", ">="), ("≤", "<="), ("<=", "<="), ("≠", "!="), ("!=", "!="),
                               (">", ">"), ("<", "<")):
            if spelled in self.claim:
                return sense
        return "!="


@dataclass(frozen=True)
class ExperimentSpec:
    name: str                                               # the run's name (a grid adds its swept values)
    description: str = ""                                   # free text, shown with the run
    tags: tuple[str, ...] = ()                              # labels to filter runs by
    data_dir: str | None = None                             # where the benchmark files are (default $HBT_DATA_DIR)
    baseline: str | None = None                             # a run (id or name) to compare against
    encoder: EncoderSpec = EncoderSpec()
    sampling: SamplingSpec = SamplingSpec()
    loss: LossSpec = LossSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    # dotted field → values, or a list of such grids: one run per combination
    grid: dict[str, tuple[Any, ...]] | tuple[dict[str, tuple[Any, ...]], ...] = field(default_factory=dict)
    hypotheses: tuple[HypothesisSpec, ...] = ()             # a study's confirmatory family

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def config_hash(self) -> str:
        """Hash of what determines the result: everything but names, notes, the grid and whether
        embeddings may come from the cache (a cached encoding equals a computed one)."""
        config = {key: value for key, value in self.to_dict().items()
                  if key not in ("name", "description", "tags", "baseline", "grid", "hypotheses")}
        config["eval"] = {key: value for key, value in config["eval"].items() if key != "cache"}
        if config["eval"].get("miracl") == _jsonable(asdict(MiraclEvalSpec())):   # hashes from before it
            del config["eval"]["miracl"]
        canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


@dataclass(frozen=True)
class LeafField:
    """One leaf of the spec: its dotted path, type hint and default."""

    path: str
    hint: Any
    default: Any


def leaf_fields(section: type = None, prefix: str = "") -> list[LeafField]:
    """Every leaf field of the spec (or of one section), in declaration order; nested sections
    are walked, optional sub-sections (`train.hf`) are one leaf."""
    section = section or ExperimentSpec
    hints = typing.get_type_hints(section)
    leaves: list[LeafField] = []
    for spec_field in fields(section):
        hint = hints[spec_field.name]
        default = spec_field.default if spec_field.default is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(hint):
            leaves += leaf_fields(hint, f"{prefix}{spec_field.name}.")
        else:
            leaves.append(LeafField(f"{prefix}{spec_field.name}", hint, default))
    return leaves


def get_dotted(document: dict, path: str, default: Any = None) -> Any:
    """The value at a dotted path of a spec document (`train.seed`), or `default`."""
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(document: dict, path: str, value: Any, *, create: bool = True) -> None:
    """Set a dotted path of a spec document. With `create`, missing sections are added and
    None removes the key (the spec's default applies); without it, the path must exist
    already (a grid sweeps only fields of the spec) or KeyError is raised."""
    *parents, leaf = path.split(".")
    node = document
    for part in parents:
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            if not create:
                raise KeyError(path)
            child = node[part] = {}
        node = child
    if not create and leaf not in node:
        raise KeyError(path)
    if create and value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value


IGNORED_IN_DIFF = ("name", "description", "tags", "grid", "baseline", "hypotheses")


def flatten(document: dict, prefix: str = "") -> dict[str, Any]:
    """{"train.seed": 1, ...}: the leaves of a spec document by dotted path (groups stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "groups":
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def spec_diff(documents: list[dict]) -> list[tuple[str, list[Any]]]:
    """(dotted field, value per document) for every field whose values differ (names ignored)."""
    flats = [flatten({k: v for k, v in document.items() if k not in IGNORED_IN_DIFF}) for document in documents]
    keys = sorted(set().union(*flats)) if flats else []
    return [(key, [flat.get(key) for flat in flats]) for key in keys
            if len({json.dumps(flat.get(key), sort_keys=True) for flat in flats}) > 1]
