"""End-to-end alignment: learning on a synthetic pair, CLI round trip, export, resume."""
from __future__ import annotations

import json
import time

import pytest
import torch

import snagkg
from snagkg.config import schema as C
from snagkg.tasks.alignment.task import AlignmentTask, IterativeLearning
from snagkg.cli.main import main
from snagkg.data.datasets.alignment_pair import load_alignment_dataset
from snagkg.data.datasets.synthetic_pair import write_synthetic_pair
from _helpers import interrupted_then_resumed

FAST = {
    "task": "alignment", "encoder.hidden": 48, "alignment.structure_dim": 48, "alignment.char_vocab": 300,
    "alignment.valid_ratio": 0.3, "train.batch_size": 512, "train.eval_every": 5, "train.patience": 100,
    "train.lr": 0.005, "train.checkpoint_every": 5,
}


def fast_cfg(dataset, **extra):
    o = dict(FAST, dataset=str(dataset))
    o.update(extra)
    return C.resolve(preset="dbp15k", overrides=o)


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory):
    return write_synthetic_pair(tmp_path_factory.mktemp("pair") / "syn", entities=200, seed=11, permute_ids=True)


@pytest.mark.slow
@pytest.mark.parametrize("permute", [True, False])
def test_alignment_is_learned_on_synthetic_pair(tmp_path, permute, device):
    folder = write_synthetic_pair(tmp_path / "syn", entities=200, seed=5, permute_ids=permute)
    cfg = fast_cfg(folder, **{"modalities": "structure,relation,char", "train.epochs": 20,
                              "alignment.iterative": False, "device": device})
    # CPU seconds of this process (all its threads), not wall time: other jobs on the machine do not count
    t0 = time.process_time()
    res = snagkg.train(cfg, tmp_path / "run", progress=False, echo=lambda s: None)
    used = time.process_time() - t0
    assert used < 60, f"20 epochs on 200 entities took {used:.1f} CPU seconds"
    assert res.test["count"] == 140
    assert res.test["hits@1"] >= 0.9 and res.test["rl_hits@1"] >= 0.9
    assert res.test["mrr"] >= res.test["hits@1"]


def test_untrained_model_does_not_align(pair_dir):
    """No id or order leak: a model that has not been trained scores like chance on structure alone."""
    cfg = fast_cfg(pair_dir, modalities="structure")
    task = AlignmentTask(load_alignment_dataset(str(pair_dir)), cfg)
    m = task.evaluate("test")
    assert m["hits@1"] < 0.2


