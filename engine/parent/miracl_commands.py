"""`hbt-tui miracl pool`: a MIRACL candidate pool, built once and shared (engine.child.miracl_pool
builds it, in a child process: BM25 and encoders are the child's work). Run names among the
retrievers become their TREC run folders here, so a finished run's ranking joins the pool
without encoding anything again. `hbt-tui miracl encode SPEC --part k/n`: one of n processes
(one per GPU, or n cluster jobs) writing a spec's corpus shards into the embedding cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from rich.console import Console

from engine.contract.errors import RunError
from engine.parent.headless import open_store, runs_dir_of


def add_miracl_parser(commands, parser_class) -> None:
    miracl = commands.add_parser("miracl", help="MIRACL at scale: candidate pools for the pooled protocol")
    actions = miracl.add_subparsers(dest="miracl_command", required=True, parser_class=parser_class)
    pool = actions.add_parser("pool", help="build a pool file: every judged passage plus retrievers' top-k")
    pool.add_argument("--out", required=True, help="the pool file to write (.json or .json.gz)")
    pool.add_argument("--languages", nargs="+", help="default: every local MIRACL language")
    pool.add_argument("--split", default="dev")
    pool.add_argument("--depth", type=int, default=250, help="each retriever's top-k per query (default 250)")
    pool.add_argument("--retrievers", default="bm25",
                      help="comma-separated: bm25, finished runs (by id or name), encoders (folder, hub name, bundled:…)")
    pool.add_argument("--hub", action="store_true", help="MIRACL from the Hugging Face hub (hf:miracl), not local files")
    pool.add_argument("--data-dir", help="where the local miracl/ folder is (default: $HBT_DATA_DIR)")
    pool.add_argument("--force", action="store_true", help="replace --out if it exists")
    pool.set_defaults(handler=miracl_command)
    encode = actions.add_parser("encode", help="write a spec's MIRACL corpus shards into the embedding cache "
                                "(one part of n: --part k/n)")
    encode.add_argument("spec", help="a spec with a MIRACL dataset (its encoder, precision and eval.miracl)")
    encode.add_argument("--part", default="1/1", help="k/n: this process's share of the shards (default 1/1)")
    encode.set_defaults(handler=encode_command)


def resolved_retrievers(names: list[str], args: argparse.Namespace, dataset: str) -> list[str]:
    """bm25 and encoders as given; a run (by id, prefix or name) as `run:NAME=ITS TREC FOLDER`."""
    resolved = []
    store = None
    for name in names:
        if name == "bm25":
            resolved.append(name)
            continue
        try:
            store = store or open_store(runs_dir_of(args))
            summary = store.resolve(name)
        except RunError:
            resolved.append(name)                 # not a run here: an encoder
            continue
        resolved.append(f"run:{summary['id']}={store.folder(summary['id']).trec_dir(dataset)}")
    return resolved


def miracl_command(args: argparse.Namespace, console: Console) -> int:
    if os.path.exists(args.out) and not args.force:
        raise RunError(f"{args.out} exists (--force replaces it)")
    if not 1 <= args.depth <= 100_000:
        raise RunError(f"--depth must be between 1 and 100000, got {args.depth}")
    names = [name.strip() for name in args.retrievers.split(",") if name.strip()]
    if not names:
        raise RunError("--retrievers: name at least one (bm25, a run, an encoder)")
    retrievers = resolved_retrievers(names, args, "hf:miracl" if args.hub else "miracl")
    command = [sys.executable, "-m", "engine.miracl", "pool", "--out", args.out, "--split", args.split,
               "--depth", str(args.depth), "--retrievers", *retrievers]
    if args.languages:
        command += ["--languages", *args.languages]
    if args.hub:
        command.append("--hub")
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    return subprocess.run(command).returncode


def encode_command(args: argparse.Namespace, console: Console) -> int:
    return subprocess.run([sys.executable, "-m", "engine.miracl", "encode", args.spec, "--part", args.part]).returncode
