"""The PyKEEN comparison of ``benchmarks/bench_mkgc.py`` (needs the ``bench`` extra; skipped without it).

Row 2 trains PyKEEN's RotatE with the L1 distance and validates it through snagkg's ranking of its
embeddings: both must compute what PyKEEN itself computes.
"""
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("pykeen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import common  # noqa: E402

from snagkg.data.datasets import read_openke  # noqa: E402
from snagkg.tasks.completion.evaluation import FilterIndex, rank_triples  # noqa: E402
from snagkg.evaluation.ranking import summarize  # noqa: E402


@pytest.fixture
def kg(tmp_path):
    from conftest import make_openke
    return read_openke(make_openke(tmp_path / "tiny", num_entities=200, features=False))


def _train(model, tf, epochs=3):
    from pykeen.training import SLCWATrainingLoop
    loop = SLCWATrainingLoop(model=model, triples_factory=tf,
                             optimizer=torch.optim.Adam(model.get_grad_params(), lr=0.01))
    with common.quiet():
        loop.train(triples_factory=tf, num_epochs=epochs, batch_size=256, use_tqdm=False)


def test_p1_interaction_is_the_sum_of_moduli(kg):
    model, _ = common.pykeen_rotate(kg, dim=16, seed=1, p=1)
    l2, _ = common.pykeen_rotate(kg, dim=16, seed=1, p=2)
    ent = model.entity_representations[0](indices=None).detach()
    rel = model.relation_representations[0](indices=None).detach()
    hr = torch.tensor([[0, 1], [3, 2]])
    want = -(ent[hr[:, 0], None, :] * rel[hr[:, 1], None, :] - ent[None, :, :]).abs().sum(-1)
    assert torch.allclose(model.score_t(hr).detach(), want, atol=1e-4)
    # PyKEEN's own model (p=2) is a different function of the same embeddings
    assert not torch.allclose(l2.score_t(hr).detach(), want, atol=1e-2)


def test_snagkg_ranking_of_pykeen_embeddings_matches_pykeens_evaluator(kg):
    from pykeen.evaluation import RankBasedEvaluator
    model, tf = common.pykeen_rotate(kg, dim=16, seed=1, p=1)
    _train(model, tf)
    split = {s: torch.from_numpy(kg.split(s)).long() for s in ("train", "valid", "test")}
    with common.quiet():
        res = RankBasedEvaluator(filtered=True).evaluate(
            model, mapped_triples=split["test"], additional_filter_triples=[split["train"], split["valid"]],
            use_tqdm=False)
    filters = FilterIndex(torch.from_numpy(kg.all_triples()), kg.num_entities, kg.num_relations)
    vecs, scorer = common.pykeen_rotate_tables(model)
    for ties in ("realistic", "optimistic"):
        ours = summarize(rank_triples(vecs, scorer, split["test"], filters, ties=ties))
        assert ours["mrr"] == pytest.approx(float(res.get_metric(f"both.{ties}.inverse_harmonic_mean_rank")),
                                            rel=1e-5)
        assert ours["hits@10"] == pytest.approx(float(res.get_metric(f"both.{ties}.hits_at_10")), abs=1e-9)
