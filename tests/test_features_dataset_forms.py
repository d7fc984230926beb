"""``snagkg features ... --dataset`` takes every dataset form ``snagkg train --dataset`` takes (issue 35).

A labelled TSV file and an RDF (N-Triples) file built here: ``features text`` (hashing encoder,
no model), ``features relations`` and ``features numeric`` write their tables into
``features/`` beside the triples file, and ``snagkg train`` on that file uses them; an existing
table is kept without ``--overwrite`` (one-line error) and replaced with it.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from _helpers import assert_one_error, run_main
from snagkg.data.datasets import load_completion_dataset

NAMES = [f"city_{w}" for w in ("paris", "lyon", "nice", "lille", "metz", "brest", "dijon", "tours", "reims",
                               "nancy", "caen", "rouen", "angers", "nimes", "pau", "sete", "vannes", "laval")]
RELS = ["near", "twinned_with", "same_region"]


def _triples(seed: int = 0):
    rng = random.Random(seed)
    rows = set()
    for i, h in enumerate(NAMES):  # a ring, so every entity is in train whatever the split draws
        rows.add((h, "near", NAMES[(i + 1) % len(NAMES)]))
    while len(rows) < 90:
        h, t = rng.sample(NAMES, 2)
        rows.add((h, rng.choice(RELS), t))
    return sorted(rows)


def tsv_graph(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "towns.tsv"
    path.write_text("head\trelation\ttail\n" + "".join(f"{h}\t{r}\t{t}\n" for h, r, t in _triples()))
    return path


def rdf_graph(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "towns.nt"
    ex = "http://example.org/"
    path.write_text("".join(f"<{ex}{h}> <{ex}rel/{r}> <{ex}{t}> .\n" for h, r, t in _triples()))
    return path


def literals(folder: Path, uri: bool) -> Path:
    path = folder / "numbers.tsv"
    ex = "http://example.org/" if uri else ""
    path.write_text("".join(f"{ex}{n}\tpopulation\t{1000 * (i + 1)}\n" for i, n in enumerate(NAMES[:12])))
    return path


def _features(path: Path, literal_file: Path, capsys) -> None:
    for args in (["text", "--encoder", "hashing", "--no-progress", "--device", "cpu"], ["relations", "--log1p"],
                 ["numeric", "--from", str(literal_file)]):
        code, _, err = run_main(["features", *args, "--dataset", str(path)], capsys)
        assert code == 0, err
        assert str(path.parent / "features") in err, err


@pytest.mark.parametrize("make, uri", [(tsv_graph, False), (rdf_graph, True)], ids=["tsv", "rdf"])
def test_features_beside_a_triples_file_are_what_train_loads(tmp_path, capsys, make, uri):
    path = make(tmp_path / "g")
    _features(path, literals(tmp_path, uri), capsys)
    feats = path.parent / "features"
    assert sorted(p.name for p in feats.glob("*.npy")) == ["numeric.npy", "relation.npy", "text.npy"]
    kg = load_completion_dataset(str(path))
    assert sorted(kg.features) == ["numeric", "relation", "text"]
    assert all(t.values.shape[0] == kg.num_entities == len(NAMES) for t in kg.features.values())
    numeric = np.load(feats / "numeric.npy")
    row = kg.entities.index(("http://example.org/" if uri else "") + NAMES[0])
    assert np.isfinite(numeric[row]).all()  # the entity of the literal file's first line, by the train id
    assert json.loads((feats / "relation.split.json").read_text()) == {"valid_from_train": 0.0, "split_seed": 0}


@pytest.mark.slow
def test_train_on_a_triples_file_uses_the_tables(tmp_path, capsys):
    path = tsv_graph(tmp_path / "g")
    _features(path, literals(tmp_path, False), capsys)
    code, _, err = run_main(["train", "--dataset", str(path), "--modalities", "structure,text,relation,numeric",
                             "--epochs", "1", "--hidden", "8", "--batch-size", "64", "--device", "cpu",
                             "--no-progress", "--output", str(tmp_path / "run")], capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert info["used_modalities"] == ["structure", "text", "relation", "numeric"]


def test_an_existing_table_is_replaced_only_with_overwrite(tmp_path, capsys):
    path = rdf_graph(tmp_path / "g")
    table = path.parent / "features" / "relation.npy"
    assert run_main(["features", "relations", "--dataset", str(path)], capsys)[0] == 0
    first = table.read_bytes()
    code, _, err = run_main(["features", "relations", "--dataset", str(path), "--log1p"], capsys)
    assert code == 2
    assert_one_error(err, table, None, "already exists; pass --overwrite to replace it")
    assert table.read_bytes() == first
    assert run_main(["features", "relations", "--dataset", str(path), "--log1p", "--overwrite"], capsys)[0] == 0
    assert table.read_bytes() != first


def test_a_folder_of_split_files_and_columns(tmp_path, capsys):
    rows = _triples()
    folder = tmp_path / "splits"
    folder.mkdir()
    parts = {"train": rows[:70], "valid": rows[70:80], "test": rows[80:]}
    for part, chunk in parts.items():  # tail, head, relation order: --columns t,h,r
        (folder / f"{part}.tsv").write_text("".join(f"{t}\t{h}\t{r}\n" for h, r, t in chunk))
    code, _, err = run_main(["features", "text", "--dataset", str(folder), "--columns", "t,h,r",
                             "--encoder", "hashing", "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    kg = load_completion_dataset(str(folder), columns="t,h,r")
    assert kg.features["text"].values.shape[0] == kg.num_entities
    code, _, err = run_main(["features", "relations", "--dataset", str(folder), "--split", "0.8,0.1,0.1"], capsys)
    assert code == 2 and "--split applies to a single triples file" in err


def test_a_path_that_is_no_dataset_is_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.md"
    bad.write_text("hello\n")
    code, _, err = run_main(["features", "relations", "--dataset", str(bad)], capsys)
    assert code == 2
    assert_one_error(err, bad, None, "not a folder and not a triples file")
