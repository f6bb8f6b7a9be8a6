"""Evaluation speed on XQuAD-R with the bundled encoder (printed, not asserted).

    python benchmarks/eval_speed.py [--max-queries N] [--slice 6]

1. This machine's matmul peak (fp32 and bf16), measured first, in this run.
2. The full evaluation (11 languages: 13,090 queries; 11 mono + 110 cross + 11 multi
   settings over 13,014 pooled candidates), as a training run does it, three times:
   - fp32 as before packing (Hugging Face's forward on batches padded to their longest
     text), no cache: today's fp32, what `auto` ran on a CPU without bf16;
   - fp32, no cache: packed batches (engine.child.packed), what `auto` runs on such a CPU
     now: its encoding time against today's, and its macro mAP against today's;
   - `eval.precision: auto` (bf16 on a CPU with AVX-512 BF16 or AMX), into an empty
     embedding cache: its encoding time against fp32's, and how far its scores are from
     fp32's (macro mAP per setting; every language's mAP per setting);
   - the same again: the unchanged encoder's embeddings come from the cache.
   Encoding and scoring + metrics + files are timed separately; encoding is also given as
   model FLOP/s (counted from the config and the real token counts) and as a share of the
   matmul peak of the precision it ran in.
3. On a slice (`--slice` questions of en, de and zh: their articles' candidates), the same
   evaluation against the naive way that encodes queries and candidates again for every
   setting (mono, each cross pair, multi).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.hardware import encoder_flops, matmul_peak, share, token_lengths  # noqa: E402

SLICE_LANGUAGES = ["en", "de", "zh"]


def evaluate_ours(encoder, max_queries: int | None, run_dir: Path, precision: str = "fp32", cache: bool = False,
                  languages: list[str] | None = None) -> dict:
    import json

    from engine.child.evaluator import Evaluator
    from engine.contract.layout import RunFolder
    from engine.contract.validation import parse_spec

    spec = parse_spec({"name": "eval-speed", "eval": {"datasets": ["xquad-r"], "max_queries": max_queries,
                                                      "languages": languages, "trec_runs": "mono+multi",
                                                      "precision": precision, "cache": cache}})
    done = []
    started = time.perf_counter()
    Evaluator(spec, RunFolder(run_dir), lambda event: done.append(event) if event.kind == "eval_done" else None
              ).run(encoder, 0)
    total = time.perf_counter() - started
    results = json.loads((run_dir / "eval" / "xquad-r" / "results.json").read_text())
    files = results.get("files_seconds") or 0.0
    return {"total": total, "encode": done[0].encode_seconds, "files": files,
            "score": total - done[0].encode_seconds - files, "macro": done[0].macro, "precision": done[0].precision, "cached": done[0].cached,
            "per_language": results["per_language"]}


def corpus_lengths(encoder, max_queries: int | None) -> list[int]:
    """Real token counts of every text the evaluation encodes."""
    from engine.child.data.lareqa import load_lareqa

    spec = encoder.spec
    lengths = []
    for corpus in load_lareqa("xquad-r", None, None, max_queries).values():
        lengths += token_lengths(encoder.tokenizer, corpus.questions, spec.query_prefix, spec.max_query_length)
        candidates = [corpus.candidate_text(i, False) for i in range(len(corpus.candidates))]
        lengths += token_lengths(encoder.tokenizer, candidates, spec.passage_prefix, spec.max_passage_length)
    return lengths


def largest_differences(a: dict, b: dict) -> tuple[dict, float, str]:
    """Macro mAP difference per setting, and the largest per-language one (with where)."""
    macro = {setting: abs(a["macro"][setting]["map"] - b["macro"][setting]["map"]) for setting in a["macro"]}
    worst, where = 0.0, ""
    for language, row in a["per_language"].items():
        for setting, values in row["settings"].items():
            difference = abs(values["map"] - b["per_language"][language]["settings"][setting]["map"])
            if difference > worst:
                worst, where = difference, f"{language} {setting}"
    return macro, worst, where


def evaluate_naive(encoder, max_queries: int, languages: list[str]) -> float:
    """Every setting encodes its own queries and candidates."""
    from engine.child import metrics
    from engine.child.data.lareqa import load_lareqa

    corpora = load_lareqa("xquad-r", tuple(languages), None, max_queries)
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
    from engine.child.runtime import pick_eval_precision
    from engine.contract.spec import EncoderSpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-queries", type=int, default=None, help="questions per language (default: all 1190)")
    parser.add_argument("--slice", type=int, default=6, help="questions per language for the naive comparison")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    from engine.child.runtime import machine

    host = machine()
    print(f"machine: {host.get('cpu')} · {host.get('cores')} cores · flags: "
          f"{', '.join(host.get('flags') or []) or 'none of avx512*/amx'}", flush=True)
    peaks = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
    encoder = load_encoder(EncoderSpec())
    auto = pick_eval_precision("auto", encoder.device)
    flops = encoder_flops(encoder.model, corpus_lengths(encoder, args.max_queries))
    with tempfile.TemporaryDirectory() as folder:
        os.environ["HBT_EMBEDDING_CACHE_DIR"] = str(Path(folder) / "cache")   # empty: this run fills it
        kept, encoder.packed = encoder.packed, None
        today = evaluate_ours(encoder, args.max_queries, Path(folder) / "today", "fp32")
        encoder.packed = kept
        fp32 = evaluate_ours(encoder, args.max_queries, Path(folder) / "fp32", "fp32")
        first = evaluate_ours(encoder, args.max_queries, Path(folder) / "auto", "auto", cache=True)
        second = evaluate_ours(encoder, args.max_queries, Path(folder) / "again", "auto", cache=True)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sliced = evaluate_ours(encoder, args.slice, Path(folder) / "slice", languages=SLICE_LANGUAGES)
    naive = evaluate_naive(encoder, args.slice, SLICE_LANGUAGES)
    scope = "full XQuAD-R" if args.max_queries is None else f"XQuAD-R, {args.max_queries} questions/language"
    print(f"\nevaluation speed · bundled e5-small · CPU ({threads} threads) · {scope}")
    print(f"matmul peak measured now: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
          f"(2048x2048); encoding = {flops / 1e12:.2f} TFLOP of model work")
    print(f"{'':34} {'encode s':>9} {'score s':>8} {'files s':>8} {'total s':>8} {'GFLOP/s':>8} {'of peak':>8}")
    for label, row in (("fp32 before packing (today)", today), ("fp32 packed", fp32), (f"auto = {first['precision']}, filling the cache", first),
                       (f"auto again (cache: {second['cached']} reused)", second)):
        achieved = flops / row["encode"] / 1e9 if row["cached"] == 0 else float("nan")
        peak = peaks.get(row["precision"], peaks["fp32"])
        print(f"{label:34} {row['encode']:9.1f} {row['score']:8.1f} {row['files']:8.1f} {row['total']:8.1f} {achieved:8.0f} "
              f"{share(achieved, peak) if row['cached'] == 0 else '':>8}")
    macro_today, worst_today, where_today = largest_differences(fp32, today)
    print(f"fp32 packed vs fp32 today (the figure of a CPU without bf16, where auto = fp32): encoding "
          f"{today['encode'] / fp32['encode']:.2f}x faster (target >= 1.5x); largest |d| macro mAP "
          f"{max(macro_today.values()):.6f} (target <= 0.001), per language {worst_today:.6f} at {where_today}")
    print(f"auto ({auto}) encoding vs fp32 packed: {fp32['encode'] / first['encode']:.2f}x faster (target >= 2.0x)")
    macro, worst, where = largest_differences(first, fp32)
    print("macro mAP, fp32 -> auto: " + ", ".join(
        f"{setting} {fp32['macro'][setting]['map']:.5f} -> {first['macro'][setting]['map']:.5f} "
        f"(|d| {macro[setting]:.5f})" for setting in ("mono", "cross", "multi")))
    print(f"largest |d| macro {max(macro.values()):.5f} (target <= 0.001); largest per language {worst:.5f} "
          f"at {where} (target <= 0.002)")
    print(f"scoring + metrics (132 settings): {first['score']:.1f} s = {100 * first['score'] / first['encode']:.1f}% "
          f"of encoding (target < 5%); writing per-query and TREC files: {first['files']:.1f} s = "
          f"{100 * first['files'] / first['encode']:.1f}%")
    print(f"second evaluation of the unchanged encoder: {second['total']:.1f} s = "
          f"{100 * second['total'] / first['total']:.1f}% of the first (target < 10%)")
    print(f"peak RSS of this process: {peak_mb:.0f} MB")
    print(f"\nslice of {args.slice} questions x {len(SLICE_LANGUAGES)} languages: ours {sliced['total']:.1f} s, "
          f"naive (encode per setting) {naive:.1f} s -> {naive / sliced['total']:.1f}x faster (the naive way encodes "
          f"each language's candidates about 2L times, so the gap grows with the L languages)")


if __name__ == "__main__":
    main()
