"""A BERT-family encoder run on packed tokens: the training step's forward without pad tokens.

Hugging Face's forward pushes every pad token of a padded batch through every dense layer;
at the lengths retrieval training uses (queries ≤ 48, passages ≤ 96 tokens) that is a
quarter of the work. Here the real tokens of every sequence of a step — queries and passages,
all their length groups — are one (N, H) matrix for the embeddings, the fused Q/K/V
projection, the attention output, the feed-forward block and the layer norms; only the
attention itself is computed per length group, padded as today's step pads it.

Same weights (the model's own parameters, so the optimizer and `save_pretrained` see no
difference), the same arithmetic per real token up to rounding, and the *same dropout masks*: drawn
from the generator in Hugging Face's order and shapes (per group: embeddings, then per layer
attention probabilities, attention output, feed-forward output) and the real tokens' rows
taken from them, so a training step gives the losses of today's step — within float rounding
in fp32 (benchmarks/train_throughput.py prints the largest difference over its steps).

`packable(model)` says whether a model is one this runs (BERT, RoBERTa, XLM-R with absolute
positions, GELU, no decoder parts); everything else keeps the Hugging Face forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.child import native_masks

MODEL_TYPES = ("bert", "roberta", "xlm-roberta")


def packable(model: torch.nn.Module) -> bool:
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in MODEL_TYPES:
        return False
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    return (getattr(config, "position_embedding_type", "absolute") == "absolute" and config.hidden_act == "gelu"
            and not config.is_decoder and not getattr(config, "add_cross_attention", False)
            and not getattr(config, "chunk_size_feed_forward", 0) and layers is not None
            and getattr(model, "embeddings", None) is not None
            and all(hasattr(layer.attention.self, "query") and not hasattr(layer, "crossattention") for layer in layers))


@dataclass
class Group:
    """One padded group of sequences (right-padded), as the step forwards it: (B, T) ids and mask."""
    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)


class Layout:
    """Where each group's real tokens sit in the packed (N, H) matrix."""

    def __init__(self, groups: list[Group], device: torch.device) -> None:
        self.groups = groups
        self.rows, self.starts = [], []               # per group: flat indices of real tokens in (B·T); start in N
        sequence, positions, offset, sequences = [], [], 0, 0
        for group in groups:
            batch, length = group.shape
            real = group.attention_mask.to(torch.bool)
            flat = real.reshape(-1).nonzero().squeeze(1).to(device)
            self.rows.append(flat)
            self.starts.append(offset)
            offset += flat.numel()
            sequence.append((flat // length) + sequences)
            positions.append(flat % length)
            sequences += batch
        self.size = offset
        self.sequences = sequences
        self.sequence = torch.cat(sequence)            # (N,) which sequence each packed token belongs to
        self.position = torch.cat(positions)           # (N,) its position in its sequence
        self.ids = torch.cat([group.input_ids.reshape(-1).to(device)[rows] for group, rows in zip(groups, self.rows)])
        self.counts = torch.bincount(self.sequence, minlength=sequences)       # real tokens per sequence
        self.first = torch.cumsum(self.counts, 0) - self.counts                # packed index of each sequence's first token

    def part(self, packed: torch.Tensor, number: int) -> torch.Tensor:
        start = self.starts[number]
        return packed[start:start + self.rows[number].numel()]


class DropoutMasks:
    """The masks Hugging Face's forward would draw, in its order (group by group; in each, the
    embeddings, then per layer the attention probabilities, the attention output and the
    feed-forward output), already scaled by 1/(1 - p) as nn.Dropout scales them."""

    def __init__(self, layout: Layout, layers: int, heads: int, hidden: int, p_hidden: float, p_attention: float,
                 device: torch.device) -> None:
        self.attention: list[list[torch.Tensor | None]] = []      # [layer][group]: (B, heads, T, T)
        packed_hidden: list[list[torch.Tensor]] = [[] for _ in range(1 + 2 * layers)]   # [site][group]: (n_g, H)

        # on the CPU the native stream draws the same bits as bernoulli_, five times faster (native_masks)
        stream = native_masks.open_stream() if device.type == "cpu" else None

        def draw(shape: tuple[int, ...], p: float, rows: torch.Tensor | None = None) -> torch.Tensor:
            if stream is not None:
                return stream.draw(shape, 1 - p, rows)
            mask = torch.empty(shape, device=device).bernoulli_(1 - p).div_(1 - p)
            return mask if rows is None else mask[rows]

        attention = [[None] * len(layout.groups) for _ in range(layers)]
        try:
            for number, group in enumerate(layout.groups):
                batch, length = group.shape
                rows = layout.rows[number]
                sites = iter(range(1 + 2 * layers))
                if p_hidden > 0:
                    packed_hidden[next(sites)].append(draw((batch * length, hidden), p_hidden, rows))
                for layer in range(layers):
                    if p_attention > 0:
                        attention[layer][number] = draw((batch, heads, length, length), p_attention)
                    if p_hidden > 0:
                        packed_hidden[next(sites)].append(draw((batch * length, hidden), p_hidden, rows))
                        packed_hidden[next(sites)].append(draw((batch * length, hidden), p_hidden, rows))
        finally:
            if stream is not None:
                stream.close()
        self.attention = attention
        self.hidden = [torch.cat(parts) if parts else None for parts in packed_hidden]


def _dropout(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask.to(x.dtype)


class PackedEncoder:
    """Runs `model` (a Hugging Face BertModel/XLMRobertaModel) on packed tokens."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        config = model.config
        self.heads = config.num_attention_heads
        self.hidden = config.hidden_size
        self.head_size = self.hidden // self.heads
        self.eps = config.layer_norm_eps
        # RoBERTa/XLM-R number positions from padding_idx + 1; BERT from 0
        self.position_offset = config.pad_token_id + 1 if config.model_type in ("roberta", "xlm-roberta") else 0

    def __call__(self, groups: list[Group]) -> tuple[torch.Tensor, Layout]:
        """The last hidden state of every real token, (N, H), and where each one came from."""
        model = self.model
        device = model.embeddings.word_embeddings.weight.device
        layout = Layout(groups, device)
        layers = model.encoder.layer
        training = model.training
        config = model.config
        masks = None
        if training:
            with torch.profiler.record_function("dropout masks"):
                masks = DropoutMasks(layout, len(layers), self.heads, self.hidden, config.hidden_dropout_prob,
                                     config.attention_probs_dropout_prob, device)
        sites = iter(masks.hidden) if masks is not None else None

        embeddings = model.embeddings
        x = embeddings.word_embeddings(layout.ids)
        x = x + embeddings.token_type_embeddings.weight[0]
        x = x + embeddings.position_embeddings(layout.position + self.position_offset)
        x = embeddings.LayerNorm(x)
        x = _dropout(x, next(sites) if sites else None)
        for number, layer in enumerate(layers):
            attention = layer.attention
            projection = attention.self
            weight = torch.cat([projection.query.weight, projection.key.weight, projection.value.weight])
            bias = torch.cat([projection.query.bias, projection.key.bias, projection.value.bias])
            # a half_matmuls model (evaluation in bf16/fp16) holds its Linear weights in that dtype
            qkv = F.linear(x.to(weight.dtype), weight, bias)                                   # (N, 3H)
            context = self._attention(qkv, layout, masks.attention[number] if masks else None)   # (N, H)
            out = _dropout(attention.output.dense(context), next(sites) if sites else None)
            x = attention.output.LayerNorm(out + x)
            inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(x))
            out = _dropout(layer.output.dense(inner), next(sites) if sites else None)
            x = layer.output.LayerNorm(out + x)
        return x, layout

    def _attention(self, qkv: torch.Tensor, layout: Layout, dropout: list[torch.Tensor | None] | None) -> torch.Tensor:
        """Self-attention of each group on its padded (B, heads, T, T) scores; pads are never
        attended to, and their rows are dropped again."""
        heads, size = self.heads, self.head_size
        outputs = []
        for number, group in enumerate(layout.groups):
            batch, length = group.shape
            rows = layout.rows[number]
            part = layout.part(qkv, number)                                                 # (n_g, 3H)
            padded = part.new_zeros(batch * length, part.shape[1]).index_copy(0, rows, part)
            q, k, v = padded.view(batch, length, 3, heads, size).permute(2, 0, 3, 1, 4)     # 3 × (B, heads, T, d)
            keys = group.attention_mask.to(device=qkv.device, dtype=torch.bool)[:, None, None, :]  # (B, 1, 1, T)
            mask = dropout[number] if dropout is not None else None
            if mask is None:
                context = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
            else:
                scores = (q * (1 / math.sqrt(size))) @ k.transpose(-1, -2)   # one scaling (SDPA scales both)
                scores = scores.masked_fill(~keys, float("-inf"))
                probabilities = torch.softmax(scores, dim=-1)
                context = (probabilities * mask.to(probabilities.dtype)) @ v
            outputs.append(context.transpose(1, 2).reshape(batch * length, heads * size)[rows])   # (n_g, H)
        return torch.cat(outputs)


def pool(hidden: torch.Tensor, layout: Layout, pooling: str) -> torch.Tensor:
    """(sequences, H) fp32: the mean of each sequence's real tokens, or its first token."""
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[layout.first]
    sums = hidden.new_zeros(layout.sequences, hidden.shape[1]).index_add(0, layout.sequence, hidden)
    return sums / layout.counts.clamp(min=1).unsqueeze(1).to(hidden.dtype)
