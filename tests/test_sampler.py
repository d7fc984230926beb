import pytest
import torch

from snagkg.tasks.completion.sampler import BernoulliNegativeSampler, TripleIndex, bernoulli_head_probability


def test_bernoulli_probability_one_to_many_and_many_to_one():
    # relation 0: one head, many tails (1-N): corrupt the head more often
    # relation 1: many heads, one tail (N-1): corrupt the tail more often
    t0 = torch.tensor([[0, 0, t] for t in range(1, 9)])
    t1 = torch.tensor([[h, 1, 0] for h in range(1, 5)])
    p = bernoulli_head_probability(torch.cat([t0, t1]), 2)
    assert p[0] > 0.85 and p[1] < 0.25
    assert abs(float(p[0]) - 8 / 9) < 1e-6  # tph = 8, hpt = 1


def test_negatives_shape_corrupt_one_side_and_filtered():
    g = torch.Generator().manual_seed(0)
    n = 20
    train = torch.stack([torch.randint(0, n, (200,)), torch.randint(0, 3, (200,)), torch.randint(0, n, (200,))], 1)
    s = BernoulliNegativeSampler(train, n, 3, num_negatives=16, filtered=True)
    batch = train[:50]
    neg, mask = s.sample(batch, g)
    assert neg.shape == (50, 16, 3) and mask.shape == (50, 16)
    assert (neg[..., 1] == batch[:, None, 1]).all()
    same_h = neg[..., 0] == batch[:, None, 0]
    same_t = neg[..., 2] == batch[:, None, 2]
    assert (same_h | same_t).all()
    index = TripleIndex(train, n, 3)
    assert not index.contains(neg[mask]).any()  # every usable negative is a true negative
    assert index.contains(neg[~mask]).all()


@pytest.mark.parametrize("filtered", [True, False])
def test_sample_candidates_are_the_negatives_of_sample(filtered):
    from snagkg.tasks.completion.sampler import BernoulliNegativeSampler
    g = torch.Generator().manual_seed(0)
    n = 15
    train = torch.stack([torch.randint(0, n, (300,), generator=g), torch.randint(0, 3, (300,), generator=g),
                         torch.randint(0, n, (300,), generator=g)], 1)
    s = BernoulliNegativeSampler(train, n, 3, num_negatives=16, filtered=filtered)
    batch = train[:64]
    neg, mask = s.sample(batch, torch.Generator().manual_seed(5))
    cand, head_side, mask2 = s.sample_candidates(batch, torch.Generator().manual_seed(5))
    assert torch.equal(head_side, neg[..., 0] != batch[:, None, 0])
    assert torch.equal(cand, torch.where(head_side, neg[..., 0], neg[..., 2]))
    assert torch.equal(mask2, mask)
