"""`python -m engine.pool --out FILE --languages … --retrievers …`: the child side of `hbt-tui
miracl pool` (engine.parent.miracl_commands), which resolves run names to their folders
first. Builds the pool file (engine.child.miracl_pool) and prints a line per language. An
entry point: nothing imports it."""

import argparse
import sys
from pathlib import Path

from engine.child.data import miracl
from engine.child.miracl_pool import pool_language
from engine.contract.errors import EXIT_USER_ERROR, UserError
from engine.contract.miracl_protocol import write_pool


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hbt-tui miracl pool")
    parser.add_argument("--out", required=True)
    parser.add_argument("--languages", nargs="+")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--depth", type=int, default=250)
    parser.add_argument("--retrievers", nargs="+", default=["bm25"])
    parser.add_argument("--data-dir")
    parser.add_argument("--hub", action="store_true")
    args = parser.parse_args(argv)
    try:
        languages = args.languages or (() if args.hub else miracl.local_languages(args.data_dir))
        if not languages:
            raise UserError("no MIRACL languages: give --languages or put MIRACL folders under <data dir>/miracl/")
        pools = {}
        for language in languages:
            data = (miracl.load_hub(language, args.split) if args.hub
                    else miracl.load_local(language, args.split, args.data_dir))
            pools[language] = pool_language(data, args.depth, args.retrievers, print)
            entry = pools[language]
            print(f"{language}: {len(entry['docids'])} of {entry['corpus_size']} passages "
                  f"({len(entry['docids']) / max(1, entry['corpus_size']):.1%}; {entry['judged']} judged)", flush=True)
        digest = write_pool(Path(args.out), args.split, args.depth,
                            [retriever.split("=", 1)[0] for retriever in args.retrievers], pools)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as error:
        print(f"error: {args.out}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"wrote {args.out} (sha256 {digest[:12]}); use it with eval.miracl: "
          f'{{"protocol": "pooled", "pool": "{args.out}"}}')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
