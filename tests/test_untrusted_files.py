"""No code runs from untrusted files: checkpoints (weights_only), YAML configs
(safe loader, no tags), feature tables (no pickled objects)."""
from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import snagkg
from snagkg.config.schema import resolve
from snagkg.runtime.errors import SnagError
from snagkg.data.tables import load_npy

from _helpers import (TINY_CONFIG, assert_one_error, run_cli_subprocess, run_main, snapshot,
                                   write_tiny_openke)


class Payload:
    """Unpickling this object would run ``os.system`` (create the marker file)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class PayloadCreate:
    """Unpickling would call ``open(marker, "w")`` (no shell needed)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious(kind: str, marker: Path, path: Path) -> None:
    if kind == "torch-zip":  # the format torch.save writes, with a payload inside
        torch.save({"kind": "snagkg-model", "model": Payload(marker)}, path)
    elif kind == "torch-legacy":
        torch.save({"kind": "snagkg-model", "model": PayloadCreate(marker)}, path, _use_new_zipfile_serialization=False)
    elif kind == "raw-pickle":
        path.write_bytes(pickle.dumps(Payload(marker)))
    else:
        raise ValueError(kind)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    ds = write_tiny_openke(root / "ds")
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(TINY_CONFIG)
    cfg = resolve(config_file=str(cfg_path), overrides={"dataset": str(ds), "device": "cpu"})
    snagkg.train(cfg, root / "run", progress=False, echo=lambda s: None)
    return root


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(trained / "run", dst)
    return dst


def test_the_payload_really_works_when_unpickled_unsafely(tmp_path):
    """Control: the crafted file does create the marker if loaded with pickle (so the tests below mean something)."""
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    _malicious("torch-zip", marker, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind", ["torch-zip", "torch-legacy", "raw-pickle"])
def test_crafted_best_pt_is_refused_by_evaluate(run_copy, tmp_path, capsys, kind):
    marker = tmp_path / "PWNED"
    _malicious(kind, marker, run_copy / "best.pt")
    before = snapshot(run_copy)
    code, stdout, err = run_main(["evaluate", run_copy], capsys)
    assert code == 2, err
    assert_one_error(err, run_copy / "best.pt", None, "not a loadable snagkg checkpoint")
    assert not marker.exists(), "code from a checkpoint was executed"
    assert stdout == "" and snapshot(run_copy) == before


@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
def test_crafted_checkpoint_pt_is_refused_by_resume(run_copy, tmp_path, capsys, kind):
    marker = tmp_path / "PWNED"
    _malicious(kind, marker, run_copy / "checkpoint.pt")
    before = snapshot(run_copy)
    code, _, err = run_main(["train", "--output", run_copy, "--resume", "--epochs", "3", "--no-progress"], capsys)
    assert code == 2, err
    assert_one_error(err, run_copy / "checkpoint.pt", None, "not a loadable snagkg checkpoint")
    assert not marker.exists(), "code from a checkpoint was executed"
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
def test_crafted_best_pt_in_a_real_process(run_copy, tmp_path, kind):
    """Through ``python -m snagkg``: refused, and stderr is the one error line (no torch warning)."""
    marker = tmp_path / "PWNED"
    _malicious(kind, marker, run_copy / "best.pt")
    p = run_cli_subprocess(["evaluate", run_copy])
    assert p.returncode == 2
    assert_one_error(p.stderr, run_copy / "best.pt", None, "refusing to unpickle")
    assert not marker.exists() and p.stdout == ""


def test_python_api_refuses_crafted_checkpoint_too(run_copy, tmp_path):
    marker = tmp_path / "PWNED"
    _malicious("torch-zip", marker, run_copy / "best.pt")
    with pytest.raises(SnagError, match="not a loadable"):
        snagkg.load_run(run_copy)
    assert not marker.exists()


EVIL_YAML = [
    pytest.param("!!python/object/apply:os.system ['touch {m}']\n", 1, id="top-level-apply"),
    pytest.param("seed: !!python/object/apply:os.system ['touch {m}']\n", 1, id="value-apply"),
    pytest.param("train:\n  epochs: 2\n  lr: !!python/object/apply:os.system ['touch {m}']\n", 3, id="nested-apply"),
    pytest.param("seed: !!python/object/new:os.system ['touch {m}']\n", 1, id="object-new"),
    pytest.param("seed: !!python/name:os.system\n", 1, id="python-name"),
    pytest.param("!!python/object:builtins.dict {{seed: 1}}\n", 1, id="tagged-mapping"),
    pytest.param("train: !!python/object/apply:builtins.dict [{{epochs: 1}}]\n", 1, id="tagged-section"),
    pytest.param("modalities: !!python/tuple [structure]\n", 1, id="python-tuple"),
]


@pytest.mark.parametrize("text,line", EVIL_YAML)
def test_yaml_with_python_tags_is_refused_without_running(tmp_path, capsys, text, line):
    marker = tmp_path / "PWNED"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(text.format(m=marker))
    out = tmp_path / "run"
    ds = write_tiny_openke(tmp_path / "ds")
    code, _, err = run_main(["train", "--dataset", ds, "--output", out, "--config", cfg, "--no-progress"], capsys)
    assert code == 2, err
    assert_one_error(err, cfg, line, "is not allowed in a config")
    assert not marker.exists() and not out.exists()


def test_yaml_tag_in_a_saved_run_config_is_refused(run_copy, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    text = re.sub(r"(?m)^seed: 0$", f"seed: !!python/object/apply:os.system ['touch {marker}']",
                  (run_copy / "config.yaml").read_text())
    (run_copy / "config.yaml").write_text(text)
    line = 1 + [i for i, x in enumerate(text.split("\n")) if x.startswith("seed: ")][0]
    code, _, err = run_main(["evaluate", run_copy], capsys)
    assert code == 2
    assert_one_error(err, run_copy / "config.yaml", line, "is not allowed in a config")
    assert not marker.exists()


@pytest.mark.parametrize("how", ["object-array", "pickle-file"])
def test_feature_npy_with_pickled_objects_is_refused(tmp_path, capsys, how):
    marker = tmp_path / "PWNED"
    ds = write_tiny_openke(tmp_path / "ds")
    npy = ds / "features" / "image.npy"
    if how == "object-array":
        arr = np.empty((12, 1), dtype=object)
        arr[:] = Payload(marker)
        np.save(npy, arr, allow_pickle=True)
    else:
        npy.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(SnagError, match="pickled"):
        load_npy(npy)
    out = tmp_path / "run"
    code, _, err = run_main(["train", "--dataset", ds, "--output", out, "--epochs", "1", "--no-progress"], capsys)
    assert code == 2
    assert_one_error(err, npy, None, "pickled")
    assert not marker.exists() and not out.exists()
