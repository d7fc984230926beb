"""Every reader reports the first problem as one line, ``error: <file>:<line>: <what>``, exit 2.

Datasets (OpenKE layout, feature tables), YAML configs, command-line
arguments and checkpoints. A failing run writes nothing: the --output folder
is not created (or, for --resume / evaluate, not changed). The line parsers
are fuzzed with hypothesis: any bytes either parse or raise SnagError.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snagkg
from snagkg.config.schema import _read_yaml, apply_mapping, RunConfig
from snagkg.runtime.errors import SnagError
from snagkg.data.lines import read_int_rows, read_lines, read_name_ids
from snagkg.data.tables import read_missing_ids

from _helpers import (N_ENT, TINY_CONFIG, assert_one_error, insert_line, replace_line, run_cli_subprocess,
                                   run_main, snapshot, tiny_triples, triple_file, write_tiny_openke)


def train_args(ds: Path, out: Path, cfg: Path, *extra: str):
    return ["train", "--dataset", ds, "--output", out, "--config", cfg, "--no-progress", "--device", "cpu", *extra]


# --------------------------------------------------------------------------- dataset files

def _line(name, line, text):
    return lambda d: replace_line(d / name, line, text)


def _bytes(name, data: bytes):
    return lambda d: (d / name).write_bytes(data)


def _unlink(name):
    return lambda d: (d / name).unlink()


def _features(fn):
    def mutate(d: Path):
        path = d / "features" / "image.npy"
        np.save(path, fn(np.load(path)))
    return mutate


def _set(values, row, value):
    values = values.copy()
    values[row] = value
    return values


ENT_LINE3 = "e1\t1"  # line 3 of entity2id.txt
DATASET_CASES = [
    # (mutation, file (relative to the dataset), line or None, fragment of the message)
    pytest.param(_unlink("train2id.txt"), "train2id.txt", None, "not found", id="missing-train-file"),
    pytest.param(_unlink("relation2id.txt"), "relation2id.txt", None, "not found", id="missing-relation-file"),
    pytest.param(_unlink("entity2id.txt"), "entity2id.txt", None, "missing", id="missing-entity-file"),
    pytest.param(_line("train2id.txt", 3, "0 1"), "train2id.txt", 3, "expected 3 columns", id="train-two-columns"),
    pytest.param(_line("test2id.txt", 4, "0 1 2 0"), "test2id.txt", 4, "expected 3 columns", id="test-four-columns"),
    pytest.param(_line("entity2id.txt", 5, "e3"), "entity2id.txt", 5, "expected 2 columns", id="entity-one-column"),
    pytest.param(_line("train2id.txt", 2, "0 x 0"), "train2id.txt", 2, "not an integer", id="train-non-integer"),
    pytest.param(_line("valid2id.txt", 3, "1 2.0 1"), "valid2id.txt", 3, "not an integer", id="valid-float-id"),
    pytest.param(_line("train2id.txt", 4, "0 ٣ 0"), "train2id.txt", 4, "not an integer", id="train-unicode-digit"),
    pytest.param(_line("entity2id.txt", 4, "e2\tx2"), "entity2id.txt", 4, "not an integer", id="entity-non-integer"),
    pytest.param(_line("train2id.txt", 5, "0 -1 0"), "train2id.txt", 5, "negative", id="train-negative-id"),
    pytest.param(_line("relation2id.txt", 2, "r0\t-1"), "relation2id.txt", 2, "negative", id="relation-negative"),
    pytest.param(_line("train2id.txt", 6, f"0 {N_ENT} 0"), "train2id.txt", 6, "unknown entity id 12",
                 id="train-entity-out-of-range"),
    pytest.param(_line("test2id.txt", 2, "3 10 3"), "test2id.txt", 2, "unknown relation id 3",
                 id="test-relation-out-of-range"),
    pytest.param(_line("train2id.txt", 2, "0 99999999999999999999999 0"), "train2id.txt", 2, "too large",
                 id="train-id-beyond-int64"),
    pytest.param(_line("entity2id.txt", 13, "e11\t40"), "entity2id.txt", 13, "out of range",
                 id="entity-id-out-of-range"),
    pytest.param(_line("train2id.txt", 1, "30"), "train2id.txt", 1, "count header says 30", id="count-too-high"),
    pytest.param(_line("entity2id.txt", 1, "11"), "entity2id.txt", 1, "count header says 11", id="count-too-low"),
    pytest.param(_line("valid2id.txt", 1, "three"), "valid2id.txt", 1, "not an integer", id="count-not-integer"),
    pytest.param(_line("entity2id.txt", 4, "e2x\t1"), "entity2id.txt", 4, "duplicate id 1 (first on line 3)",
                 id="entity-duplicate-id"),
    pytest.param(_line("entity2id.txt", 4, "e1\t2"), "entity2id.txt", 4, "duplicate name 'e1' (first on line 3)",
                 id="entity-duplicate-name"),
    pytest.param(_line("relation2id.txt", 4, "r0\t2"), "relation2id.txt", 4, "duplicate name",
                 id="relation-duplicate-name"),
    pytest.param(lambda d: (d / "entity2id.txt").write_bytes((d / "entity2id.txt").read_bytes()
                                                              .replace(b"e1\t1", b"e\xff1\t1")),
                 "entity2id.txt", 3, "UTF-8", id="entity-non-utf8"),
    pytest.param(lambda d: (d / "valid2id.txt").write_bytes(b"3\n0 5 0\n\xc3\x28 6 1\n2 7 2\n"),
                 "valid2id.txt", 3, "UTF-8", id="valid-non-utf8"),
    pytest.param(lambda d: insert_line(d / "train2id.txt", 4, ""), "train2id.txt", 4, "blank line",
                 id="train-blank-line-in-middle"),
    pytest.param(lambda d: insert_line(d / "entity2id.txt", 3, "   "), "entity2id.txt", 3, "blank line",
                 id="entity-whitespace-line-in-middle"),
    pytest.param(_bytes("test2id.txt", b"0\n"), "test2id.txt", 1, "test split is empty", id="empty-test-split"),
    pytest.param(_bytes("valid2id.txt", b""), "valid2id.txt", 1, "empty file", id="empty-valid-file"),
    pytest.param(_bytes("relation2id.txt", b"0\n"), "relation2id.txt", None, "no records", id="no-relations"),
    pytest.param(lambda d: (d / "valid2id.txt").write_text(triple_file(tiny_triples()["train"][:3])),
                 "valid2id.txt", None, "valid split is empty after removing", id="valid-only-train-triples"),
    # feature tables (.npy + .missing.txt)
    pytest.param(_features(lambda v: _set(v, 5, np.nan)), "features/image.npy", None, "row 5 (entity id 5) contains NaN",
                 id="features-nan"),
    pytest.param(_features(lambda v: _set(v, 7, np.inf)), "features/image.npy", None, "row 7 (entity id 7) contains inf",
                 id="features-inf"),
    pytest.param(_features(lambda v: v[:-1]), "features/image.npy", None, "11 rows but the dataset has 12",
                 id="features-too-few-rows"),
    pytest.param(_features(lambda v: np.concatenate([v, v[:2]])), "features/image.npy", None, "14 rows",
                 id="features-too-many-rows"),
    pytest.param(_features(lambda v: np.arange(v.size, dtype=np.int64).reshape(v.shape)), "features/image.npy", None,
                 "int64 is not a floating-point", id="features-int-dtype"),
    pytest.param(_features(lambda v: np.zeros((v.shape[0], 0), np.float32)), "features/image.npy", None, "zero width",
                 id="features-zero-width"),
    pytest.param(_features(lambda v: v[:, 0]), "features/image.npy", None, "2-D", id="features-one-dimensional"),
    pytest.param(_bytes("features/image.npy", b"\x93NUMPY garbage"), "features/image.npy", None, "not a valid .npy",
                 id="features-garbage"),
    pytest.param(_bytes("features/image.missing.txt", b"2\nseven\n"), "features/image.missing.txt", 2,
                 "not an integer", id="missing-list-non-integer"),
    pytest.param(_bytes("features/image.missing.txt", b"2\n12\n"), "features/image.missing.txt", 2,
                 "unknown entity id 12", id="missing-list-out-of-range"),
    pytest.param(_bytes("features/image.missing.txt", b"2\n\xff\n"), "features/image.missing.txt", 2, "UTF-8",
                 id="missing-list-non-utf8"),
    pytest.param(_bytes("features/image.missing.txt", b"2 3\n"), "features/image.missing.txt", 1, "columns",
                 id="missing-list-two-columns"),
    pytest.param(lambda d: shutil.copy(d / "features" / "image.npy", d / "features" / "structure.npy"),
                 "features/structure.npy", None, "reserved", id="features-reserved-name"),
]


@pytest.mark.parametrize("mutate,name,line,fragment", DATASET_CASES)
def test_bad_dataset_file(tiny, cfg_file, tmp_path, capsys, mutate, name, line, fragment):
    mutate(tiny)
    out = tmp_path / "run"
    code, stdout, err = run_main(train_args(tiny, out, cfg_file), capsys)
    assert code == 2, err
    assert_one_error(err, tiny / name, line, fragment)
    assert stdout == ""
    assert not out.exists(), "a failed run must not leave an output folder"


def test_dataset_folder_missing_or_a_file(tmp_path, cfg_file, capsys):
    out = tmp_path / "run"
    code, _, err = run_main(train_args(tmp_path / "nope", out, cfg_file), capsys)
    assert code == 2
    assert_one_error(err, tmp_path / "nope", None, "not found")
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run_main(train_args(f, out, cfg_file), capsys)
    assert code == 2
    assert_one_error(err, f, None, "not a folder")
    assert not out.exists()


def test_entity_unseen_in_train_only_warns(tmp_path, cfg_file, capsys):
    ds = write_tiny_openke(tmp_path / "ds", unseen_test_entity=True)
    out = tmp_path / "run"
    code, stdout, err = run_main(train_args(ds, out, cfg_file, "--epochs", "1"), capsys)
    assert code == 0, err
    assert "warning: 1 entities in test never appear in train" in err
    assert not [line for line in err.splitlines() if line.startswith("error")]
    assert (out / "results.json").exists()


# --------------------------------------------------------------------------- YAML configs

CONFIG_CASES = [
    # (YAML text, line or None, fragments)
    pytest.param("seed: 1\ntrian:\n  epochs: 2\n", 2, ["unknown config key 'trian'", "did you mean 'train'"],
                 id="unknown-top-key"),
    pytest.param("train:\n  epochs: 2\n  epoch: 3\n", 3, ["'train.epoch'", "did you mean 'train.epochs'"],
                 id="unknown-nested-key"),
    pytest.param("encoder: {hidden: 8, hiden: 8}\n", 1, ["'encoder.hiden'", "did you mean 'encoder.hidden'"],
                 id="unknown-key-flow-style"),
    pytest.param("train:\n  epochs: 2\n  lr: -0.5\n", 3, ["train.lr must be positive", "-0.5"], id="negative-lr"),
    pytest.param("seed: 0\nnoise:\n  mask: 0.5\n  ratio: 1.5\n", 4, ["noise.ratio must be in [0, 1]", "1.5"],
                 id="noise-ratio-above-one"),
    pytest.param("noise: {ratio: -0.1}\n", 1, ["noise.ratio must be in [0, 1]"], id="noise-ratio-negative"),
    pytest.param("train:\n  epochs: 0\n", 2, ["train.epochs must be positive"], id="zero-epochs"),
    pytest.param("encoder:\n  hidden: 7\n", 2, ["encoder.hidden must be even"], id="odd-hidden"),
    pytest.param("encoder:\n  heads: 3\n", 2, ["divisible by encoder.heads"], id="heads-not-dividing-hidden"),
    pytest.param("encoder:\n  dropout: 1.0\n", 2, ["encoder.dropout"], id="dropout-one"),
    pytest.param("train:\n  lr: .nan\n", 2, ["train.lr must be a finite number"], id="nan-lr"),
    pytest.param("train:\n  epochs: many\n", 2, ["train.epochs must be an integer"], id="epochs-not-integer"),
    pytest.param("noise:\n  per_step: 3\n", 2, ["noise.per_step must be true or false"], id="bool-not-bool"),
    pytest.param("train: 5\n", 1, ["train must be a mapping"], id="section-not-mapping"),
    pytest.param("ties: pessimistic\n", 1, ["ties must be"], id="bad-ties"),
    pytest.param("train: {epochs: 2}\ntrain: {lr: 0.1}\n", 2, ["duplicate key 'train' (first on line 1)"],
                 id="duplicate-key"),
    pytest.param("train:\n  epochs: [1,\n", 3, ["invalid YAML"], id="yaml-syntax-error"),
    pytest.param("- epochs\n- 3\n", 1, ["must be a YAML mapping"], id="yaml-list"),
    pytest.param("preset: db51k\n", 1, ["unknown preset 'db51k'", "did you mean 'db15k'"], id="unknown-preset"),
]


@pytest.mark.parametrize("text,line,fragments", CONFIG_CASES)
def test_bad_config(tiny, tmp_path, capsys, text, line, fragments):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    out = tmp_path / "run"
    code, _, err = run_main(train_args(tiny, out, cfg), capsys)
    assert code == 2, err
    for fragment in fragments:
        assert_one_error(err, cfg, line, fragment)
    assert not out.exists()


def test_config_non_utf8_and_missing(tiny, tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(b"seed: 1\ntrain:\n  epochs: \xff\n")
    out = tmp_path / "run"
    code, _, err = run_main(train_args(tiny, out, cfg), capsys)
    assert code == 2
    assert_one_error(err, cfg, 3, "UTF-8")
    code, _, err = run_main(train_args(tiny, out, tmp_path / "absent.yaml"), capsys)
    assert code == 2
    assert_one_error(err, tmp_path / "absent.yaml", None, "not found")
    assert not out.exists()


def test_out_of_range_in_preset_layer_points_at_the_file_that_set_it(tiny, tmp_path, capsys):
    """The config file overrides a preset: the error names the file (and line) that set the bad value."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: synthetic\nencoder:\n  heads: 3\n")
    code, _, err = run_main(train_args(tiny, tmp_path / "run", cfg), capsys)
    assert code == 2
    assert_one_error(err, cfg, 3, "divisible by encoder.heads")


