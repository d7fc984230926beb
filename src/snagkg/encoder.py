"""The task-agnostic SNAG encoder (SPEC section 3).

Per-modality projections to width ``d``, one or more BERT-style fusion
layers over the sequence of modality tokens of each entity (no position
embedding), and a readout chosen by name. The encoder sees only tensors,
one ``[N, width]`` table per modality; where they come from (a trainable
embedding, a GAT, frozen features, noise masking) is the caller's business.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

READOUTS: "Registry[type]" = Registry("readout")


@dataclass
class Fused:
    """Everything the encoder computes for a batch of entities.

    ``tokens``: projected modality vectors before fusion ``[N, M, d]``;
    ``outputs``: fusion-layer outputs ``[N, M, d]``; ``weights``: per-entity
    modality confidence ``[N, M]`` (attention mass, softmax over modalities);
    ``vector``: the readout ``[N, width]``.
    """

    tokens: torch.Tensor
    outputs: torch.Tensor
    weights: torch.Tensor
    vector: torch.Tensor


class Projection(nn.Sequential):
    def __init__(self, in_dim: int, out_dim: int, layers: int = 1):
        mods: List[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(max(0, layers - 1)):
            mods += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        super().__init__(*mods)


class FusionLayer(nn.Module):
    """Multi-head self-attention over modality tokens, post-LayerNorm, optional FFN.

    Returns the outputs and the attention probabilities ``[N, heads, M, M]``.
    """

    def __init__(self, dim: int, heads: int = 2, dropout: float = 0.1, ffn: bool = False, ffn_dim: int = 400):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim)) if ffn else None
        self.norm2 = nn.LayerNorm(dim) if ffn else None

    def forward(self, x: torch.Tensor):
        n, m, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(n, m, 3, h, d // h).permute(2, 0, 3, 1, 4)  # 3 x [n, h, m, dh]
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h), dim=-1)  # [n, h, m, m]
        ctx = (self.drop(attn) @ v).transpose(1, 2).reshape(n, m, d)
        x = self.norm1(x + self.drop(self.out(ctx)))
        if self.ffn is not None:
            x = self.norm2(x + self.drop(self.ffn(x)))
        return x, attn


class Readout(nn.Module):
    """Turns a :class:`Fused` (without ``vector``) into the entity vector."""

    def __init__(self, modalities: Sequence[str], dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.dim = dim

    @property
    def width(self) -> int:
        return self.dim

    #: per-coordinate RMS of the output at initialisation (tasks may rescale)
    unit_rms: float = 1.0


@READOUTS.register("graph")
class GraphReadout(Readout):
    """The structure token's output."""

    def forward(self, tokens, outputs, weights):
        if "structure" not in self.modalities:
            raise ValueError("the 'graph' readout needs the structure modality")
        return outputs[:, self.modalities.index("structure")]


@READOUTS.register("mean")
class MeanReadout(Readout):
    """Mean of the output tokens."""

    def forward(self, tokens, outputs, weights):
        return outputs.mean(dim=1)


@READOUTS.register("attention_weighted")
class AttentionWeightedReadout(Readout):
    """``concat_m(w_i[m] * normalize(x_i^m))`` of the pre-fusion tokens, ``w`` from attention mass."""

    @property
    def width(self) -> int:
        return self.dim * len(self.modalities)

    @property
    def unit_rms(self) -> float:  # type: ignore[override]
        return 1.0 / (len(self.modalities) * math.sqrt(self.dim))

    def forward(self, tokens, outputs, weights):
        return (weights.unsqueeze(-1) * F.normalize(tokens, dim=-1)).flatten(1)


@READOUTS.register("global_weighted")
class GlobalWeightedReadout(AttentionWeightedReadout):
    """``concat_m(softmax(a)[m] * normalize(x_i^m))`` with a learnable ``a`` (initialised to ones)."""

    def __init__(self, modalities: Sequence[str], dim: int):
        super().__init__(modalities, dim)
        self.logits = nn.Parameter(torch.ones(len(self.modalities)))

    def forward(self, tokens, outputs, weights):
        w = torch.softmax(self.logits, dim=0)
        return (w.view(1, -1, 1) * F.normalize(tokens, dim=-1)).flatten(1)


class ModalityEncoder(nn.Module):
    """Projections + fusion Transformer + readout.

    ``modality_dims`` maps modality name -> input width, in token order.
    """

    def __init__(
        self,
        modality_dims: Dict[str, int],
        hidden: int = 256,
        projection_layers: int = 1,
        heads: int = 2,
        layers: int = 1,
        dropout: float = 0.1,
        ffn: bool = False,
        tanh: bool = True,
        readout: str = "mean",
    ):
        super().__init__()
        if not modality_dims:
            raise ValueError("the encoder needs at least one modality")
        self.modalities = list(modality_dims)
        self.hidden = hidden
        self.tanh = tanh
        self.projections = nn.ModuleDict(
            {m: Projection(w, hidden, projection_layers) for m, w in modality_dims.items()})
        self.layers = nn.ModuleList([FusionLayer(hidden, heads, dropout, ffn) for _ in range(layers)])
        self.readout: Readout = READOUTS.get(readout)(self.modalities, hidden)

    @property
    def width(self) -> int:
        return self.readout.width

    def forward(self, inputs: Dict[str, torch.Tensor], index: Optional[torch.Tensor] = None) -> Fused:
        """Fuse the rows ``index`` (all rows when ``None``) of every modality table."""
        toks = []
        for m in self.modalities:
            x = inputs[m]
            if index is not None:
                x = x.index_select(0, index)
            toks.append(self.projections[m](x))
        tokens = torch.stack(toks, dim=1)  # [N, M, d]
        h = torch.tanh(tokens) if self.tanh else tokens
        attn = None
        for layer in self.layers:
            h, attn = layer(h)
        n_mod, heads = len(self.modalities), attn.shape[1]
        mass = attn.sum(dim=(1, 2)) / math.sqrt(n_mod * heads)  # [N, M]: attention each token receives
        weights = torch.softmax(mass, dim=-1)
        vector = self.readout(tokens, h, weights)
        return Fused(tokens=tokens, outputs=h, weights=weights, vector=vector)
