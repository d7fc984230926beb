"""``precision: bf16``: the encoder's products under autocast, float32 elsewhere; the bf16 probe and warning
(``--no-fusion``: test_no_fusion.py)."""
import json

import pytest
import torch

import snagkg
from snagkg.cli.main import main
from snagkg.tasks.completion.task import CompletionTask
from snagkg.data.datasets import read_openke


def _task(dataset, precision):
    cfg = snagkg.resolve_config(overrides={"dataset": str(dataset), "encoder.hidden": 64, "seed": 3,
                                           "device": "cpu", "precision": precision})
    return CompletionTask(read_openke(dataset), cfg)


def test_bf16_vectors_close_to_fp32_and_float32_out(tiny_dataset):
    fp32, bf16 = _task(tiny_dataset, "fp32"), _task(tiny_dataset, "bf16")
    a, b = fp32.entity_vectors(), bf16.entity_vectors()
    assert a.dtype == b.dtype == torch.float32
    assert not torch.equal(a, b)  # the products really ran in bfloat16
    rel = (a - b).norm(dim=1) / a.norm(dim=1)
    assert float(rel.max()) < 0.03  # bfloat16 keeps ~3 significant digits
    # the training step works in bf16 and gives (nearly) the same loss as fp32
    gen = [torch.Generator().manual_seed(0) for _ in range(2)]
    losses = []
    for task, g in zip((fp32, bf16), gen):
        task.model.train()
        task.model.refresh_noise(g)
        loss = task.step(task.batches(g)[0], g)
        loss.backward()
        assert task.model.entities.structure.weight.grad is not None and torch.isfinite(task.model.entities.structure.weight.grad).all()
        losses.append(float(loss.detach()))
    assert losses[0] == pytest.approx(losses[1], rel=0.02)


@pytest.mark.slow
def test_bf16_run_through_cli_matches_fp32_quality(tiny_dataset, fast_config, tmp_path, capsys):
    res = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        code = main(["train", "--dataset", str(tiny_dataset), "--config", str(fast_config), "--output", str(out),
                     "--seed", "1", "--no-progress", "--precision", precision])
        assert code == 0, capsys.readouterr().err
        res[precision] = json.loads((out / "results.json").read_text())
        assert res[precision]["config"]["precision"] == precision
        assert f"precision: {precision}" in (out / "config.yaml").read_text()
    capsys.readouterr()
    assert abs(res["bf16"]["test"]["mrr"] - res["fp32"]["test"]["mrr"]) < 0.05
    # evaluate uses the run's saved precision and reproduces its test metrics exactly
    assert main(["evaluate", str(tmp_path / "bf16"), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["mrr"] == res["bf16"]["test"]["mrr"]


@pytest.mark.slow
@pytest.mark.parametrize("native, warned", [(False, True), (True, False), (None, False)])
def test_bf16_on_a_cpu_without_bf16_units_warns_once(tiny_dataset, fast_config, tmp_path, capsys, monkeypatch,
                                                      native, warned):
    from snagkg.runtime import precision as precisions
    monkeypatch.setattr(precisions, "has_native_bf16", lambda device: native)
    for precision in ("bf16", "fp32"):
        code = main(["train", "--dataset", str(tiny_dataset), "--config", str(fast_config), "--output",
                     str(tmp_path / f"{precision}-{native}"), "--no-progress", "--precision", precision,
                     "--epochs", "1"])
        err = capsys.readouterr().err
        assert code == 0, err
        lines = [line for line in err.splitlines() if "bfloat16 matrix units" in line]
        assert len(lines) == (1 if warned and precision == "bf16" else 0), err
        if lines:
            assert lines[0].startswith("warning: ") and "--precision fp32" in lines[0]


def test_native_bf16_probe_reads_the_cpu_flags(monkeypatch):
    from snagkg.runtime import precision as precisions
    flags = {"amx_bf16": False, "avx512_bf16": False, "avx2": True}
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda: flags)
    assert precisions.has_native_bf16("cpu") is False
    flags["avx512_bf16"] = True
    assert precisions.has_native_bf16("cpu") is True
    flags.update(avx512_bf16=False, amx_bf16=True)
    assert precisions.has_native_bf16("cpu") is True
    assert precisions.precision_warning("fp32", "cpu") is None


@pytest.mark.parametrize("args, message", [
    (["--precision", "fp16"], "invalid choice"),
])
def test_bad_precision_is_one_line_error(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "synthetic", "--output", str(out), "--epochs", "1"] + args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


def test_precision_and_no_fusion_are_not_completion_only():
    """Both tasks take ``precision: bf16`` and ``encoder.fusion: false`` (with structure alone)."""
    cfg = snagkg.resolve_config(overrides={"task": "alignment", "precision": "bf16"})
    assert (cfg.task, cfg.precision) == ("alignment", "bf16")
    cfg = snagkg.resolve_config(overrides={"task": "alignment", "modalities": "structure", "encoder.fusion": False})
    assert not cfg.encoder.fusion and cfg.modalities == ("structure",)
    with pytest.raises(snagkg.SnagError, match="needs --modalities structure"):
        snagkg.resolve_config(overrides={"task": "alignment", "encoder.fusion": False})


def test_precision_from_yaml_is_checked(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("precision: bf32\n")
    with pytest.raises(snagkg.SnagError, match="precision"):
        snagkg.resolve_config(config_file=str(cfg))
