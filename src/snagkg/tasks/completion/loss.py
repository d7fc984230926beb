"""Self-adversarial negative sampling loss (RotatE; SPEC section 4)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from snagkg.core.interaction import LOSSES, Loss


def self_adversarial_loss(pos_score: torch.Tensor, neg_score: torch.Tensor,
                          neg_mask: Optional[torch.Tensor] = None, temperature: float = 2.0) -> torch.Tensor:
    """``-log s(pos) - sum_j p_j log s(-neg_j)``, ``p = softmax(temperature * neg)`` (not back-propagated).

    Scores are ``margin - distance`` (higher is better): ``pos_score [B]``,
    ``neg_score [B, K]``; ``neg_mask [B, K]`` marks usable negatives (masked
    ones get ``p = 0``). Returns the batch mean.
    """
    logits = temperature * neg_score.detach()
    if neg_mask is not None:
        logits = logits.masked_fill(~neg_mask, float("-inf"))
    p = torch.softmax(logits, dim=-1)
    if neg_mask is not None:
        p = torch.nan_to_num(p, nan=0.0)  # a row with no usable negative contributes no negative term
    neg_term = (p * F.logsigmoid(-neg_score)).sum(dim=-1)
    return -(F.logsigmoid(pos_score) + neg_term).mean()


@LOSSES.register("nssa")
class NSSALoss(Loss):
    """Self-adversarial negative sampling (SPEC section 4) as a head's loss: :func:`self_adversarial_loss`
    with the adversarial temperature ``alpha``."""

    name = "nssa"

    def __init__(self, temperature: float = 2.0):
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, pos_score: torch.Tensor, neg_score: torch.Tensor,
                neg_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The batch mean of the loss of ``pos_score [B]`` against ``neg_score [B, K]``."""
        return self_adversarial_loss(pos_score, neg_score, neg_mask, self.temperature)
