"""Alignment at scale: candidate retrieval through Faiss or exact search, the streamed synthetic pair
generator, and the command-line paths that read them (issue 36)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from snagkg.cli.main import main
from snagkg.data.datasets.alignment_pair import load_alignment_dataset
from snagkg.runtime.errors import SnagError
from snagkg.tasks.alignment.metrics import (
    alignment_metrics,
    candidates,
    one_to_one,
    rank_alignment,
)
from snagkg.tasks.alignment.retrieval import load_faiss, resolve_index


def _pair(n=300, d=16, noise=0.6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, d, generator=g), dim=1)
    y = F.normalize(x + noise * torch.randn(n, d, generator=g), dim=1)
    y[5] = y[7]          # two equal right candidates: ties for the queries near them
    x[11] = x[12]        # and two equal left ones
    y[40:44] = y[40]     # a block of four equal candidates
    return x, y


def test_rank_alignment_reports_its_context_and_timings():
    """``info`` gets the context it ranked with (what context64 computes) and the seconds of each half."""
    from snagkg.tasks.alignment.retrieval import context64
    x, y = _pair()
    info = {}
    rank_alignment(x, y, k=3, limit=50, info=info)
    rx, ry = context64(x, y, 3)
    assert torch.equal(info["context"][0], rx) and torch.equal(info["context"][1], ry)
    assert info["context_seconds"] > 0 and info["rank_seconds"] > 0 and info["exhaustive"] == 100


def test_exact_ranking_bounds_its_score_blocks(monkeypatch):
    """A block of queries against every candidate holds at most SCORE_BUDGET scores (at a million a
    side, 2,048 queries at once was 5.7 GB a block and the evaluation died out of memory): fewer rows
    per block, the same ranks, context and one-to-one matching."""
    from snagkg.tasks.alignment import retrieval
    assert retrieval.rows_per_chunk(2048, 10_500) == 2048  # DBP15K size: unchanged
    assert retrieval.rows_per_chunk(2048, 700_000) == retrieval.SCORE_BUDGET // 700_000 < 2048
    assert retrieval.rows_per_chunk(2048, 10 ** 12) == 1
    x, y = _pair()
    before = rank_alignment(x, y, k=3, index="exact"), one_to_one(x, y, k=3, index="exact")
    monkeypatch.setattr(retrieval, "SCORE_BUDGET", 7 * len(y))  # 7 queries a block
    after = rank_alignment(x, y, k=3, index="exact"), one_to_one(x, y, k=3, index="exact")
    assert all(torch.equal(a, b) for a, b in zip(before[0], after[0]))
    assert [torch.equal(a, b) for a, b in zip(before[1], after[1])] == [True] * len(before[1])


def _no_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError


def test_flat_faiss_and_exact_give_the_same_ranks_ties_and_matching():
    pytest.importorskip("faiss")
    x, y = _pair()
    for ties in ("realistic", "optimistic"):
        exact = rank_alignment(x, y, k=3, ties=ties, index="exact")
        flat = rank_alignment(x, y, k=3, ties=ties, index="flat")
        assert torch.equal(exact[0], flat[0]) and torch.equal(exact[1], flat[1])
        # an IVF index probing every cell finds what exact search finds: the depth path (ranks read from
        # the retrieved candidates, the rest counted exhaustively) gives the same ranks and ties
        info = {}
        ivf = rank_alignment(x, y, k=3, ties=ties, index="ivf", depth=8, info=info, nlist=4, probe=4)
        assert torch.equal(exact[0], ivf[0]) and torch.equal(exact[1], ivf[1])
        assert 0 < info["exhaustive"] < 2 * len(x)  # some resolved inside the index, some counted exhaustively
    # the equal candidates are tied on both paths: a half rank in the realistic setting
    lr_real = rank_alignment(x, y, k=3, index="flat")[0]
    lr_opt = rank_alignment(x, y, k=3, ties="optimistic", index="flat")[0]
    assert (lr_real[40:44] - lr_opt[40:44]).tolist() == [1.5] * 4  # three equal others, half each
    m_exact = alignment_metrics(x, y, k=3, index="exact")
    m_flat = alignment_metrics(x, y, k=3, index="flat")
    assert {k: v for k, v in m_exact.items() if k not in ("seconds", "index")} == \
        {k: v for k, v in m_flat.items() if k not in ("seconds", "index")}
    s1, i1 = candidates(x, y, topk=10, index="exact")
    s2, i2 = candidates(x, y, topk=10, index="flat")
    assert torch.equal(i1, i2) and torch.equal(s1, s2)
    # equal scores listed by the lower candidate position
    row = int((i1 == 40).any(dim=1).nonzero()[0])
    pos = [int((i1[row] == c).nonzero()) for c in (40, 41, 42, 43)]
    assert pos == sorted(pos) and s1[row, pos].unique().numel() == 1
    a, b = one_to_one(x, y, k=3, topk=5, index="exact"), one_to_one(x, y, k=3, topk=5, index="flat")
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_approximate_indexes_recall_against_exact():
    pytest.importorskip("faiss")
    x, y = _pair(n=2000, d=32, noise=0.3, seed=1)
    _, exact = candidates(x, y, topk=10, index="exact")
    for index in ("ivf", "hnsw"):
        _, approx = candidates(x, y, topk=10, index=index)
        recall = sum(len(set(p.tolist()) & set(q.tolist())) for p, q in zip(exact, approx)) / exact.numel()
        assert recall > 0.8, (index, recall)
        m = alignment_metrics(x, y, k=3, index=index)
        assert m["hits@1"] == pytest.approx(alignment_metrics(x, y, k=3)["hits@1"], abs=0.02)


def test_without_faiss_auto_is_exact_and_faiss_indexes_are_one_line_errors(monkeypatch):
    _no_faiss(monkeypatch)
    assert resolve_index("auto") == "exact"
    x, y = _pair(n=50)
    for index in ("flat", "ivf", "hnsw"):
        with pytest.raises(SnagError, match="needs Faiss"):
            resolve_index(index)
        with pytest.raises(SnagError, match="needs Faiss"):
            alignment_metrics(x, y, index=index)
    with pytest.raises(SnagError, match="must be one of"):
        resolve_index("annoy")


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_pair_generator_is_seeded_and_loads(tmp_path, capsys):
    args = ["synthetic", "--pair", "--entities", "400", "--image-dim", "8", "--text-dim", "4"]
    assert main(args + ["--output", str(tmp_path / "a"), "--seed", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["entities"] == [400, 400] and summary["links"] == 400
    assert main(args + ["--output", str(tmp_path / "b"), "--seed", "3"]) == 0
    assert main(args + ["--output", str(tmp_path / "c"), "--seed", "4"]) == 0
    capsys.readouterr()
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    pair = load_alignment_dataset(str(tmp_path / "a"))
    assert pair.num_left == pair.num_right == 400 and len(pair.links) == 400
    assert set(pair.features) == {"image", "text"}
    assert 0.05 < pair.features["image"].missing_fraction < 0.4
    degree = torch.bincount(torch.from_numpy(pair.triples[:, [0, 2]].reshape(-1)), minlength=800)
    assert degree.max() > 8 * degree.float().median()  # heavy-tailed: hubs far above the median


def test_pair_generator_bad_input_is_one_line(tmp_path, capsys):
    assert main(["synthetic", "--pair", "--entities", "2", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--entities must be at least 3" in err[0]
    assert main(["synthetic", "--entities", "20", "--output", str(tmp_path / "y")]) == 2
    assert "--triples is required" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    assert main(["synthetic", "--pair", "--entities", "300", "--output", str(root / "pair"), "--seed", "1"]) == 0
    code = main(["train", "--task", "alignment", "--dataset", str(root / "pair"), "--output", str(root / "run"),
                 "--epochs", "1", "--no-progress"])
    assert code == 0
    return root


@pytest.mark.slow
def test_generated_pair_trains_and_exports(trained_pair, capsys, monkeypatch):
    run = trained_pair / "run"
    assert (run / "best.pt").is_file() and "hits@1" in (run / "results.json").read_text()
    out = trained_pair / "cand.tsv"
    assert main(["align", str(run), "--export", str(out), "--topk", "3", "--index", "exact"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert info["candidates"] == len(rows) == 3 * info["judged"]
    assert [r[3] for r in rows[:3]] == ["1", "2", "3"] and all(len(r) == 4 for r in rows)
    assert float(rows[0][2]) >= float(rows[1][2]) >= float(rows[2][2])
    if load_faiss() is not None:
        for extra in ([], ["--all"]):
            exports = []
            for index in ("exact", "flat"):
                path = trained_pair / f"{index}{len(extra)}.tsv"
                args = ["align", str(run), "--export", str(path), "--index", index] + extra
                assert main(args) == 0
                exports.append(path.read_bytes())
            assert exports[0] == exports[1]  # the same one-to-one export through Faiss as exact
        flat = trained_pair / "cand_flat.tsv"
        assert main(["align", str(run), "--export", str(flat), "--topk", "3", "--index", "flat"]) == 0
        assert flat.read_bytes() == out.read_bytes()
    capsys.readouterr()
    assert main(["align", str(run), "--export", str(out), "--topk", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--topk must be at least 1" in err[0]
    _no_faiss(monkeypatch)
    assert main(["align", str(run), "--export", str(out), "--index", "hnsw"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs Faiss" in err[0]


def test_test_limit_ranks_a_sample_of_the_test_links(trained_pair, tmp_path, capsys):
    """``--test-limit N`` (``train.test_limit``): the final test metrics rank the first N test links (the
    loader shuffles the links), say so, and equal ``evaluate --limit N``; validation stays whole."""
    import snagkg
    run = tmp_path / "limited"
    code = main(["train", "--task", "alignment", "--dataset", str(trained_pair / "pair"), "--output", str(run),
                 "--epochs", "1", "--test-limit", "25", "--no-progress"])
    cap = capsys.readouterr()
    assert code == 0
    results = json.loads((run / "results.json").read_text())
    assert json.loads(cap.out)["test"]["limit"] == 25  # stdout: the results; stderr: the summary
    test, valid = results["test"], results["valid"]
    assert test["limit"] == 25 and test["count"] == 25 and test["candidates"] > 25
    assert "limit" not in valid and results["config"]["train"]["test_limit"] == 25
    assert "(the first 25 queries)" in cap.err.split("test:  mrr=")[1].splitlines()[0]
    again = snagkg.evaluate(run, split="test", limit=25)
    assert again["mrr"] == test["mrr"] and again["hits@1"] == test["hits@1"]
    whole = json.loads((trained_pair / "run" / "results.json").read_text())["test"]
    assert whole["count"] > 25 and "limit" not in whole
    code = main(["train", "--task", "alignment", "--dataset", str(trained_pair / "pair"), "--output",
                 str(tmp_path / "bad"), "--test-limit", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train.test_limit must not be negative, got -1" in err[0]
    assert not (tmp_path / "bad").exists()


def test_scale_benchmark_measures_every_index(trained_pair, tmp_path):
    """benchmarks/bench_alignment_scale.py: the same H@1 through exact and flat search, and an IVF
    index that probes every cell recalls exact search's 10 nearest exactly."""
    import subprocess
    pytest.importorskip("faiss")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_alignment_scale.py"
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(script), str(trained_pair / "run"), "--sample", "40",
                           "--indexes", "exact,flat,ivf", "--cells", "4", "--probe", "4", "--json", str(out)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    rows = {r["index"]: r for r in report["rows"]}
    assert report["sample"] == 40 and report["test_links"] > 40
    assert rows["exact"]["hits@1"] == rows["flat"]["hits@1"] == rows["ivf"]["hits@1"]
    assert rows["ivf"]["recall@10_cosine"] == 1.0 and rows["ivf"]["recall@10_csls"] == 1.0
    assert "recall@10_cosine" not in rows["flat"]


def test_entity_vectors_fused_in_chunks_equal_one_call(trained_pair):
    """Evaluation fuses a large graph's entities in chunks (the GAT once over the whole graph): the
    vectors of every entity, and of an index, equal those of one call."""
    import snagkg
    model = snagkg.load_run(trained_pair / "run", device="cpu").model
    whole = model.entity_vectors()
    assert torch.allclose(model.entity_vectors(chunk=97), whole, atol=1e-6, rtol=0)
    index = torch.tensor([5, 3, 400, 3, 599, 0] * 30)
    assert torch.allclose(model.entity_vectors(index, chunk=7), whole[index], atol=1e-6, rtol=0)
    model.eval()
    assert torch.equal(model.entity_vectors(index), F.normalize(model.fuse(index).vector.float(), dim=-1))
