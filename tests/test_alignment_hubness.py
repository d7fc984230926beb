"""Hubness reduction of the alignment score: NICDM beside CSLS (``alignment.hubness``), through the exact
path and Faiss, in ranking, candidates and one-to-one matching (issue 36; BENCHMARKS.md, "Hubness
reduction")."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from snagkg.cli.align import align_run
from snagkg.cli.main import main
from snagkg.config.schema import ConfigValueError
from snagkg.runtime.errors import SnagError
from snagkg.tasks.alignment.config import AlignmentConfig
from snagkg.tasks.alignment.metrics import alignment_metrics, candidates, one_to_one, rank_alignment
from snagkg.tasks.alignment.model import CSLSInteraction
from snagkg.tasks.alignment.retrieval import load_faiss


def _pair(n=200, d=16, noise=0.6, seed=0, duplicates=True):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, d, generator=g), dim=1)
    y = F.normalize(x + noise * torch.randn(n, d, generator=g), dim=1)
    if duplicates:
        y[5] = y[7]          # equal right candidates: ties
        x[11] = x[12]
        y[40:44] = y[40]
        x[20] = y[21]        # a left vector equal to a right one: distance 0, mu at its floor with k = 1
    return x, y


def _dense_nicdm_ranks(x, y, k):
    """Left-to-right ranks by the textbook NICDM ``|x - y| / sqrt(mu_x mu_y)`` (ascending), dense, float64."""
    xd, yd = x.double(), y.double()
    dist = (2.0 - 2.0 * xd @ yd.t()).clamp(min=0).sqrt()
    mu_x = dist.topk(k, dim=1, largest=False).values.mean(dim=1)
    mu_y = dist.t().topk(k, dim=1, largest=False).values.mean(dim=1)
    score = dist / (mu_x[:, None] * mu_y[None, :]).sqrt()
    gold = score.diagonal()[:, None]
    return 1.0 + (score < gold).sum(dim=1).double() + ((score == gold).sum(dim=1) - 1).double() / 2.0


@pytest.mark.parametrize("k", [1, 3])
def test_nicdm_ranks_as_its_definition(k):
    x, y = _pair(duplicates=False)
    lr, _ = rank_alignment(x, y, k=k, index="exact", hubness="nicdm")
    assert torch.equal(lr, _dense_nicdm_ranks(x, y, k))
    csls_lr, _ = rank_alignment(x, y, k=k, index="exact")
    assert not torch.equal(lr, csls_lr)  # another score, not CSLS under another name


def test_nicdm_without_neighbours_is_cosine():
    x, y = _pair()
    assert all(torch.equal(a, b) for a, b in zip(rank_alignment(x, y, k=0, hubness="nicdm"),
                                                 rank_alignment(x, y, k=0)))


@pytest.mark.parametrize("k", [1, 3])
def test_nicdm_exact_and_faiss_agree(k):
    pytest.importorskip("faiss")
    x, y = _pair()
    for ties in ("realistic", "optimistic"):
        exact = rank_alignment(x, y, k=k, ties=ties, index="exact", hubness="nicdm")
        flat = rank_alignment(x, y, k=k, ties=ties, index="flat", hubness="nicdm")
        ivf = rank_alignment(x, y, k=k, ties=ties, index="ivf", depth=8, nlist=4, probe=4, hubness="nicdm")
        assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(exact, flat, ivf))
    m_exact = alignment_metrics(x, y, k=k, index="exact", hubness="nicdm")
    m_flat = alignment_metrics(x, y, k=k, index="flat", hubness="nicdm")
    assert {n: v for n, v in m_exact.items() if n not in ("seconds", "index")} == \
        {n: v for n, v in m_flat.items() if n not in ("seconds", "index")}
    s1, i1 = candidates(x, y, k=k, topk=10, index="exact", hubness="nicdm")
    s2, i2 = candidates(x, y, k=k, topk=10, index="flat", hubness="nicdm")
    assert torch.equal(s1, s2) and torch.equal(i1, i2)
    assert (s1[:, :-1] >= s1[:, 1:]).all() and (s1 <= 0).all()  # -|x - y|^2 / (mu mu), best first
    a = one_to_one(x, y, k=k, topk=5, index="exact", hubness="nicdm")
    b = one_to_one(x, y, k=k, topk=5, index="flat", hubness="nicdm")
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and len(a[0]) == len(x)


def test_interaction_reads_the_configured_hubness():
    x, y = _pair(n=60)
    nicdm = CSLSInteraction(3, index="exact", hubness="nicdm")
    assert torch.equal(nicdm.ranks(x, y), torch.cat(rank_alignment(x, y, k=3, hubness="nicdm")))
    scores = nicdm.score(x, y)
    assert scores.shape == (60, 60)
    assert torch.equal(scores.argmax(dim=1), candidates(x, y, 3, 1, hubness="nicdm")[1][:, 0])
    csls = CSLSInteraction(3, index="exact")
    assert torch.equal(csls.one_to_one(x, y, hubness="nicdm")[1], nicdm.one_to_one(x, y)[1])  # a per-call override


def test_a_bad_hubness_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(ConfigValueError, match="alignment.hubness must be one of csls, nicdm, got 'dsl'"):
        AlignmentConfig(hubness="dsl").check()
    with pytest.raises(SnagError, match="must be one of csls, nicdm"):
        CSLSInteraction(3, hubness="dsl")
    with pytest.raises(SnagError, match="must be one of csls, nicdm"):
        alignment_metrics(*_pair(n=60), hubness="dsl")
    with pytest.raises(SnagError, match="--hubness must be one of csls, nicdm"):
        align_run(tmp_path / "no-run", tmp_path / "out.tsv", hubness="dsl")  # refused before the run is read
    config = tmp_path / "c.yaml"
    config.write_text("alignment:\n  hubness: mp\n")
    code = main(["train", "--task", "alignment", "--dataset", str(tmp_path / "none"), "--config", str(config),
                 "--output", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "alignment.hubness must be one of csls, nicdm" in err[0]


def test_align_exports_by_the_hubness_option(alignment_run, tmp_path, capsys):
    out = {}
    kinds = ("exact", "flat") if load_faiss() is not None else ("exact",)
    for hubness in ("csls", "nicdm"):
        for index in kinds:
            for extra in ([], ["--topk", "3"]):
                path = tmp_path / f"{hubness}-{index}-{len(extra)}.tsv"
                args = ["align", str(alignment_run), "--export", str(path), "--index", index, "--hubness", hubness]
                assert main(args + extra) == 0
                json.loads(capsys.readouterr().out.strip().splitlines()[-1])
                out[hubness, index, len(extra)] = path.read_bytes()
    for hubness in ("csls", "nicdm"):
        for n in (0, 2):
            assert len({out[hubness, index, n] for index in kinds}) == 1  # Faiss flat writes what exact writes
    assert out["csls", "exact", 2] != out["nicdm", "exact", 2]
    default = tmp_path / "default.tsv"
    assert main(["align", str(alignment_run), "--export", str(default), "--index", "exact", "--topk", "3"]) == 0
    assert default.read_bytes() == out["csls", "exact", 2]  # a run without alignment.hubness scores by CSLS
