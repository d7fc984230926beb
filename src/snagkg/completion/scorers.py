"""Triple scorers (interactions), chosen by name. SPEC section 4: RotatE.

A scorer turns a query ``(h, r, ?)`` or ``(?, r, t)`` into a vector ``q``
such that the distance of a candidate entity ``e`` is ``dist(q, e)``; the
score is ``margin - dist``. This lets evaluation score one query against
the whole entity table with a single fused kernel.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import kernels
from ..registry import Registry

SCORERS: "Registry[type]" = Registry("scorer")


def complex_l1(q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``sum_k |q_k - e_k|`` over complex coordinates stored as ``[re..., im...]``.

    Broadcasts over leading dimensions: ``q [..., 2k]`` and ``e [..., 2k]``.
    """
    k = q.shape[-1] // 2
    d_re = q[..., :k] - e[..., :k]
    d_im = q[..., k:] - e[..., k:]
    return torch.sqrt(d_re * d_re + d_im * d_im).sum(dim=-1)


@SCORERS.register("rotate")
class RotatE(nn.Module):
    """RotatE: relations are rotations in the complex plane, ``d = ||h o r - t||`` (L1 over moduli).

    Entities have width ``2k`` (``k`` complex numbers); relations are ``k`` phases
    stored in ``[-range, range]`` and mapped to ``[-pi, pi]``.
    """

    def __init__(self, num_relations: int, entity_width: int, margin: float = 12.0):
        super().__init__()
        if entity_width % 2:
            raise ValueError("RotatE needs an even entity width")
        self.k = entity_width // 2
        self.margin = margin
        self.embedding_range = (margin + 2.0) / self.k
        self.relation = nn.Parameter(torch.empty(num_relations, self.k).uniform_(-self.embedding_range, self.embedding_range))

    def phases(self, r: torch.Tensor) -> torch.Tensor:
        return self.relation[r] * (math.pi / self.embedding_range)

    def query(self, anchor: torch.Tensor, r: torch.Tensor, predict_tail: bool) -> torch.Tensor:
        """``h o r`` to find tails, ``t o conj(r)`` to find heads (``|r| = 1``)."""
        phase = self.phases(r)
        while phase.dim() < anchor.dim():
            phase = phase.unsqueeze(-2)
        cos, sin = torch.cos(phase), torch.sin(phase)
        if not predict_tail:
            sin = -sin
        a_re, a_im = anchor[..., : self.k], anchor[..., self.k:]
        return torch.cat([a_re * cos - a_im * sin, a_re * sin + a_im * cos], dim=-1)

    def distance(self, q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return complex_l1(q, e)

    def pairwise(self, q: torch.Tensor, table: torch.Tensor, compiled: bool = False) -> torch.Tensor:
        """Distances of every query ``[B, 2k]`` to every row of ``table [N, 2k]``: ``[B, N]``."""
        return kernels.complex_l1_pairwise(q, table, compiled)

    def score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``margin - d(h, r, t)`` for aligned tensors of entity vectors."""
        return self.margin - self.distance(self.query(h, r, True), t)
