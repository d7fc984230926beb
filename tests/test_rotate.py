"""One RotatE: ``predict``, ``score_triples``, the training loss and the evaluation ranking score a
triple through the same arithmetic (:mod:`snagkg.tasks.completion.rotate`), to the last bit, also
where complex moduli are near zero (entity rows of ~0, a self-loop whose relation phase is 0).

``margin = 0`` makes the score ``-distance`` exactly, so a distance of 1e-13 (the clamped modulus
of a zero coordinate) and one of 0 (an unclamped one) give different scores; with ``margin = 12``
both round to 12.0 in float32, and the ranks, which compare distances, must still agree with the
scores ``predict`` prints.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from snagkg.tasks.completion import rotate
from snagkg.tasks.completion.evaluation import FilterIndex, rank_triples
from snagkg.tasks.completion.loss import self_adversarial_loss
from snagkg.tasks.completion.predict import predict, score_triples
from snagkg.tasks.completion.sampled_evaluation import sampled_ranks
from snagkg.tasks.completion.scorers import RotatE, rotate_nssa

N_ENT, N_REL, WIDTH = 12, 2, 8
ZERO = (0, 1, 2)   # rows exactly 0
TINY_ROWS = (3, 4)  # rows of ~1e-20: squared moduli below float32's normal range
#: (h, r, t): zero to zero, tiny to tiny, zero to a plain row and back, a self-loop through the
#: zero phase of relation 0, plain triples
TRIPLES = [(0, 1, 1), (3, 1, 4), (0, 1, 5), (5, 1, 2), (6, 0, 6), (5, 0, 7), (8, 1, 9), (9, 0, 10), (4, 1, 11)]


def _graph(margin: float):
    g = torch.Generator().manual_seed(0)
    vecs = torch.randn(N_ENT, WIDTH, generator=g)
    vecs[list(ZERO)] = 0.0
    vecs[list(TINY_ROWS)] = 1e-20 * torch.randn(len(TINY_ROWS), WIDTH, generator=g)
    sc = RotatE(N_REL, WIDTH, margin=margin)
    with torch.no_grad():
        sc.relation[0] = 0.0  # phase 0: (e, r0, e) has q = e exactly, every modulus 0
    triples = torch.tensor(TRIPLES)
    kg = SimpleNamespace(entities=[f"ent{i:02d}" for i in range(N_ENT)], relations=[f"rel{i}" for i in range(N_REL)],
                         num_entities=N_ENT, num_relations=N_REL)
    kg.split = lambda name: triples.numpy() if name == "train" else np.zeros((0, 3), dtype=np.int64)
    task = SimpleNamespace(kg=kg, cfg=None, model=SimpleNamespace(interaction=sc), prediction_state=None,
                           filters=FilterIndex(triples, N_ENT, N_REL), entity_vectors=lambda: vecs)
    return task, vecs, sc, triples


def _predicted(task, anchor: int, r: int, tail: bool) -> torch.Tensor:
    """``predict``'s score of every entity for ``(anchor, r, ?)`` (``tail``) or ``(?, r, anchor)``."""
    names = task.kg.entities
    kw = {"head": names[anchor]} if tail else {"tail": names[anchor]}
    p = predict(task, relation=task.kg.relations[r], top=N_ENT, include_known=True, **kw)
    out = torch.full((N_ENT,), float("nan"))
    for row in p.rows:
        out[row.id] = row.score
    assert not out.isnan().any()
    return out


def _scored(task, triples) -> torch.Tensor:
    e, rel = task.kg.entities, task.kg.relations
    res = score_triples(task, [(e[h], rel[r], e[t]) for h, r, t in triples])
    return torch.tensor([row.score for row in res.rows])


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    # the compiled kernels sum in another order; this file compares the eager paths to the last bit
    monkeypatch.setenv("SNAGKG_COMPILE", "0")


@pytest.mark.parametrize("margin", [0.0, 12.0])
def test_predict_and_score_triples_give_the_same_score(margin):
    task = _graph(margin)[0]
    given = _scored(task, TRIPLES)
    for i, (h, r, t) in enumerate(TRIPLES):
        assert _predicted(task, h, r, tail=True)[t] == given[i], (h, r, t)
    # the head direction scores t o conj(r) against h: the same distance up to rounding
    for i, (h, r, t) in enumerate(TRIPLES):
        assert _predicted(task, t, r, tail=False)[h] == pytest.approx(float(given[i]), abs=1e-5)
    if margin == 0.0:  # a zero modulus counts as its clamped value everywhere (not 0, not nan)
        zero_dist = WIDTH // 2 * rotate.TINY ** 0.5
        for i in (0, 1, 4):
            assert given[i] == pytest.approx(-zero_dist, rel=1e-5)


