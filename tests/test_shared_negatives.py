"""Shared negatives (``completion.negatives_scheme: shared``, PyTorch-BigGraph's scheme): one draw of K
entities per chunk of positives, Bernoulli head/tail per pair, filtered per pair as ``per_triple``."""
from __future__ import annotations

import json

import pytest
import torch

import snagkg
from _helpers import run_main
from snagkg.tasks.completion.sampler import BernoulliNegativeSampler, SharedNegativeSampler, TripleIndex, bernoulli_head_probability, make_sampler
from snagkg.runtime.errors import SnagError


def _graph(n_ent: int, n_rel: int, n_triples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    h = torch.randint(0, n_ent, (n_triples,), generator=g)
    r = torch.randint(0, n_rel, (n_triples,), generator=g)
    t = torch.randint(0, n_ent, (n_triples,), generator=g)
    return torch.unique(torch.stack([h, r, t], 1), dim=0)


def _reference_per_triple(train, n_ent, n_rel, k, batch, gen):
    """The per-triple sampler as it was before shared negatives (sampler.py at 11863f2), written out."""
    p = bernoulli_head_probability(train, n_rel)
    corrupt_head = torch.rand(len(batch), k, generator=gen) < p[batch[:, 1]].unsqueeze(1)
    random_ent = torch.randint(0, n_ent, (len(batch), k), generator=gen)
    h, r, t = batch[:, 0:1], batch[:, 1:2], batch[:, 2:3]
    heads, tails = torch.where(corrupt_head, random_ent, h), torch.where(corrupt_head, t, random_ent)
    index = TripleIndex(train, n_ent, n_rel)
    mask = ~index.contains(torch.stack([heads, r.expand_as(heads), tails], -1))
    head_side = heads != h
    return torch.where(head_side, heads, tails), head_side, mask


def test_per_triple_is_unchanged_bit_for_bit():
    train = _graph(50, 4, 600)
    batch = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:200]]
    sampler = make_sampler(train, 50, 4, 16, True, "per_triple", chunk=8)
    assert type(sampler) is BernoulliNegativeSampler
    got = sampler.sample_candidates(batch, torch.Generator().manual_seed(9))
    ref = _reference_per_triple(train, 50, 4, 16, batch, torch.Generator().manual_seed(9))
    for a, b in zip(got, ref):
        assert torch.equal(a, b)
    # per_triple stays the default
    cfg = snagkg.resolve_config(overrides={"dataset": "synthetic"})
    assert cfg.completion.negatives_scheme == "per_triple"


