"""Sampled filtered ranking (``--candidates K``, ``train.eval_candidates``; snagkg.sampled) and the
memory-bounded full ranking with its progress bar (snagkg.evaluation)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import snagkg
from snagkg.cli.main import main
from snagkg.tasks.completion.scorers import RotatE
from snagkg.tasks.completion.evaluation import FilterIndex, bounded_pairwise, evaluate_ranking, rank_triples
from snagkg.tasks.completion import sampled_evaluation as sampled
from snagkg.tasks.completion.sampled_evaluation import block_seed, block_size, sample_candidates, sampled_ranks

from conftest import make_openke

N_ENT, N_REL, WIDTH = 40, 3, 8


@pytest.fixture(scope="module")
def graph():
    """A tiny random graph (40 entities, 3 relations, 240 known triples, 30 of them ranked), random
    entity vectors and a RotatE scorer. Entity 5 is a copy of entity 9, so that ties occur."""
    g = torch.Generator().manual_seed(7)
    known = torch.stack([torch.randint(0, N_ENT, (240,), generator=g), torch.randint(0, N_REL, (240,), generator=g),
                         torch.randint(0, N_ENT, (240,), generator=g)], dim=1)
    known = torch.unique(known, dim=0)
    test = known[torch.randperm(len(known), generator=g)[:30]]
    torch.manual_seed(3)
    scorer = RotatE(N_REL, WIDTH).requires_grad_(False)
    vecs = torch.randn(N_ENT, WIDTH, generator=g)
    vecs[5] = vecs[9]
    test[0] = torch.tensor([1, 0, 9])  # its tail 9 ties with entity 5 (unless 5 is a known tail of (1, 0))
    known = torch.cat([known, test[:1]])
    return vecs, scorer, test, FilterIndex(known, N_ENT, N_REL), known


def _known_sets(known):
    tails, heads = {}, {}
    for h, r, t in known.tolist():
        tails.setdefault((h, r), set()).add(t)
        heads.setdefault((t, r), set()).add(h)
    return tails, heads


@pytest.mark.parametrize("ties", ["realistic", "optimistic"])
def test_all_candidates_give_the_full_filtered_ranks(graph, ties):
    vecs, scorer, test, filters, _ = graph
    full = rank_triples(vecs, scorer, test, filters, ties)
    for k in (N_ENT, 10 * N_ENT):  # every pool is smaller than K: it is taken whole
        assert torch.equal(sampled_ranks(vecs, scorer, test, filters, k, ties, seed=5), full)
    assert full[0] != rank_triples(vecs, scorer, test, filters, "optimistic" if ties == "realistic" else "realistic")[0]


@pytest.mark.parametrize("k", [4, 20])  # 4: big pools, repeats redrawn; 20: small pools, random keys
def test_ranks_equal_a_brute_force_count_over_the_drawn_candidates(graph, k):
    vecs, scorer, test, filters, known = graph
    tails, heads = _known_sets(known)
    assert len(test) <= block_size(k)  # one sampling block: its generator is block_seed(seed, direction, 0)
    got = sampled_ranks(vecs, scorer, test, filters, k, "realistic", seed=11)
    want = []
    for predict_tail in (True, False):
        a_col, t_col = (0, 2) if predict_tail else (2, 0)
        gen = torch.Generator().manual_seed(block_seed(11, predict_tail, 0))
        ids, valid = sample_candidates(filters, test[:, a_col], test[:, 1], test[:, t_col], predict_tail, N_ENT, k, gen)
        for i, (h, r, t) in enumerate(test.tolist()):
            anchor, true = (h, t) if predict_tail else (t, h)
            cands = ids[i][valid[i]].tolist()
            pool = set(range(N_ENT)) - (tails if predict_tail else heads)[(anchor, r)] - {true}
            assert len(cands) == len(set(cands)) == min(k, len(pool)) and set(cands) <= pool
            q = scorer.query(vecs[anchor], torch.tensor(r), predict_tail)
            d_true = float(scorer.distance(q, vecs[true]))
            d = [float(scorer.distance(q, vecs[c])) for c in cands]
            want.append(1 + sum(x < d_true for x in d) + sum(x == d_true for x in d) / 2)
    assert got.tolist() == want
    assert any(w != int(w) for w in want) or k == 4  # a tie (entity 5 = entity 9) was counted as half


def test_candidates_never_include_known_answers_and_are_uniform():
    n, k = 60, 8
    known = torch.tensor([[0, 0, t] for t in (3, 10, 11, 59)] + [[h, 0, 7] for h in range(1, 60, 2)])
    filters = FilterIndex(known, n, 1)
    q = torch.tensor([[0, 0, 3]] * 4000)
    for predict_tail, a_col, t_col, excluded in ((True, 0, 2, {3, 10, 11, 59}), (False, 2, 0, set(range(1, 60, 2)))):
        q2 = q if predict_tail else torch.tensor([[1, 0, 7]] * 4000)
        ids, valid = sample_candidates(filters, q2[:, a_col], q2[:, 1], q2[:, t_col], predict_tail, n, k,
                                       torch.Generator().manual_seed(0))
        assert valid.all()  # pools of 56 and 30 entities hold K = 8
        drawn = ids[valid]
        assert not set(drawn.tolist()) & excluded
        assert (ids.sort(dim=1).values.diff(dim=1) > 0).all()  # distinct within a query
        counts = torch.bincount(drawn, minlength=n).double()[sorted(set(range(n)) - excluded)]
        expected = 4000 * k / (n - len(excluded))
        assert counts.min() > 0.85 * expected and counts.max() < 1.15 * expected


def test_same_seed_same_metrics_whatever_the_chunk(graph):
    vecs, scorer, test, filters, _ = graph
    a = evaluate_ranking(vecs, scorer, test, filters, candidates=6, seed=1)
    b = evaluate_ranking(vecs, scorer, test, filters, candidates=6, seed=1, chunk=7)
    c = evaluate_ranking(vecs, scorer, test, filters, candidates=6, seed=2)
    keys = [key for key in a if key not in ("seconds", "compile_seconds")]
    assert {key: a[key] for key in keys} == {key: b[key] for key in keys}
    assert a["sampled"] == 6 and "sampled" not in evaluate_ranking(vecs, scorer, test, filters)
    assert torch.equal(sampled_ranks(vecs, scorer, test, filters, 6, generator=torch.Generator().manual_seed(4)),
                       sampled_ranks(vecs, scorer, test, filters, 6, generator=torch.Generator().manual_seed(4)))
    assert any(a[key] != c[key] for key in ("mrr", "tail_mrr", "head_mrr", "mr"))


def test_same_candidates_and_ranks_on_every_device(graph, device):
    vecs, scorer, test, filters, _ = graph
    want = sampled_ranks(vecs, scorer, test, filters, 6, seed=9)
    got = sampled_ranks(vecs.to(device), scorer.to(device), test, filters, 6, seed=9)  # drawn on the CPU
    scorer.to("cpu")
    assert torch.allclose(got, want) and got.device.type == "cpu"
    m = evaluate_ranking(vecs.to(device), scorer.to(device), test, filters, candidates=6, seed=9)
    scorer.to("cpu")
    assert m["sampled"] == 6 and m["count"] == len(test)


def test_sampled_ranks_are_never_worse_than_the_full_ones(graph):
    vecs, scorer, test, filters, _ = graph
    full = rank_triples(vecs, scorer, test, filters)
    for k in (1, 5, 15):
        sampled = sampled_ranks(vecs, scorer, test, filters, k, seed=k)
        assert (sampled <= full).all() and (sampled <= 1 + k).all()
        assert (1 / sampled).mean() >= (1 / full).mean()
    assert (1 / sampled_ranks(vecs, scorer, test, filters, 5)).mean() > (1 / full).mean()


def test_the_compiled_fused_distance_gives_the_eager_ranks(graph, monkeypatch):
    vecs, scorer, test, filters, _ = graph
    eager = sampled_ranks(vecs, scorer, test, filters, 20, seed=3)
    monkeypatch.setattr(sampled, "COMPILE_MIN_WORK", 0)
    assert sampled.use_compiled(2, 2, WIDTH) == sampled._gathered.available()
    assert torch.equal(sampled_ranks(vecs, scorer, test, filters, 20, seed=3, chunk=16), eager)  # a tie included
    assert sampled._gathered.worked or not sampled._gathered.available()


def test_progress_bar_counts_against_the_total_both_paths(graph, capsys):
    vecs, scorer, test, filters, _ = graph
    for candidates, label in ((0, "ranking:"), (5, "ranking (sampled 5):")):
        evaluate_ranking(vecs, scorer, test, filters, progress=True, candidates=candidates)
        err = capsys.readouterr().err
        assert label in err and f"/{2 * len(test)} [" in err  # a total: tqdm can show the ETA


def test_eager_distances_in_entity_blocks_equal_one_call(graph):
    vecs, scorer, _, _, _ = graph
    q = scorer.query(vecs[:5], torch.tensor([0, 1, 2, 0, 1]), True)
    whole = scorer.pairwise(q, vecs, False)
    assert torch.equal(bounded_pairwise(scorer, q, vecs, False, budget=5 * 12 * (WIDTH // 2) * 7), whole)  # 6 blocks
    assert torch.equal(bounded_pairwise(scorer, q, vecs, False, budget=1 << 30), whole)


# -- the command line and the config key -------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch completion run on 150 entities through ``snagkg train --eval-candidates 20``."""
    root = tmp_path_factory.mktemp("sampled")
    ds = make_openke(root / "ds", num_entities=150, num_relations=4, features=False)
    cfg = root / "cfg.yaml"
    cfg.write_text("encoder: {hidden: 16, heads: 2}\ntrain: {batch_size: 512, lr: 0.01, negatives: 8, eval_every: 1}\n")
    code = main(["train", "--dataset", str(ds), "--config", str(cfg), "--epochs", "1", "--eval-candidates", "20",
                 "--output", str(root / "run"), "--device", "cpu", "--no-progress"])
    assert code == 0
    return root / "run"