@pytest.mark.parametrize("margin", [0.0, 12.0])
def test_the_training_loss_scores_as_predict(margin):
    """The training path's positives and negatives are ``score_triples``'s and ``predict``'s scores,
    and the fused loss (the registered ``rotate+nssa`` kernel) is the loss of those scores."""
    task, vecs, sc, triples = _graph(margin)
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    g = torch.Generator().manual_seed(1)
    candidate = torch.randint(0, N_ENT, (len(h), 5), generator=g)
    candidate[:, 0] = torch.tensor(ZERO[:1] * len(h))   # a zero row among every query's candidates
    candidate[:, 1] = t                                # a negative equal to the positive
    corrupt_head = torch.rand(candidate.shape, generator=g) < 0.5
    corrupt_head[:, 2] = True
    mask = torch.ones(candidate.shape, dtype=torch.bool)

    pos, negs = sc.sampled_scores(vecs, h, r, t, candidate, corrupt_head)
    assert torch.equal(pos, _scored(task, TRIPLES))
    want = torch.empty_like(negs)
    for i, (hh, rr, tt) in enumerate(TRIPLES):
        by_tail, by_head = _predicted(task, hh, rr, tail=True), _predicted(task, tt, rr, tail=False)
        want[i] = torch.where(corrupt_head[i], by_head[candidate[i]], by_tail[candidate[i]])
    assert torch.equal(negs, want)

    table = vecs.clone().requires_grad_()
    loss = rotate_nssa(sc, table, h, r, t, candidate, corrupt_head, mask, 2.0)
    assert torch.equal(loss, self_adversarial_loss(pos, negs, mask, 2.0))
    reference = rotate.rotate_sampled_loss(vecs[torch.cat([h, t, candidate.reshape(-1)])], sc.phases(r),
                                           corrupt_head, mask, margin, 2.0)
    assert torch.equal(loss, reference)
    loss.backward()
    assert torch.isfinite(table.grad).all() and torch.isfinite(sc.relation.grad).all()


def _ranks_from_scores(task, triples) -> torch.Tensor:
    """Filtered realistic ranks (tails, then heads) from ``predict``'s scores."""
    known = {tuple(x) for x in triples.tolist()}
    out = []
    for tail in (True, False):
        for h, r, t in triples.tolist():
            anchor, true = (h, t) if tail else (t, h)
            s = _predicted(task, anchor, r, tail)
            keep = torch.tensor([e == true or ((h, r, e) if tail else (e, r, t)) not in known for e in range(N_ENT)])
            keep[true] = False
            better = int((keep & (s > s[true])).sum())
            equal = int((keep & (s == s[true])).sum())
            out.append(1 + better + equal / 2)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("margin", [0.0, 12.0])
def test_the_evaluation_ranks_as_predict_scores(margin):
    task, vecs, sc, triples = _graph(margin)
    want = _ranks_from_scores(task, triples)
    filters = FilterIndex(triples, N_ENT, N_REL)
    with torch.no_grad():
        got = rank_triples(vecs, sc, triples, filters, ties="realistic")
        sampled = sampled_ranks(vecs, sc, triples, filters, candidates=N_ENT, ties="realistic")
    assert torch.equal(got, want)
    assert torch.equal(sampled, want)
    # a zero query ties every zero and ~0 row (all at the clamped distance), not told apart by noise
    assert got[0] == 1 + (len(ZERO) + len(TINY_ROWS) - 1) / 2


def test_one_numerics_for_every_distance():
    """A modulus above 1e-15 is the plain ``sqrt(re^2 + im^2)`` to the last bit; below, the clamp."""
    g = torch.Generator().manual_seed(2)
    q, e = torch.randn(6, WIDTH, generator=g), torch.randn(9, WIDTH, generator=g)
    e[0] = q[0]
    k = WIDTH // 2
    d_re, d_im = q[:, None, :k] - e[None, :, :k], q[:, None, k:] - e[None, :, k:]
    plain = torch.sqrt(d_re * d_re + d_im * d_im)
    clamped = rotate.modulus(d_re, d_im)
    nonzero = plain > 1e-15
    assert torch.equal(clamped[nonzero], plain[nonzero])
    assert torch.equal(clamped[~nonzero], torch.full_like(clamped[~nonzero], rotate.TINY ** 0.5))
    pair = rotate.complex_l1_pairwise(q, e, compiled=False)
    assert torch.equal(pair, rotate.complex_l1(q[:, None, :], e[None, :, :]))
    assert torch.equal(pair[0, 0], rotate.complex_l1(q[0], e[0]))
