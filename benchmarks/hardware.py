"""What this machine can do, measured in the same run as the figure it bounds, and the model
FLOPs of a transformer encoder counted from its config and the real token counts.

- `matmul_peak(dtype)`: GFLOP/s of large square matmuls (torch, this process's threads) —
  the practical ceiling for the encoder's dense layers on this hardware.
- `encoder_flops(model, lengths, training)`: 2·N·n for the dense weights (N = parameters
  outside the embeddings) plus 4·L·H·n² for attention scores and values, per sequence of n
  real tokens; training counts forward + backward as 3× the forward (the usual convention;
  frozen word embeddings have no dense FLOPs either way).
"""

from __future__ import annotations

import time


def matmul_peak(dtype_name: str = "fp32", size: int = 2048, seconds: float = 3.0, device: str = "cpu") -> float:
    """GFLOP/s of size×size matmuls, best of repeated timings over about `seconds`."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    flops = 2 * size ** 3
    for _ in range(2):   # warm-up
        torch.mm(a, b)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if device != "cpu":
            torch.cuda.synchronize()
        started = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return flops / best / 1e9


def dense_parameters(model) -> int:
    """Parameters outside the embedding tables (word, position, token type)."""
    embedding = sum(parameter.numel() for name, parameter in model.named_parameters() if "embeddings" in name)
    return sum(parameter.numel() for parameter in model.parameters()) - embedding


def encoder_flops(model, lengths: list[int], training: bool = False) -> float:
    config = model.config
    dense = dense_parameters(model)
    forward = sum(2 * dense * n + 4 * config.num_hidden_layers * config.hidden_size * n * n for n in lengths)
    return 3 * forward if training else forward


def token_lengths(tokenizer, texts: list[str], prefix: str, max_length: int) -> list[int]:
    encoded = tokenizer([prefix + text for text in texts], truncation=True, max_length=max_length)["input_ids"]
    return [len(ids) for ids in encoded]


def share(achieved: float, peak: float) -> str:
    return f"{100 * achieved / peak:.1f}%" if peak > 0 else "n/a"
