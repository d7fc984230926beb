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
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from snagkg.core.registry import (  # in registry.py: the config checks names against them
    PROJECTION_ACTIVATIONS,
    READOUTS,
)
from snagkg.runtime import compilation


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
    """A modality's projection to width ``d``: ``layers`` stacked linear layers.

    ``activation="none"`` (SPEC: a linear projection, MKGC optionally two layers; the
    published code stacks them without an activation) computes the chain as one product
    with the folded weight ``W_L ... W_1`` (and bias), which has the same value and the
    same gradients for every layer, at the cost of one ``in x d`` product per row instead
    of ``in x d + (L - 1) d x d``. ``"gelu"``: a GELU between the layers (runs saved
    before the option existed). Parameter names are the same either way.
    """

    def __init__(self, in_dim: int, out_dim: int, layers: int = 1, activation: str = "none"):
        if activation not in PROJECTION_ACTIVATIONS:
            raise ValueError(f"unknown projection activation {activation!r}")
        mods: List[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(max(0, layers - 1)):
            mods += [nn.GELU() if activation == "gelu" else nn.Identity(), nn.Linear(out_dim, out_dim)]
        super().__init__(*mods)
        self.folded = activation == "none" and layers > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, in] -> [N, d]`` (the folded product when the layers are linear)."""
        if not self.folded:
            return super().forward(x)
        first = self[0]
        weight, bias = first.weight, first.bias
        for lin in list(self)[2::2]:
            weight, bias = lin.weight @ weight, F.linear(bias, lin.weight, lin.bias)
        return F.linear(x, weight, bias)


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

    def draw_keeps(self, n: int, m: int, like: torch.Tensor,
                   pos: Optional[int] = None) -> Optional[Tuple[torch.Tensor, ...]]:
        """The dropout masks of one :meth:`forward_with` on ``n x m`` tokens, or ``None`` in eval mode.

        ``(attention [n, h, m, m], output [n, m, d][, ffn [n, m, d]])``, boolean keep masks
        (``rand >= p``: each element kept with probability ``1 - p``, as ``nn.Dropout`` keeps
        it, from the same global random stream; a boolean ``rand`` mask costs about a third
        of ``bernoulli_`` on CPU). With ``pos`` (only token ``pos``'s output is computed), only
        the masks that output uses: ``(attention row [n, h, 1, m], output [n, d][, ffn [n, d]])``.
        Drawing them first and applying them with :meth:`forward_with` makes the layer a pure
        function of its inputs.
        """
        p = self.drop.p
        if not self.drop.training or p == 0.0:
            return None
        d, h = self.out.out_features, self.heads
        if pos is None:
            shapes = [(n, h, m, m), (n, m, d)] + ([(n, m, d)] if self.ffn is not None else [])
        else:
            shapes = [(n, h, 1, m), (n, d)] + ([(n, d)] if self.ffn is not None else [])
        if p == 1.0:
            return tuple(torch.zeros(s, dtype=torch.bool, device=like.device) for s in shapes)
        return tuple(torch.rand(s, device=like.device) >= p for s in shapes)

    def _drop(self, t: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
        """``nn.Dropout`` with a given keep mask: ``t * keep / (1 - p)``."""
        if keep is None:
            return t
        p = self.drop.p
        return t * keep.to(t.dtype) if p == 1.0 else t * keep.to(t.dtype) * (1.0 / (1.0 - p))

    def forward(self, x: torch.Tensor):
        """Outputs ``[n, m, d]`` and the attention probabilities ``[n, heads, m, m]``."""
        return self.forward_with(x, self.draw_keeps(x.shape[0], x.shape[1], x))

    def forward_with(self, x: torch.Tensor, keeps: Optional[Tuple[torch.Tensor, ...]], pos: Optional[int] = None):
        """:meth:`forward` with dropout masks from :meth:`draw_keeps` (a pure function of its inputs).

        With ``pos``, only the output of token ``pos`` is computed and returned (``[n, d]``),
        with the masks of ``draw_keeps(..., pos=pos)``; it equals ``forward(x)[0][:, pos]`` up
        to float rounding (and for the same masks on that token), at half the products: see
        :meth:`_one_token`.
        """
        n, m, d = x.shape
        h, dh = self.heads, d // self.heads
        w, b = self.qkv.weight, self.qkv.bias
        k_attn, k_out = (None, None) if keeps is None else keeps[:2]
        k_ffn = keeps[2] if keeps is not None and self.ffn is not None else None
        attn = None
        if m == 1:
            # One token: the softmax over a single key is exactly 1 whatever q and k are, so only
            # v is computed (a third of the qkv product) and the attention is a per-head scale.
            attn = x.new_ones(n, h, 1, 1)
            v = F.linear(x, w[2 * d:], b[2 * d:])  # [n, 1, d]
            ctx = self.out((self._drop(attn, k_attn).view(n, 1, h, 1) * v.view(n, 1, h, dh)).view(n, 1, d))
            if pos is not None:
                x, ctx = x[:, 0], ctx[:, 0]
        elif pos is not None:
            x, ctx = x[:, pos], self._one_token(x, pos, k_attn)
        else:
            q, k, v = self.qkv(x).view(n, m, 3, h, dh).permute(2, 0, 3, 1, 4)  # 3 x [n, h, m, dh]
            attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # [n, h, m, m]
            ctx = self.out((self._drop(attn, k_attn) @ v).transpose(1, 2).reshape(n, m, d))
        y = self.norm1(x + self._drop(ctx, k_out))
        if self.ffn is not None:
            y = self.norm2(y + self._drop(self.ffn(y), k_ffn))
        return y if pos is not None else (y, attn)

    def _one_token(self, x: torch.Tensor, pos: int, keep: Optional[torch.Tensor]) -> torch.Tensor:
        """The attention block's output for token ``pos`` alone, ``out(attention(x)[:, pos])`` ``[n, d]``.

        Per head ``e``, with ``W_q^e, W_k^e, W_v^e`` the head's rows of the q/k/v weights and
        ``W_o^e`` its columns of the output weight: the score of token ``j`` is
        ``q^e . k_j^e = x_pos (W_q^e' W_k^e) x_j' + (b_q^e W_k^e) x_j' + (terms equal for every
        j, which the softmax cancels)``, and the output is
        ``sum_e (sum_j a_j^e x_j) (W_o^e W_v^e)' + (sum_j a_j^e) W_o^e b_v^e + b_o``. The
        ``d x d`` products of weights are formed once per call, so the entities need two
        ``[n, d] x [d, h d]``-sized products instead of q, k and v for every token and the output
        projection (half the multiply-adds), and no k or v is ever stored.
        """
        n, m, d = x.shape
        h, dh = self.heads, d // self.heads
        w, b = self.qkv.weight, self.qkv.bias
        wq, wk, wv = w[:d].view(h, dh, d), w[d:2 * d].view(h, dh, d), w[2 * d:].view(h, dh, d)
        wo = self.out.weight.view(d, h, dh).transpose(0, 1)  # [h, d, dh]
        fold_q = (wk.transpose(1, 2) @ wq).reshape(h * d, d)  # rows e*d..: W_k^e' W_q^e
        fold_b = (b[:d].view(h, 1, dh) @ wk).reshape(h * d)
        fold_o = (wo @ wv).transpose(0, 1).reshape(d, h * d)  # columns e*d..: W_o^e W_v^e
        bias_o = (wo @ b[2 * d:].view(h, dh, 1)).view(h, d)
        qt = F.linear(x[:, pos], fold_q, fold_b).view(n, h, 1, d)
        row = torch.softmax((qt * x.unsqueeze(1)).sum(-1) / math.sqrt(dh), dim=-1)  # [n, h, m]
        row = self._drop(row, None if keep is None else keep.view(n, h, m))
        mixed = (row.unsqueeze(-1) * x.unsqueeze(1)).sum(2)  # [n, h, d]: sum_j a_j x_j per head
        return F.linear(mixed.reshape(n, h * d), fold_o, self.out.bias) + row.sum(-1).to(bias_o.dtype) @ bias_o


def attention_weighted(tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``concat_m(weights[:, m] * normalize(tokens[:, m]))`` ``[N, M * d]`` (SPEC section 3)."""
    return (weights.unsqueeze(-1) * F.normalize(tokens, dim=-1)).flatten(1)


class Readout(nn.Module):
    """Turns a :class:`Fused` (without ``vector``) into the entity vector."""

    def __init__(self, modalities: Sequence[str], dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.dim = dim

    @property
    def width(self) -> int:
        """Width of the readout vector."""
        return self.dim

    #: per-coordinate RMS of the output at initialisation (tasks may rescale)
    unit_rms: float = 1.0


@READOUTS.register("graph")
class GraphReadout(Readout):
    """The structure token's output."""

    def forward(self, tokens, outputs, weights):
        """The structure token's fusion output ``[N, d]``."""
        if "structure" not in self.modalities:
            raise ValueError("the 'graph' readout needs the structure modality")
        return outputs[:, self.modalities.index("structure")]


@READOUTS.register("mean")
class MeanReadout(Readout):
    """Mean of the output tokens."""

    def forward(self, tokens, outputs, weights):
        """The mean of the fusion outputs ``[N, d]``."""
        return outputs.mean(dim=1)


@READOUTS.register("attention_weighted")
class AttentionWeightedReadout(Readout):
    """``concat_m(w_i[m] * normalize(x_i^m))`` of the pre-fusion tokens, ``w`` from attention mass."""

    @property
    def width(self) -> int:
        """``M * d``: one normalised token per modality."""
        return self.dim * len(self.modalities)

    @property
    def unit_rms(self) -> float:  # type: ignore[override]
        """Per-coordinate RMS at initialisation: ``1 / (M sqrt(d))``."""
        return 1.0 / (len(self.modalities) * math.sqrt(self.dim))

    def forward(self, tokens, outputs, weights):
        """``concat_m(w_i[m] * normalize(x_i^m))`` of the pre-fusion tokens."""
        return attention_weighted(tokens, weights)


@READOUTS.register("global_weighted")
class GlobalWeightedReadout(AttentionWeightedReadout):
    """``concat_m(softmax(a)[m] * normalize(x_i^m))`` with a learnable ``a`` (initialised to ones)."""

    def __init__(self, modalities: Sequence[str], dim: int):
        super().__init__(modalities, dim)
        self.logits = nn.Parameter(torch.ones(len(self.modalities)))

    def forward(self, tokens, outputs, weights):
        """``concat_m(softmax(a)[m] * normalize(x_i^m))`` with the learned ``a``."""
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
        projection_activation: str = "none",
    ):
        super().__init__()
        if not modality_dims:
            raise ValueError("the encoder needs at least one modality")
        self.modalities = list(modality_dims)
        self.hidden = hidden
        self.tanh = tanh
        self.projections = nn.ModuleDict(
            {m: Projection(w, hidden, projection_layers, projection_activation) for m, w in modality_dims.items()})
        self.layers = nn.ModuleList([FusionLayer(hidden, heads, dropout, ffn) for _ in range(layers)])
        self.readout: Readout = READOUTS.get(readout)(self.modalities, hidden)

    @property
    def width(self) -> int:
        """Width of the fused entity vector (the readout's)."""
        return self.readout.width

    def _tokens(self, inputs: Dict[str, torch.Tensor], index: Optional[torch.Tensor]) -> torch.Tensor:
        toks = []
        for m in self.modalities:
            x = inputs[m]
            if index is not None:
                x = x.index_select(0, index)
            toks.append(self.projections[m](x))
        return toks[0].unsqueeze(1) if len(toks) == 1 else torch.stack(toks, dim=1)  # [N, M, d]

    def vectors(self, inputs: Dict[str, torch.Tensor], index: Optional[torch.Tensor] = None,
                scale: float = 1.0) -> torch.Tensor:
        """``forward(inputs, index).vector * scale``, computing only what the readout needs.

        With the ``graph`` readout the last fusion layer runs for the structure token
        alone and the modality weights are not computed. The dropout masks are drawn
        first (those of the earlier layers as :meth:`forward` draws them, the last layer's
        only for the structure token), and the rest is one pure function, compiled into
        fused kernels for large tables (``SNAGKG_COMPILE=0``: eager).
        Other readouts use :meth:`forward`.
        """
        if type(self.readout) is not GraphReadout or "structure" not in self.modalities:
            return self.forward(inputs, index).vector * scale
        x = next(iter(inputs.values()))
        n, m = (x.shape[0] if index is None else index.shape[0]), len(self.modalities)
        like = self.layers[0].out.weight
        pos = self.modalities.index("structure")
        last = len(self.layers) - 1
        keeps = [layer.draw_keeps(n, m, like, pos if i == last else None) for i, layer in enumerate(self.layers)]
        compiled = compilation.use_compiled_encoder(n, self.hidden * len(self.modalities))
        return _vector_kernel(self, inputs, index, keeps, float(scale), compiled=compiled)

    def forward(self, inputs: Dict[str, torch.Tensor], index: Optional[torch.Tensor] = None) -> Fused:
        """Fuse the rows ``index`` (all rows when ``None``) of every modality table."""
        tokens = self._tokens(inputs, index)
        h = torch.tanh(tokens) if self.tanh else tokens
        attn = None
        for layer in self.layers:
            h, attn = layer(h)
        n_mod, heads = len(self.modalities), attn.shape[1]
        mass = attn.sum(dim=(1, 2)) / math.sqrt(n_mod * heads)  # [N, M]: attention each token receives
        weights = torch.softmax(mass, dim=-1)
        vector = self.readout(tokens, h, weights)
        return Fused(tokens=tokens, outputs=h, weights=weights, vector=vector)


class NoFusion(nn.Module):
    """No projections and no fusion: the structure table is the entity vector.

    The plain knowledge-graph-embedding baseline (with RotatE: RotatE itself) behind the
    same interface as :class:`ModalityEncoder`, so that a task, its noise masking and its
    evaluation run unchanged with and without SNAG's encoder (``encoder.fusion: false``).
    """

    def __init__(self, modality_dims: Dict[str, int]):
        super().__init__()
        if list(modality_dims) != ["structure"]:
            raise ValueError(f"without the fusion encoder only the structure modality can be used, "
                             f"got {', '.join(modality_dims)}")
        self.modalities = ["structure"]
        self.hidden = modality_dims["structure"]

    @property
    def width(self) -> int:
        """Width of the structure table."""
        return self.hidden

    def vectors(self, inputs: Dict[str, torch.Tensor], index: Optional[torch.Tensor] = None,
                scale: float = 1.0) -> torch.Tensor:
        """The structure rows ``index`` (all by default), times ``scale``."""
        x = inputs["structure"]
        if index is not None:
            x = x.index_select(0, index)
        return x if scale == 1.0 else x * scale

    def forward(self, inputs: Dict[str, torch.Tensor], index: Optional[torch.Tensor] = None) -> Fused:
        """A :class:`Fused` whose one token, output and vector are the structure rows (weight 1)."""
        x = self.vectors(inputs, index)
        return Fused(tokens=x.unsqueeze(1), outputs=x.unsqueeze(1), weights=x.new_ones(x.shape[0], 1), vector=x)


def _vectors_with(enc: ModalityEncoder, inputs: Dict[str, torch.Tensor], index: Optional[torch.Tensor],
                  keeps: List[Optional[Tuple[torch.Tensor, ...]]], scale: float) -> torch.Tensor:
    """The ``graph`` readout of ``enc`` with given dropout masks, times ``scale`` (see ``vectors``)."""
    tokens = enc._tokens(inputs, index)
    h = torch.tanh(tokens) if enc.tanh else tokens
    for layer, keep in zip(enc.layers[:-1], keeps[:-1]):
        h, _ = layer.forward_with(h, keep)
    return enc.layers[-1].forward_with(h, keeps[-1], enc.modalities.index("structure")) * scale


# static shapes: one compile per model and table size (dynamic-shape kernels of this graph are much slower)
_vector_kernel = compilation.CompiledFunction(_vectors_with, "encoder_vectors", check_backward=True, dynamic=False)
