"""``snagkg features import``: .npy/.npz/.pt/.pth/.pkl sources, matching, and every bad input."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from snagkg.cli.main import main
from snagkg.data.feature_dir import load_feature_dir

ENTITIES = [
    "<http://dbpedia.org/resource/Barack_Obama>",
    "<http://dbpedia.org/resource/Caf%C3%A9_society>",
    "http://www.wikidata.org/entity/Q42",
    "Alpha Centauri",
    "7",  # a name made of digits: matched as a name before ids
    "Lonely",
]
N = len(ENTITIES)


def write_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    table = lambda names: f"{len(names)}\n" + "".join(f"{n}\t{i}\n" for i, n in enumerate(names))  # noqa: E731
    (folder / "entity2id.txt").write_text(table(ENTITIES), encoding="utf-8")
    (folder / "relation2id.txt").write_text(table(["r0", "r1"]))
    (folder / "train2id.txt").write_text("3\n0 1 0\n1 2 1\n3 4 0\n")
    (folder / "valid2id.txt").write_text("1\n2 0 1\n")
    (folder / "test2id.txt").write_text("1\n1 0 0\n")
    return folder


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "ds")


def table(width: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, width)).astype(np.float32)


def run(ds: Path, source: Path, *extra: str, modality: str = "image") -> int:
    return main(["features", "import", "--dataset", str(ds), "--modality", modality, "--from", str(source),
                 "--overwrite", *extra])


def ok(capsys, ds: Path, source: Path, *extra: str, modality: str = "image") -> str:
    rc = run(ds, source, *extra, modality=modality)
    err = capsys.readouterr().err
    assert rc == 0, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1, err
    return lines[0]


def fails(capsys, ds: Path, source: Path, *extra: str, modality: str = "image") -> str:
    before = sorted(p.relative_to(ds) for p in ds.rglob("*"))
    rc = run(ds, source, *extra, modality=modality)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert sorted(p.relative_to(ds) for p in ds.rglob("*")) == before  # nothing written
    return lines[0]


def loaded(ds: Path, name: str = "image"):
    return load_feature_dir(ds / "features", N)[name]


# ----------------------------------------------------------------------------- arrays

def test_npy_round_trip(ds, tmp_path, capsys):
    arr = table()
    np.save(tmp_path / "img.npy", arr)
    line = ok(capsys, ds, tmp_path / "img.npy")
    assert f"{N} of {N} entities" in line and "0 missing" in line
    t = loaded(ds)
    np.testing.assert_array_equal(t.values, arr)
    assert not t.missing.any() and not (ds / "features" / "image.missing.txt").exists()


def test_npy_float64_and_nan_rows_mark_missing(ds, tmp_path, capsys):
    arr = table().astype(np.float64)
    arr[2] = np.nan
    np.save(tmp_path / "img.npy", arr)
    line = ok(capsys, ds, tmp_path / "img.npy")
    assert "1 missing" in line
    t = loaded(ds)
    assert t.missing.tolist() == [False, False, True, False, False, False]
    np.testing.assert_allclose(t.values[~t.missing], arr[~t.missing].astype(np.float32))
    assert (ds / "features" / "image.missing.txt").read_text() == "2\n"
    assert np.load(ds / "features" / "image.npy").dtype == np.float32


def test_npz_single_and_key(ds, tmp_path, capsys):
    a, b = table(3, 1), table(5, 2)
    np.savez(tmp_path / "one.npz", feats=a)
    ok(capsys, ds, tmp_path / "one.npz")
    np.testing.assert_array_equal(loaded(ds).values, a)
    np.savez(tmp_path / "two.npz", a=a, b=b)
    ok(capsys, ds, tmp_path / "two.npz", "--key", "b")
    np.testing.assert_array_equal(loaded(ds).values, b)


def test_torch_tensor(ds, tmp_path, capsys):
    arr = table(6)
    torch.save(torch.from_numpy(arr).to(torch.bfloat16), tmp_path / "t.pt")
    ok(capsys, ds, tmp_path / "t.pt")
    np.testing.assert_allclose(loaded(ds).values, torch.from_numpy(arr).to(torch.bfloat16).float().numpy())


def test_torch_dict_matched_by_name_alias_and_id(ds, tmp_path, capsys):
    v = table(4)
    d = {
        "<http://dbpedia.org/resource/Barack_Obama>": torch.from_numpy(v[0]),  # exact name
        "Café society": torch.from_numpy(v[1]),  # display name
        "Q42": v[2],  # URI tail of a Wikidata id
        3: torch.from_numpy(v[3]),  # id
        "7": torch.from_numpy(v[4]),  # the entity *named* "7" (id 4), not id 7
        "Nobody": torch.zeros(4),  # matches nothing: reported, ignored
    }
    torch.save(d, tmp_path / "d.pth")
    line = ok(capsys, ds, tmp_path / "d.pth")
    assert "5 of 6 entities" in line and "1 missing" in line and "1 keys matched no entity" in line
    t = loaded(ds)
    np.testing.assert_array_equal(t.values[:5], v[:5])
    assert t.missing.tolist() == [False] * 5 + [True]


def test_torch_dict_with_key_and_several_vectors(ds, tmp_path, capsys):
    imgs = {0: torch.ones(2, 3), 1: [torch.zeros(3), torch.full((3,), 2.0)], 2: torch.arange(3.0)}
    torch.save({"images": imgs, "meta": torch.zeros(1)}, tmp_path / "d.pt")
    ok(capsys, ds, tmp_path / "d.pt", "--key", "images")
    t = loaded(ds)
    np.testing.assert_array_equal(t.values[:3], [[1, 1, 1], [1, 1, 1], [0, 1, 2]])
    assert t.missing.tolist() == [False, False, False, True, True, True]


def test_pickle_dict_with_trust(ds, tmp_path, capsys):
    v = table(3)
    d = {"http://dbpedia.org/resource/Barack_Obama": v[0].tolist(),  # without <>
         "Caf%C3%A9_society": np.stack([v[1], v[1] + 2.0]),  # 2 images -> averaged
         "Alpha Centauri": v[3], "Lonely": []}  # no images: missing
    with open(tmp_path / "d.pkl", "wb") as fh:
        pickle.dump(d, fh)
    line = ok(capsys, ds, tmp_path / "d.pkl", "--trust-pickle")
    assert "3 of 6 entities" in line and "1 keys had no vectors" in line
    t = loaded(ds)
    np.testing.assert_allclose(t.values[[0, 1, 3]], [v[0], v[1] + 1.0, v[3]], rtol=1e-6)
    assert t.missing.tolist() == [False, False, True, False, True, True]


def test_stale_missing_file_removed(ds, tmp_path, capsys):
    torch.save({0: torch.ones(2)}, tmp_path / "part.pt")
    ok(capsys, ds, tmp_path / "part.pt")
    assert (ds / "features" / "image.missing.txt").read_text() == "1\n2\n3\n4\n5\n"
    np.save(tmp_path / "full.npy", table(2))
    ok(capsys, ds, tmp_path / "full.npy")
    assert not (ds / "features" / "image.missing.txt").exists()
    assert not loaded(ds).missing.any()


def test_custom_output_and_dataset_loads(ds, tmp_path, capsys):
    np.save(tmp_path / "img.npy", table())
    out = ds / "features" / "image.npy"
    ok(capsys, ds, tmp_path / "img.npy", "--output", str(out))
    from snagkg.data.datasets import read_openke

    assert read_openke(ds).features["image"].dim == 4


def test_failed_import_keeps_previous_files(ds, tmp_path, capsys):
    torch.save({0: torch.ones(2)}, tmp_path / "part.pt")
    ok(capsys, ds, tmp_path / "part.pt")
    before = {p.name: p.read_bytes() for p in (ds / "features").iterdir()}
    np.save(tmp_path / "short.npy", table()[:3])
    fails(capsys, ds, tmp_path / "short.npy")
    assert {p.name: p.read_bytes() for p in (ds / "features").iterdir()} == before


# ----------------------------------------------------------------------------- pickles are gated

class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_malicious_pickle_not_opened_without_trust(ds, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({"Lonely": _Evil(marker)}, fh)
    line = fails(capsys, ds, tmp_path / "evil.pkl")
    assert "--trust-pickle" in line and "code" in line
    assert not marker.exists()


def test_malicious_torch_file_refused_by_weights_only(ds, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    torch.save({"Lonely": _Evil(marker)}, tmp_path / "evil.pt")
    line = fails(capsys, ds, tmp_path / "evil.pt")
    assert "weights_only" in line and "--trust-pickle" in line
    assert not marker.exists()


# ----------------------------------------------------------------------------- bad input

def _save(kind: str, obj, path: Path) -> Path:
    if kind == "npy":
        np.save(path, obj)
    elif kind == "pt":
        torch.save(obj, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
    return path


BAD = {
    # name: (suffix, object, extra args, expected words)
    "widths": ("pt", {0: torch.ones(3), "Lonely": torch.ones(4)}, [], ["'Lonely'", "width 4", "width 3"]),
    "widths_within_key": ("pkl", {"Lonely": [np.ones(3), np.ones(4)]}, ["--trust-pickle"], ["'Lonely'", "inconsistent"]),
    "nan_in_dict": ("pkl", {0: np.ones(3), "Alpha Centauri": np.array([1.0, np.nan, 0.0])}, ["--trust-pickle"],
                    ["'Alpha Centauri'", "NaN"]),
    "inf_in_dict": ("pt", {1: torch.tensor([1.0, float("inf")])}, [], ["key 1", "inf"]),
    "inf_in_array": ("npy", np.where(np.arange(N * 2).reshape(N, 2) == 7, np.inf, 1.0), [], ["row 3", "inf"]),
    "partial_nan_row": ("npy", np.where(np.arange(N * 2).reshape(N, 2) == 2, np.nan, 1.0), [], ["row 1", "NaN"]),
    "no_key_matches": ("pt", {"foo": torch.ones(2), "bar": torch.ones(2)}, [], ["no key matches any entity", "'foo'"]),
    "wrong_rows": ("npy", np.ones((N + 1, 3), dtype=np.float32), [], [f"{N + 1} rows", f"{N} entities"]),
    "int_table": ("npy", np.ones((N, 3), dtype=np.int64), [], ["int64", "not floating point"]),
    "int_values": ("pt", {0: torch.ones(3, dtype=torch.int32)}, [], ["key 0", "not floating point"]),
    "zero_width": ("npy", np.ones((N, 0), dtype=np.float32), [], ["zero width"]),
    "zero_width_dict": ("pt", {0: torch.ones(0)}, [], ["zero width"]),
    "one_d": ("npy", np.ones(N, dtype=np.float32), [], ["2-D"]),
    "all_nan": ("npy", np.full((N, 2), np.nan, dtype=np.float32), [], ["all entities missing"]),
    "two_keys_one_entity": ("pt", {0: torch.ones(2), "Barack Obama": torch.ones(2)}, [], ["both name entity id 0"]),
    "bad_key_type": ("pkl", {(1, 2): np.ones(2)}, ["--trust-pickle"], ["(1, 2)", "neither an entity name nor an id"]),
    "empty_dict": ("pt", {}, [], ["dict is empty"]),
    "not_a_table": ("pt", "hello", [], ["holds a str"]),
    "key_on_npy": ("npy", np.ones((N, 2), dtype=np.float32), ["--key", "x"], ["one array"]),
    "key_not_in_dict": ("pt", {"a": torch.ones(N, 2)}, ["--key", "b"], ["--key 'b' is not in the dict"]),
    "table_hint": ("pt", {"ent_embeddings.weight": torch.ones(N, 2)}, [], ["no key matches", "--key"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sources(ds, tmp_path, capsys, case):
    kind, obj, extra, words = BAD[case]
    src = _save(kind, obj, tmp_path / f"src.{kind}")
    line = fails(capsys, ds, src, *extra)
    assert str(src) in line
    for w in words:
        assert w in line, line


@pytest.mark.parametrize("setup, extra, words", [
    ("npz_many", [], ["2 arrays", "--key"]),
    ("npz_many", ["--key", "zzz"], ["'zzz' is not in the .npz"]),
    ("npz_object", [], ["Python objects"]),
    ("npy_object", [], ["Python objects"]),
    ("garbage_npy", [], ["not a valid .npy"]),
    ("garbage_npz", [], ["not a valid .npz"]),
    ("garbage_pt", [], ["src.pt"]),
    ("csv", [], ["unsupported file type '.csv'"]),
    ("absent", [], ["file not found"]),
])
def test_bad_files(ds, tmp_path, capsys, setup, extra, words):
    src = {"npz_many": "src.npz", "npz_object": "src.npz", "garbage_npy": "src.npy", "npy_object": "src.npy", "garbage_npz": "src.npz",
           "garbage_pt": "src.pt", "csv": "src.csv", "absent": "src.npy"}[setup]
    src = tmp_path / src
    if setup == "npz_many":
        np.savez(src, a=table(), b=table())
    elif setup == "npy_object":
        np.save(src, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif setup == "npz_object":
        np.savez(src, a=np.array([{"x": 1}], dtype=object))
    elif setup.startswith("garbage"):
        src.write_bytes(b"this is not an array file\n" * 4)
    elif setup == "csv":
        src.write_text("1,2\n")
    line = fails(capsys, ds, src, *extra)
    for w in words:
        assert w in line, line


@pytest.mark.parametrize("modality, words", [
    ("structure", ["reserved"]),
    ("a/b", ["path separator"]),
    ("..", ["path separator"]),
    ("a\\b", ["path separator"]),
    ("", ["empty"]),
    ("x.y", ["not a valid modality name"]),
    ("im age", ["not a valid modality name"]),
])
def test_bad_modality_names(ds, tmp_path, capsys, modality, words):
    np.save(tmp_path / "img.npy", table())
    line = fails(capsys, ds, tmp_path / "img.npy", modality=modality)
    for w in words:
        assert w in line, line
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("out, words", [
    ("elsewhere/other.npy", ["named 'other.npy'", "image.npy"]),
    ("image.txt", ["must end in .npy"]),
    ("structure.npy", ["reserved"]),
])
def test_bad_output(ds, tmp_path, capsys, out, words):
    np.save(tmp_path / "img.npy", table())
    line = fails(capsys, ds, tmp_path / "img.npy", "--output", str(tmp_path / out))
    for w in words:
        assert w in line, line
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "structure.npy").exists()


def test_bad_dataset(tmp_path, capsys):
    np.save(tmp_path / "img.npy", table())
    rc = run(tmp_path / "nope", tmp_path / "img.npy")
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "dataset not found" in err
    assert len(err.rstrip("\n").split("\n")) == 1


def test_ambiguous_alias(tmp_path, capsys):
    d = tmp_path / "amb"
    d.mkdir()
    names = ["<http://dbpedia.org/resource/Paris>", "<http://fr.dbpedia.org/resource/Paris>"]
    (d / "entity2id.txt").write_text(f"2\n{names[0]}\t0\n{names[1]}\t1\n")
    torch.save({"Paris": torch.ones(2)}, tmp_path / "p.pt")
    rc = main(["features", "import", "--dataset", str(d), "--modality", "image", "--from", str(tmp_path / "p.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and "could name several entities" in err and len(err.rstrip("\n").split("\n")) == 1
    assert not (d / "features").exists()


# --------------------------------------------------------------------------- entity-alignment folders

@pytest.mark.parametrize("layout", ["dbp15k", "openea"])
def test_import_into_alignment_folder_rows_follow_entities(tmp_path, capsys, layout):
    """`features import` on a DBP15K / OpenEA folder: rows in the unified id space, matched by URI."""
    from snagkg.data.datasets.alignment_pair import load_alignment_dataset
    from snagkg.data.datasets.synthetic_pair import write_synthetic_pair

    folder = write_synthetic_pair(tmp_path / "pair", entities=40, seed=3, permute_ids=True, layout=layout)
    pair = load_alignment_dataset(str(folder))
    rng = np.random.default_rng(0)
    vec = {uri: rng.standard_normal(6).astype(np.float32) for uri in pair.entities}
    skipped = pair.entities[5]
    del vec[skipped]  # one entity without an image: recorded as missing
    src = tmp_path / "images.pt"
    torch.save({uri: torch.from_numpy(v) for uri, v in vec.items()}, src)
    assert main(["features", "import", "--dataset", str(folder), "--modality", "image", "--from", str(src)]) == 0, \
        capsys.readouterr().err
    pair = load_alignment_dataset(str(folder))
    table = pair.features["image"]
    for i, uri in enumerate(pair.entities):
        if uri == skipped:
            assert table.missing[i]
        else:
            assert not table.missing[i]
            np.testing.assert_array_equal(table.values[i], vec[uri])


def test_import_into_a_folder_of_no_known_layout(tmp_path, capsys):
    d = tmp_path / "nothing"
    d.mkdir()
    src = tmp_path / "x.npy"
    np.save(src, np.zeros((3, 2), np.float32))
    assert main(["features", "import", "--dataset", str(d), "--modality", "image", "--from", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "DBP15K or OpenEA" in err and not (d / "features").exists()
