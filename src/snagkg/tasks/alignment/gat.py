"""A small vectorised graph attention network (no torch_geometric).

Edges are two index vectors ``src -> dst`` (messages flow from ``src`` to
``dst``); attention is a softmax over each node's incoming edges. The
weighted aggregation is a custom autograd function that works on edge chunks
with ``index_add_``, so memory stays ``O(chunk x width)`` and the gradient of
the attention weights is exact without a dense or sparse-matrix detour.

The default layer is the *diagonal* GAT used by EVA, MCLEA and MEAformer for
entity alignment: one weight vector per head (``h = x * w``, initialised to
ones), heads averaged, ELU between layers.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from snagkg.core.representation import EmbeddingStructure


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used here are stable
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)


class EdgeIndex:
    """Edges ``src -> dst`` sorted by ``(dst, src)``, with CSR layouts for both directions."""

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, n: int):
        key = dst.long() * n + src.long()
        order = torch.argsort(key)
        self.src, self.dst, self.n = src.long()[order], dst.long()[order], n
        self.crow = self._crow(self.dst, n)
        self.perm_t = torch.argsort(self.src * n + self.dst)        # edge order sorted by (src, dst)
        self.crow_t = self._crow(self.src[self.perm_t], n)
        self.col_t = self.dst[self.perm_t]

    @staticmethod
    def _crow(rows: torch.Tensor, n: int) -> torch.Tensor:
        crow = torch.zeros(n + 1, dtype=torch.long)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
        return crow

    def to(self, device) -> "EdgeIndex":
        """Move every index tensor to ``device`` (in place); returns ``self``."""
        for name in ("src", "dst", "crow", "perm_t", "crow_t", "col_t"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """``A[dst, src] = values`` as a CSR tensor."""
        return _csr(self.crow, self.src, values, self.n)

    def matrix_t(self, values: torch.Tensor) -> torch.Tensor:
        """``A^T`` as a CSR tensor."""
        return _csr(self.crow_t, self.col_t, values[self.perm_t], self.n)


class _EdgeAggregate(torch.autograd.Function):
    """``out[dst[e]] += alpha[e] * x[src[e]]`` for every edge ``e`` (sparse-dense products)."""

    @staticmethod
    def forward(ctx, alpha, x, edges):
        ctx.edges = edges
        ctx.save_for_backward(alpha, x)
        return edges.matrix(alpha) @ x

    @staticmethod
    def backward(ctx, grad):
        alpha, x = ctx.saved_tensors
        edges = ctx.edges
        g_alpha = g_x = None
        grad = grad.contiguous()
        if ctx.needs_input_grad[0]:  # <grad[dst], x[src]> on the edge pattern (SDDMM)
            g_alpha = torch.sparse.sampled_addmm(edges.matrix(torch.zeros_like(alpha)), grad, x.t(),
                                                 beta=0.0).values()
        if ctx.needs_input_grad[1]:
            g_x = edges.matrix_t(alpha) @ grad
        return g_alpha, g_x, None


def edge_aggregate(alpha: torch.Tensor, x: torch.Tensor, edges: "EdgeIndex") -> torch.Tensor:
    """``out[dst[e]] += alpha[e] * x[src[e]]`` over every edge, with an exact gradient for ``alpha`` and ``x``."""
    return _EdgeAggregate.apply(alpha, x, edges)


def edge_softmax(scores: torch.Tensor, dst: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of edge ``scores`` ``[E, H]`` over the incoming edges of each ``dst`` node."""
    h = scores.shape[1]
    idx = dst[:, None].expand(-1, h)
    top = scores.new_full((n, h), float("-inf")).scatter_reduce(0, idx, scores.detach(), reduce="amax")
    ex = torch.exp(scores - top.index_select(0, dst))
    total = scores.new_zeros((n, h)).index_add(0, dst, ex)
    return ex / total.index_select(0, dst).clamp_min(1e-16)


