"""The SNAG completion model (SPEC section 4): the shared entity representation, scored by RotatE.

``CompletionModel = MultiModalEntityRepresentation + interaction (RotatE) + loss (NSSA)``,
as PyKEEN's ``ERModel``. Options of the head:

* ``completion.structure_residual``: the (noised) structure row is added to the fused vector,
  SNAG's fusion as a plug-in to RotatE (SPEC section 6);
* ``completion.residual_gate``: the fused vector is first multiplied by a learned scalar that
  starts at 0, so that training starts from plain RotatE.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from snagkg.core.checkpoints import rename_legacy_keys
from snagkg.core.interaction import LOSSES, fused_kernel
from snagkg.core.registry import SCORERS
from snagkg.core.representation import (
    EmbeddingStructure,
    MultiModalEntityRepresentation,
)
from snagkg.runtime.errors import SnagError
from snagkg.tasks.completion import loss as _losses  # noqa: F401  (registers the completion losses)
from snagkg.tasks.completion.config import CompletionConfig
from snagkg.training.sparse import resolve_entity_updates

#: ``fusion_scope: auto`` fuses only the batch's entities when they are at most this share of the graph
BATCH_FRACTION = 0.5
#: entities fused at once when every entity's vector is computed from memory-mapped tables
VECTOR_CHUNK = 1 << 16


def bucket(n: int) -> int:
    """``n`` rounded up to a multiple of an eighth of its power of two (at most 1/8 more), so that the
    batch path's shapes take few distinct values and compiled kernels are not rebuilt every step."""
    step = 1 << max(0, n.bit_length() - 4)
    return -(-n // step) * step


#: parameter names of checkpoints written before the shared representation existed
LEGACY_KEYS = (("entity", "entities.structure.weight"), ("encoder.", "entities.encoder."),
               ("scorer.", "interaction."))


class CompletionModel(nn.Module):
    """Entity representation (``entities``), ``interaction`` (a registered scorer), ``loss`` (NSSA).

    Entity vectors are the representation's readout times ``output_scale``, which maps the
    readout's initial scale to RotatE's initial range (1 without the fusion encoder).
    """

    def __init__(self, num_entities: int, num_relations: int, tables: Mapping[str, Any],
                 modalities: Sequence[str], comp: CompletionConfig, enc: Any, noise: Any, precision: str = "fp32",
                 weight_decay: float = 0.0):
        """``comp``: the run's ``completion`` section; ``enc``, ``noise``: its ``encoder`` and ``noise``
        sections; ``precision``: ``fp32`` or ``bf16``; ``weight_decay``: ``train.weight_decay`` (sparse
        entity updates need none)."""
        super().__init__()
        rng = (comp.margin + 2.0) / (enc.hidden // 2)
        structure = EmbeddingStructure(torch.empty(num_entities, enc.hidden).uniform_(-rng, rng))
        self.entities = MultiModalEntityRepresentation(structure, tables, modalities, enc, noise, precision)
        self.interaction = SCORERS.get(comp.scorer)(num_relations, self.entities.width, comp.margin)
        self.loss = LOSSES.get("nssa")(comp.adversarial_temperature)
        # Map the readout to RotatE's initial scale: coordinates ~ U(-range, range) have RMS range/sqrt(3).
        self.output_scale = (self.interaction.embedding_range / math.sqrt(3.0) / self.entities.encoder.readout.unit_rms
                             if enc.fusion else 1.0)
        self.structure_residual = bool(comp.structure_residual and enc.fusion)
        if self.structure_residual and "structure" not in self.entities.modalities:
            raise SnagError("completion.structure_residual (--structure-residual) needs the structure modality; "
                            f"the run uses {', '.join(self.entities.modalities)}")
        # the learned share of the fused vector (completion.residual_gate); None: a fixed 1
        self.gate = nn.Parameter(torch.zeros(())) if self.structure_residual and comp.residual_gate else None
        self._fused = fused_kernel(self.interaction, self.loss)
        self.fusion_scope = comp.fusion_scope
        # sparse entity-table updates (snagkg.sparse): the batch's structure rows carry a sparse gradient
        self.sparse = resolve_entity_updates(comp.entity_updates, num_entities, weight_decay, self.fusion_scope)
        self.entities.sparse_rows = self.sparse
        if self.fusion_scope == "table" and (self.sparse or self.entities.mapped):
            raise SnagError("--fusion-scope table fuses every entity each step: it needs dense entity updates "
                            "and feature tables in memory (--entity-updates dense --feature-storage memory)")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_legacy_keys(state_dict, prefix, LEGACY_KEYS)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def modalities(self):
        """The representation's modalities, in token order."""
        return self.entities.modalities

    def refresh_noise(self, generator: Optional[torch.Generator] = None) -> None:
        """Draw new modality noise (see :meth:`MultiModalEntityRepresentation.refresh_noise`)."""
        self.entities.refresh_noise(generator)

    def entity_vectors(self, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Entity vectors ``[n, width]`` for the scorer (all entities by default), through the full encoder."""
        inputs, index = self.entities.entity_inputs(index)
        v = self.entities.encode(inputs, index).vector * self.output_scale
        return self._gated(v) + self._residual(inputs, index) if self.structure_residual else v

    def vectors(self, indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`entity_vectors` of every entity (or only of ``indices``, computed from their rows
        alone) through the encoder's readout-only path, float32. With memory-mapped feature tables, or
        more than four chunks of entities, every entity's vector is computed in chunks of
        :data:`VECTOR_CHUNK` entities (the encoder's intermediates stay bounded)."""
        n = self.entities.num_entities
        if indices is None and (self.entities.mapped or n > 4 * VECTOR_CHUNK):
            dev = self.entities.device
            return torch.cat([self.vectors(torch.arange(s, min(n, s + VECTOR_CHUNK), device=dev))
                              for s in range(0, n, VECTOR_CHUNK)])
        v, inputs = self.entities.readout(indices, self.output_scale)  # the representation fuses the given rows
        v = self._gated(v.float()) + inputs["structure"] if self.structure_residual else v
        return v.float()

    def batch_entities(self, h: torch.Tensor, t: torch.Tensor,
                       candidate: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """The entities a step touches, when it should fuse only those (``fusion_scope``): ``(ids, local)``
        with ``ids`` the distinct entities (padded to :func:`bucket` size with repeats of the first)
        and ``local`` the position in ``ids`` of every entry of ``cat([h, t, candidate.flatten()])``;
        ``None`` for the whole-table path."""
        if self.fusion_scope == "table" or not self.entities.row_wise:
            return None
        ids, local = torch.unique(torch.cat([h, t, candidate.reshape(-1)]), return_inverse=True)
        size = bucket(len(ids))
        forced = self.sparse or self.entities.mapped  # the whole-table path would read or update every row
        if self.fusion_scope == "auto" and size > BATCH_FRACTION * self.entities.num_entities and not forced:
            return None
        return torch.cat([ids, ids[:1].expand(size - len(ids))]), local

    def _gated(self, v: torch.Tensor) -> torch.Tensor:
        return v if self.gate is None else v * self.gate

    @staticmethod
    def _residual(inputs: Dict[str, torch.Tensor], index: Optional[torch.Tensor]) -> torch.Tensor:
        x = inputs["structure"]
        return x if index is None else x.index_select(0, index)

    def sampled_loss(self, batch: torch.Tensor, candidate: torch.Tensor, corrupt_head: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
        """The loss of positives ``batch [B, 3]`` against ``candidate [B, K]`` entities replacing the head
        (where ``corrupt_head``) or the tail; ``mask`` marks usable negatives.

        Every entity is fused once per step, or only the entities the batch touches (see
        :meth:`batch_entities`: the same loss and gradients, at the cost of the batch); the
        registered fused kernel of the interaction and the loss is used when there is one.
        """
        sc = self.interaction
        h, r, t = batch[:, 0], batch[:, 1], batch[:, 2]
        touched = self.batch_entities(h, t, candidate)
        if touched is None:
            vecs = self.vectors()
        else:  # only the batch's entities are fused; the indices become positions among them
            ids, local = touched
            vecs = self.vectors(ids)
            b = len(h)
            h, t, candidate = local[:b], local[b:2 * b], local[2 * b:].view_as(candidate)
        if self._fused is not None:  # one rotation per positive and direction, fused loops
            return self._fused(sc, vecs, h, r, t, candidate, corrupt_head, mask, self.loss.temperature)
        pos, negs = sc.sampled_scores(vecs, h, r, t, candidate, corrupt_head)  # the scorer's own arithmetic
        return self.loss(pos, negs, mask)

    @torch.no_grad()
    def modality_weights(self, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-entity modality confidence ``[n, M]`` (clean inputs), columns in ``self.modalities`` order."""
        return self.entities.modality_weights(index)

    def parameter_count(self) -> int:
        """Number of trainable parameters (entity table included)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
