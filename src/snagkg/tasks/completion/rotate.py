"""All of RotatE's arithmetic (SPEC section 4), in one place.

Entities are ``k`` complex numbers stored as ``[re..., im...]`` (width ``2k``); a relation is
``k`` phases, a rotation. The score of ``(h, r, t)`` is ``margin - d`` with
``d = sum_k |(h o r - t)_k|``, or equally ``sum_k |(t o conj(r) - h)_k|`` (rotations keep moduli).
Every path that scores a triple goes through the two functions below, so they all use one
numerics:

* :func:`rotate`: ``a o r`` given ``cos`` and ``sin`` of the phases (``-sin``: ``a o conj(r)``);
* :func:`complex_l1`: the distance, each coordinate's modulus through :func:`modulus`, which
  clamps a squared modulus below :data:`TINY` (only a modulus within 1e-15 of 0 is changed).

Built on them:

* the ranking distances of a query chunk to the whole entity table
  (:func:`complex_l1_pairwise`), and the ranking's query rows (:func:`query_rows`);
* the training loss over sampled negatives (:func:`rotate_sampled_loss`, the reference) and
  :class:`SampledLoss`, the same loss with a hand-written backward, entry :func:`fused_loss`.

The eager formulations materialise ``[B, N, k]`` (ranking) or ``[B, K, 2k]`` (training)
intermediates and are bound by memory traffic; compiled (:class:`~snagkg.runtime.compilation.
CompiledFunction`) each becomes one loop (training: one forward and one backward loop) that
never writes them. The compiled kernels are used when the work repays the one-off compilation
(:func:`use_compiled`, :func:`use_compiled_training`); the eager functions are the fallback and
the reference. Results are equal up to float rounding (the compiled reductions sum in another
order); the compiled training backward has no scatter of its own (gradients reach the entity
table through the eager gather's deterministic backward), so a CPU run stays bit-for-bit
reproducible.
"""
from __future__ import annotations

import torch

from snagkg.runtime.compilation import CompiledFunction, compile_enabled
from snagkg.runtime.hardware import single_threaded
from snagkg.tasks.completion.loss import self_adversarial_loss

#: below this squared modulus a complex coordinate counts as 0 (its gradient is 0, not nan)
TINY = 1e-30

# Compile only when the work is large enough to repay the one-off compilation.
COMPILE_MIN_WORK = 1_000_000        # ranking: entities x complex width (DB15K at hidden 256: 1.6M)
COMPILE_MIN_TRAIN_WORK = 2_000_000  # training: positives x negatives x complex width
COMPILE_MIN_TOTAL_WORK = 1_000_000_000  # ranking: queries x entities x complex width


