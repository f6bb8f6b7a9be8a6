"""InfoNCE with in-batch negatives, optional hard negatives and a symmetric term.

Query i's positive is passage i; every other passage of the batch, and every hard negative,
is a negative. Embeddings are L2-normalised, so scores are cosines divided by the
temperature. The symmetric term scores each positive passage against all queries.

Under data parallelism a rank holds B local queries and scores them against the gathered
passages of every rank (W·B, positives first in rank order): `offset` is where its own
positives start (rank · B). The mean over local queries, averaged over ranks, is the loss
of the whole global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor, temperature: float,
             symmetric: bool = False, offset: int = 0, all_queries: torch.Tensor | None = None) -> torch.Tensor:
    """query_embeddings (B, D); passage_embeddings (P + H, D): P positives (every rank's), then
    H hard negatives; the local queries' positives are passages offset .. offset + B.
    all_queries (P, D): every rank's queries, for the symmetric term under data parallelism."""
    B = query_embeddings.shape[0]
    labels = torch.arange(offset, offset + B, device=query_embeddings.device)             # (B,)
    scores = query_embeddings @ passage_embeddings.T / temperature                       # (B, P + H)
    loss = F.cross_entropy(scores, labels)
    if symmetric:
        queries = query_embeddings if all_queries is None else all_queries               # (P, D)
        local_positives = passage_embeddings[offset:offset + B]                          # (B, D)
        reverse = local_positives @ queries.T / temperature                              # (B, P)
        loss = (loss + F.cross_entropy(reverse, labels)) / 2
    return loss
