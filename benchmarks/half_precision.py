"""How evaluation runs a half precision: ways of running the encoder in bf16, against fp32.

    python benchmarks/half_precision.py [--languages en,th,zh,ar] [--max-queries 40]

On the questions (query side) and candidates (passage side) of a few XQuAD-R languages,
each way encodes the same texts as `eval` does and prints its encoding time against fp32's
(same run) and how far its embeddings are from fp32's (1 − cosine, mean and largest):

- `whole model cast`: every parameter and activation in bf16 (pooling in fp32);
- `half matmuls` (what `eval.precision: bf16` runs, `encoder.half_matmuls`): Linear layers
  in bf16, embeddings, layer norms and the residual stream in fp32;
- `half matmuls, fp32 outputs`: the same with every Linear output cast back to fp32
  (attention and the feed-forward activation then run in fp32 too).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np
    import torch

    from engine.child.data.lareqa import load_lareqa
    from engine.child.encoder import DualEncoder, half_matmuls, load_encoder
    from engine.child.runtime import pick_eval_precision
    from engine.contract.spec import EncoderSpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", default="en,th,zh,ar")
    parser.add_argument("--max-queries", type=int, default=40, help="questions per language")
    args = parser.parse_args()
    encoder = load_encoder(EncoderSpec())
    if pick_eval_precision("auto", encoder.device) != "bf16":
        print("this machine does not run bf16 fast (no AVX-512 BF16/AMX, no CUDA bf16): nothing to compare")
        return
    corpora = load_lareqa("xquad-r", tuple(args.languages.split(",")), None, args.max_queries)
    sides = [(corpus.questions, True) for corpus in corpora.values()]
    sides += [(list(corpus.candidates), False) for corpus in corpora.values()]

    def outputs_to_fp32(model: torch.nn.Module) -> torch.nn.Module:
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda _module, _args, output: output.float())
        return model

    def encode(variant: DualEncoder) -> tuple[np.ndarray, float]:
        variant.encode(sides[0][0][:8], True, 64)                                 # warm-up
        started = time.perf_counter()
        embeddings = np.concatenate([variant.encode(texts, is_query, 64) for texts, is_query in sides])
        return embeddings, time.perf_counter() - started

    ways = {
        "whole model cast": lambda: copy.deepcopy(encoder.model).to(torch.bfloat16),
        "half matmuls (eval's bf16)": lambda: half_matmuls(copy.deepcopy(encoder.model), torch.bfloat16),
        "half matmuls, fp32 outputs": lambda: outputs_to_fp32(half_matmuls(copy.deepcopy(encoder.model), torch.bfloat16)),
    }
    reference, fp32_seconds = encode(encoder)
    texts = sum(len(texts) for texts, _ in sides)
    print(f"\nbf16 ways of encoding · bundled e5-small · CPU ({torch.get_num_threads()} threads) · "
          f"{texts} XQuAD-R texts ({args.languages}, {args.max_queries} questions each, with their candidates)")
    print(f"{'':28} {'encode s':>9} {'vs fp32':>8} {'mean 1-cos':>11} {'max 1-cos':>10}")
    print(f"{'fp32':28} {fp32_seconds:9.1f} {1.0:7.2f}x {0.0:11.1e} {0.0:10.1e}")
    for label, build in ways.items():
        embeddings, seconds = encode(DualEncoder(build(), encoder.tokenizer, encoder.spec))
        distance = 1.0 - (embeddings * reference).sum(1)
        print(f"{label:28} {seconds:9.1f} {fp32_seconds / seconds:7.2f}x {distance.mean():11.1e} {distance.max():10.1e}")


if __name__ == "__main__":
    main()
