"""Evaluation speed on XQuAD-R with the bundled encoder (printed, not asserted).

    python benchmarks/eval_speed.py [--max-queries N] [--slice 6]

1. The full evaluation (11 languages: 13,090 queries; 11 mono + 110 cross + 11 multi
   settings over 13,014 pooled candidates), as a training run does it: encoding time and
   scoring + metrics time separately, and the peak RSS of the process.
2. On a slice (all 11 languages, the first `--slice` questions each), the same evaluation
   against the naive way that encodes queries and candidates again for every setting.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def evaluate_ours(encoder, max_queries: int | None, run_dir: Path) -> dict:
    from engine.child.evaluator import Evaluator
    from engine.contract.validation import parse_spec

    spec = parse_spec({"name": "eval-speed", "eval": {"datasets": ["xquad-r"], "max_queries": max_queries,
                                                      "trec_runs": "mono+multi"}})
    done = []
    started = time.perf_counter()
    Evaluator(spec, run_dir, lambda event: done.append(event) if event.kind == "eval_done" else None).run(encoder, 0)
    total = time.perf_counter() - started
    return {"total": total, "encode": done[0].encode_seconds, "score": total - done[0].encode_seconds,
            "macro": done[0].macro}


def evaluate_naive(encoder, max_queries: int) -> float:
    """Every setting encodes its own queries and candidates."""
    from engine.child import metrics
    from engine.child.data.lareqa import load_lareqa

    corpora = load_lareqa("xquad-r", None, None, max_queries)
    languages = list(corpora)
    started = time.perf_counter()
    for language in languages:
        for targets in [[language], *[[t] for t in languages if t != language], languages]:
            queries = encoder.encode(corpora[language].questions, True, 64)
            candidates = np.concatenate([encoder.encode(corpora[t].candidates, False, 64) for t in targets])
            offsets = np.cumsum([0] + [len(corpora[t].candidates) for t in targets])
            relevant = np.full((len(queries), len(targets)), -1)
            for column, target in enumerate(targets):
                answer = dict(zip(corpora[target].question_ids, corpora[target].answer_candidate))
                for row, qid in enumerate(corpora[language].question_ids):
                    relevant[row, column] = offsets[column] + answer[qid]
            ranks = metrics.relevant_ranks(queries @ candidates.T, relevant)
            metrics.compute(["map", "ndcg@10", "recall@10"], ranks, (relevant >= 0).sum(1))
    return time.perf_counter() - started


def main() -> None:
    import tempfile

    import torch

    from engine.child.encoder import load_encoder
    from engine.contract.spec import EncoderSpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-queries", type=int, default=None, help="questions per language (default: all 1190)")
    parser.add_argument("--slice", type=int, default=6, help="questions per language for the naive comparison")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    encoder = load_encoder(EncoderSpec())
    with tempfile.TemporaryDirectory() as folder:
        full = evaluate_ours(encoder, args.max_queries, Path(folder) / "full")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sliced = evaluate_ours(encoder, args.slice, Path(folder) / "slice")
    naive = evaluate_naive(encoder, args.slice)
    scope = "full XQuAD-R" if args.max_queries is None else f"XQuAD-R, {args.max_queries} questions/language"
    print(f"\nevaluation speed · bundled e5-small · CPU ({torch.get_num_threads()} threads) · {scope}")
    print(f"  encoding (each language's queries and candidates once): {full['encode']:8.1f} s")
    print(f"  scoring + metrics + files (132 settings):               {full['score']:8.1f} s "
          f"({100 * full['score'] / full['encode']:.1f}% of encoding; target < 10%)")
    print(f"  total:                                                  {full['total']:8.1f} s")
    print(f"  peak RSS of this process:                               {peak_mb:8.0f} MB")
    macro = full["macro"]
    print(f"  macro mAP mono / cross / multi: {macro['mono']['map']:.3f} / {macro['cross']['map']:.3f} / "
          f"{macro['multi']['map']:.3f}")
    print(f"\nslice of {args.slice} questions x 11 languages: ours {sliced['total']:.1f} s, "
          f"naive (encode per setting) {naive:.1f} s -> {naive / sliced['total']:.1f}x faster (target >= 10x)")


if __name__ == "__main__":
    main()
