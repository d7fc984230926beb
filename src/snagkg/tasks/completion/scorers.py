"""Triple scorers (interactions), chosen by name. SPEC section 4: RotatE.

A scorer turns a query ``(h, r, ?)`` or ``(?, r, t)`` into a vector ``q``
such that the distance of a candidate entity ``e`` is ``dist(q, e)``; the
score is ``margin - dist``. This lets evaluation score one query against
the whole entity table with a single fused kernel.

The arithmetic lives in :mod:`snagkg.tasks.completion.rotate`; the registered classes here hold
the parameters and call into it, so that prediction, triple scores, training and ranking all
score a triple through the same code.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn

from snagkg.core.interaction import FUSED, TripleInteraction
from snagkg.core.registry import (
    SCORERS,  # in registry.py: the config checks scorer names against it
)
from snagkg.tasks.completion import rotate


@SCORERS.register("rotate")
class RotatE(TripleInteraction):
    """RotatE: relations are rotations in the complex plane, ``d = ||h o r - t||`` (L1 over moduli).

    Entities have width ``2k`` (``k`` complex numbers); relations are ``k`` phases
    stored in ``[-range, range]`` and mapped to ``[-pi, pi]``. The score is ``margin - d``.
    """

    name = "rotate"

    def __init__(self, num_relations: int, entity_width: int, margin: float = 12.0):
        super().__init__()
        if entity_width % 2:
            raise ValueError("RotatE needs an even entity width")
        self.k = entity_width // 2
        self.margin = margin
        self.embedding_range = (margin + 2.0) / self.k
        self.relation = nn.Parameter(torch.empty(num_relations, self.k).uniform_(-self.embedding_range, self.embedding_range))

    @property
    def phase_scale(self) -> float:
        """Radians per unit of the relation parameter."""
        return math.pi / self.embedding_range

    def phases(self, r: torch.Tensor) -> torch.Tensor:
        """Relation phases ``[..., k]`` in radians for relation ids ``r``."""
        return self.relation[r] * self.phase_scale

    def query(self, anchor: torch.Tensor, r: torch.Tensor, predict_tail: bool) -> torch.Tensor:
        """``h o r`` to find tails, ``t o conj(r)`` to find heads (``|r| = 1``)."""
        phase = self.phases(r)
        while phase.dim() < anchor.dim():
            phase = phase.unsqueeze(-2)
        sin = torch.sin(phase)
        return rotate.rotate(anchor, torch.cos(phase), sin if predict_tail else -sin)

    def query_rows(self, table: torch.Tensor, anchor: torch.Tensor, r: torch.Tensor, predict_tail: bool,
                   compiled: bool = False) -> torch.Tensor:
        """``query(table[anchor], r, predict_tail)`` for ``[B]`` indices, as one fused kernel when ``compiled``
        (used without gradients, by the ranking)."""
        return rotate._query_kernel(table, anchor, self.relation, r, self.phase_scale, predict_tail,
                                    compiled=compiled and not torch.is_grad_enabled())

    def distance(self, q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``||q - e||`` summed over the moduli of the ``k`` complex coordinates."""
        return rotate.complex_l1(q, e)

    def pairwise(self, q: torch.Tensor, table: torch.Tensor, compiled: bool = False) -> torch.Tensor:
        """Distances of every query ``[B, 2k]`` to every row of ``table [N, 2k]``: ``[B, N]``."""
        return rotate.complex_l1_pairwise(q, table, compiled)

    def score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``margin - d(h, r, t)`` for aligned tensors of entity vectors."""
        return self.margin - self.distance(self.query(h, r, True), t)

    def sampled_scores(self, vecs: torch.Tensor, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                       candidate: torch.Tensor, corrupt_head: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scores ``pos [B]`` of positives ``(h, r, t)`` (rows of ``vecs``) and ``negs [B, K]`` of their
        negatives, ``candidate [B, K]`` replacing the head (where ``corrupt_head``) or the tail."""
        rows = vecs[torch.cat([h, t, candidate.reshape(-1)])]
        return rotate.sampled_scores(rows, self.phases(r), corrupt_head, self.margin)


@FUSED.register("rotate+nssa")
def rotate_nssa(scorer: RotatE, vecs: torch.Tensor, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                candidate: torch.Tensor, corrupt_head: torch.Tensor, mask: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """RotatE's self-adversarial loss of positives ``(h, r, t)`` against ``candidate [B, K]`` entities:
    :func:`snagkg.tasks.completion.rotate.fused_loss` (fused forward and backward loops)."""
    return rotate.fused_loss(vecs, scorer.relation, scorer.phase_scale, h, r, t, candidate, corrupt_head, mask,
                             scorer.margin, temperature)
