"""The parts a task head is built from: interactions, losses and fused special cases.

A task head is ``interaction + loss`` on top of the shared
:class:`~snagkg.core.representation.MultiModalEntityRepresentation`, as PyKEEN's
``ERModel(entity_representations, ..., interaction)`` with a separate loss:

* :class:`Interaction` scores entity vectors against each other (abstract :meth:`Interaction.score`).
  Completion: a :class:`TripleInteraction` such as RotatE (:mod:`snagkg.tasks.completion.scorers`,
  registry :data:`snagkg.core.registry.SCORERS`); alignment: cosine with CSLS
  (:class:`snagkg.tasks.alignment.model.CSLSInteraction`).
* :class:`Loss` turns scores (or fused vectors) into the training objective (abstract
  :meth:`Loss.forward`); chosen by name from :data:`LOSSES` (``nssa``: self-adversarial negative
  sampling, SPEC section 4; ``icl``: in-batch contrastive with uncertainty weights, SPEC section 5).
* :data:`FUSED` holds registered special cases: one kernel that computes an interaction and a
  loss together (``rotate+nssa``: RotatE's distances, the self-adversarial weights and the
  gradient in fused loops). A head uses one when ``FUSED`` has its ``"<interaction>+<loss>"``.

Every capability a caller may use is a method declared here, abstract where every subclass must
give it and with a default otherwise: callers never probe an interaction with ``hasattr``.
To add a scorer: subclass :class:`TripleInteraction` and register it in ``SCORERS``; a loss:
subclass :class:`Loss` and register it in ``LOSSES``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Optional, Tuple

import torch
from torch import nn

from snagkg.core.registry import Registry

#: training losses by name
LOSSES: "Registry[type]" = Registry("loss")
#: fused interaction + loss kernels by ``"<interaction>+<loss>"``
FUSED: "Registry[Callable]" = Registry("fused kernel")


class Interaction(nn.Module, ABC):
    """Scores entity vectors; subclasses define what a score is (higher is better).

    ``name`` is the registry name (used to find a fused kernel in :data:`FUSED`).
    """

    name: str = ""

    @abstractmethod
    def score(self, *vectors: torch.Tensor) -> torch.Tensor:
        """Scores of aligned rows of entity (and relation) inputs; higher is better."""


class TripleInteraction(Interaction):
    """A knowledge-graph scorer of triples ``(h, r, t)``: ``score = margin - distance(query(h, r), t)``.

    A query ``(h, r, ?)`` or ``(?, r, t)`` becomes a vector ``q`` such that a candidate entity
    ``e`` is at ``distance(q, e)``, so one query is scored against the whole entity table by one
    :meth:`pairwise` kernel. ``relation`` holds the relation parameters ``[R, ...]``.
    """

    #: the score is ``margin - distance``
    margin: float = 0.0
    #: entity coordinates of a plain KGE start in ``[-embedding_range, embedding_range]`` (the
    #: completion model scales the fused readout to this range)
    embedding_range: float = 1.0

    @abstractmethod
    def query(self, anchor: torch.Tensor, r: torch.Tensor, predict_tail: bool) -> torch.Tensor:
        """The query vectors of anchors ``[..., d]`` and relation ids ``r`` (tails: ``h o r``; heads otherwise)."""

    @abstractmethod
    def distance(self, q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Distances of aligned (broadcast) queries and entity vectors ``[...]``."""

    @abstractmethod
    def pairwise(self, q: torch.Tensor, table: torch.Tensor, compiled: bool = False) -> torch.Tensor:
        """Distances of every query ``[B, d]`` to every row of ``table [N, d]``: ``[B, N]``."""

    def query_rows(self, table: torch.Tensor, anchor: torch.Tensor, r: torch.Tensor, predict_tail: bool,
                   compiled: bool = False) -> torch.Tensor:
        """``query(table[anchor], r, predict_tail)`` for ``[B]`` anchor ids (a scorer may fuse the gather)."""
        return self.query(table[anchor], r, predict_tail)

    def score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``margin - distance(query(h, r), t)`` for aligned tensors of entity vectors and relation ids."""
        return self.margin - self.distance(self.query(h, r, True), t)

    def sampled_scores(self, vecs: torch.Tensor, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                       candidate: torch.Tensor, corrupt_head: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scores ``pos [B]`` of positives ``(h, r, t)`` (rows of ``vecs``) and ``negs [B, K]`` of their
        negatives, ``candidate [B, K]`` replacing the head (where ``corrupt_head``) or the tail. One
        query per positive and direction: a negative only swaps the candidate entity."""
        q_tail = self.query(vecs[h], r, True)    # h o r, compared with tails
        q_head = self.query(vecs[t], r, False)   # t o conj(r), compared with heads
        pos = self.margin - self.distance(q_tail, vecs[t])
        q = torch.where(corrupt_head.unsqueeze(-1), q_head.unsqueeze(1), q_tail.unsqueeze(1))
        return pos, self.margin - self.distance(q, vecs[candidate])

    def phases(self, r: torch.Tensor) -> Optional[torch.Tensor]:
        """Relation ids' rotation phases in radians, for scorers whose relations are rotations (default: none)."""
        return None

    def relation_parameters(self, r: torch.Tensor) -> Tuple[torch.Tensor, str]:
        """What an export writes for relations ``r``, and its description: the phases when
        :meth:`phases` gives them, else the raw rows of ``relation``."""
        phases = self.phases(r)
        if phases is not None:
            return phases, "phases in radians"
        return self.relation[r], "raw"


class Loss(nn.Module, ABC):
    """A training objective on scores or vectors; ``name`` is its registry name in :data:`LOSSES`."""

    name: str = ""

    @abstractmethod
    def forward(self, *inputs: Any) -> torch.Tensor:
        """The scalar loss."""


def fused_kernel(interaction: Interaction, loss: Loss) -> Optional[Callable]:
    """The registered fused kernel of ``interaction`` and ``loss``, or ``None``."""
    key = f"{interaction.name}+{loss.name}"
    return FUSED.get(key) if key in FUSED else None