# --------------------------------------------------------------------------- command-line arguments

CLI_CASES = [
    pytest.param(["--epochs", "0"], "--epochs: train.epochs must be positive", id="epochs-zero"),
    pytest.param(["--lr", "-1"], "--lr: train.lr must be positive", id="negative-lr"),
    pytest.param(["--noise-ratio", "1.5"], "--noise-ratio: noise.ratio must be in [0, 1]", id="noise-ratio"),
    pytest.param(["--mask-ratio", "-0.2"], "--mask-ratio: noise.mask must be in [0, 1]", id="mask-ratio"),
    pytest.param(["--batch-size", "0"], "--batch-size: train.batch_size must be positive", id="batch-size-zero"),
    pytest.param(["--epochs", "abc"], "--epochs", id="epochs-not-integer"),
    pytest.param(["--epcohs", "3"], "unrecognized arguments: --epcohs", id="unknown-flag"),
    pytest.param(["--readout", "median"], "encoder.readout 'median'", id="bad-readout"),
    pytest.param(["--modalities", "structure,sound"], "'sound' is not available", id="unknown-modality"),
    pytest.param(["--ties", "pessimistic"], "--ties", id="bad-ties-choice"),
    pytest.param(["--device", "tpu"], "device must be", id="bad-device"),
    pytest.param(["--residual-gate"], "--residual-gate: completion.residual_gate", id="gate-without-residual"),
]


