"""`python -m engine.miracl pool|encode …`: the child side of `hbt-tui miracl`
(engine.parent.miracl_commands, which resolves run names to their folders first).

pool    builds a pool file (engine.child.miracl_pool) and prints a line per language;
encode  writes one part (`--part k/n`) of a spec's MIRACL shards into the embedding cache,
        with the spec's encoder, precision and shard settings — n such processes (one per
        GPU, or n cluster jobs) share a corpus, and every evaluation of that encoder reads them.

An entry point: nothing imports it."""

import argparse
import sys
from pathlib import Path

from engine.contract.errors import EXIT_USER_ERROR, UserError


def pool(args: argparse.Namespace) -> int:
    from engine.child.data import miracl
    from engine.child.miracl_pool import pool_language
    from engine.contract.miracl_protocol import write_pool

    languages = args.languages or (() if args.hub else miracl.local_languages(args.data_dir))
    if not languages:
        raise UserError("no MIRACL languages: give --languages or put MIRACL folders under <data dir>/miracl/")
    pools = {}
    for language in languages:
        data = miracl.load_hub(language, args.split) if args.hub else miracl.load_local(language, args.split,
                                                                                        args.data_dir)
        pools[language] = entry = pool_language(data, args.depth, args.retrievers, print)
        print(f"{language}: {len(entry['docids'])} of {entry['corpus_size']} passages "
              f"({len(entry['docids']) / max(1, entry['corpus_size']):.1%}; {entry['judged']} judged)", flush=True)
    digest = write_pool(Path(args.out), args.split, args.depth,
                        [retriever.split("=", 1)[0] for retriever in args.retrievers], pools)
    print(f"wrote {args.out} (sha256 {digest[:12]}); use it with eval.miracl: "
          f'{{"protocol": "pooled", "pool": "{args.out}"}}')
    return 0


def encode(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from engine.child.embedding_cache import EmbeddingCache, encoder_fingerprint
    from engine.child.encoder import load_encoder
    from engine.child.eval_miracl import encode_part, shard_setup
    from engine.child.runtime import pick_eval_precision
    from engine.contract.validation import load_spec

    spec = load_spec(args.spec)
    datasets = [dataset for dataset in spec.eval.datasets if dataset in ("miracl", "hf:miracl")]
    if not datasets:
        raise UserError(f"{args.spec}: eval.datasets has no MIRACL dataset (miracl or hf:miracl)")
    if not spec.eval.cache:
        raise UserError(f"{args.spec}: eval.cache is false, so its evaluations would not read shards from the "
                        "embedding cache; set it to true (the default)")
    encoder = load_encoder(spec.encoder)
    precision = pick_eval_precision(spec.eval.precision, encoder.device)
    fingerprint = encoder_fingerprint(encoder, precision, spec.eval.batch_size)
    inference = encoder.for_inference(precision)
    cache = EmbeddingCache(warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    echo = Path(args.echo_to) if args.echo_to else None

    def say(line: str) -> None:
        """A line on stdout, and in --echo-to (what a Slurm job's follower reads: its stdout is not kept)."""
        print(line, flush=True)
        if echo is not None:
            with open(echo, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    written = 0
    for dataset in datasets:
        shards = replace(shard_setup(spec, dataset, fingerprint, cache), part=(args.part[0] - 1, args.part[1]))
        written += encode_part(spec, dataset, shards,
                               lambda texts, is_query, progress: inference.encode(texts, is_query,
                                                                                  spec.eval.batch_size),
                               say)
    if cache.evicted_own:
        raise UserError(f"the embedding cache's limit (HBT_EMBEDDING_CACHE_MB) is smaller than these shards: "
                        f"{cache.evicted_own} of those just written were evicted again; raise it")
    say(f"part {args.part[0]}/{args.part[1]}: {written} shards in {cache.root} "
        f"({cache.misses} encoded, {cache.hits} already there)")
    return 0


def part(text: str) -> tuple[int, int]:
    try:
        k, n = (int(value) for value in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected k/n (e.g. 1/2), got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"expected 1 <= k <= n, got {text!r}")
    return k, n


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hbt-tui miracl")
    actions = parser.add_subparsers(dest="action", required=True)
    pooling = actions.add_parser("pool")
    pooling.add_argument("--out", required=True)
    pooling.add_argument("--languages", nargs="+")
    pooling.add_argument("--split", default="dev")
    pooling.add_argument("--depth", type=int, default=250)
    pooling.add_argument("--retrievers", nargs="+", default=["bm25"])
    pooling.add_argument("--data-dir")
    pooling.add_argument("--hub", action="store_true")
    encoding = actions.add_parser("encode")
    encoding.add_argument("spec")
    encoding.add_argument("--part", type=part, default=(1, 1))
    encoding.add_argument("--echo-to", help="also append each line to this file")
    args = parser.parse_args(argv)
    try:
        return pool(args) if args.action == "pool" else encode(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:
        print(f"error: {getattr(error, 'filename', '') or ''}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
