"""The RotatE training loss with its hand-written backward (``SampledLoss``, snagkg.tasks.completion.rotate)
against autograd of the reference formulation, eagerly and compiled: equal up to float rounding, finite
where a distance is zero, and compiled runs deterministic."""

import pytest
import torch

from snagkg.tasks.completion.loss import self_adversarial_loss
from snagkg.tasks.completion.rotate import SampledLoss, rotate_sampled_loss


def _batch(n_ent=40, d=8, b=6, k=5, n_rel=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    vecs = torch.randn(n_ent, d, generator=g, dtype=dtype, requires_grad=True)
    relation = (torch.rand(n_rel, d // 2, generator=g, dtype=dtype) * 2 - 1).requires_grad_()
    r = torch.randint(0, n_rel, (b,), generator=g)
    idx = torch.randint(0, n_ent, (b * (k + 2),), generator=g)
    corrupt_head = torch.rand(b, k, generator=g) < 0.5
    mask = torch.rand(b, k, generator=g) < 0.8
    mask[0] = False  # a row without usable negatives
    return vecs, relation, r, idx, corrupt_head, mask


SCALE = 2.5  # radians per unit of the relation parameter


def _reference(vecs, relation, r, idx, corrupt_head, mask):
    loss = rotate_sampled_loss(vecs[idx], relation[r] * SCALE, corrupt_head, mask, 12.0, 2.0)
    return (loss, *torch.autograd.grad(loss * 1.5, [vecs, relation]))


def _fused(vecs, relation, r, idx, corrupt_head, mask, compiled):
    loss = SampledLoss.apply(vecs, relation, r, SCALE, idx, corrupt_head, mask, 12.0, 2.0, compiled)
    return (loss, *torch.autograd.grad(loss * 1.5, [vecs, relation]))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_hand_written_backward_equals_autograd(dtype, tol):
    args = _batch(dtype=dtype)
    for ref, got in zip(_reference(*args), _fused(*args, compiled=False)):
        assert torch.allclose(got, ref, rtol=tol, atol=tol * ref.abs().max().item())


@pytest.mark.parametrize("compiled", [False, True])
def test_loss_gradient_is_finite_when_a_distance_is_zero(compiled):
    """A self-loop (e, r, e) whose relation phase reached 0 (and a negative equal to its query)
    has a zero complex difference: |z| is not differentiable there, and the gradient must be
    0 (the subgradient), not nan (a DB15K run diverged at epoch 36 that way)."""
    vecs, relation, r, idx, ch, mask = _batch(seed=4)
    b, k = ch.shape
    with torch.no_grad():
        relation[r[1]] = 0.0                 # identity rotation for row 1's relation
        idx[b + 1] = idx[1]                  # row 1's tail = its head: (e, r, e)
        idx[2 * b + k + 0] = idx[1]          # row 1's first negative = e as well
        ch[1, 0], mask[1, 0] = False, True   # ... replacing the tail: distance 0 again
    ref = _reference(vecs, relation, r, idx, ch, mask)
    got = _fused(vecs, relation, r, idx, ch, mask, compiled=compiled)
    for g_ref, g_got in zip(ref, got):
        assert torch.isfinite(g_ref).all() and torch.isfinite(g_got).all()
        assert torch.allclose(g_got, g_ref, rtol=1e-5, atol=1e-5 * g_ref.abs().max().item())


def test_reference_loss_is_rotate_with_the_self_adversarial_loss():
    """``rotate_sampled_loss`` on gathered rows scores every pair as RotatE does (SPEC section 4)."""
    vecs, relation, r, idx, ch, mask = _batch()
    phase = relation[r] * SCALE
    b, k = ch.shape
    kk = vecs.shape[1] // 2
    with torch.no_grad():
        h, t, c = vecs[idx[:b]], vecs[idx[b:2 * b]], vecs[idx[2 * b:]].view(b, k, -1)
        cos, sin = torch.cos(phase), torch.sin(phase)

        def dist(a, s, e):  # sum_k |a_k e^{i theta_k} - e_k| with sin(theta) = s
            re = a[:, :kk] * cos - a[:, kk:] * s - e[:, :kk]
            im = a[:, :kk] * s + a[:, kk:] * cos - e[:, kk:]
            return torch.sqrt(re * re + im * im).sum(-1)

        pos = 12.0 - dist(h, sin, t)
        negs = torch.stack([torch.where(ch[:, j], 12.0 - dist(t, -sin, c[:, j]), 12.0 - dist(h, sin, c[:, j]))
                            for j in range(k)], 1)
        ref = self_adversarial_loss(pos, negs, mask, 2.0)
        got = rotate_sampled_loss(vecs[idx], phase, ch, mask, 12.0, 2.0)
    assert torch.allclose(got, ref, atol=1e-6)


@pytest.mark.slow  # compiles the loss with torch.compile
def test_compiled_training_loss_equals_eager_and_is_deterministic():
    args = _batch(n_ent=300, d=32, b=64, k=16, seed=3)
    eager = _fused(*args, compiled=False)
    first = _fused(*args, compiled=True)
    again = _fused(*args, compiled=True)
    for e, c, c2 in zip(eager, first, again):
        assert torch.allclose(c, e, rtol=1e-5, atol=1e-6 * e.abs().max().item())
        assert torch.equal(c, c2)  # no atomics: a CPU run is reproducible bit for bit
