"""Filtered ranking against a brute-force reference (both tie rules), and the fast kernel."""
import copy
import itertools

import pytest
import torch

from snagkg.tasks.completion import rotate
from snagkg.tasks.completion.scorers import RotatE
from snagkg.tasks.completion.evaluation import FilterIndex, evaluate_ranking, rank_triples
from snagkg.evaluation.ranking import summarize
from snagkg.runtime import hardware


def brute_force(vecs, scorer, triples, known, ties):
    known_set = {tuple(x) for x in known.tolist()}
    ranks = []
    for predict_tail in (True, False):
        for h, r, t in triples.tolist():
            true = t if predict_tail else h
            d = {}
            for e in range(vecs.shape[0]):
                hh, tt = (h, e) if predict_tail else (e, t)
                if e != true and (hh, r, tt) in known_set:
                    continue  # filtered
                d[e] = float(scorer.distance(scorer.query(vecs[hh:hh + 1], torch.tensor([r]), True), vecs[tt:tt + 1]))
            better = sum(1 for e, v in d.items() if e != true and v < d[true])
            equal = sum(1 for e, v in d.items() if e != true and v == d[true])
            opt, pes = 1 + better, 1 + better + equal
            ranks.append(opt if ties == "optimistic" else (opt + pes) / 2)
    return torch.tensor(ranks, dtype=torch.float64)


@pytest.fixture
def tiny_graph():
    torch.manual_seed(0)
    n_ent, n_rel = 12, 3
    vecs = torch.randn(n_ent, 8)
    vecs[5] = vecs[4]  # exact ties
    vecs[9] = vecs[4]
    vecs[7] = vecs[2]
    scorer = RotatE(n_rel, 8)
    triples = torch.tensor(list(itertools.product(range(0, 12, 3), range(3), range(1, 12, 4))))
    known = torch.cat([triples, torch.tensor([[0, 0, 4], [0, 0, 5], [3, 1, 2], [6, 2, 7], [4, 0, 0]])])
    test = torch.tensor([[0, 0, 1], [3, 1, 5], [6, 2, 9], [4, 1, 2], [9, 0, 4], [5, 2, 7]])
    known = torch.cat([known, test])
    return vecs, scorer, test, known, n_ent, n_rel


@pytest.mark.parametrize("ties", ["realistic", "optimistic"])
@pytest.mark.parametrize("chunk", [1, 4, None])
def test_filtered_ranks_match_brute_force(tiny_graph, ties, chunk, device):
    vecs, scorer, test, known, n_ent, n_rel = tiny_graph
    with torch.no_grad():
        ref = brute_force(vecs, scorer, test, known, ties)
        got = rank_triples(vecs.to(device), scorer.to(device), test, FilterIndex(known, n_ent, n_rel), ties=ties,
                           chunk=chunk)
    assert torch.allclose(got, ref)


def test_ties_change_ranks(tiny_graph):
    vecs, scorer, test, known, n_ent, n_rel = tiny_graph
    f = FilterIndex(known, n_ent, n_rel)
    with torch.no_grad():
        real = rank_triples(vecs, scorer, test, f, "realistic")
        opt = rank_triples(vecs, scorer, test, f, "optimistic")
    assert (real >= opt).all() and (real > opt).any()


def test_filter_index_lookup():
    known = torch.tensor([[0, 0, 1], [0, 0, 2], [1, 0, 2], [0, 1, 3]])
    f = FilterIndex(known, 4, 2)
    rows, ents = f.lookup(torch.tensor([0, 1, 3]), torch.tensor([0, 0, 1]), predict_tail=True)
    assert sorted(zip(rows.tolist(), ents.tolist())) == [(0, 1), (0, 2), (1, 2)]
    rows, ents = f.lookup(torch.tensor([2]), torch.tensor([0]), predict_tail=False)
    assert sorted(ents.tolist()) == [0, 1]


def test_summarize_metrics():
    m = summarize(torch.tensor([1.0, 2.0, 4.0, 20.0]))
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    assert m["mr"] == pytest.approx(6.75)
    assert (m["hits@1"], m["hits@3"], m["hits@10"]) == (0.25, 0.5, 0.75)


@pytest.mark.slow  # compiles the ranking kernel with torch.compile
def test_compiled_kernel_ranks_equal_eager(monkeypatch, device):
    """The fast (compiled) evaluation path gives the brute-force reference's metrics."""
    torch.manual_seed(3)
    n_ent, n_rel = 300, 4
    vecs = torch.randn(n_ent, 16).to(device)
    scorer = RotatE(n_rel, 16).to(device)
    triples = torch.stack([torch.randint(0, n_ent, (60,)), torch.randint(0, n_rel, (60,)),
                           torch.randint(0, n_ent, (60,))], 1)
    f = FilterIndex(triples, n_ent, n_rel)
    monkeypatch.setattr(rotate, "COMPILE_MIN_WORK", 0)
    with torch.no_grad():
        fast = evaluate_ranking(vecs, scorer, triples, f)
        monkeypatch.setenv("SNAGKG_COMPILE", "0")
        slow = evaluate_ranking(vecs, scorer, triples, f)
    for k in ("mrr", "mr", "hits@1", "hits@3", "hits@10"):
        assert fast[k] == pytest.approx(slow[k], rel=1e-6), k


