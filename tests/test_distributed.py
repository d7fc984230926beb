"""Data-parallel training (snagkg.distributed): torchrun end to end, the sharded step's gradient,
the collectives on two real processes, and a rank that dies."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import snagkg
from snagkg.training import distributed
from snagkg.tasks.completion.task import CompletionTask
from snagkg.data.datasets import read_openke

VENV_BIN = Path(sys.executable).parent
TORCHRUN = VENV_BIN / "torchrun"
# small settings that still learn (test MRR about 0.13 after 2 epochs, random: 0.004)
SMALL = ["--dataset", "synthetic", "--epochs", "2", "--batch-size", "512", "--hidden", "32", "--lr", "0.02",
         "--eval-every", "2", "--seed", "3", "--no-progress"]
# |2-process MRR - 1-process MRR|: measured 1.5e-6 (float summation order only); a few flipped ranks allowed
MRR_TOLERANCE = 0.002


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), **extra)
    return env


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not in the venv")
def test_torchrun_two_ranks_match_one_process(tmp_path):
    """The must-show: `torchrun --nproc-per-node 2 -m snagkg train` writes one run (rank 0 alone) whose
    losses and test MRR equal a single-process run's with the same global batch and seed."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    p2 = subprocess.run([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "snagkg", "train",
                         "--task", "completion", "--output", str(ddp), *SMALL],
                        capture_output=True, text=True, env=_env(), timeout=600)
    assert p2.returncode == 0, p2.stderr[-3000:]
    p1 = subprocess.run([sys.executable, "-m", "snagkg", "train", "--task", "completion", "--output", str(single),
                         *SMALL], capture_output=True, text=True, env=_env(), timeout=600)
    assert p1.returncode == 0, p1.stderr[-3000:]
    # written once, by rank 0: one results JSON on stdout, one log line per epoch, no temp files or lock
    printed = [line for line in p2.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1, p2.stdout
    assert sum(line.startswith("epoch 2:") for line in p2.stderr.splitlines()) == 1, p2.stderr
    assert sum(line.startswith("test:") for line in p2.stderr.splitlines()) == 1, p2.stderr
    assert not list(ddp.glob(".*.tmp")) and not (ddp / ".lock").exists()
    results = json.loads((ddp / "results.json").read_text())
    assert json.loads(printed[0])["test"] == results["test"]
    logs = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (ddp, single)]
    assert [e["epoch"] for e in logs[0]] == [1, 2]
    for two, one in zip(*logs):  # the logged loss is the global batch's (all-reduced mean)
        assert abs(two["loss"] - one["loss"]) < 1e-3 * abs(one["loss"]), (two, one)
    reference = json.loads((single / "results.json").read_text())
    assert results["test"]["count"] == reference["test"]["count"]  # every test triple ranked once
    assert reference["test"]["mrr"] > 0.05  # it learned something, so the comparison means something
    assert abs(results["test"]["mrr"] - reference["test"]["mrr"]) < MRR_TOLERANCE
    assert abs(results["valid"]["mrr"] - reference["valid"]["mrr"]) < MRR_TOLERANCE


@pytest.mark.parametrize("sparse", [False, True])
def test_sharded_gradient_equals_the_global_batch(tiny_dataset, monkeypatch, sparse):
    """Two shards of an odd-sized batch (rows rank::2, losses scaled by local * world / global),
    averaged, give the full batch's gradient - dense and sparse entity-table gradients alike."""
    overrides = {"dataset": str(tiny_dataset), "encoder.hidden": 16, "train.negatives": 6}
    if sparse:
        from snagkg.tasks.completion.config import CompletionConfig
        if "entity_updates" not in CompletionConfig.__dataclass_fields__:
            pytest.skip("no sparse entity-table updates in this tree")
        overrides["completion.entity_updates"] = "sparse"
    task = CompletionTask(read_openke(tiny_dataset), snagkg.resolve_config(overrides=overrides))
    task.model.eval()  # no dropout: the shards and the full batch see the same vectors
    batch = task.train_triples[:41]

    def grads(rank: int, world: int) -> dict:
        monkeypatch.setattr(distributed, "rank", lambda: rank)
        monkeypatch.setattr(distributed, "world_size", lambda: world)
        task.model.zero_grad(set_to_none=True)
        task.step(batch, torch.Generator().manual_seed(11)).backward()
        return {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone()
                for n, p in task.model.named_parameters() if p.grad is not None}

    full, shards = grads(0, 1), [grads(0, 2), grads(1, 2)]
    if sparse:
        assert task.model.entities.structure.weight.grad.is_sparse
    assert set(full) == set(shards[0]) | set(shards[1])
    for name, g in full.items():
        mean = sum(s.get(name, torch.zeros_like(g)) for s in shards) / 2
        assert torch.allclose(mean, g, atol=1e-6, rtol=1e-4), name
    assert full["entities.structure.weight"].abs().sum() > 0


def test_shard_rows_and_scale():
    """Rows rank::world; the scales of the shards average to 1."""
    x = torch.arange(7)
    (a,), sa = distributed.shard_rows(x, rank_=0, world=2)
    (b,), sb = distributed.shard_rows(x, rank_=1, world=2)
    assert a.tolist() == [0, 2, 4, 6] and b.tolist() == [1, 3, 5]
    assert sa == pytest.approx(8 / 7) and sb == pytest.approx(6 / 7) and (sa + sb) / 2 == pytest.approx(1.0)
    assert distributed.shard_rows(x) == ((x,), 1.0)  # alone: untouched


