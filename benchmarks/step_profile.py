"""Where a training step's time goes: torch.profiler's self time of ops, by kind of op
(used by benchmarks/train_throughput.py)."""

from __future__ import annotations

import time

PROFILED = 3
CATEGORIES = (   # (category, substrings of an op's name), first match wins; self time only
    ("dropout masks", ("bernoulli", "dropout masks")),
    ("layer norm", ("layer_norm",)),
    ("optimizer + clipping", ("adam", "_foreach", "norm_", "linalg_vector_norm")),
    ("attention (sdpa/softmax)", ("attention", "softmax", "sdpa")),
    ("matmul", ("mm", "matmul", "linear", "mkldnn")),
    ("gelu", ("gelu",)),
    ("pack/unpack (index, cat)", ("index", "nonzero", "cat", "embedding", "gather", "scatter")),
    ("dtype casts + copies", ("copy", "_to_", "aten::to", "clone", "contiguous")),
    ("other elementwise", ("mul", "add", "div", "sub", "masked", "where", "fill", "zero", "sum", "mean", "exp",
                           "log", "neg", "pow", "sqrt")),
)


def profile_steps(run, device: str = "cpu") -> dict:
    """torch.profiler over PROFILED more steps: self CPU time per category of op (ms per step),
    and what no op accounts for (Python, dispatch, tokenizing)."""
    from torch.profiler import ProfilerActivity, profile

    if device != "cpu":
        return {}          # the CPU breakdown only: on a GPU the ops' CPU time is launch time
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run()
    wall = (time.perf_counter() - started) * 1000 / PROFILED
    totals: dict[str, float] = {}
    for event in profiler.key_averages():
        name = event.key.lower()
        if not name.startswith("aten::") and "adam" not in name and name != "dropout masks":
            continue          # record_function ranges (Optimizer.step, autograd nodes) hold no time of their own
            #                   here; "dropout masks" does: the native masks are drawn inside it, outside any op
        category = next((label for label, keys in CATEGORIES if any(key in name for key in keys)), "other ops")
        totals[category] = totals.get(category, 0.0) + event.self_cpu_time_total / 1000 / PROFILED
    totals["outside ops (Python, dispatch, tokenizer)"] = max(0.0, wall - sum(totals.values()))
    return {"step_ms": wall, "categories": totals}


def print_profile(system: str, row: dict) -> None:
    profile = row.get("profile")
    if not profile:
        return
    print(f"\nwhere {system}'s step goes (torch.profiler, self time of ops over {PROFILED} more steps, "
          f"{profile['step_ms']:.0f} ms/step profiled):")
    for category, milliseconds in sorted(profile["categories"].items(), key=lambda item: -item[1]):
        print(f"  {category:<44} {milliseconds:8.1f} ms {100 * milliseconds / profile['step_ms']:6.1f}%")
