"""End-to-end runs through the CLI and the Python API (test_train_evaluate_reproduces_results is the fast
one; the others are marked slow), and SNAG beating structure alone on the synthetic MMKG."""
import json
import subprocess
import sys

import pytest

import snagkg
from snagkg.cli.main import main
from snagkg.data.datasets import read_openke


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_evaluate_reproduces_results(tiny_dataset, fast_config, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", "--task", "completion", "--dataset", str(tiny_dataset), "--config",
                                 str(fast_config), "--output", str(out), "--seed", "1", "--no-progress"], capsys)
    assert code == 0, err
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "checkpoint.pt", "results.json", "dataset.json"):
        assert (out / name).exists(), name
    res = json.loads((out / "results.json").read_text())
    assert set(res) >= {"valid", "test", "best_epoch", "epochs_run", "train_seconds", "epoch_seconds",
                        "parameters", "dataset", "config"}
    assert set(res["test"]) >= {"mrr", "mr", "hits@1", "hits@3", "hits@10"}
    assert res["epochs_run"] == 3 and res["config"]["train"]["epochs"] == 3
    assert res["dataset"]["used_modalities"] == ["structure", "image", "text"]
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3] and all("valid" in e for e in log)
    best = max(log, key=lambda e: e["valid"]["mrr"])["epoch"]
    assert res["best_epoch"] == best  # selected on valid

    code, stdout, err = run_cli(["evaluate", str(out), "--split", "test"], capsys)
    assert code == 0, err
    metrics = json.loads(stdout)
    for k in ("mrr", "mr", "hits@1", "hits@3", "hits@10"):
        assert metrics[k] == res["test"][k], k  # exactly
    assert metrics["count"] == res["test"]["count"] == len(read_openke(tiny_dataset).test)

    code, stdout, _ = run_cli(["evaluate", str(out), "--split", "valid", "--limit", "5", "--ties", "optimistic"], capsys)
    m = json.loads(stdout)
    assert code == 0 and m["count"] == 5 and m["ties"] == "optimistic"


@pytest.mark.slow
def test_refuses_non_empty_output_and_resume_finishes(tiny_dataset, fast_config, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", str(tiny_dataset), "--config", str(fast_config), "--output", str(out), "--no-progress"]
    assert run_cli(args, capsys)[0] == 0
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "not empty" in err and err.count("\n") == 1
    code, _, err = run_cli(args + ["--resume", "--epochs", "4"], capsys)
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 4


@pytest.mark.slow
def test_python_api(tiny_dataset, tmp_path):
    cfg = snagkg.resolve_config(overrides={"dataset": str(tiny_dataset), "train.epochs": 2, "train.eval_every": 1,
                                           "encoder.hidden": 32, "train.batch_size": 512, "modalities": "structure,image"})
    res = snagkg.train(cfg, tmp_path / "api", progress=False, echo=lambda s: None)
    assert isinstance(res, snagkg.Results) and res.test["count"] == len(read_openke(tiny_dataset).test)
    task = snagkg.load_run(tmp_path / "api")
    w = task.model.modality_weights()
    assert w.shape == (300, 2)
    m = snagkg.evaluate(tmp_path / "api", split="test")
    assert m["mrr"] == res.test["mrr"]


def test_python_dash_m_works(tmp_path):
    p = subprocess.run([sys.executable, "-m", "snagkg", "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and "snagkg" in p.stdout
    p = subprocess.run([sys.executable, "-m", "snagkg", "evaluate", str(tmp_path / "none")], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1


@pytest.mark.slow
def test_cli_demo_on_synthetic_fast(tmp_path, capsys):
    """The synthetic dataset through the CLI, a couple of epochs."""
    out = tmp_path / "syn"
    code, stdout, err = run_cli(["train", "--dataset", "synthetic", "--output", str(out), "--epochs", "2",
                                 "--eval-every", "1", "--no-progress", "--seed", "1"], capsys)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["preset"] == "synthetic" and res["dataset"]["entities"] == 2000


@pytest.mark.slow
def test_device_override(tiny_dataset, fast_config, tmp_path, capsys, device):
    """A short run on each requested device (``pytest --device cuda``), then evaluated there again."""
    out = tmp_path / "dev"
    code, _, err = run_cli(["train", "--dataset", str(tiny_dataset), "--config", str(fast_config), "--output",
                            str(out), "--device", device, "--epochs", "1", "--no-progress"], capsys)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["extra"]["device"] == device
    code, stdout, err = run_cli(["evaluate", str(out), "--split", "test", "--device", device], capsys)
    assert code == 0, err
    assert json.loads(stdout)["mrr"] == pytest.approx(res["test"]["mrr"], abs=1e-6)


def test_abbreviated_flags_are_refused(tmp_path, capsys):
    code, _, err = run_cli(["train", "--dataset", "synthetic", "--output", str(tmp_path / "x"), "--epoch", "3"], capsys)
    assert code == 2 and "--epoch" in err and not (tmp_path / "x").exists()


def _synthetic_run(tmp_path, name, modalities, epochs=25):
    cfg = snagkg.resolve_config(preset="synthetic", overrides={
        "dataset": "synthetic", "modalities": modalities, "train.epochs": epochs, "seed": 1})
    return snagkg.train(cfg, tmp_path / name, progress=False, echo=lambda s: None)


@pytest.mark.slow
def test_snag_beats_structure_only_on_synthetic(tmp_path):
    """The method's point on the synthetic MMKG: modalities help, clearly."""
    snag = _synthetic_run(tmp_path, "snag", "structure,image,text")
    struct = _synthetic_run(tmp_path, "struct", "structure")
    assert snag.test["mrr"] > 0.35
    assert snag.test["mrr"] > struct.test["mrr"] + 0.15, (snag.test, struct.test)
    assert snag.test["hits@10"] > struct.test["hits@10"]