class GATLayer(nn.Module):
    """One graph attention layer with ``heads`` heads (diagonal weights by default), heads averaged."""
    def __init__(self, dim: int, heads: int = 2, diag: bool = True, negative_slope: float = 0.2):
        super().__init__()
        self.heads, self.diag, self.slope = heads, diag, negative_slope
        if diag:
            self.weight = nn.Parameter(torch.ones(heads, dim))
        else:
            self.weight = nn.Parameter(torch.empty(heads, dim, dim))
            nn.init.xavier_uniform_(self.weight)
        self.att_src = nn.Parameter(torch.empty(heads, dim))
        self.att_dst = nn.Parameter(torch.empty(heads, dim))
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)

    def forward(self, x: torch.Tensor, edges: EdgeIndex, attn_dropout: float = 0.0) -> torch.Tensor:
        """Attention-weighted aggregation of ``x [N, d]`` over each node's incoming edges."""
        n, src, dst = x.shape[0], edges.src, edges.dst
        if self.diag:
            # (x * w_h) a = x (w_h * a): attention logits without materialising the per-head inputs
            s_src = x @ (self.weight * self.att_src).t()            # [N, H]
            s_dst = x @ (self.weight * self.att_dst).t()
        else:
            hx = torch.einsum("nd,hde->hne", x, self.weight)         # [H, N, D]
            s_src = (hx * self.att_src.unsqueeze(1)).sum(-1).t()
            s_dst = (hx * self.att_dst.unsqueeze(1)).sum(-1).t()
        scores = F.leaky_relu(s_src.index_select(0, src) + s_dst.index_select(0, dst), self.slope)  # [E, H]
        alpha = edge_softmax(scores, dst, n)
        if attn_dropout > 0 and self.training:
            alpha = F.dropout(alpha, attn_dropout)
        out = None
        for h in range(self.heads):
            if self.diag:  # A_h (x * w_h) = (A_h x) * w_h
                part = edge_aggregate(alpha[:, h].contiguous(), x, edges) * self.weight[h]
            else:
                part = edge_aggregate(alpha[:, h].contiguous(), hx[h].contiguous(), edges)
            out = part if out is None else out + part
        return out / self.heads


class GAT(nn.Module):
    """``layers`` diagonal GAT layers over a fixed edge list (ELU between layers)."""

    def __init__(self, dim: int, layers: int = 2, heads: int = 2, dropout: float = 0.0, diag: bool = True):
        super().__init__()
        self.dropout = dropout
        self.layers = nn.ModuleList([GATLayer(dim, heads, diag) for _ in range(layers)])

    def forward(self, x: torch.Tensor, edges: Union[EdgeIndex, Sequence[EdgeIndex]]) -> torch.Tensor:
        """``x [N, d]`` through every layer (dropout before each, ELU between layers); ``edges``: one edge
        list for every layer, or one per layer (a sampled neighbourhood, :mod:`.sampling`)."""
        per_layer = [edges] * len(self.layers) if isinstance(edges, EdgeIndex) else list(edges)
        for i, (layer, layer_edges) in enumerate(zip(self.layers, per_layer)):
            if self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            x = layer(x, layer_edges, self.dropout)
            if i + 1 < len(self.layers):
                x = F.elu(x)
        return x


def union_edges(triples: np.ndarray, num_entities: int) -> EdgeIndex:
    """Undirected, deduplicated edges of the union graph plus one self-loop per entity."""
    h, t = triples[:, 0].astype(np.int64), triples[:, 2].astype(np.int64)
    loops = np.arange(num_entities, dtype=np.int64)
    src = np.concatenate([h, t, loops])
    dst = np.concatenate([t, h, loops])
    key = np.unique(dst * num_entities + src)
    return EdgeIndex(torch.from_numpy(key % num_entities), torch.from_numpy(key // num_entities), num_entities)


class GATStructure(EmbeddingStructure):
    """The trainable table passed through a graph attention network over the KG (MMEA, SPEC section 5)."""

    row_wise = False  # an entity's vector depends on its neighbours' rows

    def __init__(self, weight: torch.Tensor, edges: "EdgeIndex", layers: int = 2, heads: int = 2,
                 dropout: float = 0.0):
        super().__init__(weight)
        self.edges = edges
        self.gat = GAT(self.dim, layers, heads, dropout) if layers > 0 else None

    def forward(self, table: torch.Tensor, sample: Any = None) -> torch.Tensor:
        """``GAT(table)`` over the fixed edge list (the table itself without GAT layers); with ``sample``
        (a :class:`~snagkg.tasks.alignment.sampling.SampledBlock`), ``table`` holds the rows of
        ``sample.nodes`` and the GAT runs over its sampled layers: the vectors of its seeds."""
        if sample is None:
            return table if self.gat is None else self.gat(table, self.edges)
        if self.gat is not None:
            table = self.gat(table, sample.layers)
        return table[:sample.num_seeds]

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        if self.edges.src.device != self.weight.device:  # the edge index follows the module
            self.edges.to(self.weight.device)
        return out
