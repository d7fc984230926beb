"""The SNAG alignment model (SPEC section 5).

A trainable structure embedding passed through a 2-layer GAT over the union
graph, frozen feature tables (relation / attribute / char / name / files),
Gauss modality noise on every input in training (the structure embedding
with ``noise.structure_scale`` times rho and eps), the shared
:class:`~snagkg.encoder.ModalityEncoder` with the ``global_weighted`` readout,
and the in-batch contrastive objective on fused vectors, per-modality tokens
and fusion outputs.

The iterative-learning state (links added so far, proposals pending) lives
in two buffers, so it is saved with every checkpoint and restored on resume.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import RunConfig
from ..encoder import Fused, ModalityEncoder
from ..tables import FeatureTable, register_buffers
from ..noise import NoisedTables, modality_noises
from .gat import GAT, EdgeIndex
from .loss import UncertaintyWeighting, icl_loss

DYNAMIC_BUFFERS = ("added_links", "pending_links")


class AlignmentModel(nn.Module):
    def __init__(self, num_entities: int, edges: EdgeIndex, tables: Dict[str, FeatureTable],
                 modalities: Sequence[str], cfg: RunConfig):
        super().__init__()
        self._noised = NoisedTables()  # see _frozen()
        enc, noise, al = cfg.encoder, cfg.noise, cfg.alignment
        self.modalities: List[str] = list(modalities)
        self.num_entities = num_entities
        self.temperature = al.temperature
        self.edges = edges
        dims: Dict[str, int] = {}
        if "structure" in self.modalities:
            dim = al.structure_dim
            self.entity = nn.Parameter(torch.randn(num_entities, dim) / math.sqrt(dim))
            self.gat = GAT(dim, al.gat_layers, al.gat_heads, al.gat_dropout) if al.gat_layers > 0 else None
            dims["structure"] = dim
        for m in self.modalities:
            if m == "structure":
                continue
            dims[m] = register_buffers(self, m, tables[m])
        dims = {m: dims[m] for m in self.modalities}
        self.encoder = ModalityEncoder(dims, hidden=enc.hidden, projection_layers=enc.projection_layers,
                                       heads=enc.heads, layers=enc.layers, dropout=enc.dropout, ffn=enc.ffn,
                                       tanh=enc.tanh, readout="global_weighted",
                                       projection_activation=enc.projection_activation)
        self.noise = modality_noises(self.modalities, noise.ratio, noise.mask, noise.structure_scale)
        # one uncertainty weight per modality term: projected token and fusion output of each modality
        self.uncertainty = UncertaintyWeighting(2 * len(self.modalities))
        self.register_buffer("added_links", torch.zeros(0, 2, dtype=torch.long))
        self.register_buffer("pending_links", torch.zeros(0, 2, dtype=torch.long))

    # -- state ----------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for name in DYNAMIC_BUFFERS:  # variable-length buffers: take the saved shape
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.zeros_like(state_dict[key], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._noised.clear()
        dev = self.added_links.device
        if self.edges.src.device != dev:
            self.edges.to(dev)
        return out

    def table(self, m: str) -> torch.Tensor:
        return self.entity if m == "structure" else getattr(self, f"feat_{m}")

    def refresh_noise(self, generator: Optional[torch.Generator] = None) -> None:
        for m in self.modalities:
            t = self.table(m)
            self.noise[m].refresh(t.shape[0], t.shape[1], generator)
        self._noised.clear()  # frozen tables are noised once per draw, not once per step

    def _frozen(self, m: str) -> torch.Tensor:
        return self._noised.get(m, self.noise[m], self.table(m), getattr(self, f"mean_{m}"), getattr(self, f"std_{m}"))

    # -- forward ----------------------------------------------------------------
    def structure(self) -> torch.Tensor:
        x = self.noise["structure"](self.entity)  # mu, sigma from the current embedding table
        return self.gat(x, self.edges) if self.gat is not None else x

    def inputs(self) -> Dict[str, torch.Tensor]:
        out = {}
        for m in self.modalities:
            if m == "structure":
                out[m] = self.structure()
            else:
                out[m] = self._frozen(m)
        return out

    def fuse(self, index: Optional[torch.Tensor] = None) -> Fused:
        return self.encoder(self.inputs(), index)

    @staticmethod
    def attention_weighted(fused: Fused) -> torch.Tensor:
        return (fused.weights.unsqueeze(-1) * F.normalize(fused.tokens, dim=-1)).flatten(1)

    @torch.no_grad()
    def entity_vectors(self, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Clean, L2-normalised ``global_weighted`` vectors (eval mode) of ``index`` (all by default)."""
        was = self.training
        self.eval()
        try:
            return F.normalize(self.fuse(index).vector, dim=-1)
        finally:
            self.train(was)

    @torch.no_grad()
    def modality_weights(self, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-entity modality confidence ``[N, M]`` (clean inputs), columns in ``self.modalities`` order."""
        was = self.training
        self.eval()
        try:
            return self.fuse(index).weights
        finally:
            self.train(was)

    def loss(self, links: torch.Tensor) -> torch.Tensor:
        """The training objective on a batch of links ``[B, 2]``."""
        b = links.shape[0]
        fused = self.fuse(torch.cat([links[:, 0], links[:, 1]]))
        tau = self.temperature
        total = icl_loss(fused.vector[:b], fused.vector[b:], tau)
        aw = self.attention_weighted(fused)
        total = total + icl_loss(aw[:b], aw[b:], tau)
        w = fused.weights.detach()
        n_mod = len(self.modalities)
        conf = torch.minimum(w[:b], w[b:]) * n_mod  # per link and modality
        terms = []
        for k in range(n_mod):
            terms.append(icl_loss(fused.tokens[:b, k], fused.tokens[b:, k], tau, weight=conf[:, k]))
        for k in range(n_mod):
            terms.append(icl_loss(fused.outputs[:b, k], fused.outputs[b:, k], tau))
        return total + self.uncertainty(terms)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
