"""The SNAG completion model: a structure embedding table plus frozen modality
tables, noise-masked in training, fused by the shared encoder, scored by RotatE.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from ..config import RunConfig
from ..encoder import Fused, ModalityEncoder, NoFusion
from ..errors import SnagError
from ..tables import FeatureTable, register_buffers
from ..noise import NoisedTables, modality_noises
from .scorers import SCORERS


class CompletionModel(nn.Module):
    def __init__(self, num_entities: int, num_relations: int, tables: Dict[str, FeatureTable],
                 modalities: Sequence[str], cfg: RunConfig):
        super().__init__()
        enc, noise, comp = cfg.encoder, cfg.noise, cfg.completion
        self.modalities: List[str] = list(modalities)
        self.num_entities = num_entities
        self._noised = NoisedTables()  # see inputs()
        k = enc.hidden // 2
        rng = (comp.margin + 2.0) / k
        self.entity = nn.Parameter(torch.empty(num_entities, enc.hidden).uniform_(-rng, rng))
        dims = {}
        for m in self.modalities:
            if m == "structure":
                dims[m] = enc.hidden
                continue
            dims[m] = register_buffers(self, m, tables[m], missing=True)
        if enc.fusion:
            self.encoder = ModalityEncoder(dims, hidden=enc.hidden, projection_layers=enc.projection_layers,
                                           heads=enc.heads, layers=enc.layers, dropout=enc.dropout,
                                           ffn=enc.ffn, tanh=enc.tanh, readout=enc.readout,
                                           projection_activation=enc.projection_activation)
        else:  # plain RotatE on the structure embedding (with GMNM, when on)
            self.encoder = NoFusion(dims)
        self.noise = modality_noises(self.modalities, noise.ratio, noise.mask, noise.structure_scale)
        self.scorer = SCORERS.get(comp.scorer)(num_relations, self.encoder.width, comp.margin)
        # Map the readout to RotatE's initial scale: coordinates ~ U(-range, range) have RMS range/sqrt(3).
        # (Without the encoder the embedding itself is initialised in RotatE's range: scale 1.)
        self.output_scale = (self.scorer.embedding_range / math.sqrt(3.0) / self.encoder.readout.unit_rms
                             if enc.fusion else 1.0)
        self.structure_residual = bool(comp.structure_residual and enc.fusion)
        if self.structure_residual and "structure" not in self.modalities:
            raise SnagError("completion.structure_residual (--structure-residual) needs the structure modality; "
                            f"the run uses {', '.join(self.modalities)}")
        # the learned share of the fused vector (completion.residual_gate); None: a fixed 1
        self.gate = nn.Parameter(torch.zeros(())) if self.structure_residual and comp.residual_gate else None

    def table(self, m: str) -> torch.Tensor:
        return self.entity if m == "structure" else getattr(self, f"feat_{m}")

    def refresh_noise(self, generator: Optional[torch.Generator] = None) -> None:
        for m in self.modalities:
            t = self.table(m)
            self.noise[m].refresh(t.shape[0], t.shape[1], generator)
        self._noised.clear()

    def _apply(self, fn, *args, **kwargs):
        self._noised.clear()
        return super()._apply(fn, *args, **kwargs)

    def inputs(self, dtype: Optional[torch.dtype] = None) -> Dict[str, torch.Tensor]:
        """Every modality table, with GMNM applied in training mode.

        The frozen tables (every modality but the trainable structure embedding) are the
        same from one step to the next until the noise is drawn again (once per epoch), so
        each is blended, and cast to ``dtype`` when given, once per draw and reused.
        """
        out = {}
        for m in self.modalities:
            x = self.table(m)
            if m == "structure":  # mu, sigma recomputed from the current embedding table
                out[m] = self.noise[m](x)
                continue
            out[m] = self._noised.get(m, self.noise[m], x, getattr(self, f"mean_{m}"), getattr(self, f"std_{m}"),
                                      dtype)
        return out

    def fuse(self, index: Optional[torch.Tensor] = None) -> Fused:
        return self.encoder(self.inputs(), index)

    def entity_vectors(self, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Fused entity vectors ``[N, width]`` scaled for the scorer (all entities by default)."""
        inputs = self.inputs()
        v = self.encoder(inputs, index).vector * self.output_scale
        return self._gated(v) + self._residual(inputs, index) if self.structure_residual else v

    def vectors(self, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """:meth:`entity_vectors` of every entity through the encoder's readout-only path
        (``dtype``: the frozen tables' precision; call under the matching autocast)."""
        inputs = self.inputs(dtype)
        v = self.encoder.vectors(inputs, scale=self.output_scale)
        return self._gated(v.float()) + self._residual(inputs, None) if self.structure_residual else v

    def _gated(self, v: torch.Tensor) -> torch.Tensor:
        return v if self.gate is None else v * self.gate

    def _residual(self, inputs: Dict[str, torch.Tensor], index: Optional[torch.Tensor]) -> torch.Tensor:
        x = inputs["structure"]
        return x if index is None else x.index_select(0, index)

    @torch.no_grad()
    def modality_weights(self) -> torch.Tensor:
        """Per-entity modality confidence ``[N, M]`` (clean inputs), columns in ``self.modalities`` order."""
        was = self.training
        self.eval()
        try:
            return self.fuse().weights
        finally:
            self.train(was)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
