"""The in-batch contrastive alignment loss (ICL) and learned uncertainty weighting (SPEC section 5)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from snagkg.core.encoder import attention_weighted
from snagkg.core.interaction import LOSSES, Loss


def icl_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1,
             weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """In-batch contrastive loss over seed links ``(a_i, b_i)``.

    Rows are L2-normalised. For the ``a -> b`` direction the logits of
    ``a_i`` are its similarities to every ``b_j`` and to every other ``a_j``
    (itself masked), divided by ``temperature``, and the target is ``b_i``;
    ``b -> a`` likewise; the two directions are averaged. ``weight`` (``[B]``)
    scales each link's cross-entropy (mean over links).
    """
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    a_t = a / temperature  # scale the [B, d] side, not the [B, B] logits
    b_t = b / temperature
    ab = a_t @ b.t()
    aa = (a_t @ a.t()).fill_diagonal_(float("-inf"))  # an entity is not its own negative
    bb = (b_t @ b.t()).fill_diagonal_(float("-inf"))
    pos = (a_t * b).sum(dim=1)
    # cross-entropy over [ab | aa] (and [ba | bb]) with the partner as target, without concatenating
    loss_a = torch.logaddexp(torch.logsumexp(ab, dim=1), torch.logsumexp(aa, dim=1)) - pos
    loss_b = torch.logaddexp(torch.logsumexp(ab, dim=0), torch.logsumexp(bb, dim=1)) - pos
    per_link = 0.5 * (loss_a + loss_b)
    if weight is not None:
        per_link = per_link * weight
    return per_link.mean()


class UncertaintyWeighting(nn.Module):
    """``sum_i exp(-s_i) L_i + s_i`` with learned ``s`` (initialised to 0)."""

    def __init__(self, count: int):
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(count))

    def forward(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        """The weighted sum of the scalar ``losses`` (one per learned weight)."""
        stacked = torch.stack(list(losses))
        return (torch.exp(-self.log_vars) * stacked + self.log_vars).sum()


@LOSSES.register("icl")
class ICLLoss(Loss):
    """SNAG's alignment objective on a batch of links (SPEC section 5).

    ICL on the fused vectors and on their attention-weighted concatenation, plus per-modality
    terms combined with learned uncertainty weights: each modality's projected token weighted
    per link by ``min(w_a[m], w_b[m]) * M``, and each fusion output token.
    """

    name = "icl"

    def __init__(self, num_modalities: int, temperature: float = 0.1):
        super().__init__()
        self.temperature = float(temperature)
        self.num_modalities = int(num_modalities)
        # one uncertainty weight per modality term: projected token and fusion output of each modality
        self.uncertainty = UncertaintyWeighting(2 * self.num_modalities)

    def forward(self, fused, b: int) -> torch.Tensor:
        """The loss of links whose left entities are ``fused``'s first ``b`` rows and right entities the rest
        (``fused``: a :class:`snagkg.encoder.Fused` of ``2 b`` entities)."""
        tau, n_mod = self.temperature, self.num_modalities
        total = icl_loss(fused.vector[:b], fused.vector[b:], tau)
        aw = attention_weighted(fused.tokens, fused.weights)
        total = total + icl_loss(aw[:b], aw[b:], tau)
        w = fused.weights.detach()
        conf = torch.minimum(w[:b], w[b:]) * n_mod  # per link and modality
        terms = [icl_loss(fused.tokens[:b, k], fused.tokens[b:, k], tau, weight=conf[:, k]) for k in range(n_mod)]
        terms += [icl_loss(fused.outputs[:b, k], fused.outputs[b:, k], tau) for k in range(n_mod)]
        return total + self.uncertainty(terms)
