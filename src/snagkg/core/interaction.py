"""The parts a task head is built from: interactions, losses and fused special cases.

A task head is ``interaction + loss`` on top of the shared
:class:`~snagkg.representation.MultiModalEntityRepresentation`, as PyKEEN's
``ERModel(entity_representations, ..., interaction)`` with a separate loss:

* :class:`Interaction` scores entity vectors against each other. Completion: a
  knowledge-graph scorer such as RotatE (:mod:`snagkg.completion.scorers`, registry
  :data:`snagkg.registry.SCORERS`); alignment: cosine with CSLS
  (:class:`snagkg.alignment.model.CSLSInteraction`).
* :class:`Loss` turns scores into the training objective; chosen by name from :data:`LOSSES`
  (``nssa``: self-adversarial negative sampling, SPEC section 4; ``icl``: in-batch contrastive
  with uncertainty weights, SPEC section 5).
* :data:`FUSED` holds registered special cases: one kernel that computes an interaction and a
  loss together (``rotate+nssa``: RotatE's distances, the self-adversarial weights and the
  gradient in fused loops). A head uses one when ``FUSED`` has its ``"<interaction>+<loss>"``.

To add a scorer: subclass :class:`Interaction` in ``completion/scorers.py`` and register it in
``SCORERS``; a loss: subclass :class:`Loss` and register it in ``LOSSES``.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from snagkg.core.registry import Registry

#: training losses by name
LOSSES: "Registry[type]" = Registry("loss")
#: fused interaction + loss kernels by ``"<interaction>+<loss>"``
FUSED: "Registry[Callable]" = Registry("fused kernel")


class Interaction(nn.Module):
    """Scores entity vectors; subclasses define what a score is (higher is better).

    ``name`` is the registry name (used to find a fused kernel in :data:`FUSED`).
    """

    name: str = ""


class Loss(nn.Module):
    """A training objective on scores or vectors; ``name`` is its registry name in :data:`LOSSES`."""

    name: str = ""


def fused_kernel(interaction: Interaction, loss: Loss) -> Optional[Callable]:
    """The registered fused kernel of ``interaction`` and ``loss``, or ``None``."""
    key = f"{interaction.name}+{loss.name}"
    return FUSED.get(key) if key in FUSED else None
