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

from snagkg.core.interaction import FUSED, Interaction
from snagkg.core.registry import (
    SCORERS,  # in registry.py: the config checks scorer names against it
)
from snagkg.runtime import kernels
from snagkg.tasks.completion.loss import self_adversarial_loss

#: below this squared modulus a complex coordinate counts as 0 (its gradient is 0, not nan)
TINY = 1e-30


def complex_l1(q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``sum_k |q_k - e_k|`` over complex coordinates stored as ``[re..., im...]``.

    Broadcasts over leading dimensions: ``q [..., 2k]`` and ``e [..., 2k]``.
    """
    k = q.shape[-1] // 2
    d_re = q[..., :k] - e[..., :k]
    d_im = q[..., k:] - e[..., k:]
    # clamp: |z| is not differentiable at z = 0 and sqrt's gradient there is inf (inf * 0 = nan);
    # below the clamp the gradient is 0, the subgradient of |z| at 0
    return torch.sqrt((d_re * d_re + d_im * d_im).clamp_min(TINY)).sum(dim=-1)


def _rotate(a: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    k = a.shape[-1] // 2
    a_re, a_im = a[..., :k], a[..., k:]
    return torch.cat([a_re * cos - a_im * sin, a_re * sin + a_im * cos], dim=-1)


def rotate_sampled_loss(rows: torch.Tensor, phase: torch.Tensor, corrupt_head: torch.Tensor, mask: torch.Tensor,
                        margin: float, temperature: float) -> torch.Tensor:
    """The self-adversarial RotatE loss of a batch with ``K`` sampled negatives per positive (reference).

    ``rows [B * (K + 2), 2k]``: entity vectors of the ``B`` heads, the ``B`` tails, then the
    ``B x K`` candidates (row-major); ``phase [B, k]``: relation phases in radians;
    ``corrupt_head [B, K]``: the candidate replaces the head (compared with ``t o conj(r)``)
    rather than the tail (compared with ``h o r``); ``mask [B, K]``: usable negatives.
    One rotation per positive and direction; a negative only brings its candidate row.
    :class:`SampledLoss` computes the same loss and its exact gradient without ``[B, K, 2k]``
    intermediates.
    """
    b = phase.shape[0]
    heads, tails = rows[:b], rows[b:2 * b]
    cands = rows[2 * b:].view(b, -1, rows.shape[-1])
    cos, sin = torch.cos(phase), torch.sin(phase)
    q_tail = _rotate(heads, cos, sin)    # h o r, compared with tails
    q_head = _rotate(tails, cos, -sin)   # t o conj(r), compared with heads
    pos = margin - complex_l1(q_tail, tails)
    q = torch.where(corrupt_head.unsqueeze(-1), q_head.unsqueeze(1), q_tail.unsqueeze(1))
    negs = margin - complex_l1(q, cands)
    return self_adversarial_loss(pos, negs, mask, temperature)


def _sampled_forward(vecs: torch.Tensor, phase: torch.Tensor, idx: torch.Tensor, corrupt_head: torch.Tensor,
                     mask: torch.Tensor, margin: float, temperature: float):
    """Loss of :func:`rotate_sampled_loss` for ``rows = vecs[idx]``, and ``d loss / d pos``, ``d loss / d negs``."""
    b = phase.shape[0]
    rows = vecs[idx]  # fused into the loops below when compiled: never materialised
    heads, tails = rows[:b], rows[b:2 * b]
    cands = rows[2 * b:].view(b, -1, rows.shape[-1])
    cos, sin = torch.cos(phase), torch.sin(phase)
    q_tail = _rotate(heads, cos, sin)
    q_head = _rotate(tails, cos, -sin)
    pos = margin - complex_l1(q_tail, tails)
    q = torch.where(corrupt_head.unsqueeze(-1), q_head.unsqueeze(1), q_tail.unsqueeze(1))
    negs = margin - complex_l1(q, cands)
    loss = self_adversarial_loss(pos, negs, mask, temperature)
    # the gradient of self_adversarial_loss: d/dx log s(x) = s(-x); the weights p are constants
    p = torch.softmax((temperature * negs).masked_fill(~mask, float("-inf")), dim=-1)
    p = torch.nan_to_num(p, nan=0.0)
    g_pos = -torch.sigmoid(-pos) / b
    g_neg = p * torch.sigmoid(negs) / b
    return loss, g_pos, g_neg


def _unit(z: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * z / |z|`` per complex coordinate of ``z [..., 2, k]`` (real parts, imaginary parts):
    ``scale`` times the gradient of ``sum_k |z_k|``.

    Elementwise over ``z`` (each element recomputes its coordinate's modulus), so a compiled
    kernel writes the result in one pass without intermediate buffers.
    """
    re, im = z[..., 0, :], z[..., 1, :]
    # z = 0 (a self-loop (e, r, e) once r's phase is near 0, or q equal to e): gradient 0, not nan
    w = scale * torch.rsqrt((re * re + im * im).clamp_min(TINY))
    return torch.stack([re * w, im * w], dim=-2)


def _sampled_backward(vecs: torch.Tensor, phase: torch.Tensor, idx: torch.Tensor, corrupt_head: torch.Tensor,
                      g_pos: torch.Tensor, g_neg: torch.Tensor, grad: torch.Tensor):
    """Gradients of the loss w.r.t. the gathered head, tail and candidate rows and ``phase [B, k]``.

    Written per real/imaginary half so that the compiled backward is one loop over the
    ``[B, K, k]`` pairs that writes only the candidates' gradient.
    """
    b, d = phase.shape[0], vecs.shape[-1]
    k = d // 2
    rows = vecs[idx]
    heads, tails = rows[:b], rows[b:2 * b]
    cands = rows[2 * b:].view(b, -1, d)
    cos, sin = torch.cos(phase), torch.sin(phase)
    q_tail = _rotate(heads, cos, sin)
    q_head = _rotate(tails, cos, -sin)
    # score = margin - distance, so d loss / d distance = -d loss / d score, and
    # d distance / d q = z / |z| = -d distance / d e per coordinate, z = q - e.
    z = (q_tail - tails).view(b, 2, k)
    g_pos_q = _unit(z, -(g_pos * grad).unsqueeze(-1)).view(b, d)       # [B, 2k]: d loss / d q_tail (positive)
    q = torch.where(corrupt_head[..., None, None], q_head.view(b, 1, 2, k), q_tail.view(b, 1, 2, k))
    z = q - cands.view(b, -1, 2, k)                                     # [B, K, 2, k]
    g_cands = _unit(z, (g_neg * grad).unsqueeze(-1)).view(b, -1, d)    # [B, K, 2k]: d loss / d candidate = -d loss / d q
    side = torch.stack([~corrupt_head, corrupt_head], dim=1).to(g_cands.dtype)  # [B, 2, K]
    gq = side @ g_cands                                                   # [B, 2, 2k]: sums over each side
    gq_tail = g_pos_q - gq[:, 0]
    gq_head = -gq[:, 1]
    g_heads = _rotate(gq_tail, cos, -sin)                 # rotations are orthogonal: back by the inverse
    g_tails = _rotate(gq_head, cos, sin) - g_pos_q
    # d q / d phase: (-q_im, q_re) for h o r, (q_im, -q_re) for t o conj(r)
    g_phase = (gq_tail[:, k:] * q_tail[:, :k] - gq_tail[:, :k] * q_tail[:, k:]) \
        - (gq_head[:, k:] * q_head[:, :k] - gq_head[:, :k] * q_head[:, k:])
    return g_heads, g_tails, g_cands.view(-1, d), g_phase


def _query_rows(table: torch.Tensor, anchor: torch.Tensor, relation: torch.Tensor, r: torch.Tensor, scale: float,
                predict_tail: bool) -> torch.Tensor:
    phase = relation[r] * scale
    sin = torch.sin(phase)
    return _rotate(table[anchor], torch.cos(phase), sin if predict_tail else -sin)


_query_kernel = kernels.CompiledFunction(_query_rows, "rotate_query", pure=True, dynamic=True)
_forward_kernel = kernels.CompiledFunction(_sampled_forward, "rotate_sampled_forward", dynamic=False)
_backward_kernel = kernels.CompiledFunction(_sampled_backward, "rotate_sampled_backward", dynamic=False)


class SampledLoss(torch.autograd.Function):
    """:func:`rotate_sampled_loss` of ``vecs[idx]`` and ``relation[r] * scale`` with a hand-written backward.

    Forward and backward are each one pure tensor function (compiled into fused
    loops when ``compiled``); the backward scatters the row gradients into the
    entity table with ``index_add_``, which is deterministic on CPU.
    """

    @staticmethod
    def forward(ctx, vecs, relation, r, scale, idx, corrupt_head, mask, margin, temperature, compiled):
        """The loss, saving what the backward needs."""
        phase = relation[r] * scale  # a separate input keeps the compiled loops from recomputing it
        loss, g_pos, g_neg = _forward_kernel(vecs, phase, idx, corrupt_head, mask, margin, temperature,
                                             compiled=compiled)
        ctx.save_for_backward(vecs, relation, r, phase, idx, corrupt_head, g_pos, g_neg)
        ctx.scale, ctx.compiled = scale, compiled
        return loss

    @staticmethod
    def backward(ctx, grad):
        """Gradients of the entity table and the relation phases."""
        vecs, relation, r, phase, idx, corrupt_head, g_pos, g_neg = ctx.saved_tensors
        g_heads, g_tails, g_cands, g_phase = _backward_kernel(vecs, phase, idx, corrupt_head, g_pos, g_neg, grad,
                                                              compiled=ctx.compiled)
        g_vecs = g_relation = None
        b = g_heads.shape[0]
        with kernels.single_threaded():  # deterministic scatters; their threaded path is slower
            if ctx.needs_input_grad[0]:
                g_vecs = torch.zeros_like(vecs)
                g_vecs.index_add_(0, idx[:b], g_heads).index_add_(0, idx[b:2 * b], g_tails)
                g_vecs.index_add_(0, idx[2 * b:], g_cands)
            if ctx.needs_input_grad[1]:
                g_relation = torch.zeros_like(relation).index_add_(0, r, g_phase * ctx.scale)
        return (g_vecs, g_relation) + (None,) * 8


@SCORERS.register("rotate")
class RotatE(Interaction):
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

    def phases(self, r: torch.Tensor) -> torch.Tensor:
        """Relation phases ``[..., k]`` in radians for relation ids ``r``."""
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

    def query_rows(self, table: torch.Tensor, anchor: torch.Tensor, r: torch.Tensor, predict_tail: bool,
                   compiled: bool = False) -> torch.Tensor:
        """``query(table[anchor], r, predict_tail)`` for ``[B]`` indices, as one fused kernel when ``compiled``
        (used without gradients, by the ranking)."""
        return _query_kernel(table, anchor, self.relation, r, math.pi / self.embedding_range, predict_tail,
                             compiled=compiled and not torch.is_grad_enabled())

    def distance(self, q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``||q - e||`` summed over the moduli of the ``k`` complex coordinates."""
        return complex_l1(q, e)

    def pairwise(self, q: torch.Tensor, table: torch.Tensor, compiled: bool = False) -> torch.Tensor:
        """Distances of every query ``[B, 2k]`` to every row of ``table [N, 2k]``: ``[B, N]``."""
        return kernels.complex_l1_pairwise(q, table, compiled)

    def score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``margin - d(h, r, t)`` for aligned tensors of entity vectors."""
        return self.margin - self.distance(self.query(h, r, True), t)


@FUSED.register("rotate+nssa")
def rotate_nssa(scorer: RotatE, vecs: torch.Tensor, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                candidate: torch.Tensor, corrupt_head: torch.Tensor, mask: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """RotatE's self-adversarial loss of positives ``(h, r, t)`` against ``candidate [B, K]`` entities.

    :class:`SampledLoss`: compiled into fused forward and backward loops when the batch is
    large enough (:func:`snagkg.kernels.use_compiled_training`), else the same code eagerly.
    """
    b, k = candidate.shape
    idx = torch.cat([h, t, candidate.reshape(-1)])
    compiled = kernels.use_compiled_training(b * k, vecs.shape[-1])
    return SampledLoss.apply(vecs, scorer.relation, r, math.pi / scorer.embedding_range, idx, corrupt_head, mask,
                             float(scorer.margin), float(temperature), compiled)
