"""The streamed synthetic generator (``snagkg synthetic``) and the fast OpenKE id-file readers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from snagkg.data import lines
from snagkg.cli.main import main
from snagkg.data.datasets.graph import triple_keys
from snagkg.data.datasets.openke import read_openke
from snagkg.data.datasets.synthetic_stream import StreamOptions, _Latent, write_synthetic
from snagkg.runtime.errors import SnagError

N_ENT, N_TRI = 3000, 30000


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """One dataset of 3000 entities and 30000 triples (default chunk)."""
    folder = tmp_path_factory.mktemp("synth") / "ds"
    write_synthetic(folder, N_ENT, N_TRI, seed=5)
    return folder


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_reads_back_with_right_counts_and_no_duplicates(written):
    kg = read_openke(written, features=True)
    assert (kg.num_entities, kg.num_relations) == (N_ENT, 16)
    assert (len(kg.train), len(kg.valid), len(kg.test)) == (24000, 3000, 3000)
    assert kg.notes == []  # valid already distinct and disjoint from train/test
    every = kg.all_triples()
    assert len(np.unique(triple_keys(every, N_ENT, 16))) == N_TRI
    assert every.min() >= 0 and every[:, [0, 2]].max() < N_ENT and every[:, 1].max() < 16
    assert not (every[:, 0] == every[:, 2]).any()
    assert kg.entities[:2] == ["entity_0", "entity_1"] and kg.relations[15] == "relation_15"
    for name, dim in (("image", 64), ("text", 32)):
        table = kg.features[name]
        assert table.values.shape == (N_ENT, dim)
        assert 0.17 < table.missing_fraction < 0.23
        raw = np.load(written / "features" / f"{name}.npy")
        assert raw.dtype == np.float32
        np.testing.assert_array_equal(np.isnan(raw).all(axis=1), table.missing)
        assert np.isfinite(raw[~table.missing]).all()


def test_tails_are_the_brute_force_nearest_members():
    q = 2000
    for n in (40, 2000):  # small clusters (fewer members than candidates) and large ones
        lat = _Latent(StreamOptions(n, 10), np.random.default_rng(1))
        rng = np.random.default_rng(2)
        h, r, pick = rng.integers(0, n, q), rng.integers(0, 16, q), rng.integers(0, 3, q)
        got = lat.tails(h, r, pick)
        cluster = lat.cells @ lat.powers
        target = ((lat.cells[h] + lat.shift[r]) % lat.lattice) @ lat.powers
        dist = np.abs(np.sin(((lat.fine[h] + lat.theta[r])[:, None] - lat.fine[None, :]) / 2))
        dist[cluster[None, :] != target[:, None]] = np.inf
        dist[np.arange(q), h] = np.inf
        want = np.argsort(dist, axis=1)[np.arange(q), pick]
        want = np.where(np.isfinite(dist[np.arange(q), want]), want, -1)
        np.testing.assert_array_equal(got, want)
        assert (got >= 0).mean() > (0.05 if n == 40 else 0.99)


def test_bytes_do_not_depend_on_chunk_and_repeat_with_the_seed(written, tmp_path):
    write_synthetic(tmp_path / "small-chunks", N_ENT, N_TRI, seed=5, chunk=777)
    write_synthetic(tmp_path / "other-seed", N_ENT, N_TRI, seed=6, chunk=5000)
    base = _files(written)
    assert set(base) == {"entity2id.txt", "relation2id.txt", "train2id.txt", "valid2id.txt", "test2id.txt",
                         "features/image.npy", "features/text.npy", "features/image.missing.txt",
                         "features/text.missing.txt"}
    assert _files(tmp_path / "small-chunks") == base
    other = _files(tmp_path / "other-seed")
    for name in ("train2id.txt", "features/image.npy", "features/text.missing.txt"):
        assert other[name] != base[name]
    assert other["entity2id.txt"] == base["entity2id.txt"]


def test_refuses_a_non_empty_output_unless_overwrite(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(SnagError, match="not empty"):
        write_synthetic(out, 100, 500)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    write_synthetic(out, 100, 500, overwrite=True, image_dim=0)
    assert sorted(p.name for p in out.iterdir()) == ["entity2id.txt", "features", "relation2id.txt",
                                                     "test2id.txt", "train2id.txt", "valid2id.txt"]
    assert [p.name for p in (out / "features").iterdir()] == ["text.missing.txt", "text.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no partial or old folder left


def test_a_failed_run_leaves_no_half_dataset(tmp_path, monkeypatch):
    from snagkg.data.datasets import synthetic_stream

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic_stream, "_write_table", boom)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic(tmp_path / "ds", 100, 500)
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_a_json_summary(tmp_path, capsys):
    code = main(["synthetic", "--entities", "500", "--triples", "4000", "--output", str(tmp_path / "ds"),
                 "--relations", "8", "--text-dim", "8", "--missing", "0.5", "--split", "0.5,0.25,0.25",
                 "--seed", "3", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0 and out.err == ""
    summary = json.loads(out.out)
    assert out.out.count("\n") == 1
    assert (summary["entities"], summary["relations"]) == (500, 8)
    assert (summary["train"], summary["valid"], summary["test"]) == (2000, 1000, 1000)
    assert summary["modalities"]["text"]["dim"] == 8
    assert 0.4 < summary["modalities"]["text"]["missing"] < 0.6
    assert (tmp_path / "ds" / "train2id.txt").read_text().split("\n", 1)[0] == "2000"


@pytest.mark.parametrize("extra, fragment", [
    (["--entities", "1"], "--entities must be at least 2"),
    (["--triples", "0"], "--triples must be at least 1"),
    (["--split", "0.8,0.1,0.2"], "summing to 1"),
    (["--split", "0.8,0.2"], "three fractions"),
    (["--image-dim", "-1"], "--image-dim must be 0"),
    (["--text-dim", "-3"], "--text-dim must be 0"),
    (["--missing", "1"], "--missing must be in [0, 1)"),
    (["--triples", "5"], "leaves the valid split empty"),
    (["--triples", "3000"], "at most 2400 triples"),
    (["--entities", "x"], "invalid int value"),
])
def test_cli_bad_values_exit_2_and_write_nothing(tmp_path, capsys, extra, fragment):
    args = {"--entities": "100", "--triples": "1000", "--output": str(tmp_path / "out" / "ds")}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    code = main(["synthetic", *[x for kv in args.items() for x in kv], "--relations", "16", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err
    assert list(tmp_path.iterdir()) == []


def _strict(monkeypatch):
    """Turn the fast paths off (the per-line readers only)."""
    monkeypatch.setattr(lines, "_fast_int_rows", lambda *a: None)
    monkeypatch.setattr(lines, "_fast_name_ids", lambda *a: None)


@pytest.mark.parametrize("text", [
    "3\n0 1 2\n3\t4 5\n6 7  8\n", "\ufeff2\r\n0 1 2\r\n3 4 5\r\n\r\n\n", "1\n007 0 1", "2\n0 1 2\n\n3 4 5\n",
    "2\n0 1 2\n3 4\n", "3\n0 1 2\n", "2\n0 1 2\n0 9 1\n", "1\n0 -1 2\n", "1\n0 1.0 2\n", "1\n0 ٣ 2\n",
    "1\n99999999999999999999 0 0\n", "1 1\n0 1 2\n", "0\n", "", "1\n0 1\r2\n",
])
def test_fast_triple_reader_matches_the_strict_one(tmp_path, monkeypatch, text):
    path = tmp_path / "train2id.txt"
    path.write_bytes(text.encode())
    limits = [("entity id", 8), ("entity id", 8), ("relation id", 3)]

    def read():
        try:
            rows, numbers = lines.read_int_rows(path, 3, True, limits)
            return rows.tolist(), numbers.tolist()
        except SnagError as exc:
            return str(exc)
    fast = read()
    with monkeypatch.context() as m:
        _strict(m)
        assert read() == fast


@pytest.mark.parametrize("text", [
    "2\na b\t0\nc\t1\n", "2\nx\t1\ny\t0\n\n", "2\na 0\nb 1\n", "2\na\t0\na\t1\n", "2\na\t0\nb\t0\n",
    "2\na \t0\nb\t1\n", "2\n\t0\nb\t1\n", "2\na\t0\r\nb\t1\r\n", "3\na\t0\nb\t1\n", "1\na\t٣\n",
    "2\na\t0\n\nb\t1\n", "2\na\t0\tx\nb\t1\n",
])
def test_fast_name_reader_matches_the_strict_one(tmp_path, monkeypatch, text):
    path = tmp_path / "entity2id.txt"
    path.write_bytes(text.encode())

    def read():
        try:
            names, ids, numbers = lines.read_name_id_lines(path, True)
            return names, ids.tolist(), numbers.tolist()
        except SnagError as exc:
            return str(exc)
    fast = read()
    with monkeypatch.context() as m:
        _strict(m)
        assert read() == fast


def test_fast_paths_take_the_generated_files(written):
    limits = [("entity id", N_ENT), ("entity id", N_ENT), ("relation id", 16)]
    rows, numbers = lines._fast_int_rows(written / "train2id.txt", 3, True, limits)
    assert rows.shape == (24000, 3) and numbers[0] == 2 and numbers[-1] == 24001
    names, ids, _ = lines._fast_name_ids(written / "entity2id.txt", True, False)
    assert names[-1] == f"entity_{N_ENT - 1}" and ids.tolist() == list(range(N_ENT))


def test_read_openke_still_cleans_valid_and_warns_about_unseen_entities(tmp_path):
    ds = tmp_path / "ds"
    write_synthetic(ds, 100, 600, seed=1)
    train = (ds / "train2id.txt").read_text().splitlines()[1:]
    valid = (ds / "valid2id.txt").read_text().splitlines()[1:]
    assert read_openke(ds, features=False).notes == []
    (ds / "valid2id.txt").write_text(f"{len(valid) + 2}\n" + "\n".join(valid + [valid[0], train[0]]) + "\n")
    kg = read_openke(ds, features=False)
    assert len(kg.valid) == len(valid)
    assert kg.notes == [f"valid cleaned: {len(valid) + 2} lines -> {len(valid)} triples "
                        "(1 duplicates, 1 also in train, 0 also in test removed)"]
    (ds / "valid2id.txt").write_text(f"{len(valid)}\n" + "\n".join(valid) + "\n")
    gone = (ds / "test2id.txt").read_text().splitlines()[1].split()[0]  # an entity of the test split
    kept = [line for line in train if gone not in line.split()[:2]]
    (ds / "train2id.txt").write_text(f"{len(kept)}\n" + "\n".join(kept) + "\n")
    notes = read_openke(ds, features=False).notes
    assert any(n.startswith("warning: 1 entities in test never appear in train") for n in notes), notes


def test_partial_folders_of_dead_runs_are_removed(tmp_path):
    dead = tmp_path / ".ds.partial-999999999"  # no such process
    (dead / "features").mkdir(parents=True)
    write_synthetic(tmp_path / "ds", 100, 500)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
