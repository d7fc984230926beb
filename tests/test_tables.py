"""``benchmarks/tables.py``: BENCHMARKS.md rows from run folders, and one-line errors for bad ones."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "tables.py"
sys.path.insert(0, str(SCRIPT.parent))
import tables  # noqa: E402

import snagkg  # noqa: E402
from snagkg.config import schema as C  # noqa: E402
from snagkg.api.results import Results  # noqa: E402

COMPLETION_TEST = {"mrr": 0.335049, "mr": 310.2, "hits@1": 0.229123, "hits@3": 0.400149, "hits@10": 0.518104,
                   "count": 9902}
ALIGNMENT_TEST = {"hits@1": 0.75067, "hits@10": 0.93257, "mrr": 0.81613, "mr": 5.1, "rl_hits@1": 0.754,
                  "rl_hits@10": 0.94, "rl_mrr": 0.8171, "rl_mr": 4.9, "count": 10500}


def make_run(folder: Path, cfg, test, valid, best_epoch=280, epochs_run=300, stopped_early=False,
             name="DB15K-log1p", used=("structure", "text", "relation")) -> Path:
    """A finished run folder as ``snagkg.train`` writes it (without the checkpoints)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(C.dump(cfg))
    info = {"name": name, "used_modalities": list(used)}
    (folder / "dataset.json").write_text(json.dumps(info))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "loss": 1.0}) + "\n"
                                                  for e in range(1, epochs_run + 1)))
    Results(valid=valid, test=test, best_epoch=best_epoch, epochs_run=epochs_run, train_seconds=6552.0,
            epoch_seconds=21.07, parameters=1000, dataset=info, config=cfg.to_dict(),
            stopped_early=stopped_early, extra={"device": "cpu", "torch": "2.13.0"}).save(folder / "results.json")
    return folder


@pytest.fixture
def gated(tmp_path):
    cfg = snagkg.resolve_config(preset="db15k-cpu", overrides={"dataset": "/data/DB15K-log1p"})
    return make_run(tmp_path / "snag", cfg, COMPLETION_TEST, {"mrr": 0.34971, "hits@1": 0.2})


