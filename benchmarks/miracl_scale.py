"""MIRACL at a realistic size: a synthetic corpus in MIRACL's layout (≥ 1 M passages by
default, texts from ../shared/data, unique ids), evaluated through the product's own path
(engine.child.evaluator: shards in the embedding cache, faiss search), with the tiny test
model and the bundled encoder. Printed side by side, with the hardware:

- passages/s of each encoder, and the evaluation's peak memory at two corpus sizes (it must
  stay flat: memory holds one shard and the top-k, not the corpus);
- one `hbt-tui miracl encode` process against two (`--part 1/2`, `--part 2/2`) at once;
- exact against approximate (HNSW, IVF) search: seconds and recall@100 against exact;
- the pooled protocol (a BM25 pool of depth 250, built by `hbt-tui miracl pool`) against the
  full corpus: passages encoded and evaluation time.

    python benchmarks/miracl_scale.py [--passages 1000000] [--small 250000] [--bundled 3000]

Every figure is measured in this run; a part that cannot run is printed as NOT RUN with why.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HBT_DATA_DIR") or ROOT.parent / "shared" / "data")
LANGUAGE = "sw"                       # a MIRACL language code for the synthetic folder


def source_texts() -> tuple[list[str], list[tuple[str, str]]]:
    """Passage texts (the benchmark files' context sentences and paragraphs) and (question,
    its paragraph) pairs, from ../shared/data."""
    passages, questions = [], []
    for path in sorted((DATA / "xquad-r").glob("*.json")) + sorted((DATA / "mlqa-r").glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for article in document["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                passages.append(context)
                passages += [sentence.strip() + "." for sentence in context.split(". ") if len(sentence) > 30]
                questions += [(qa["question"], context) for qa in paragraph["qas"][:1]]
    return passages, questions


def write_corpus(folder: Path, count: int, queries: int) -> None:
    """MIRACL's layout: topics, qrels, docs-*.jsonl.gz; passage n is text n mod len(texts),
    titled by its article, docid "n#0"; a query's relevant passage is its own paragraph."""
    texts, questions = source_texts()
    language = folder / "miracl" / LANGUAGE
    for sub in ("topics", "qrels", "corpus"):
        (language / sub).mkdir(parents=True, exist_ok=True)
    position = {text: index for index, text in enumerate(texts)}
    chosen = questions[:queries]
    (language / "topics" / f"topics.miracl-v1.0-{LANGUAGE}-dev.tsv").write_text(
        "".join(f"q{index}\t{question}\n" for index, (question, _) in enumerate(chosen)), encoding="utf-8")
    (language / "qrels" / f"qrels.miracl-v1.0-{LANGUAGE}-dev.tsv").write_text(
        "".join(f"q{index} Q0 {position[context]}#0 1\n" for index, (_, context) in enumerate(chosen)
                if position[context] < count), encoding="utf-8")
    per_file = 200_000
    for start in range(0, count, per_file):
        with gzip.open(language / "corpus" / f"docs-{start // per_file}.jsonl.gz", "wt", encoding="utf-8",
                       compresslevel=1) as handle:
            for n in range(start, min(count, start + per_file)):
                handle.write(json.dumps({"docid": f"{n}#0", "title": f"Makala {n // 7}",
                                         "text": texts[n % len(texts)]}, ensure_ascii=False) + "\n")


def spec_for(data_dir: Path, encoder: str, **miracl) -> dict:
    return {"name": "miracl-scale", "data_dir": str(data_dir), "encoder": {"name": encoder},
            "train": {"steps": 0}, "eval": {"datasets": ["miracl"], "languages": [LANGUAGE], "trec_runs": "none",
                                            "batch_size": 256, "miracl": {"shard_size": 65536, **miracl}}}


