"""``--no-fusion`` (``encoder.fusion: false``): the entity vectors are the structure embedding itself (plain
RotatE), through the API and the CLI, and the flags it cannot go with."""
import json

import pytest
import torch

import snagkg
from snagkg.cli.main import main
from snagkg.data.datasets import read_openke
from snagkg.tasks.completion.task import CompletionTask


def test_no_fusion_vectors_are_the_structure_embedding(tiny_dataset):
    cfg = snagkg.resolve_config(overrides={"dataset": str(tiny_dataset), "encoder.hidden": 32, "seed": 3,
                                           "modalities": ["structure"], "encoder.fusion": False, "device": "cpu"})
    task = CompletionTask(read_openke(tiny_dataset), cfg)
    assert torch.equal(task.entity_vectors(), task.model.entities.structure.weight.detach())  # eval: clean, unscaled
    assert task.model.parameter_count() == task.model.entities.structure.weight.numel() + task.model.interaction.relation.numel()
    task.model.train()
    g = torch.Generator().manual_seed(0)
    task.model.refresh_noise(g)
    loss = task.step(task.batches(g)[0], g)
    loss.backward()
    assert float(task.model.entities.structure.weight.grad.abs().sum()) > 0


@pytest.mark.slow
def test_no_fusion_cli_run_and_errors(tiny_dataset, fast_config, tmp_path, capsys):
    out = tmp_path / "rotate"
    args = ["train", "--dataset", str(tiny_dataset), "--config", str(fast_config), "--seed", "1", "--no-progress"]
    assert main(args + ["--output", str(out), "--modalities", "structure", "--no-fusion"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["encoder"]["fusion"] is False and res["dataset"]["used_modalities"] == ["structure"]
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["mrr"] == res["test"]["mrr"]
    for extra, message in ((["--no-fusion"], "needs --modalities structure"),
                           (["--modalities", "structure,image", "--no-fusion"], "needs --modalities structure"),
                           (["--modalities", "structure", "--no-fusion", "--structure-residual"],
                            "needs the fusion encoder")):
        bad = tmp_path / "bad"
        assert main(args + ["--output", str(bad)] + extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "--no-fusion" in err
        assert not bad.exists()
