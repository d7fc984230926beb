"""Unit checks of the alignment building blocks against brute-force references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snagkg.data.datasets.alignment_pair import split_links
from snagkg.tasks.alignment.gat import GAT, EdgeIndex, edge_aggregate, edge_softmax, union_edges
from snagkg.tasks.alignment.loss import UncertaintyWeighting, icl_loss
from snagkg.tasks.alignment.metrics import alignment_metrics, mutual_nearest, one_to_one, rank_alignment


def _unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def _csls_dense(x, y, k):
    sim = (x @ y.t()).numpy()
    if k == 0:
        return 2 * sim
    rx = np.sort(sim, axis=1)[:, ::-1][:, :k].mean(axis=1)
    ry = np.sort(sim.T, axis=1)[:, ::-1][:, :k].mean(axis=1)
    out = np.empty_like(sim)
    for i in range(sim.shape[0]):
        for j in range(sim.shape[1]):
            out[i, j] = 2 * sim[i, j] - rx[i] - ry[j]
    return out


def _ranks_ref(score, optimistic=False):
    ranks = []
    for i in range(score.shape[0]):
        true = score[i, i]
        better = sum(1 for j in range(score.shape[1]) if score[i, j] > true)
        equal = sum(1 for j in range(score.shape[1]) if j != i and score[i, j] == true)
        ranks.append(1 + better + (0 if optimistic else equal / 2))
    return np.array(ranks)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_csls_ranks_match_brute_force(k):
    x = _unit(23, 5, 0)
    y = F.normalize(x + 0.8 * _unit(23, 5, 1), dim=1)
    dense = _csls_dense(x, y, k)
    lr, rl = rank_alignment(x, y, k=k, chunk=4)  # chunk < n: exercises the chunking
    np.testing.assert_allclose(lr.numpy(), _ranks_ref(dense))
    np.testing.assert_allclose(rl.numpy(), _ranks_ref(dense.T))
    m = alignment_metrics(x, y, k=k, chunk=7)
    ref = _ranks_ref(dense)
    assert m["hits@1"] == pytest.approx(np.mean(ref <= 1))
    assert m["hits@10"] == pytest.approx(np.mean(ref <= 10))
    assert m["mrr"] == pytest.approx(np.mean(1 / ref))
    assert m["rl_mrr"] == pytest.approx(np.mean(1 / _ranks_ref(dense.T)))
    assert m["count"] == 23 and m["candidates"] == 23


def test_ties_never_count_as_hits():
    x = torch.ones(4, 3) / math.sqrt(3)  # every candidate scores the same
    lr, rl = rank_alignment(x, x.clone(), k=3)
    assert torch.allclose(lr, torch.full((4,), 2.5, dtype=torch.double))
    opt, _ = rank_alignment(x, x.clone(), k=3, ties="optimistic")
    assert torch.all(opt == 1)


def test_limit_ranks_first_queries_against_all_candidates():
    x, y = _unit(12, 4, 2), _unit(12, 4, 3)
    full, _ = rank_alignment(x, y, k=3)
    part, part_rl = rank_alignment(x, y, k=3, limit=5)
    assert torch.equal(part, full[:5]) and len(part_rl) == 5


def test_left_to_right_only_skips_the_other_direction():
    x, y = _unit(12, 4, 2), _unit(12, 4, 3)
    lr, rl = rank_alignment(x, y, k=3)
    info = {}
    only, none = rank_alignment(x, y, k=3, right_to_left=False, info=info)
    assert torch.equal(only, lr) and len(none) == 0 and len(rl) == 12
    assert info["exhaustive"] == 12  # the left-to-right queries alone


def test_icl_loss_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 4.0], [0.0, -1.0]])
    tau = 0.5
    an = [[1.0, 0.0], [0.0, 1.0]]
    bn = [[0.6, 0.8], [0.0, -1.0]]
    dot = lambda u, v: u[0] * v[0] + u[1] * v[1]

    def ce(logits, target):
        return -logits[target] + math.log(sum(math.exp(v) for v in logits))

    total = 0.0
    for i in range(2):
        o = 1 - i
        la = [dot(an[i], bn[0]) / tau, dot(an[i], bn[1]) / tau, dot(an[i], an[o]) / tau]  # self masked out
        lb = [dot(bn[i], an[0]) / tau, dot(bn[i], an[1]) / tau, dot(bn[i], bn[o]) / tau]
        total += 0.5 * (ce(la, i) + ce(lb, i))
    assert float(icl_loss(a, b, tau)) == pytest.approx(total / 2, rel=1e-6)
    w = torch.tensor([2.0, 0.0])
    la0 = [dot(an[0], bn[0]) / tau, dot(an[0], bn[1]) / tau, dot(an[0], an[1]) / tau]
    lb0 = [dot(bn[0], an[0]) / tau, dot(bn[0], an[1]) / tau, dot(bn[0], bn[1]) / tau]
    expect = 2.0 * 0.5 * (ce(la0, 0) + ce(lb0, 0)) / 2
    assert float(icl_loss(a, b, tau, weight=w)) == pytest.approx(expect, rel=1e-6)


def test_icl_loss_prefers_aligned_pairs():
    x = _unit(8, 6, 4).float()
    assert icl_loss(x, x, 0.1) < icl_loss(x, x.flip(0), 0.1)


def test_uncertainty_weighting_formula():
    uw = UncertaintyWeighting(2)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.5, -1.0]))
    out = uw([torch.tensor(2.0), torch.tensor(3.0)])
    assert float(out.detach()) == pytest.approx(math.exp(-0.5) * 2 + 0.5 + math.exp(1.0) * 3 - 1.0, rel=1e-6)


def test_edge_aggregate_gradients_and_reference():
    src = torch.tensor([0, 1, 2, 3, 0, 1, 2, 4])
    dst = torch.tensor([1, 2, 3, 0, 0, 0, 1, 4])
    edges = EdgeIndex(src, dst, 5)
    a = torch.rand(8, dtype=torch.double, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, x: edge_aggregate(a, x, edges), (a, x))
    ref = torch.zeros(5, 3, dtype=torch.double).index_add(0, edges.dst, a[:, None] * x[edges.src])
    assert torch.allclose(edge_aggregate(a, x, edges), ref)
    s = torch.randn(8, 2, dtype=torch.double)
    p = edge_softmax(s, edges.dst, 5)
    sums = torch.zeros(5, 2, dtype=torch.double).index_add(0, edges.dst, p)
    assert torch.allclose(sums[torch.unique(dst)], torch.ones(1, dtype=torch.double))


def test_gat_is_permutation_equivariant():
    rng = np.random.default_rng(0)
    n = 30
    tri = np.stack([rng.integers(0, n, 60), np.zeros(60, dtype=np.int64), rng.integers(0, n, 60)], axis=1)
    torch.manual_seed(0)
    gat = GAT(8, layers=2, heads=2)
    x = torch.randn(n, 8)
    out = gat(x, union_edges(tri, n))
    perm = rng.permutation(n)  # new index of old entity e is perm[e]
    tri_p = tri.copy()
    tri_p[:, 0], tri_p[:, 2] = perm[tri[:, 0]], perm[tri[:, 2]]
    x_p = torch.empty_like(x)
    x_p[torch.from_numpy(perm)] = x
    out_p = gat(x_p, union_edges(tri_p, n))
    assert torch.allclose(out_p[torch.from_numpy(perm)], out, atol=1e-5)


def test_mutual_nearest_matches_brute_force():
    x, y = _unit(15, 4, 5), _unit(11, 4, 6)
    i, j = mutual_nearest(x, y, chunk=4)
    sim = (x @ y.t()).numpy()
    ref = {(a, int(sim[a].argmax())) for a in range(15) if int(sim[:, int(sim[a].argmax())].argmax()) == a}
    assert set(zip(i.tolist(), j.tolist())) == ref


def _greedy_ref(score):
    n, m = score.shape
    order = sorted(((score[a, b], a, b) for a in range(n) for b in range(m)), key=lambda t: -t[0])
    used_a, used_b, out = set(), set(), []
    for v, a, b in order:
        if a not in used_a and b not in used_b:
            used_a.add(a)
            used_b.add(b)
            out.append((a, b))
    return set(out)


@pytest.mark.parametrize("n,m", [(9, 9), (7, 12), (12, 5)])
def test_one_to_one_is_injective_and_greedy(n, m):
    x, y = _unit(n, 3, 7), _unit(m, 3, 8)
    for topk in (1, 2, 50):
        i, j, s = one_to_one(x, y, k=3, topk=topk, chunk=4)
        assert len(set(i.tolist())) == len(i) and len(set(j.tolist())) == len(j)
        assert len(i) == min(n, m)
        dense = _csls_dense(x, y, 3)
        assert np.allclose(s.numpy(), dense[i.numpy(), j.numpy()], atol=1e-5)
    i, j, _ = one_to_one(x, y, k=3, topk=50)
    assert set(zip(i.tolist(), j.tolist())) == _greedy_ref(_csls_dense(x, y, 3))


def test_split_links_is_seeded_disjoint_and_sized():
    links = np.stack([np.arange(100), 100 + np.arange(100)], axis=1)
    tr, va, te = split_links(links, 0.3, 0.1, seed=3)
    assert (len(tr), len(va), len(te)) == (27, 3, 70)
    allp = np.concatenate([tr, va, te])
    assert len({tuple(p) for p in allp.tolist()}) == 100
    tr2, va2, te2 = split_links(links, 0.3, 0.1, seed=3)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    tr3, _, _ = split_links(links, 0.3, 0.1, seed=4)
    assert not np.array_equal(tr, tr3)
