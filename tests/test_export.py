"""``snagkg export`` and ``snagkg.export_run``: the fused vectors, relation phases and modality weights of
a run, written as npz, tsv or parquet and read back exactly."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import snagkg
from snagkg.api.export import load_export
from _helpers import run_main as _cli
from snagkg.runtime.errors import SnagError


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".npz", ".tsv", ".parquet"])
def test_export_round_trips_exactly(run, task, tmp_path, capsys, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"vectors{suffix}"
    code, stdout, err = _cli(["export", run, "--output", out, "--device", "cpu"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["format"] == suffix[1:]
    data = load_export(out)
    assert np.array_equal(data["entity_vectors"], task.entity_vectors().numpy())
    assert list(data["entity_names"]) == task.kg.entities
    assert np.array_equal(data["entity_ids"], np.arange(task.kg.num_entities))
    sc = task.model.interaction
    with torch.no_grad():
        phases = sc.phases(torch.arange(task.kg.num_relations)).numpy()
    assert np.array_equal(data["relation_phases"], phases)
    assert list(data["relation_names"]) == task.kg.relations
    assert list(data["modalities"]) == ["structure", "image", "text"]
    assert np.array_equal(data["modality_weights"], task.model.modality_weights().numpy())
    reps = task.model.entities
    assert np.array_equal(data["missing"], np.stack([reps.missing(m).numpy() for m in ("image", "text")], 1))


def test_export_of_an_alignment_run_has_normalised_vectors_and_no_relations(alignment_run, tmp_path):
    summary = snagkg.export_run(alignment_run, tmp_path / "a.npz", device="cpu")
    assert summary["task"] == "alignment"
    data = load_export(tmp_path / "a.npz")
    t = snagkg.load_run(alignment_run, device="cpu")
    assert np.array_equal(data["entity_vectors"], t.model.entity_vectors().numpy())
    assert np.allclose(np.linalg.norm(data["entity_vectors"], axis=1), 1.0, atol=1e-5)
    assert "relation_names" not in data and list(data["entity_names"]) == t.pair.entities
    assert np.allclose(data["modality_weights"].sum(1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_export_errors(run, tmp_path, capsys, monkeypatch):
    old = tmp_path / "v.npz"
    old.write_bytes(b"keep")
    code, _, err = _cli(["export", run, "--output", tmp_path / "v.csv"], capsys)
    assert code == 2 and "unknown export format '.csv'" in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    code, _, err = _cli(["export", run, "--output", tmp_path / "v.parquet"], capsys)
    assert code == 2 and "pip install 'snagkg[parquet]'" in err and not (tmp_path / "v.parquet").exists()
    with pytest.raises(SnagError, match="not found"):
        load_export(tmp_path / "none.npz")
    assert old.read_bytes() == b"keep"