def _cli(args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_candidates_reach_validation_and_the_final_results(trained):
    results = json.loads((trained / "results.json").read_text())
    assert results["valid"]["sampled"] == 20 and results["test"]["sampled"] == 20
    assert results["config"]["train"]["eval_candidates"] == 20
    logged = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [row["valid"]["sampled"] for row in logged if "valid" in row] == [20]  # the one validation


def test_evaluate_candidates_on_the_command_line(trained, capsys):
    code, out, err = _cli(["evaluate", trained, "--candidates", "50", "--no-progress"], capsys)
    assert code == 0, err
    sampled = json.loads(out)
    assert sampled["sampled"] == 50 and sampled["count"] > 0
    code, out, _ = _cli(["evaluate", trained, "--no-progress"], capsys)
    full = json.loads(out)
    assert "sampled" not in full and sampled["mrr"] >= full["mrr"] and sampled["mr"] <= full["mr"]
    again = snagkg.evaluate(trained, candidates=50)
    assert again["mrr"] == sampled["mrr"] and again["tail_hits@1"] == sampled["tail_hits@1"]
    code, out, err = _cli(["evaluate", trained, "--candidates", "-1"], capsys)
    assert code == 2 and out == "" and err == "error: --candidates must not be negative, got -1\n"


def test_candidates_on_an_alignment_run_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "alignment"
    (run).mkdir()
    legacy = Path(__file__).parent / "data" / "legacy_runs" / "alignment"
    (run / "config.yaml").write_text((legacy / "config.yaml").read_text())
    code, out, err = _cli(["evaluate", run, "--candidates", "5"], capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "--candidates applies to completion only, not alignment" in err


def test_negative_eval_candidates_in_the_config_is_refused(tmp_path, capsys):
    code, _, err = _cli(["train", "--dataset", "synthetic", "--eval-candidates", "-3", "--output", tmp_path / "r"],
                        capsys)
    assert code == 2 and "train.eval_candidates must not be negative, got -3" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
