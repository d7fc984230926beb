"""The snagkg rows of ``benchmarks/bench_mkgc.py``: what each row's command trains."""
import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_mkgc  # noqa: E402

import snagkg  # noqa: E402
from snagkg.cli.main import _train_overrides, build_parser  # noqa: E402


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features" / "text.npy", np.zeros((3, 4), dtype=np.float32))
    return tmp_path


def _resolved(row, dataset, extra):
    args = argparse.Namespace(dataset=dataset, preset="db15k-cpu", seed=1, extra=extra)
    cmd = bench_mkgc.row_command(row, args, dataset / row)
    a = build_parser().parse_args(cmd[1:])
    return snagkg.resolve_config(preset=a.preset, overrides=_train_overrides(a))


def test_plain_rotate_row_has_no_noise_even_when_the_other_rows_get_options(dataset):
    cfg = _resolved("rotate", dataset, ["--noise-ratio", "0.3", "--structure-noise-scale", "0.5"])
    assert cfg.noise.ratio == 0.0 and not cfg.encoder.fusion and list(cfg.modalities) == ["structure"]


def test_snag_rows_differ_only_in_the_noise(dataset):
    snag = _resolved("snag", dataset, ["--structure-noise-scale", "0.5"])
    off = _resolved("snag-nonoise", dataset, ["--structure-noise-scale", "0.5"])
    assert snag.noise.ratio == 0.2 and off.noise.ratio == 0.0
    assert list(snag.modalities) == list(off.modalities) == ["structure", "text"]
    assert snag.noise.structure_scale == off.noise.structure_scale == 0.5
    assert snag.encoder == off.encoder and snag.train == off.train


def test_the_printed_table_keeps_two_decimals():
    m = {"mrr": 0.340474, "hits@1": 0.2845, "hits@3": 0.36464, "hits@10": 0.44431}
    row = {"system": "s", "test": m, "test_optimistic": m, "valid": {"mrr": 0.3295}, "epochs_run": 300,
           "best_epoch": 290, "epoch_seconds": 2.2, "train_seconds": 781.8}
    line = bench_mkgc.table([row]).splitlines()[2]
    assert "| 34.05 " in line and "| 28.45 " in line and "| 32.95 " in line
