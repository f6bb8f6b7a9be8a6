"""InfoNCE with in-batch negatives, optional hard negatives and a symmetric term.

Query i's positive is passage i; every other passage of the batch, and every hard
negative, is a negative. Embeddings are L2-normalised, so scores are cosines divided by
the temperature. The symmetric term scores each positive passage against all queries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor,
             temperature: float, symmetric: bool = False) -> torch.Tensor:
    """query_embeddings (B, D); passage_embeddings (B + H, D): B positives, then H hard negatives."""
    batch = query_embeddings.shape[0]
    labels = torch.arange(batch, device=query_embeddings.device)                     # (B,)
    scores = query_embeddings @ passage_embeddings.T / temperature                    # (B, B + H)
    loss = F.cross_entropy(scores, labels)
    if symmetric:
        reverse = passage_embeddings[:batch] @ query_embeddings.T / temperature       # (B, B)
        loss = (loss + F.cross_entropy(reverse, labels)) / 2
    return loss
