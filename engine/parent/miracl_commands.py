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
from engine.parent.run_service import open_store, runs_dir_of


def add_miracl_parser(commands, parser_class) -> None:
    miracl = commands.add_parser("miracl", help="MIRACL at scale: candidate pools for the pooled protocol")
    actions = miracl.add_subparsers(dest="miracl_command", required=True, parser_class=parser_class)
    pool = actions.add_parser("pool", help="build a pool file: every judged passage plus retrievers' top-k")
    pool.add_argument("--out", required=True, help="the pool file to write (.json or .json.gz)")
    pool.add_argument("--languages", nargs="+", help="default: every local MIRACL language")
    pool.add_argument("--split", default="dev")
    pool.add_argument("--depth", type=int, default=250, help="each retriever's top-k per query (default 250)")
    pool.add_argument("--retrievers", default="bm25",
                      help="comma-separated: bm25, finished runs (by id or name), encoders (folder, hub name, bundled:…), "
                      "published pools (hf:mteb/miracl-hard-negatives[@REVISION] or a local folder in its layout)")
    pool.add_argument("--hub", action="store_true", help="MIRACL from the Hugging Face hub (hf:miracl), not local files")
    pool.add_argument("--data-dir", help="where the local miracl/ folder is (default: $HBT_DATA_DIR)")
    pool.add_argument("--force", action="store_true", help="replace --out if it exists")
    pool.set_defaults(handler=miracl_command)
    encode = actions.add_parser("encode", help="write a spec's MIRACL corpus shards into the embedding cache "
                                "(one part of n: --part k/n)")
    encode.add_argument("spec", help="a spec with a MIRACL dataset (its encoder, precision and eval.miracl)")
    encode.add_argument("--part", default="1/1", help="k/n: this process's share of the shards (default 1/1)")
    encode.add_argument("--parts", type=int, help="start n processes at once, one part each (over the local GPUs, "
                        "or as jobs of --executor)")
    encode.add_argument("--executor", help="where --parts run: local (default), ray://HOST:PORT, slurm, submitit-local")
    encode.add_argument("--partition", help="the Slurm partition")
    encode.set_defaults(handler=encode_command)


def resolved_retrievers(names: list[str], args: argparse.Namespace, dataset: str) -> list[str]:
    """bm25, hf: pools and encoders as given; a run (by id, prefix or name) as `run:NAME=ITS TREC FOLDER`."""
    resolved = []
    store = None
    for name in names:
        if name == "bm25" or name.startswith("hf:"):
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
    if args.parts is None and (args.executor or args.partition):
        raise RunError("--executor and --partition say where --parts run: add --parts n (--part k/n runs one "
                       "part here)")
    if args.parts is None:
        return subprocess.run([sys.executable, "-m", "engine.miracl", "encode", args.spec, "--part", args.part]).returncode
    if not 1 <= args.parts <= 4096:
        raise RunError(f"--parts must be between 1 and 4096, got {args.parts}")
    if not os.path.isfile(args.spec):
        raise RunError(f"{args.spec}: no such spec file")
    import asyncio

    return asyncio.run(encode_parts(os.path.abspath(args.spec), args.parts, args.executor, args.partition,
                                    runs_dir_of(args)))


async def encode_parts(spec: str, parts: int, executor_spec: str | None, partition: str | None, runs_dir) -> int:
    """n `engine.miracl encode --part k/n` processes through the project's executors: locally one
    per GPU (CUDA_VISIBLE_DEVICES) or the cores shared among them, or n Ray/Slurm jobs. Their
    lines are printed prefixed with their part; each part's stderr is kept in its folder."""
    import asyncio
    import time

    from engine.contract.layout import RunFolder
    from engine.parent.executors import from_spec
    from engine.parent.launch import detect_gpus

    executor = from_spec(executor_spec, partition)
    executor.check()
    gpus = detect_gpus() if executor.name == "local" else []
    base = runs_dir / ".miracl-encode" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    handles = []
    for k in range(1, parts + 1):
        folder = RunFolder(base / f"part-{k}")
        folder.path.mkdir(parents=True)
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[(k - 1) % len(gpus)]
        elif executor.name == "local":
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parts))
        command = [sys.executable, "-m", "engine.miracl", "encode", spec, "--part", f"{k}/{parts}",
                   "--echo-to", str(folder.events)]      # where a Slurm job's lines are followed
        handles.append((k, folder, await executor.launch(command, env, folder)))
        print(f"part {k}/{parts}: {handles[-1][2].where}", flush=True)

    async def follow(k: int, folder, handle) -> int:
        async for line in handle.lines():
            print(f"[{k}/{parts}] {line.decode(errors='replace').rstrip()}", flush=True)
        outcome = await handle.wait()
        if outcome.returncode != 0:
            tail = folder.stderr.read_text(errors="replace").strip().splitlines() if folder.stderr.exists() else []
            print(f"part {k}/{parts} failed ({outcome.ended_as or f'exit {outcome.returncode}'})"
                  f"{': ' + tail[-1] if tail else ''}", file=sys.stderr, flush=True)
        return outcome.returncode if outcome.returncode is not None else 1

    codes = await asyncio.gather(*(follow(*entry) for entry in handles))
    return 0 if not any(codes) else 2 if 2 in codes else 1