@pytest.mark.parametrize("b,chunk", [(256, 64), (250, 64), (37, 8), (5, 64)])
def test_every_positive_of_a_chunk_gets_the_same_entities(b, chunk):
    n_ent, k = 1000, 12
    train = _graph(n_ent, 3, 5000)
    batch = train[:b]
    s = SharedNegativeSampler(train, n_ent, 3, k, True, chunk=chunk)
    corrupt_head, ent = s._draw(batch, torch.Generator().manual_seed(4))
    assert ent.shape == corrupt_head.shape == (b, k)
    first = ent[(torch.arange(b) // chunk) * chunk]          # each row's chunk's first row
    assert torch.equal(ent, first)
    starts = ent[::chunk]
    if len(starts) > 1:  # chunks draw independently
        assert not torch.equal(starts[0], starts[1])
    # Bernoulli sides are still drawn per pair, not shared
    assert corrupt_head.float().std() > 0
    # the public candidates are these entities, except where the draw is the positive's own entity
    cand, head_side, _ = s.sample_candidates(batch, torch.Generator().manual_seed(4))
    own = torch.where(corrupt_head, batch[:, 0:1], batch[:, 2:3])
    same = ent != own
    assert torch.equal(cand[same], ent[same]) and torch.equal(head_side[same], corrupt_head[same])
    assert not head_side[~same].any()  # the positive itself (masked as a train triple)


def test_filtered_mask_marks_exactly_the_train_triples():
    n_ent, n_rel, k = 30, 2, 40     # a dense graph: many draws hit train triples
    train = _graph(n_ent, n_rel, 700)
    batch = train[:128]
    s = SharedNegativeSampler(train, n_ent, n_rel, k, True, chunk=16)
    cand, head_side, mask = s.sample_candidates(batch, torch.Generator().manual_seed(2))
    h, r, t = (batch[:, i:i + 1].expand(-1, k) for i in range(3))
    neg = torch.stack([torch.where(head_side, cand, h), r, torch.where(head_side, t, cand)], -1)
    keys = set(map(tuple, train.tolist()))
    in_train = torch.tensor([[tuple(x) in keys for x in row] for row in neg.tolist()])
    assert torch.equal(mask, ~in_train)
    assert (~mask).sum() > 50 and mask.sum() > 50       # both kinds occur
    # sample() gives the same triples and mask from the same generator
    neg2, mask2 = s.sample(batch, torch.Generator().manual_seed(2))
    assert torch.equal(neg2, neg) and torch.equal(mask2, mask)
    # unfiltered: every pair usable
    u = SharedNegativeSampler(train, n_ent, n_rel, k, False, chunk=16)
    assert u.sample_candidates(batch, torch.Generator().manual_seed(2))[2].all()


def test_shared_is_deterministic_with_a_seed():
    train = _graph(500, 5, 3000)
    s = make_sampler(train, 500, 5, 32, True, "shared", chunk=32)
    a = s.sample_candidates(train[:300], torch.Generator().manual_seed(11))
    b = s.sample_candidates(train[:300], torch.Generator().manual_seed(11))
    c = s.sample_candidates(train[:300], torch.Generator().manual_seed(12))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_a_batch_touches_about_2b_plus_chunks_times_k_entities():
    n_ent, b, k, chunk = 1_000_000, 1024, 32, 64   # few collisions among a million entities
    train = _graph(n_ent, 4, 4096)
    batch = train[:b]
    distinct = {}
    for scheme in ("per_triple", "shared"):
        s = make_sampler(train, n_ent, 4, k, True, scheme, chunk)
        cand, _, _ = s.sample_candidates(batch, torch.Generator().manual_seed(3))
        distinct[scheme] = len(torch.unique(torch.cat([batch[:, 0], batch[:, 2], cand.reshape(-1)])))
    shared_bound, per_triple_bound = 2 * b + (b // chunk) * k, 2 * b + b * k
    assert 0.97 * shared_bound <= distinct["shared"] <= shared_bound
    assert 0.97 * per_triple_bound <= distinct["per_triple"] <= per_triple_bound


def test_config_rejects_an_unknown_scheme_and_a_bad_chunk():
    with pytest.raises(SnagError, match="--negatives-scheme: completion.negatives_scheme must be one of "
                                        "per_triple, shared"):
        snagkg.resolve_config(overrides={"completion.negatives_scheme": "pbg"})
    with pytest.raises(SnagError, match="--shared-chunk: completion.shared_chunk must be at least 1"):
        snagkg.resolve_config(overrides={"completion.shared_chunk": 0})


@pytest.mark.slow
def test_train_with_shared_negatives_learns(tiny_dataset, tmp_path, capsys):
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("encoder: {hidden: 32, heads: 2}\n"
                   "train: {epochs: 10, batch_size: 256, lr: 0.02, negatives: 16, eval_every: 10, patience: 5}\n")
    out = tmp_path / "run"
    code, _, err = run_main(["train", "--dataset", tiny_dataset, "--config", cfg, "--output", out, "--seed", "1",
                             "--negatives-scheme", "shared", "--shared-chunk", "32", "--no-progress"], capsys)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["completion"]["negatives_scheme"] == "shared"
    assert res["config"]["completion"]["shared_chunk"] == 32
    n = res["dataset"]["entities"]
    random_mrr = sum(1.0 / i for i in range(1, n + 1)) / n   # expected MRR of a uniform random ranking
    assert res["test"]["mrr"] > 8 * random_mrr, res["test"]   # measured 0.33 (per_triple: 0.36)
