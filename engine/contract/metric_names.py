"""Names of ranking metrics, parsed without numpy so specs can be validated anywhere.

    map            average precision over the full ranking (LAReQA's mAP)
    map@k          AP truncated at k, divided by min(|relevant|, k) (LAReQA / XTREME mAP@20)
    map_cut@k      AP truncated at k, divided by |relevant| (trec_eval's map_cut_k)
    ndcg@k         nDCG with the gains in the qrels (binary here), log2 discount
    recall@k       retrieved relevant in the top k / all relevant (paper's R@1, R@10)
    mrr@k          1 / rank of the first relevant item if it is in the top k, else 0
    success@k      1 if any relevant item is in the top k, else 0
"""

from __future__ import annotations

import re

FULL_RANKING = ("map", "mrr")
MAX_CUTOFF = 10_000                 # rankings are kept this deep at most (trec_depth's bound too)
AT_K = ("map", "map_cut", "ndcg", "recall", "mrr", "success")
_PATTERN = re.compile(r"^(?P<family>[a-z_]+)(?:@(?P<k>[1-9][0-9]*))?$")


def parse_metric(name: str) -> tuple[str, int | None]:
    """Split `ndcg@10` into ('ndcg', 10); raise ValueError for an unknown name."""
    match = _PATTERN.match(name)
    if not match:
        raise ValueError(f"unknown metric {name!r}")
    family, k = match["family"], match["k"]
    if k is None and family not in FULL_RANKING:
        raise ValueError(f"metric {name!r} needs a cut-off, e.g. {family}@10")
    if k is not None and family not in AT_K:
        raise ValueError(f"unknown metric {name!r} (known: {', '.join(AT_K)})")
    if k is not None and (len(k) > 6 or int(k) > MAX_CUTOFF):
        raise ValueError(f"metric {name[:40]!r}: the cut-off must be at most {MAX_CUTOFF:,}")
    return family, int(k) if k else None

