"""Memory-mapped feature tables (``completion.feature_storage: mmap``, snagkg.data.mapped) with streamed
statistics: the rows, loss and metrics of tables in memory (sparse entity updates: test_sparse_updates.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _helpers import run_main
from snagkg.runtime.errors import SnagError
from snagkg.data.mapped import MappedFeatureTable, open_feature_table, streamed_statistics
from snagkg.data.feature_dir import load_feature_dir
from snagkg.data.tables import make_table
from _helpers import small_completion_task as _task




# -- memory-mapped tables -------------------------------------------------------------------------
def test_streamed_statistics_match_numpy_for_any_chunk():
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((103, 7)) * 3 + 5).astype(np.float32)
    missing = rng.random(103) < 0.3
    real = values[~missing].astype(np.float64)
    for chunk in (1, 7, 50, 1000):
        mean, std = streamed_statistics(values, missing, "x", chunk)
        np.testing.assert_allclose(mean, real.mean(0), rtol=1e-6)
        np.testing.assert_allclose(std, real.std(0), rtol=1e-5)


def test_a_mapped_table_gives_the_rows_of_the_table_in_memory(tiny_dataset):
    folder = tiny_dataset / "features"
    memory = load_feature_dir(folder, 300, seed=5, storage="memory")
    mapped = load_feature_dir(folder, 300, seed=5, storage="mmap")
    assert set(memory) == set(mapped) == {"image", "text"}
    for name, table in mapped.items():
        assert isinstance(table, MappedFeatureTable) and isinstance(table.values, np.memmap)
        ref = memory[name]
        assert table.missing.any() and (table.missing == ref.missing).all()
        np.testing.assert_allclose(table.mean, ref.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(table.std, ref.std, rtol=1e-5, atol=1e-6)
        idx = np.array([299, 3, 3, 0, *np.flatnonzero(ref.missing)[:5]])
        np.testing.assert_allclose(table.rows(idx), ref.values[idx], rtol=1e-5, atol=1e-5)


def test_a_nan_row_not_marked_missing_is_a_one_line_error(tmp_path):
    values = np.ones((6, 3), dtype=np.float32)
    values[4, 1] = np.nan
    np.save(tmp_path / "image.npy", values)
    with pytest.raises(SnagError, match=r"image\.npy.*row 4 \(entity id 4\) contains NaN"):
        open_feature_table("image", tmp_path / "image.npy", None, chunk=2)
    missing = np.zeros(6, dtype=bool)
    missing[4] = True
    table = open_feature_table("image", tmp_path / "image.npy", missing, chunk=2)
    assert np.isfinite(table.rows(np.arange(6))).all()
    ref = make_table("image", values, missing)
    np.testing.assert_allclose(table.rows(np.arange(6)), ref.values, atol=1e-6)


def test_training_on_mapped_tables_gives_the_loss_and_metrics_of_tables_in_memory(tiny_dataset):
    tasks = {s: _task(tiny_dataset, s) for s in ("memory", "mmap")}
    assert tasks["mmap"].model.entities.mapped and not tasks["memory"].model.entities.mapped
    batch = tasks["memory"].train_triples[:32]
    losses = {}
    for s, task in tasks.items():
        task.model.train()
        task.model.refresh_noise(torch.Generator().manual_seed(1))
        losses[s] = task.step(batch, torch.Generator().manual_seed(7))
    assert torch.allclose(losses["mmap"], losses["memory"], rtol=1e-5, atol=1e-6)
    metrics = {s: task.evaluate("test") for s, task in tasks.items()}
    assert metrics["mmap"]["mrr"] == pytest.approx(metrics["memory"]["mrr"], abs=1e-4)


def test_the_training_step_never_reads_a_mapped_table_whole(tiny_dataset, monkeypatch):
    task = _task(tiny_dataset, "mmap")
    task.model.train()
    task.model.refresh_noise(torch.Generator().manual_seed(1))
    read = []
    original = MappedFeatureTable.rows
    monkeypatch.setattr(MappedFeatureTable, "rows", lambda self, idx: read.append(len(idx)) or original(self, idx))
    task.step(task.train_triples[:4], torch.Generator().manual_seed(7))
    assert read and max(read) < 300  # only the batch's entities (4 positives, 6 negatives each)




# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_trains_with_mapped_tables_and_sparse_updates_and_resumes_exactly(tiny_dataset, tmp_path, capsys):
    common = ["train", "--dataset", tiny_dataset, "--epochs", "2", "--batch-size", "128",
              "--feature-storage", "mmap", "--entity-updates", "sparse", "--hidden", "16",
              "--eval-every", "1", "--no-progress"]
    whole = tmp_path / "whole"
    code, out, err = run_main([*common, "--output", whole], capsys)
    assert code == 0, err
    cfg = (whole / "config.yaml").read_text()
    assert "feature_storage: mmap" in cfg and "entity_updates: sparse" in cfg
    part = tmp_path / "part"
    assert run_main([*common, "--output", part, "--epochs", "1"], capsys)[0] == 0
    code, out, err = run_main([*common, "--output", part, "--resume"], capsys)
    assert code == 0, err
    a = json.loads((whole / "results.json").read_text())["test"]
    b = json.loads((part / "results.json").read_text())["test"]
    assert a["mrr"] == b["mrr"] and a["mrr"] > 0


def test_overriding_rows_of_a_mapped_table_reads_it_into_memory_and_restores_it(tiny_dataset):
    ent = _task(tiny_dataset, "mmap").model.entities
    before = ent.rows("image", torch.arange(300)).clone()
    rows = torch.tensor([2, 7])
    with ent.overridden_rows("image", rows, torch.zeros(2, before.shape[1]), mark_missing=True):
        assert "image" not in ent._mapped  # now a buffer
        assert not ent.table("image")[rows].any() and ent.missing("image")[rows].all()
    assert torch.equal(ent.table("image"), before)


def test_make_table_owning_its_values_fills_them_in_place_with_the_same_result():
    """``make_table(..., own=True)`` (the builders of the alignment bags): no copy of the table, the same
    filled values, mean and std as the copying path, which leaves the caller's array untouched."""
    rng = np.random.default_rng(3)
    values = rng.standard_normal((50, 6)).astype(np.float32)
    missing = np.zeros(50, dtype=bool)
    missing[[2, 9, 31]] = True
    original = values.copy()
    copied = make_table("char", values, missing, seed=4)
    assert np.array_equal(values, original) and copied.values is not values
    owned = make_table("char", values, missing, seed=4, own=True)
    assert owned.values is values  # filled in place
    assert np.array_equal(owned.values, copied.values)
    assert np.array_equal(owned.mean, copied.mean) and np.array_equal(owned.std, copied.std)