# -- the two primitives ---------------------------------------------------------------------------
def rotate(a: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``a o r`` for complex vectors ``a [..., 2k]`` and a rotation given by ``cos``, ``sin [..., k]``
    of its phases (pass ``-sin`` to rotate by ``conj(r)``)."""
    k = a.shape[-1] // 2
    a_re, a_im = a[..., :k], a[..., k:]
    return torch.cat([a_re * cos - a_im * sin, a_re * sin + a_im * cos], dim=-1)


def modulus(re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    """``|re + i im|``, elementwise, with the squared modulus clamped to at least :data:`TINY`.

    ``|z|`` is not differentiable at ``z = 0`` and sqrt's gradient there is inf (inf * 0 = nan);
    below the clamp the gradient is 0, the subgradient of ``|z|`` at 0. Above it (any modulus
    over 1e-15) the value is the plain ``sqrt(re^2 + im^2)``, to the last bit.
    """
    return torch.sqrt((re * re + im * im).clamp_min(TINY))


def complex_l1(q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``sum_k |q_k - e_k|`` over complex coordinates stored as ``[re..., im...]``.

    Broadcasts over leading dimensions: ``q [..., 2k]`` and ``e [..., 2k]``.
    """
    k = q.shape[-1] // 2
    return modulus(q[..., :k] - e[..., :k], q[..., k:] - e[..., k:]).sum(dim=-1)


# -- ranking --------------------------------------------------------------------------------------
def query_rows(table: torch.Tensor, anchor: torch.Tensor, relation: torch.Tensor, r: torch.Tensor, scale: float,
               predict_tail: bool) -> torch.Tensor:
    """``table[anchor] o r`` (``predict_tail``) or ``table[anchor] o conj(r)``, phases ``relation[r] * scale``."""
    phase = relation[r] * scale
    sin = torch.sin(phase)
    return rotate(table[anchor], torch.cos(phase), sin if predict_tail else -sin)


def complex_l1_pairwise_eager(q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``out[b, n] = sum_k |q[b, k] - e[n, k]|``: :func:`complex_l1` of every query with every row."""
    return complex_l1(q[:, None, :], e[None, :, :])


_query_kernel = CompiledFunction(query_rows, "rotate_query", pure=True, dynamic=True)
_pairwise = CompiledFunction(complex_l1_pairwise_eager, "complex_l1_pairwise", pure=True, dynamic=True)


def use_compiled(num_entities: int, width: int, queries: int = 0) -> bool:
    """Whether ranking ``num_entities`` rows of ``width`` (for ``queries`` queries, when known)
    repays compiling its kernel: a large table, or a large total of query x entity work (the eager
    distances cost about 50x the compiled kernel's: 4,000 queries against 15,000 entities of
    width 128 took 37 s eager, 0.7 s compiled, plus a one-off compilation of a few seconds)."""
    work = num_entities * (width // 2)
    return _pairwise.available() and (work >= COMPILE_MIN_WORK or queries * work >= COMPILE_MIN_TOTAL_WORK)


def pairwise_available() -> bool:
    """Whether the compiled ranking kernel can be used (compilation enabled and not failed)."""
    return _pairwise.available()


def complex_l1_pairwise(q: torch.Tensor, e: torch.Tensor, compiled: bool) -> torch.Tensor:
    """``[B, N]`` distances of every query to every entity.

    The compiled kernel is called as ``(e, q)`` and transposed back: its outer
    (parallel) loop then runs over entities and its inner loop over the query
    chunk, which stays in cache, instead of streaming the whole entity table
    from memory once per query (2x faster on CPU; bit-identical values, since
    ``|a - b| = |b - a|`` exactly).
    """
    if compiled and _pairwise.available():
        return _pairwise(e, q, compiled=True).t()
    return complex_l1_pairwise_eager(q, e)


# -- training -------------------------------------------------------------------------------------
def use_compiled_training(pairs: int, width: int) -> bool:
    """Whether a step of ``pairs`` scored pairs of ``width`` repays compiling the training kernels."""
    return compile_enabled() and pairs * (width // 2) >= COMPILE_MIN_TRAIN_WORK


def _queries(rows: torch.Tensor, phase: torch.Tensor):
    """The heads, tails and ``[B, K, 2k]`` candidates of ``rows``, ``cos`` and ``sin`` of ``phase``, and
    the two queries of each positive: ``h o r`` (compared with tails) and ``t o conj(r)`` (with heads)."""
    b = phase.shape[0]
    heads, tails = rows[:b], rows[b:2 * b]
    cands = rows[2 * b:].view(b, -1, rows.shape[-1])
    cos, sin = torch.cos(phase), torch.sin(phase)
    return heads, tails, cands, cos, sin, rotate(heads, cos, sin), rotate(tails, cos, -sin)


def sampled_scores(rows: torch.Tensor, phase: torch.Tensor, corrupt_head: torch.Tensor, margin: float):
    """Scores ``pos [B]`` of the positives and ``negs [B, K]`` of their sampled negatives.

    ``rows [B * (K + 2), 2k]``: entity vectors of the ``B`` heads, the ``B`` tails, then the
    ``B x K`` candidates (row-major); ``phase [B, k]``: relation phases in radians;
    ``corrupt_head [B, K]``: the candidate replaces the head (compared with ``t o conj(r)``)
    rather than the tail (compared with ``h o r``). One rotation per positive and direction;
    a negative only brings its candidate row.
    """
    _, tails, cands, _, _, q_tail, q_head = _queries(rows, phase)
    pos = margin - complex_l1(q_tail, tails)
    q = torch.where(corrupt_head.unsqueeze(-1), q_head.unsqueeze(1), q_tail.unsqueeze(1))
    negs = margin - complex_l1(q, cands)
    return pos, negs


def rotate_sampled_loss(rows: torch.Tensor, phase: torch.Tensor, corrupt_head: torch.Tensor, mask: torch.Tensor,
                        margin: float, temperature: float) -> torch.Tensor:
    """The self-adversarial RotatE loss of a batch with ``K`` sampled negatives per positive (reference).

    Rows and phases as in :func:`sampled_scores`; ``mask [B, K]``: usable negatives.
    :class:`SampledLoss` computes the same loss and its exact gradient without ``[B, K, 2k]``
    intermediates.
    """
    pos, negs = sampled_scores(rows, phase, corrupt_head, margin)
    return self_adversarial_loss(pos, negs, mask, temperature)


def _sampled_forward(vecs: torch.Tensor, phase: torch.Tensor, idx: torch.Tensor, corrupt_head: torch.Tensor,
                     mask: torch.Tensor, margin: float, temperature: float):
    """Loss of :func:`rotate_sampled_loss` for ``rows = vecs[idx]``, and ``d loss / d pos``, ``d loss / d negs``."""
    b = phase.shape[0]
    # the gather is fused into the loops below when compiled: the rows are never materialised
    pos, negs = sampled_scores(vecs[idx], phase, corrupt_head, margin)
    loss = self_adversarial_loss(pos, negs, mask, temperature)
    # the gradient of self_adversarial_loss: d/dx log s(x) = s(-x); the weights p are constants
    p = torch.softmax((temperature * negs).masked_fill(~mask, float("-inf")), dim=-1)
    p = torch.nan_to_num(p, nan=0.0)
    g_pos = -torch.sigmoid(-pos) / b
    g_neg = p * torch.sigmoid(negs) / b
    return loss, g_pos, g_neg


def _unit(z: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * z / |z|`` per complex coordinate of ``z [..., 2, k]`` (real parts, imaginary parts):
    ``scale`` times the gradient of ``sum_k |z_k|``, with :func:`modulus`'s clamp.

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
    _, tails, cands, cos, sin, q_tail, q_head = _queries(vecs[idx], phase)
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
    g_heads = rotate(gq_tail, cos, -sin)                  # rotations are orthogonal: back by the inverse
    g_tails = rotate(gq_head, cos, sin) - g_pos_q
    # d q / d phase: (-q_im, q_re) for h o r, (q_im, -q_re) for t o conj(r)
    g_phase = (gq_tail[:, k:] * q_tail[:, :k] - gq_tail[:, :k] * q_tail[:, k:]) \
        - (gq_head[:, k:] * q_head[:, :k] - gq_head[:, :k] * q_head[:, k:])
    return g_heads, g_tails, g_cands.view(-1, d), g_phase


_forward_kernel = CompiledFunction(_sampled_forward, "rotate_sampled_forward", dynamic=False)
_backward_kernel = CompiledFunction(_sampled_backward, "rotate_sampled_backward", dynamic=False)


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
        with single_threaded():  # deterministic scatters; their threaded path is slower
            if ctx.needs_input_grad[0]:
                g_vecs = torch.zeros_like(vecs)
                g_vecs.index_add_(0, idx[:b], g_heads).index_add_(0, idx[b:2 * b], g_tails)
                g_vecs.index_add_(0, idx[2 * b:], g_cands)
            if ctx.needs_input_grad[1]:
                g_relation = torch.zeros_like(relation).index_add_(0, r, g_phase * ctx.scale)
        return (g_vecs, g_relation) + (None,) * 8


def fused_loss(vecs: torch.Tensor, relation: torch.Tensor, scale: float, h: torch.Tensor, r: torch.Tensor,
               t: torch.Tensor, candidate: torch.Tensor, corrupt_head: torch.Tensor, mask: torch.Tensor,
               margin: float, temperature: float) -> torch.Tensor:
    """The self-adversarial loss of positives ``(h, r, t)`` against ``candidate [B, K]`` entities, phases
    ``relation[r] * scale``: :class:`SampledLoss`, compiled into fused forward and backward loops when the
    batch is large enough (:func:`use_compiled_training`), else the same code eagerly."""
    b, k = candidate.shape
    idx = torch.cat([h, t, candidate.reshape(-1)])
    compiled = use_compiled_training(b * k, vecs.shape[-1])
    return SampledLoss.apply(vecs, relation, r, scale, idx, corrupt_head, mask, float(margin), float(temperature),
                             compiled)