@pytest.mark.slow
def test_cli_train_evaluate_align(tmp_path, pair_dir, capsys):
    cfg_file = tmp_path / "fast.yaml"
    cfg_file.write_text("preset: dbp15k\nencoder: {hidden: 48}\n"
                        "alignment: {structure_dim: 48, char_vocab: 300, valid_ratio: 0.3, iterative_start: 8,"
                        " propose_every: 2, add_every: 4}\n"
                        "train: {batch_size: 512, eval_every: 5, patience: 100, lr: 0.005}\n")
    run = tmp_path / "run"
    code = main(["train", "--task", "alignment", "--dataset", str(pair_dir), "--output", str(run),
                 "--config", str(cfg_file), "--epochs", "16", "--modalities", "structure,relation,char",
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["test"]["hits@1"] >= 0.8
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert len(ckpt["model"]["added_links"]) > 0  # iterative learning added links (state in the checkpoint)

    assert main(["evaluate", str(run), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("hits@1", "hits@10", "mrr", "rl_hits@1", "rl_hits@10", "rl_mrr", "count"):
        assert metrics[key] == pytest.approx(summary["test"][key]), key  # the saved model gives the run's numbers

    export = tmp_path / "pairs.tsv"
    assert main(["align", str(run), "--export", str(export)]) == 0
    info = json.loads(capsys.readouterr().out)
    rows = [line.split("\t") for line in export.read_text(encoding="utf-8").splitlines()]
    assert info["pairs"] == len(rows) == 140
    assert all(len(r) == 3 for r in rows)
    left, right = [r[0] for r in rows], [r[1] for r in rows]
    assert len(set(left)) == len(left) and len(set(right)) == len(right)  # one-to-one
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(u.startswith("http://kg1.") for u in left) and all(u.startswith("http://kg2.") for u in right)
    assert info["accuracy"] >= 0.8
    assert not list(tmp_path.glob(".pairs.tsv.*"))  # atomic write leaves no temporary file

    all_export = tmp_path / "all.tsv"
    assert main(["align", str(run), "--export", str(all_export), "--all"]) == 0
    info_all = json.loads(capsys.readouterr().out)
    assert info_all["pairs"] == 140 and info_all["scope"] == "all unaligned"


def test_align_bad_inputs(tmp_path, capsys):
    assert main(["align", str(tmp_path / "nope"), "--export", str(tmp_path / "x.tsv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run folder not found" in err
    assert main(["align", str(tmp_path), "--export", str(tmp_path / "x.tsv"), "--topk", "0"]) == 2
    assert "--topk" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_replays_iterative_state(tmp_path, pair_dir, monkeypatch):
    """An interrupted run resumed from its checkpoint ends exactly like an uninterrupted one."""
    cfg = fast_cfg(pair_dir, **{"modalities": "structure,char", "alignment.iterative_start": 1,
                                "alignment.propose_every": 1, "alignment.add_every": 2,
                                "train.checkpoint_every": 1, "train.epochs": 6})
    full = snagkg.train(cfg, tmp_path / "a", progress=False, echo=lambda s: None)
    part, resumed = interrupted_then_resumed(cfg, tmp_path / "b", monkeypatch, IterativeLearning, "on_epoch_start",
                                             lambda trainer, epoch, generator: epoch == 5)
    assert part["state"]["epoch"] == 4
    assert len(part["model"]["added_links"]) > 0  # links were added before the interruption
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert torch.equal(a["model"]["added_links"], b["model"]["added_links"])
    assert torch.equal(a["model"]["pending_links"], b["model"]["pending_links"])
    assert torch.allclose(a["model"]["entities.structure.weight"], b["model"]["entities.structure.weight"])
    assert resumed.test["hits@1"] == pytest.approx(full.test["hits@1"])


@pytest.mark.slow
def test_openea_layout_trains_with_attributes(tmp_path):
    folder = write_synthetic_pair(tmp_path / "oe", entities=60, seed=2, layout="openea")
    cfg = fast_cfg(folder, **{"train.epochs": 3, "alignment.iterative": False})
    res = snagkg.train(cfg, tmp_path / "run", progress=False, echo=lambda s: None)
    assert res.dataset["used_modalities"] == ["structure", "relation", "attribute"]
    assert res.dataset["split"] == {"train": 8, "valid": 4, "test": 48}  # OpenEA: 20% (12) for training
    assert res.test["count"] == 48  # every test link ranked


# -- encoder options on alignment: the readout, no fusion, bf16 ------------------------------------
def _alignment_cfg(pair, **extra):
    from snagkg.config import schema as C
    o = {"task": "alignment", "dataset": str(pair), "seed": 1, "encoder.hidden": 16,
         "alignment.structure_dim": 16, "alignment.char_vocab": 100, "alignment.valid_ratio": 0.3,
         "train.batch_size": 256, "train.epochs": 2, "train.eval_every": 1, "modalities": "structure,char",
         "alignment.iterative": False, "device": "cpu"}
    o.update(extra)
    return C.resolve(preset="dbp15k", overrides=o)


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    from snagkg.data.datasets import write_synthetic_pair
    return write_synthetic_pair(tmp_path_factory.mktemp("pair") / "p", entities=60, seed=3, permute_ids=True)


@pytest.mark.slow
@pytest.mark.parametrize("readout", ["mean", "attention_weighted", "graph"])
def test_alignment_honours_the_readout(small_pair, readout, tmp_path):
    from snagkg.core.encoder import READOUTS
    res = snagkg.train(_alignment_cfg(small_pair, **{"encoder.readout": readout}), tmp_path / "r",
                       progress=False, echo=lambda s: None)
    task = snagkg.load_run(tmp_path / "r", device="cpu")
    assert type(task.model.entities.encoder.readout) is READOUTS.get(readout)
    width = task.model.entity_vectors().shape[1]
    assert width == (16 * 2 if readout == "attention_weighted" else 16)
    assert snagkg.evaluate(tmp_path / "r", split="test", device="cpu")["hits@1"] == res.test["hits@1"]  # as saved


@pytest.mark.slow
def test_alignment_without_fusion_and_in_bf16(small_pair, tmp_path):
    from snagkg.core.encoder import NoFusion
    plain = snagkg.train(_alignment_cfg(small_pair, **{"encoder.fusion": False, "modalities": "structure"}),
                         tmp_path / "plain", progress=False, echo=lambda s: None)
    task = snagkg.load_run(tmp_path / "plain", device="cpu")
    assert isinstance(task.model.entities.encoder, NoFusion)
    assert task.model.entity_vectors().shape[1] == 16  # the GAT output itself
    assert plain.test["count"] > 0
    bf16 = snagkg.train(_alignment_cfg(small_pair, precision="bf16"), tmp_path / "bf16", progress=False,
                        echo=lambda s: None)
    fp32 = snagkg.train(_alignment_cfg(small_pair), tmp_path / "fp32", progress=False, echo=lambda s: None)
    log = [json.loads(x) for x in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (tmp_path / "fp32" / "metrics.jsonl").read_text().splitlines()]
    assert all(abs(a["loss"] - b["loss"]) < 0.05 * abs(b["loss"]) for a, b in zip(log, ref))  # same model, bf16 products
    assert log[0]["loss"] != ref[0]["loss"]  # the products did run in bf16
    assert bf16.test["count"] == fp32.test["count"]
