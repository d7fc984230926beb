"""snagkg robustness: evaluation with a share of a modality missing (drop) or corrupted, both tasks."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import snagkg
from snagkg.config import schema as C
from snagkg.cli.main import main
from snagkg.data.datasets.synthetic_pair import write_synthetic_pair
from snagkg.api.robustness import RobustnessResult, parse_levels, perturbation, select_modalities, modality_draws

from conftest import make_openke


def _plain(metrics):
    return {k: v for k, v in metrics.items() if k not in ("seconds", "split", "ties")}


@pytest.fixture(scope="module")
def completion_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("rob")
    data = make_openke(base / "kg", num_entities=300, seed=3)
    cfg = C.resolve(preset="synthetic", overrides={"dataset": str(data), "train.epochs": 8, "encoder.hidden": 32,
                                                   "train.eval_every": 4, "device": "cpu", "seed": 2})
    snagkg.train(cfg, base / "run", progress=False, echo=lambda s: None)
    return base / "run"


@pytest.mark.slow
def test_drop_zero_equals_evaluate_and_tables_are_restored(completion_run):
    plain = snagkg.evaluate(completion_run, split="test")
    res = snagkg.robustness(completion_run, modality="all", levels=[0.0, 1.0, 0.5], write=False)
    assert isinstance(res, RobustnessResult)
    assert res.modalities == ["image", "text"]  # 'all': feature modalities, no structure
    assert _plain(res.metrics[0]) == _plain(plain)  # exactly, every key
    assert _plain(res.clean) == _plain(plain)
    assert res.mrr_lost[0] == 0.0
    # dropping every row changes the ranking and marks every row missing
    for m in ("image", "text"):  # half the rows dropped, plus those missing at load time
        assert 0.5 <= res.missing[2][m] < 1.0
    assert res.missing[1] == {"image": 1.0, "text": 1.0}
    assert res.metrics[1]["mrr"] != plain["mrr"]
    assert res.mrr_lost[1] == pytest.approx(plain["mrr"] - res.metrics[1]["mrr"])
    # the run's files are unchanged and a new evaluation equals level 0 again
    assert _plain(snagkg.evaluate(completion_run, split="test")) == _plain(plain)


@pytest.mark.slow
def test_overridden_rows_restores_buffers_in_memory(completion_run):
    task = snagkg.load_run(completion_run, device="cpu")
    ent = task.model.entities
    before = {m: ent.table(m).clone() for m in ent.modalities}
    miss = ent.missing("image").clone()
    v0 = task.entity_vectors().clone()
    draws = modality_draws(ent, ["image"], seed=0)
    rows, values = perturbation(ent, "image", draws["image"], 1.0, "drop")
    assert len(rows) == int((~miss).sum())  # rows missing at load time keep their fill
    with ent.overridden_rows("image", rows, values, mark_missing=True):
        assert bool(ent.missing("image").all())
        assert torch.equal(ent.table("image")[rows], values)
        # rows drawn from N(mu, sigma) of the real rows: the column means match mu roughly
        mu = getattr(ent, "mean_image")
        assert torch.allclose(values.mean(0), mu, atol=4 * float(getattr(ent, "std_image").max()) / len(rows) ** 0.5)
        v1 = task.entity_vectors()
        assert not torch.allclose(v0, v1)  # the fused vectors were recomputed
    for m in ent.modalities:
        assert torch.equal(ent.table(m), before[m])
    assert torch.equal(ent.missing("image"), miss)
    assert torch.equal(task.entity_vectors(), v0)


@pytest.mark.slow
def test_corrupt_differs_from_drop_and_files_are_written(completion_run, capsys):
    code = main(["robustness", str(completion_run), "--modality", "image", "--drop", "0,1", "--mode", "corrupt",
                 "--seed", "5", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "mrr lost" in out and "image corrupted" in out
    data = json.loads((completion_run / "robustness.json").read_text())
    assert data["mode"] == "corrupt" and data["modalities"] == ["image"] and data["levels"] == [0.0, 1.0]
    assert data["seed"] == 5 and data["task"] == "completion"
    assert data["missing"][1]["image"] < 1.0  # corrupt does not mark rows missing
    rows = list(csv.DictReader((completion_run / "robustness.csv").open()))
    assert [float(r["level"]) for r in rows] == [0.0, 1.0]
    assert float(rows[1]["mrr"]) == pytest.approx(data["metrics"][1]["mrr"], abs=1e-6)
    assert float(rows[1]["mrr_lost"]) == pytest.approx(data["mrr_lost"][1], abs=1e-6)
    drop = snagkg.robustness(completion_run, modality="image", levels=[0, 1], mode="drop", seed=5, write=False)
    assert drop.metrics[0]["mrr"] == data["metrics"][0]["mrr"]
    assert drop.metrics[1]["mrr"] != data["metrics"][1]["mrr"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (completion_run / "robustness.png").exists()
    else:
        assert (completion_run / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_same_seed_same_numbers(completion_run):
    a = snagkg.robustness(completion_run, modality="text", levels="0.4", seed=1, limit=30, write=False)
    b = snagkg.robustness(completion_run, modality="text", levels="0.4", seed=1, limit=30, write=False)
    assert a.metrics[0]["count"] == 30
    assert _plain(a.metrics[0]) == _plain(b.metrics[0])


@pytest.mark.slow
@pytest.mark.parametrize("argv, message", [
    (["--modality", "audio"], "modality 'audio' is not used by this run"),
    (["--drop", "0,1.5"], "drop level 1.5 is outside [0, 1]"),
    (["--drop", "0,-0.2"], "outside [0, 1]"),
    (["--drop", "0,,1"], "comma-separated list"),
    (["--drop", "half"], "comma-separated list"),
    (["--drop", "nan"], "outside [0, 1]"),
    (["--limit", "-1"], "--limit must not be negative"),
])
def test_bad_input_is_one_line_exit_2(completion_run, capsys, argv, message):
    before = (completion_run / "robustness.json").read_bytes() if (completion_run / "robustness.json").exists() else None
    assert main(["robustness", str(completion_run), *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    after = (completion_run / "robustness.json").read_bytes() if (completion_run / "robustness.json").exists() else None
    assert before == after  # nothing already written is lost or changed


def test_missing_run_and_helpers(tmp_path, capsys):
    assert main(["robustness", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert parse_levels("0, 0.25,1") == [0.0, 0.25, 1.0]
    assert select_modalities(["structure", "image", "text"], "all") == ["image", "text"]
    assert select_modalities(["structure", "image", "text"], "structure,image") == ["structure", "image"]
    with pytest.raises(snagkg.SnagError, match="no feature modality"):
        select_modalities(["structure"], "all")


@pytest.mark.slow
def test_structure_named_explicitly(completion_run):
    res = snagkg.robustness(completion_run, modality="structure", levels=[0, 1], limit=40, write=False)
    assert res.modalities == ["structure"] and res.missing[1] == {"structure": 0.0}
    assert res.metrics[1]["mrr"] != res.metrics[0]["mrr"]  # the structure table was redrawn


@pytest.mark.slow
def test_alignment_run(tmp_path):
    folder = write_synthetic_pair(tmp_path / "syn", entities=200, seed=11, permute_ids=True)
    cfg = C.resolve(preset="dbp15k", overrides={
        "task": "alignment", "dataset": str(folder), "encoder.hidden": 48, "alignment.structure_dim": 48,
        "alignment.char_vocab": 300, "alignment.valid_ratio": 0.3, "train.batch_size": 512, "train.eval_every": 5,
        "train.patience": 100, "train.lr": 0.005, "train.epochs": 10, "alignment.iterative": False,
        "modalities": "structure,relation,char", "device": "cpu"})
    snagkg.train(cfg, tmp_path / "run", progress=False, echo=lambda s: None)
    plain = snagkg.evaluate(tmp_path / "run", split="test")
    res = snagkg.robustness(tmp_path / "run", modality="all", levels=[0, 1])
    assert res.task == "alignment" and res.modalities == ["relation", "char"]
    assert _plain(res.metrics[0]) == _plain(plain)
    assert res.missing[1] == {"relation": 1.0, "char": 1.0}
    assert res.metrics[1]["hits@1"] < res.metrics[0]["hits@1"]
    assert json.loads((tmp_path / "run" / "robustness.json").read_text())["task"] == "alignment"
    assert (Path(tmp_path / "run") / "robustness.csv").exists()


@pytest.mark.slow
def test_without_matplotlib_json_and_csv_are_still_written(completion_run, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    for name in ("robustness.json", "robustness.csv", "robustness.png"):
        (completion_run / name).unlink(missing_ok=True)
    assert main(["robustness", str(completion_run), "--modality", "text", "--drop", "0,0.5", "--limit", "20",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "pip install 'snagkg[plot]'" in err
    assert (completion_run / "robustness.json").exists() and (completion_run / "robustness.csv").exists()
    assert not (completion_run / "robustness.png").exists()