def test_alignment_is_refused_under_a_launcher(monkeypatch, tmp_path, capsys):
    from snagkg.cli.main import main
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["train", "--task", "alignment", "--dataset", "synthetic", "--output", str(tmp_path / "al")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["error: " + distributed.ONLY_COMPLETION] and "whole graphs" in err[0]
    assert not (tmp_path / "al").exists()


def test_bad_timeout_is_one_line(monkeypatch):
    monkeypatch.setenv(distributed.ENV_TIMEOUT, "soon")
    with pytest.raises(snagkg.SnagError, match="SNAGKG_DIST_TIMEOUT must be a positive number"):
        distributed.timeout_seconds()
    monkeypatch.setenv(distributed.ENV_TIMEOUT, "7.5")
    assert distributed.timeout_seconds() == 7.5


# -- two real processes (gloo), started without torchrun ------------------------------------
SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    from snagkg.training import distributed as D
    from snagkg.runtime.errors import SnagError

    def grads(rank):
        """Rank-dependent gradients: a dense linear layer, a sparse embedding, a parameter only rank 0 uses."""
        torch.manual_seed(0)
        lin, emb = torch.nn.Linear(3, 2), torch.nn.Embedding(10, 4, sparse=True)
        only0 = torch.nn.Parameter(torch.ones(2))
        model = torch.nn.ModuleDict({"lin": lin, "emb": emb, "only0": torch.nn.ParameterDict({"p": only0})})
        ids = torch.tensor([[1, 2, 2], [2, 5, 9]][rank])
        x = torch.arange(6.0).view(2, 3) * (rank + 1)
        loss = lin(x).pow(2).sum() + emb(ids).sum() * (rank + 1) + (only0.sum() if rank == 0 else 0.0)
        loss.backward()
        return model, loss

    mode, out = sys.argv[1], sys.argv[2]
    try:
        D.setup("cpu")
        r = D.rank()
        if mode == "dies":
            D.barrier()
            if r == 1:
                os._exit(0)  # gone without a word
            D.barrier()
            D.sync_gradients(torch.nn.Linear(2, 2), torch.tensor(1.0))
            print("not reached")
            sys.exit(0)
        model, loss = grads(r)
        mean = D.sync_gradients(model, loss)
        got = {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).tolist() for n, p in model.named_parameters()}
        parts = [t.tolist() for t in D.all_gather_varlen(torch.arange(r + 2) * 10)]
        metrics = D.combine_metrics([{"mrr": 0.5, "count": 2, "seconds": 1.0, "name": "a"},
                                     {"mrr": 0.2, "count": 1, "seconds": 3.0, "name": "a"}][r])
        try:
            D.on_main(lambda: (_ for _ in ()).throw(SnagError("boom on rank 0")))
            shared = None
        except SnagError as exc:
            shared = str(exc)
        json.dump({"loss": float(mean), "grads": got, "parts": parts, "metrics": metrics, "shared": shared,
                   "main": D.on_main(lambda: "from rank 0")}, open(f"{out}.{r}.json", "w"))
        D.teardown()
    except SnagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_two(tmp_path: Path, mode: str, timeout: str = "20"):
    script = tmp_path / "ranks.py"
    script.write_text(SCRIPT)
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, str(script), mode, str(tmp_path / "out")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=port, SNAGKG_DIST_TIMEOUT=timeout))
             for r in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    return [p.returncode for p in procs], outs


def test_collectives_on_two_processes(tmp_path):
    """sync_gradients (dense buckets, sparse COO, a gradient on one rank only), all_gather_varlen,
    combine_metrics and on_main on two gloo processes: every rank gets the same, correct values."""
    codes, outs = _spawn_two(tmp_path, "ok")
    assert codes == [0, 0], outs
    assert outs[1] == ("", "")  # rank 1 prints nothing
    got = [json.loads((tmp_path / f"out.{r}.json").read_text()) for r in range(2)]
    assert got[0] == got[1]
    res = got[0]
    namespace: dict = {}
    exec(SCRIPT.split("mode, out =")[0], namespace)  # the same gradients, one rank at a time
    singles = [namespace["grads"](r) for r in range(2)]
    expect_loss = sum(float(loss.detach()) for _, loss in singles) / 2
    assert res["loss"] == pytest.approx(expect_loss)
    for name, g in res["grads"].items():
        per_rank = []
        for model, _ in singles:
            p = dict(model.named_parameters())[name]
            per_rank.append(torch.zeros_like(p) if p.grad is None else p.grad.to_dense())
        assert torch.allclose(torch.tensor(g), (per_rank[0] + per_rank[1]) / 2), name
    assert res["grads"]["only0.p"] == [0.5, 0.5]
    assert res["parts"] == [[0, 10], [0, 10, 20]]
    m = res["metrics"]
    assert m["mrr"] == pytest.approx(0.4) and m["count"] == 3 and m["seconds"] == 3.0 and m["name"] == "a"
    assert res["shared"] == "boom on rank 0" and res["main"] == "from rank 0"


def test_a_rank_that_dies_ends_the_other_with_one_line(tmp_path):
    """Rank 1 exits without a word; rank 0 stops at its next collective with one clear line (exit 2),
    within the timeout, instead of hanging."""
    codes, outs = _spawn_two(tmp_path, "dies", timeout="5")
    assert codes == [2, 0], outs
    lines = outs[0][1].strip().splitlines()
    assert len(lines) == 1, outs[0][1]
    assert lines[0].startswith("error: data-parallel training: rank 0 stopped while ")
    assert "another rank died or did not answer within 5 s (SNAGKG_DIST_TIMEOUT)" in lines[0]
    assert "not reached" not in outs[0][0]
