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

from dataclasses import dataclass

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


@dataclass(frozen=True)
class ContrastiveLoss:
    """The training objective as an object built with the values it uses: InfoNCE at
    `temperature`, optionally symmetric; with `chunk_size` the step computes it GradCache's way
    (embeddings in chunks without a graph, then each chunk again with its cached gradient), as
    sentence-transformers' CachedMultipleNegativesRankingLoss carries its mini-batch size."""

    temperature: float = 0.05
    symmetric: bool = False
    chunk_size: int | None = None          # None: the whole batch in one pass

    @classmethod
    def from_spec(cls, loss) -> ContrastiveLoss:
        """From a spec's `loss` section (engine.contract.spec.LossSpec)."""
        return cls(loss.temperature, loss.symmetric, loss.chunk_size)

    def __call__(self, query_embeddings: torch.Tensor, passage_embeddings: torch.Tensor, offset: int = 0,
                 all_queries: torch.Tensor | None = None) -> torch.Tensor:
        return info_nce(query_embeddings, passage_embeddings, self.temperature, self.symmetric, offset, all_queries)
