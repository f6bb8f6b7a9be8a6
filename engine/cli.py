"""The headless command line behind `hbt-tui <command>` (no textual here).

    hbt-tui data fetch [xquad-r|mlqa-r ...]   download the LAReQA benchmark files
    hbt-tui evaluate SPEC|MODEL ...            zero-shot / stand-alone evaluation
"""

from __future__ import annotations

import argparse
import sys

from engine.errors import EXIT_USER_ERROR, UserError


def _data_fetch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.data.fetch import fetch

    for dataset in args.datasets:
        print(f"{dataset}: {fetch(dataset, Path(args.to) if args.to else None)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hbt-tui", description="Hybrid batch training experiments, headless.")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="benchmark data").add_subparsers(dest="data_command", required=True)
    fetch = data.add_parser("fetch", help="download XQuAD-R / MLQA-R into the user cache")
    fetch.add_argument("datasets", nargs="*", default=["xquad-r", "mlqa-r"])
    fetch.add_argument("--to", help="data directory to fill (default: the user cache)")
    fetch.set_defaults(handler=_data_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "evaluate":
        from engine.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
