"""RotatE distance and the self-adversarial loss against hand computations (SPEC section 4)."""
import math

import pytest
import torch

from snagkg.tasks.completion.loss import self_adversarial_loss
from snagkg.tasks.completion.rotate import complex_l1, complex_l1_pairwise_eager
from snagkg.tasks.completion.scorers import RotatE


def as_complex(v):
    k = v.shape[-1] // 2
    return torch.complex(v[..., :k].double(), v[..., k:].double())


def test_rotate_distance_matches_formula():
    torch.manual_seed(0)
    sc = RotatE(num_relations=3, entity_width=8, margin=12.0)
    h, t = torch.randn(5, 8), torch.randn(5, 8)
    r = torch.tensor([0, 1, 2, 1, 0])
    theta = sc.relation[r].double() / ((12.0 + 2.0) / 4) * math.pi
    expected = (as_complex(h) * torch.exp(1j * theta) - as_complex(t)).abs().sum(-1)
    got = 12.0 - sc.score(h, r, t)
    assert torch.allclose(got.double(), expected, atol=1e-5)


def test_head_query_is_equivalent_to_tail_distance():
    torch.manual_seed(1)
    sc = RotatE(num_relations=2, entity_width=6)
    h, t, r = torch.randn(4, 6), torch.randn(4, 6), torch.tensor([0, 1, 1, 0])
    d_tail = sc.distance(sc.query(h, r, True), t)
    d_head = sc.distance(sc.query(t, r, False), h)
    assert torch.allclose(d_tail, d_head, atol=1e-5)


def test_pairwise_kernel_matches_broadcast():
    torch.manual_seed(2)
    q, e = torch.randn(7, 10), torch.randn(11, 10)
    ref = complex_l1(q[:, None, :], e[None, :, :])
    assert torch.allclose(complex_l1_pairwise_eager(q, e), ref, atol=1e-5)


def test_self_adversarial_loss_hand_computation():
    pos = torch.tensor([2.0])
    neg = torch.tensor([[1.0, -1.0]])
    alpha = 2.0
    p1, p2 = math.exp(2.0) / (math.exp(2.0) + math.exp(-2.0)), math.exp(-2.0) / (math.exp(2.0) + math.exp(-2.0))
    ls = lambda x: math.log(1 / (1 + math.exp(-x)))  # noqa: E731
    expected = -(ls(2.0) + p1 * ls(-1.0) + p2 * ls(1.0))
    assert self_adversarial_loss(pos, neg, temperature=alpha).item() == pytest.approx(expected, rel=1e-6)


def test_masked_negatives_are_left_out_and_weights_not_backpropagated():
    pos = torch.tensor([0.5, 0.5])
    neg = torch.tensor([[1.0, 3.0], [1.0, 3.0]], requires_grad=True)
    mask = torch.tensor([[True, False], [True, True]])
    loss = self_adversarial_loss(pos, neg, mask, temperature=1.0)
    ls = lambda x: math.log(1 / (1 + math.exp(-x)))  # noqa: E731
    q1, q3 = math.exp(1) / (math.exp(1) + math.exp(3)), math.exp(3) / (math.exp(1) + math.exp(3))
    row1 = -(ls(0.5) + ls(-1.0))
    row2 = -(ls(0.5) + q1 * ls(-1.0) + q3 * ls(-3.0))
    assert loss.item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    loss.backward()
    # d/dneg of -p * logsigmoid(-neg) with p constant = p * sigmoid(neg)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert neg.grad[0, 1].item() == 0.0
    assert neg.grad[1, 1].item() == pytest.approx(q3 * sig(3.0) / 2, rel=1e-5)


def test_row_without_usable_negatives_is_finite():
    loss = self_adversarial_loss(torch.tensor([1.0]), torch.tensor([[0.0, 0.0]]),
                                 torch.tensor([[False, False]]))
    assert torch.isfinite(loss)