def worker(spec_path: str) -> None:
    """One evaluation through the product's evaluator; prints its figures and peak memory."""
    import resource

    from engine.child.encoder import load_encoder
    from engine.child.evaluator import Evaluator
    from engine.contract.layout import RunFolder
    from engine.contract.validation import load_spec

    spec = load_spec(spec_path)
    folder = RunFolder(Path(tempfile.mkdtemp(prefix="miracl-scale-run-")))
    notes = []
    encoder = load_encoder(spec.encoder)
    started = time.perf_counter()
    Evaluator(spec, folder, lambda event: notes.append(getattr(event, "message", ""))).run(encoder, 0)
    seconds = time.perf_counter() - started
    results = json.loads(folder.results("miracl").read_text())
    entry = results["protocol"]["languages"][LANGUAGE]
    print(json.dumps({"seconds": seconds, "encode_seconds": results["encode_seconds"], "searched": entry["searched"],
                      "corpus": entry["corpus_size"], "ndcg@10": results["macro"]["mono"]["ndcg@10"],
                      "index_recall": results["per_language"][LANGUAGE].get("index_recall"),
                      "index_seconds": results["per_language"][LANGUAGE].get("index_seconds"),
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "notes": [note for note in notes if note]}))


def evaluate(spec: dict, cache: Path, threads: int | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    environment = {**os.environ, "HBT_EMBEDDING_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, __file__, "--worker", handle.name], capture_output=True, text=True,
                          env=environment)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def encode_parts(spec: dict, cache: Path, parts: int, threads: int) -> float:
    """Seconds for `parts` `hbt-tui miracl encode --part k/parts` processes run at once."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    environment = {**os.environ, "HBT_EMBEDDING_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT),
                   "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "engine.cli", "miracl", "encode", handle.name, "--part",
                                   f"{k}/{parts}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env=environment) for k in range(1, parts + 1)]
    for process in processes:
        _, error = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(error.strip().splitlines()[-1] if error.strip() else f"exit {process.returncode}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=250_000, help="the smaller corpus of the memory comparison")
    parser.add_argument("--parallel", type=int, default=100_000, help="corpus of the 1 vs 2 processes comparison")
    parser.add_argument("--bundled", type=int, default=3_000, help="corpus for the bundled encoder's rate")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sections", default="memory,bundled,parallel,search,pooled",
                        help="which parts to run (comma-separated; pooled needs memory's full corpus)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from engine.child.runtime import machine
    from tiny_model import build_tiny_model

    host = machine()
    sections = set(args.sections.split(","))
    import torch

    device = f"GPU {torch.cuda.get_device_name(0)} (encoding runs on it)" if torch.cuda.is_available() \
        else "no GPU: encoding on the CPU"
    print(f"machine: {host.get('cpu')} · {host.get('cores')} cores · flags: "
          f"{', '.join(host.get('flags') or []) or 'none of avx512*/amx'} · {device} · load average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="miracl-scale-"))
    tiny = str(build_tiny_model(work / "tiny-model", DATA))
    corpora = {}
    for count in sorted({args.passages, args.small, args.parallel, args.bundled}):
        started = time.perf_counter()
        corpora[count] = work / f"corpus-{count}"
        write_corpus(corpora[count], count, args.queries)
        print(f"corpus of {count:,} passages written in {time.perf_counter() - started:.0f} s", flush=True)
    rows = []

    def row(label: str, figure: str) -> None:
        rows.append((label, figure))
        print(f"  {label:<58} {figure}", flush=True)

    sized = {}
    if "memory" in sections or "pooled" in sections:
        print("\nencoding and memory (full protocol, exact search, shards of 65,536 float16):")
        for count in (args.small, args.passages):
            result = evaluate(spec_for(corpora[count], tiny), work / f"cache-{count}")
            sized[count] = result
            row(f"tiny model, {count:,} passages", f"{result['searched'] / result['encode_seconds']:,.0f} passages/s · "
                f"{result['seconds']:.0f} s · peak {result['peak_mb']:,.0f} MB")
        growth = sized[args.passages]["peak_mb"] / sized[args.small]["peak_mb"]
        row(f"peak memory, {args.passages:,} vs {args.small:,} passages", f"× {growth:.2f} for × "
            f"{args.passages / args.small:.0f} the passages")
    if "bundled" in sections:
        try:
            bundled = evaluate(spec_for(corpora[args.bundled], "bundled:multilingual-e5-small"), work / "cache-bundled")
            row(f"bundled multilingual-e5-small, {args.bundled:,} passages",
                f"{bundled['searched'] / bundled['encode_seconds']:,.1f} passages/s · peak {bundled['peak_mb']:,.0f} MB")
        except RuntimeError as error:
            row("bundled multilingual-e5-small", f"NOT RUN: {error}")

    if "parallel" in sections:
        print(f"\nshards in parallel ({args.parallel:,} passages, tiny model, hbt-tui miracl encode):")
        cores = os.cpu_count() or 1
        one = encode_parts(spec_for(corpora[args.parallel], tiny, shard_size=8192), work / "cache-par-1", 1, cores)
        two = encode_parts(spec_for(corpora[args.parallel], tiny, shard_size=8192), work / "cache-par-2", 2,
                           max(1, cores // 2))
        row(f"1 process × {cores} threads", f"{one:.0f} s")
        row(f"2 processes × {max(1, cores // 2)} threads (--part 1/2, 2/2)", f"{two:.0f} s · × {one / two:.2f}")

    if "search" in sections:
        print(f"\nsearch over {args.passages:,} cached passages ({args.queries} queries, top 100):")
        cache = work / f"cache-{args.passages}"
        exact = evaluate(spec_for(corpora[args.passages], tiny), cache)
        row("exact (faiss IndexFlatIP per shard)", f"{exact['seconds']:.1f} s" + (" (shards read from the cache)" if "memory" in sections
                                                                else " (encoding included: run it with memory)"))
        for kind in ("hnsw", "ivf"):
            try:
                result = evaluate(spec_for(corpora[args.passages], tiny, index=kind), cache)
                row(f"{kind} (one index over every shard: built + searched)",
                    f"{result['index_seconds']:.1f} s · recall@100 against exact {result['index_recall']:.4f} "
                    f"(the evaluation, exact search included for the recall: {result['seconds']:.1f} s)")
            except RuntimeError as error:
                row(kind, f"NOT RUN: {error}")

    if "pooled" in sections:
        print(f"\npooled protocol ({args.passages:,} passages, BM25 pool of depth 250):")
        pool = work / "pool.json.gz"
        started = time.perf_counter()
        built = subprocess.run([sys.executable, "-m", "engine.cli", "miracl", "pool", "--out", str(pool), "--data-dir",
                                str(corpora[args.passages]), "--depth", "250", "--runs-dir", str(work / "runs")],
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if built.returncode != 0:
            row("pooled", f"NOT RUN: {built.stderr.strip().splitlines()[-1] if built.stderr.strip() else 'pool failed'}")
        else:
            row("building the pool (bm25s)", f"{time.perf_counter() - started:.0f} s")
            pooled = evaluate(spec_for(corpora[args.passages], tiny, protocol="pooled", pool=str(pool)),
                              work / "cache-pooled")
            full = sized[args.passages]
            row("pooled evaluation", f"{pooled['searched']:,} passages encoded · {pooled['seconds']:.0f} s · "
                f"nDCG@10 {pooled['ndcg@10']:.4f}")
            row("full evaluation", f"{full['searched']:,} passages encoded · {full['seconds']:.0f} s · "
                f"nDCG@10 {full['ndcg@10']:.4f}")
            row("pooled speed-up", f"× {full['seconds'] / pooled['seconds']:.1f} "
                f"({full['searched'] / pooled['searched']:.0f}× fewer passages)")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; work files in {work}")


if __name__ == "__main__":
    main()
