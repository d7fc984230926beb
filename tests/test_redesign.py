"""The shared representation: behaviour pinned from before the redesign, old run folders, both tasks."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

import snagkg
from snagkg.cli.main import main
from snagkg.core.representation import MultiModalEntityRepresentation

DATA = Path(__file__).parent / "data"
PINS = json.loads((DATA / "redesign_pins.json").read_text())


def _pins_module():
    spec = importlib.util.spec_from_file_location("make_pins", DATA / "make_pins.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", sorted(PINS))
def test_same_seed_gives_the_pinned_metrics(name, tmp_path):
    """The synthetic runs give exactly the metrics they gave before the redesign (same operation
    order: equal to the last bit, not within a tolerance). The pins were made with 2 torch threads
    (the reductions' order depends on the thread count), so the test runs with 2 whatever the
    caller's OMP_NUM_THREADS or core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check_pins(name, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_pins(name, tmp_path):
    pins = _pins_module()
    got = pins.run(name, pins.runs(tmp_path)[name], tmp_path)
    want = PINS[name]
    assert got["best_epoch"] == want["best_epoch"]
    for split in ("valid", "test"):
        for key, value in want[split].items():  # the keys of before; direction keys were added since
            assert got[split][key] == value, (split, key)


def _legacy_copy(kind: str, tmp_path: Path) -> Path:
    """A run folder written before the redesign, its dataset path pointed at the vendored data."""
    run = tmp_path / kind
    shutil.copytree(DATA / "legacy_runs" / kind, run)
    data = tmp_path / f"{kind}_data"
    shutil.copytree(DATA / "legacy_runs" / f"{kind}_data", data)
    cfg = run / "config.yaml"
    lines = [f"dataset: {data}" if line.startswith("dataset:") else line for line in cfg.read_text().splitlines()]
    cfg.write_text("\n".join(lines) + "\n")
    return run


@pytest.mark.parametrize("kind", ["completion", "alignment"])
def test_run_folder_from_before_the_redesign_loads_evaluates_and_resumes(kind, tmp_path, capsys):
    run = _legacy_copy(kind, tmp_path)
    saved = json.loads((run / "results.json").read_text())
    old_keys = torch.load(run / "best.pt", weights_only=True)["model"]
    assert "entity" in old_keys  # the old parameter names

    task = snagkg.load_run(run, device="cpu")
    assert isinstance(task.model.entities, MultiModalEntityRepresentation)
    assert torch.equal(task.model.entities.structure.weight.detach(), old_keys["entity"])
    metrics = snagkg.evaluate(run, split="test", device="cpu")
    for key, value in saved["test"].items():
        if key != "seconds":
            assert metrics[key] == value, key

    epochs = saved["epochs_run"] + 1
    assert main(["train", "--output", str(run), "--resume", "--epochs", str(epochs), "--device", "cpu",
                 "--no-progress"]) == 0, capsys.readouterr().err
    res = json.loads((run / "results.json").read_text())
    assert res["epochs_run"] == epochs
    new_keys = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert "entities.structure.weight" in new_keys and "entity" not in new_keys


def test_both_tasks_hold_the_same_representation_class(tmp_path):
    from snagkg.tasks.alignment.model import AlignmentModel
    from snagkg.tasks.completion.model import CompletionModel

    comp = snagkg.load_run(_legacy_copy("completion", tmp_path), device="cpu").model
    align = snagkg.load_run(_legacy_copy("alignment", tmp_path), device="cpu").model
    assert isinstance(comp, CompletionModel) and isinstance(align, AlignmentModel)
    assert type(comp.entities) is type(align.entities) is MultiModalEntityRepresentation


def test_noise_is_applied_in_one_method_only():
    """Every call of a ModalityNoise (or of the functional GMNM) in the package is in
    ``MultiModalEntityRepresentation.inputs``."""
    import ast

    root = Path(snagkg.__file__).parent
    calls = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Call):
                        f = sub.func
                        text = ast.unparse(f)
                        if (isinstance(f, ast.Subscript) and "noise" in ast.unparse(f.value)) \
                                or text.endswith("gauss_modality_noise") \
                                or text.endswith("_noised.get"):
                            calls.append((path.name, node.name))
    assert set(calls) == {("representation.py", "inputs")}, calls


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


@pytest.mark.parametrize("readout", ["mean", "attention_weighted", "graph"])
def test_alignment_honours_the_readout(small_pair, readout, tmp_path):
    from snagkg.core.encoder import READOUTS
    res = snagkg.train(_alignment_cfg(small_pair, **{"encoder.readout": readout}), tmp_path / "r",
                       progress=False, echo=lambda s: None)
    task = snagkg.load_run(tmp_path / "r", device="cpu")
    assert type(task.model.entities.encoder.readout) is READOUTS.get(readout)
    width = task.model.entity_vectors().shape[1]
    assert width == (16 * 2 if readout == "attention_weighted" else 16)
    assert 0.0 <= res.test["hits@1"] <= 1.0


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