def cells(line: str) -> list:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_completion_row_numbers_and_a_preset_only_command(gated, capsys):
    assert tables.main([str(gated), "--hardware", "AMD EPYC Zen 4, 2 threads", "--label", "SNAG plug-in, gated"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert cells(out[0]) == list(tables.COMPLETION_COLUMNS)
    row = dict(zip(tables.COMPLETION_COLUMNS, cells(out[2])))
    assert row["row"] == "SNAG plug-in, gated"
    assert (row["MRR"], row["H@1"], row["H@3"], row["H@10"]) == ("33.50", "22.91", "40.01", "51.81")
    assert row["valid MRR"] == "34.97"
    assert row["epochs (best)"] == "300 (280), cap"
    assert (row["s/epoch"], row["train min"], row["seed"]) == ("21.1", "109.2", "1")
    assert row["hardware"] == "AMD EPYC Zen 4, 2 threads"
    # the preset holds every setting of the run: the command is the preset and the dataset alone
    assert row["command"] == "`snagkg train --dataset DB15K-log1p --preset db15k-cpu`"


def test_settings_that_differ_from_the_preset_become_flags(tmp_path, capsys):
    cfg = snagkg.resolve_config(preset="db15k-cpu", overrides={
        "dataset": "/data/DB15K-log1p", "precision": "fp32", "noise.ratio": 0.0, "train.lr": 0.0005})
    run = make_run(tmp_path / "nonoise", cfg, COMPLETION_TEST, {"mrr": 0.3}, best_epoch=220, stopped_early=True)
    assert tables.main([str(run), "--rows-only"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1  # --rows-only: no header
    row = dict(zip(tables.COMPLETION_COLUMNS, cells(out[0])))
    assert row["row"] == "nonoise" and row["hardware"] == "cpu" and row["epochs (best)"] == "300 (220), early stop"
    assert row["command"] == ("`snagkg train --dataset DB15K-log1p --preset db15k-cpu --precision fp32 "
                              "--noise-ratio 0 --lr 0.0005`")


def test_switches_modalities_and_settings_without_a_flag(tmp_path):
    cfg = snagkg.resolve_config(preset="synthetic", overrides={
        "dataset": "synthetic", "seed": 3, "modalities": "structure,image", "completion.structure_residual": True,
        "completion.residual_gate": True, "encoder.projection_layers": 2})
    text, extra = tables.command(cfg, "synthetic")
    assert text == ("snagkg train --dataset synthetic --preset synthetic --modalities structure,image --seed 3 "
                    "--structure-residual --residual-gate --config extra.yaml")
    assert extra == "{encoder: {projection_layers: 2}}"


def test_alignment_row(tmp_path, capsys):
    cfg = snagkg.resolve_config(preset="dbp15k-cpu", overrides={"dataset": "/d/zh_en",
                                                                "modalities": "structure,relation,char"})
    run = make_run(tmp_path / "zh_en", cfg, ALIGNMENT_TEST, {"hits@1": 0.962, "mrr": 0.97}, best_epoch=45,
                   epochs_run=60, name="zh_en", used=("structure", "relation", "char"))
    assert tables.main([str(run)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert cells(out[0]) == list(tables.ALIGNMENT_COLUMNS)
    row = dict(zip(tables.ALIGNMENT_COLUMNS, cells(out[2])))
    assert (row["H@1"], row["H@10"], row["MRR"]) == ("75.07", "93.26", "0.816")
    assert (row["RL H@1"], row["RL MRR"], row["valid H@1"]) == ("75.40", "0.817", "96.2")
    assert row["epochs (best)"] == "60 (45), cap" and row["seed"] == "0"
    assert row["command"] == "`snagkg train --dataset zh_en --preset dbp15k-cpu`"  # the preset's own modalities


def test_alignment_row_names_other_modalities(tmp_path, capsys):
    cfg = snagkg.resolve_config(preset="dbp15k-cpu", overrides={"dataset": "/d/zh_en", "modalities": "structure"})
    run = make_run(tmp_path / "zh_en", cfg, ALIGNMENT_TEST, {"hits@1": 0.4}, epochs_run=60, name="zh_en",
                   used=("structure",))
    assert tables.main([str(run)]) == 0
    row = dict(zip(tables.ALIGNMENT_COLUMNS, cells(capsys.readouterr().out.strip().splitlines()[2])))
    assert row["command"] == "`snagkg train --dataset zh_en --preset dbp15k-cpu --modalities structure`"


def test_one_table_per_task(gated, tmp_path, capsys):
    cfg = snagkg.resolve_config(preset="dbp15k-cpu", overrides={"dataset": "/d/fr_en"})
    run = make_run(tmp_path / "fr_en", cfg, ALIGNMENT_TEST, {"hits@1": 0.9}, epochs_run=60, name="fr_en")
    assert tables.main([str(gated), str(run)]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    assert len(blocks) == 2 and "| RL H@1 |" in blocks[1] and "| H@3 |" in blocks[0]


@pytest.mark.parametrize("damage, file, what", [
    (lambda f: (f / "results.json").unlink(), "results.json", "not finished: metrics.jsonl ends at epoch 300"),
    (lambda f: (f / "results.json").write_text("{not json"), "results.json", "not valid JSON"),
    (lambda f: (f / "results.json").write_text(json.dumps({"valid": {}, "test": {}})), "results.json",
     "no 'best_epoch'"),
    (lambda f: (f / "config.yaml").write_text("encoder: {hiden: 3}\n"), "config.yaml:1", "hiden"),
    (lambda f: (f / "config.yaml").unlink(), "config.yaml", "not found"),
    (lambda f: (f / "dataset.json").unlink(), "dataset.json", "not found"),
    (lambda f: (f / "metrics.jsonl").write_text('{"epoch": 1}\nnope\n'), "metrics.jsonl:2", "not a metrics record"),
])
def test_a_broken_run_folder_is_one_line_naming_the_file(gated, capsys, damage, file, what):
    damage(gated)
    assert tables.main([str(gated)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert f"{gated / file}" in err and what in err


def test_missing_metric_and_label_count(gated, tmp_path, capsys):
    res = json.loads((gated / "results.json").read_text())
    del res["test"]["hits@3"]
    (gated / "results.json").write_text(json.dumps(res))
    assert tables.main([str(gated)]) == 2
    assert "results.json: test has no 'hits@3'" in capsys.readouterr().err
    assert tables.main([str(gated), str(gated), "--label", "a", "--label", "b", "--label", "c"]) == 2
    assert "--label given 3 times for 2 runs" in capsys.readouterr().err


def test_command_line_exit_code_and_no_traceback(tmp_path):
    missing = tmp_path / "no-such-run"
    p = subprocess.run([sys.executable, str(SCRIPT), str(missing)], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip() == f"error: {missing}: not a run folder (no such directory)"