@pytest.mark.parametrize("chunk", [1, 2, None])
def test_triples_sharing_a_query_match_brute_force(tiny_graph, chunk, device):
    """Several test triples ask the same (head, relation) or (relation, tail) query (1-to-N relations):
    each is ranked against its own true answer, with the others of the group filtered out."""
    vecs, scorer, _, known, n_ent, n_rel = tiny_graph
    test = torch.tensor([[0, 0, 1], [0, 0, 4], [0, 0, 5], [3, 1, 2], [6, 1, 2], [9, 1, 2], [4, 2, 7], [6, 2, 7]])
    known = torch.cat([known, test])
    # the reference runs on the CPU tables; the ranking on copies on ``device`` (``Module.to`` moves in place)
    dev_vecs, dev_scorer = vecs.to(device), copy.deepcopy(scorer).to(device)
    with torch.no_grad():
        for ties in ("realistic", "optimistic"):
            ref = brute_force(vecs, scorer, test, known, ties)
            got = rank_triples(dev_vecs, dev_scorer, test, FilterIndex(known, n_ent, n_rel), ties=ties, chunk=chunk)
            assert torch.allclose(got, ref), ties


def test_compile_time_is_reported_apart_from_the_ranking(tiny_graph, monkeypatch):
    """The first compiled call of a kernel variant counts as ``compile_seconds``, not ``seconds``."""
    from snagkg.runtime import compilation

    calls = []
    real = compilation.CompiledFunction.__call__

    def slow_first(self, *args, compiled=True):
        if compiled and self.available() and compilation._signature(args) not in self.seen:
            calls.append(self.name)
            compilation._COMPILE_SECONDS[0] += 0.5  # as if compiling had taken half a second
        return real(self, *args, compiled=compiled)

    from snagkg.tasks.completion import evaluation
    monkeypatch.setattr(compilation.CompiledFunction, "__call__", slow_first)
    monkeypatch.setattr(rotate, "COMPILE_MIN_WORK", 0)
    for kernel in (evaluation._counts, rotate._pairwise, rotate._query_kernel):
        monkeypatch.setattr(kernel, "seen", set())  # as in a new process
    vecs, scorer, triples, known, n_ent, n_rel = tiny_graph
    filters = FilterIndex(known, n_ent, n_rel)
    m = evaluate_ranking(vecs, scorer, triples, filters)
    assert calls and m["compile_seconds"] >= 0.5 * len(set(calls))
    assert m["seconds"] < m["compile_seconds"]
    again = evaluate_ranking(vecs, scorer, triples, filters)  # every variant is compiled now
    assert again["compile_seconds"] == 0.0 and again["mrr"] == m["mrr"]


def test_duplicated_known_triples_are_filtered_once():
    torch.manual_seed(0)
    n_ent, n_rel = 30, 2
    vecs = torch.randn(n_ent, 8)
    scorer = RotatE(n_rel, 8)
    known = torch.stack([torch.randint(0, n_ent, (80,)), torch.randint(0, n_rel, (80,)),
                         torch.randint(0, n_ent, (80,))], 1)
    test = known[:10]
    with torch.no_grad():
        once = rank_triples(vecs, scorer, test, FilterIndex(known, n_ent, n_rel))
        twice = rank_triples(vecs, scorer, test, FilterIndex(torch.cat([known, known, test]), n_ent, n_rel))
    assert torch.equal(once, twice)


def test_ranks_do_not_depend_on_the_chunk(monkeypatch):
    n_ent, n_rel = 300, 5
    g = torch.Generator().manual_seed(0)
    vecs = torch.randn(n_ent, 16, generator=g)
    scorer = RotatE(n_rel, 16)
    known = torch.stack([torch.randint(0, n_ent, (600,), generator=g), torch.randint(0, n_rel, (600,), generator=g),
                         torch.randint(0, n_ent, (600,), generator=g)], 1)
    filters, test = FilterIndex(known, n_ent, n_rel), known[:120]
    with torch.no_grad():
        whole = rank_triples(vecs, scorer, test, filters)
        monkeypatch.setattr(hardware, "available_memory_bytes", lambda device=None: 1 << 20)  # a tight machine
        assert torch.equal(rank_triples(vecs, scorer, test, filters), whole)
        assert torch.equal(rank_triples(vecs, scorer, test, filters, chunk=7), whole)


@pytest.mark.parametrize("chunk", [1, 3, None])
@pytest.mark.parametrize("ties", ["realistic", "optimistic"])
def test_shared_queries_are_ranked_like_separate_ones(chunk, ties):
    """Test triples sharing (anchor, relation) are scored once; every triple keeps its own rank."""
    torch.manual_seed(1)
    n_ent, n_rel = 25, 2
    vecs = torch.randn(n_ent, 8)
    vecs[7] = vecs[3]  # exact ties
    scorer = RotatE(n_rel, 8)
    test = torch.tensor([[0, 0, 1], [0, 0, 2], [0, 0, 3], [5, 1, 3], [0, 1, 3], [6, 0, 3], [6, 0, 7], [1, 1, 0]])
    known = torch.cat([test, torch.tensor([[0, 0, 7], [5, 1, 6], [9, 0, 3]])])
    known_set = {tuple(x) for x in known.tolist()}
    expected = []
    with torch.no_grad():
        for predict_tail in (True, False):
            for h, r, t in test.tolist():
                anchor, true = (h, t) if predict_tail else (t, h)
                q = scorer.query(vecs[anchor:anchor + 1], torch.tensor([r]), predict_tail)
                d = scorer.distance(q, vecs)
                keep = [e for e in range(n_ent) if e == true or
                        ((h, r, e) if predict_tail else (e, r, t)) not in known_set]
                better = sum(1 for e in keep if e != true and d[e] < d[true])
                equal = sum(1 for e in keep if e != true and d[e] == d[true])
                expected.append(1 + better if ties == "optimistic" else 1 + better + equal / 2)
        got = rank_triples(vecs, scorer, test, FilterIndex(known, n_ent, n_rel), ties=ties, chunk=chunk)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64))