@pytest.mark.parametrize("extra,fragment", CLI_CASES)
def test_bad_cli_argument(tiny, cfg_file, tmp_path, capsys, extra, fragment):
    out = tmp_path / "run"
    code, _, err = run_main(train_args(tiny, out, cfg_file, *extra), capsys)
    assert code == 2, err
    assert_one_error(err, None, None, fragment)
    assert not out.exists()


def test_cli_misc_errors(tiny, cfg_file, tmp_path, capsys):
    code, _, err = run_main(["train", "--output", tmp_path / "run"], capsys)
    assert code == 2 and "--dataset is required" in assert_one_error(err)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run_main(train_args(tiny, blocker, cfg_file), capsys)
    assert code == 2
    assert_one_error(err, blocker, None, "not a folder")
    code, _, err = run_main(train_args(tiny, blocker / "run", cfg_file), capsys)  # folder below a file
    assert code == 2
    assert_one_error(err, blocker / "run", None, "cannot create the output folder")
    assert blocker.read_text() == "x"
    code, _, err = run_main(["evaluate", tmp_path / "no-run"], capsys)
    assert code == 2
    assert_one_error(err, tmp_path / "no-run", None, "not found")
    code, _, err = run_main(["evaluate", tmp_path, "--limit", "-1"], capsys)
    assert code == 2
    assert_one_error(err, None, None, "--limit must not be negative")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda(tiny, cfg_file, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_main(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--device", "cuda"],
                            capsys)
    assert code == 2
    assert_one_error(err, None, None, "CUDA is not available")
    assert not out.exists()


def test_real_process_stderr_is_exactly_one_line(tmp_path):
    """Through a real ``python -m snagkg`` process: nothing else (warnings, tracebacks) on stderr."""
    ds = write_tiny_openke(tmp_path / "ds")
    replace_line(ds / "train2id.txt", 7, "0 1 7")
    out = tmp_path / "run"
    p = run_cli_subprocess(["train", "--dataset", ds, "--output", out, "--no-progress", "--epochs", "1"])
    assert p.returncode == 2
    assert_one_error(p.stderr, ds / "train2id.txt", 7, "unknown relation id 7")
    assert p.stdout == "" and not out.exists()


# --------------------------------------------------------------------------- checkpoints and run folders

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-epoch run on the tiny dataset (trained once, copied by each test)."""
    root = tmp_path_factory.mktemp("trained")
    ds = write_tiny_openke(root / "ds")
    other = write_tiny_openke(root / "other", unseen_test_entity=True)        # 13 entities
    shifted = write_tiny_openke(root / "shifted", shift_train=1)              # same sizes, other graph
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(TINY_CONFIG)
    cfg = snagkg.resolve_config(config_file=str(cfg_path), overrides={"dataset": str(ds), "device": "cpu"})
    snagkg.train(cfg, root / "run", progress=False, echo=lambda s: None)
    return {"root": root, "ds": ds, "other": other, "shifted": shifted, "cfg": cfg_path}


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(trained["root"] / "run", dst)
    return dst


def _edit_config(run: Path, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` in the run's config.yaml; returns the 1-based line edited."""
    lines = (run / "config.yaml").read_text().split("\n")
    for i, line in enumerate(lines):
        if old in line:
            lines[i] = line.replace(old, new)
            (run / "config.yaml").write_text("\n".join(lines))
            return i + 1
    raise AssertionError(f"{old!r} not in config.yaml")


def _torch_list(path: Path):
    torch.save([1, 2, 3], path)


CHECKPOINT_CASES = [
    # (edit of the copied run folder, file named, fragment)
    pytest.param(lambda t, r: _edit_config(r, str(t["ds"]), str(t["other"])), "best.pt", "entities is 12",
                 id="dataset-changed-entities"),
    pytest.param(lambda t, r: _edit_config(r, str(t["ds"]), str(t["shifted"])), "best.pt", "train_sha1",
                 id="dataset-changed-train-triples"),
    pytest.param(lambda t, r: _edit_config(r, "hidden: 8", "hidden: 16"), "best.pt", "'structure:8,image:4' in the checkpoint",
                 id="config-changed-hidden"),
    pytest.param(lambda t, r: _edit_config(r, "readout: mean", "readout: graph"), "best.pt", "readout",
                 id="config-changed-readout"),
    pytest.param(lambda t, r: (r / "best.pt").write_bytes((r / "best.pt").read_bytes()[:500]), "best.pt",
                 "not a loadable snagkg checkpoint", id="best-truncated"),
    pytest.param(lambda t, r: (r / "best.pt").write_bytes(b""), "best.pt", "not a loadable", id="best-empty"),
    pytest.param(lambda t, r: _torch_list(r / "best.pt"), "best.pt", "not a snagkg checkpoint", id="best-a-list"),
    pytest.param(lambda t, r: shutil.copy(r / "checkpoint.pt", r / "best.pt"), "best.pt", "not a snagkg model file",
                 id="best-is-a-training-checkpoint"),
    pytest.param(lambda t, r: (r / "best.pt").unlink(), "best.pt", "checkpoint not found", id="best-missing"),
    pytest.param(lambda t, r: (r / "config.yaml").unlink(), "config.yaml", "not found", id="config-missing"),
]


@pytest.mark.parametrize("edit,name,fragment", CHECKPOINT_CASES)
def test_evaluate_refuses_mismatched_or_broken_run(trained, run_copy, capsys, edit, name, fragment):
    edit(trained, run_copy)
    before = snapshot(run_copy)
    code, stdout, err = run_main(["evaluate", run_copy, "--device", "cpu"], capsys)
    assert code == 2, err
    assert_one_error(err, run_copy / name, None, fragment)
    assert stdout == ""
    assert snapshot(run_copy) == before


def test_evaluate_bad_run_config_names_line(run_copy, capsys):
    line = _edit_config(run_copy, "lr: 0.01", "lr: -0.01")
    code, _, err = run_main(["evaluate", run_copy], capsys)
    assert code == 2
    assert_one_error(err, run_copy / "config.yaml", line, "train.lr must be positive")
    line = _edit_config(run_copy, "lr: -0.01", "lr_: 0.01")
    code, _, err = run_main(["evaluate", run_copy], capsys)
    assert code == 2
    assert_one_error(err, run_copy / "config.yaml", line, "did you mean 'train.lr'")


RESUME_CASES = [
    pytest.param(lambda t, r: _edit_config(r, str(t["ds"]), str(t["other"])), "checkpoint.pt", "entities is 12",
                 id="dataset-changed"),
    pytest.param(lambda t, r: _edit_config(r, str(t["ds"]), str(t["shifted"])), "checkpoint.pt", "train_sha1",
                 id="dataset-changed-same-size"),
    pytest.param(lambda t, r: _edit_config(r, "hidden: 8", "hidden: 16"), "checkpoint.pt",
                 "'structure:8,image:4' in the checkpoint", id="config-changed-hidden"),
    pytest.param(lambda t, r: (r / "checkpoint.pt").write_bytes((r / "checkpoint.pt").read_bytes()[:300]),
                 "checkpoint.pt", "not a loadable", id="checkpoint-truncated"),
    pytest.param(lambda t, r: shutil.copy(r / "best.pt", r / "checkpoint.pt"), "checkpoint.pt",
                 "not a snagkg training checkpoint", id="checkpoint-is-a-model-file"),
    # issue 34: a folder with config.yaml and no checkpoint.pt resumes from epoch 0 (tests/test_guarantees.py)
    pytest.param(lambda t, r: ((r / "checkpoint.pt").unlink(), (r / "config.yaml").unlink()), "",
                 "nothing to resume", id="no-checkpoint-no-config"),
]


@pytest.mark.parametrize("edit,name,fragment", RESUME_CASES)
def test_resume_refuses_mismatched_checkpoint_and_changes_nothing(trained, run_copy, capsys, edit, name, fragment):
    edit(trained, run_copy)
    before = snapshot(run_copy)
    code, _, err = run_main(["train", "--output", run_copy, "--resume", "--epochs", "3", "--no-progress"], capsys)
    assert code == 2, err
    assert_one_error(err, run_copy / name if name else run_copy, None, fragment)
    assert snapshot(run_copy) == before


def test_resume_with_a_different_dataset_flag_is_refused(trained, run_copy, capsys):
    """`--resume` with the original command against a run whose config.yaml dataset was changed."""
    line = _edit_config(run_copy, str(trained["ds"]), str(trained["other"]))
    before = snapshot(run_copy)
    code, _, err = run_main(train_args(trained["ds"], run_copy, trained["cfg"], "--resume"), capsys)
    assert code == 2, err
    assert_one_error(err, run_copy / "config.yaml", line, "cannot resume with a different dataset")
    assert snapshot(run_copy) == before


def test_resume_with_a_different_setting_is_refused(trained, run_copy, capsys):
    before = snapshot(run_copy)
    line = 1 + (run_copy / "config.yaml").read_text().split("\n").index("  lr: 0.01")
    code, _, err = run_main(train_args(trained["ds"], run_copy, trained["cfg"], "--resume", "--lr", "0.5"), capsys)
    assert code == 2, err
    assert_one_error(err, run_copy / "config.yaml", line, "cannot resume with a different train.lr")
    assert snapshot(run_copy) == before


# --------------------------------------------------------------------------- fuzzing the line parsers

_FUZZ_DIR = Path(tempfile.mkdtemp(prefix="snagkg-fuzz-"))

TOKENS = st.sampled_from([
    "0", "1", "2", "3", "11", "12", "-1", "+1", "007", "1.0", "1e3", "x", "e1", "٣", "１", "1_0", "\t", " ", "  ",
    "9" * 25, "9" * 5000, "\ufeff", "\u00a0", "\u2028", "\x0b", "\x00", "\r", "é", "名",
])
LINE = st.lists(TOKENS, max_size=5).map(" ".join)
TEXT_FILE = st.lists(LINE, max_size=8).map("\n".join).map(lambda s: s.encode("utf-8"))
ANY_FILE = st.one_of(st.binary(max_size=120), TEXT_FILE,
                     st.tuples(TEXT_FILE, st.binary(max_size=6), TEXT_FILE).map(lambda t: b"".join(t)))


def _fuzz_path(data: bytes) -> Path:
    path = _FUZZ_DIR / "f.txt"
    path.write_bytes(data)
    return path


def _only_snag_errors(fn):
    try:
        fn()
    except SnagError as exc:
        text = str(exc)
        assert "\n" not in text and len(text) < 400, text
        assert exc.path is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=ANY_FILE, with_count=st.booleans(), id_first=st.booleans())
def test_fuzz_read_lines_and_name_ids(data, with_count, id_first):
    path = _fuzz_path(data)
    _only_snag_errors(lambda: read_lines(path))
    _only_snag_errors(lambda: read_name_ids(path, with_count=with_count, id_first=id_first))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=ANY_FILE, columns=st.integers(1, 3), with_count=st.booleans(),
       bound=st.sampled_from([-1, 0, 1, 5, 12]))
def test_fuzz_read_int_rows(data, columns, with_count, bound):
    path = _fuzz_path(data)

    def read():
        rows, numbers = read_int_rows(path, columns, with_count, [("id", bound)] * columns)
        assert rows.shape == (len(numbers), columns) and rows.dtype == np.int64
        assert (rows >= 0).all() and (bound < 0 or (rows < bound).all())

    _only_snag_errors(read)
    _only_snag_errors(lambda: read_missing_ids(path, 12))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=120), st.text(
    alphabet=st.sampled_from(list("abtrinepochs:{}[],- \n\t0123456789.!&*#'\"?|>@%")), max_size=80
).map(str.encode)))
def test_fuzz_yaml_config_reader(data):
    path = _fuzz_path(data)

    def read():
        d, lines = _read_yaml(path)
        apply_mapping(RunConfig(), d, str(path), lines)

    _only_snag_errors(read)
