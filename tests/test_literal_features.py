"""Modalities from literal tables and names files: numeric, attributes, descriptions by property, names."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _helpers import run_main as run_cli
from conftest import SHARED_DATA, make_openke
from snagkg.features.extractors import HashingEncoder

N = 40


@pytest.fixture
def uri_graph(tmp_path: Path) -> Path:
    """A small OpenKE graph whose entities are DBpedia URIs <http://dbpedia.org/resource/E_<i>>."""
    folder = make_openke(tmp_path / "g", num_entities=N, features=False)
    lines = (folder / "entity2id.txt").read_text().splitlines()
    out = [lines[0]] + [f"<http://dbpedia.org/resource/E_{i}>\t{i}" for i in range(N)]
    (folder / "entity2id.txt").write_text("\n".join(out) + "\n")
    return folder


LITERALS = """# entity\tproperty\tvalue
http://dbpedia.org/resource/E_0\thttp://ex.org/pop\t100
<http://dbpedia.org/resource/E_0>\thttp://ex.org/pop\t300
E_1\thttp://ex.org/pop\t"400"^^<http://www.w3.org/2001/XMLSchema#double>
2\thttp://ex.org/pop\t1000
E_2\thttp://ex.org/born\t1990-07-01
E_3\thttp://ex.org/born\t2000
E_3\trdfs:comment\t"A small town"@en
E_4\thttp://www.w3.org/2000/01/rdf-schema#comment\tA big city
E_4\t<http://www.w3.org/2000/01/rdf-schema#comment>\twith a port
E_5\thttp://ex.org/name\tnot a number
http://dbpedia.org/resource/Nowhere\thttp://ex.org/pop\t5
"""


def test_numeric_values_are_averaged_normalised_and_flagged(uri_graph, capsys):
    (uri_graph / "literals.tsv").write_text(LITERALS)
    code, _, err = run_cli(["features", "numeric", "--dataset", uri_graph], capsys)
    assert code == 0, err
    assert "numeric: 4 of 40 entities have features, 36 missing (width 4)" in err
    assert "4 non-numeric values skipped" in err and "1 rows of unknown entities skipped" in err
    v = np.load(uri_graph / "features" / "numeric.npy")
    # columns: pop (3 entities), born (2 entities), then their presence flags
    pop = np.array([200.0, 400.0, 1000.0])  # E_0's two values averaged
    z = (pop - pop.mean()) / pop.std()
    assert np.allclose(v[:3, 0], z, atol=1e-6) and np.allclose(v[:4, 2], [1, 1, 1, 0])
    born = np.array([1990 + 6 / 12, 2000.0])
    assert np.allclose(v[2:4, 1], (born - born.mean()) / born.std(), atol=1e-5)
    assert np.allclose(v[:4, 3], [0, 0, 1, 1]) and v[0, 1] == 0.0  # absent: 0 value, 0 flag
    assert np.isnan(v[4:]).all()
    assert (uri_graph / "features" / "numeric.missing.txt").read_text().split() == [str(i) for i in range(4, N)]

    code, _, err = run_cli(["features", "numeric", "--dataset", uri_graph, "--scale", "minmax", "--top", "1",
                            "--overwrite"],
                           capsys)
    assert code == 0 and "(width 2)" in err
    v = np.load(uri_graph / "features" / "numeric.npy")
    assert np.allclose(v[:3, 0], (pop - 200) / 800) and np.isnan(v[3]).all()


def test_numeric_bad_values_are_one_line_errors(uri_graph, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("E_0\tp\t1\nE_1\tp\tinf\n")
    code, _, err = run_cli(["features", "numeric", "--dataset", uri_graph, "--from", bad], capsys)
    assert code == 2 and err.startswith(f"error: {bad}:2: ") and "not a finite number" in err
    bad.write_text("E_0\tonly two columns\n")
    code, _, err = run_cli(["features", "numeric", "--dataset", uri_graph, "--from", bad], capsys)
    assert code == 2 and err.startswith(f"error: {bad}:1: expected 3 tab-separated columns")
    code, _, err = run_cli(["features", "numeric", "--dataset", uri_graph], capsys)
    assert code == 2 and "no literals.tsv in the dataset folder" in err
    assert not (uri_graph / "features").exists()


def test_attribute_bag_over_the_most_frequent_properties(uri_graph, capsys):
    (uri_graph / "literals.tsv").write_text(LITERALS)
    code, _, err = run_cli(["features", "attributes", "--dataset", uri_graph, "--top", "2"], capsys)
    assert code == 0, err
    assert "attribute: 5 of 40 entities have features" in err and "top 2 of 4 properties" in err
    v = np.load(uri_graph / "features" / "attribute.npy")
    # pop has 4 rows, rdfs:comment 3, born 2, name 1 -> columns pop, comment
    assert v.shape == (N, 2)
    assert np.array_equal(v[:5], [[1, 0], [1, 0], [1, 0], [0, 1], [0, 1]]) and np.isnan(v[5:]).all()


def test_descriptions_from_a_literal_property(uri_graph, capsys):
    (uri_graph / "literals.tsv").write_text(LITERALS)
    code, _, err = run_cli(["features", "text", "--dataset", uri_graph, "--property", "rdfs:comment",
                            "--encoder", "hashing", "--aggregate", "mean", "--fallback", "names"], capsys)
    assert code == 0, err
    assert "text: 40 of 40 entities" in err and "descriptions of 2 entities" in err and "names of 38" in err
    v = np.load(uri_graph / "features" / "text.npy")
    enc = HashingEncoder()
    assert np.allclose(v[3], enc.encode(["A small town"], 1)[0])  # the RDF literal's quotes and tag removed
    assert np.allclose(v[4], enc.encode(["A big city", "with a port"], 1).mean(axis=0))
    assert np.allclose(v[7], enc.encode(["E 7"], 1)[0])  # the display name
    code, _, err = run_cli(["features", "text", "--dataset", uri_graph, "--property", "schema:description",
                            "--encoder", "hashing", "--overwrite"], capsys)
    assert code == 2 and "no literal of property 'schema:description'" in err


def test_names_file_for_an_alignment_pair_is_used_by_training(tmp_path, capsys):
    import snagkg
    from snagkg.config import schema as C
    from snagkg.data.datasets.alignment_pair import load_alignment_dataset
    from snagkg.data.datasets.synthetic_pair import write_synthetic_pair
    from snagkg.features.alignment import build_tables, default_modalities, resolve_modalities

    folder = write_synthetic_pair(tmp_path / "pair", entities=60, seed=2, permute_ids=True)
    pair = load_alignment_dataset(str(folder), features=False)
    ids = pair.source_ids.tolist()
    names = [[ids[i], ["word", f"w{i % 7}"]] for i in range(len(ids)) if i != 3]
    src = tmp_path / "names.json"
    src.write_text(json.dumps(names))
    code, _, err = run_cli(["features", "names", "--dataset", folder, "--from", src, "--encoder", "hashing"],
                           capsys)
    assert code == 0, err
    total = max(ids) + 1
    assert f"name: {len(ids) - 1} of {total} entities have features" in err
    pair = load_alignment_dataset(str(folder))
    assert "name" not in default_modalities(pair)  # surface names stay opt-in
    mods = resolve_modalities(pair, ["structure", "relation", "name"])
    tab = build_tables(pair, mods, 100, 100, 100)["name"]
    assert tab.missing.sum() == 1 and tab.missing[3]
    assert np.allclose(tab.values[10], HashingEncoder().encode([f"word w{10 % 7}"], 1)[0], atol=1e-6)

    cfg = C.resolve(preset="dbp15k", overrides={
        "task": "alignment", "dataset": str(folder), "modalities": "structure,relation,name", "encoder.hidden": 16,
        "alignment.structure_dim": 16, "train.epochs": 2, "train.eval_every": 1, "alignment.iterative": False,
        "device": "cpu"})
    res = snagkg.train(cfg, tmp_path / "run", progress=False, echo=lambda s: None)
    assert res.dataset["used_modalities"] == ["structure", "relation", "name"]
    assert snagkg.load_run(tmp_path / "run", device="cpu").model.entities.modalities == ["structure", "relation",
                                                                                          "name"]

    src.write_text(json.dumps([[ids[0], ["a"]], [99999, ["b"]]]))
    code, _, err = run_cli(["features", "names", "--dataset", folder, "--from", src, "--encoder", "hashing",
                            "--overwrite"], capsys)
    assert code == 2 and err.startswith(f"error: {src}: entry 1: unknown entity 99999")


def test_names_from_uris(uri_graph, capsys):
    code, _, err = run_cli(["features", "names", "--dataset", uri_graph, "--encoder", "hashing"], capsys)
    assert code == 0 and "name: 40 of 40 entities" in err and "from URI names" in err
    v = np.load(uri_graph / "features" / "name.npy")
    assert np.allclose(v[5], HashingEncoder().encode(["e 5"], 1)[0])


def _linked(tmp_path: Path, src: Path, files) -> Path:
    folder = tmp_path / src.name
    folder.mkdir()
    for f in files:
        (folder / f).symlink_to(src / f)
    return folder


@pytest.mark.data
@pytest.mark.skipif(not (SHARED_DATA / "mkgc" / "DB15K" / "numeric_literals.tsv").is_file(),
                    reason="benchmark data (../shared/data) not present")
def test_db15k_numeric_literals(tmp_path, capsys):
    src = SHARED_DATA / "mkgc" / "DB15K"
    folder = _linked(tmp_path, src, ["entity2id.txt", "relation2id.txt", "train2id.txt", "valid2id.txt",
                                     "test2id.txt"])
    code, _, err = run_cli(["features", "numeric", "--dataset", folder, "--from", src / "numeric_literals.tsv"],
                           capsys)
    assert code == 0, err
    assert err.startswith("numeric: 11241 of 12842 entities have features, 1601 missing (width 226)")
    assert "unknown" not in err and "non-numeric" not in err
    v = np.load(folder / "features" / "numeric.npy")
    have = ~np.isnan(v).any(axis=1)
    assert have.sum() == 11241 and np.abs(v[have, :113]).max() <= 5.0
    assert set(np.unique(v[have, 113:])) == {0.0, 1.0}


@pytest.mark.data
@pytest.mark.skipif(not (SHARED_DATA / "mmea" / "DBP15K" / "translated_ent_name").is_dir(),
                    reason="benchmark data (../shared/data) not present")
def test_dbp15k_translated_names_cover_the_pair(tmp_path, capsys):
    root = SHARED_DATA / "mmea" / "DBP15K"
    folder = _linked(tmp_path, root / "zh_en", ["ent_ids_1", "ent_ids_2", "triples_1", "triples_2", "ill_ent_ids"])
    code, _, err = run_cli(["features", "names", "--dataset", folder, "--from",
                            root / "translated_ent_name" / "dbp_zh_en.json", "--encoder", "hashing",
                            "--no-progress"], capsys)
    assert code == 0, err
    assert err.startswith("name: 38960 of 38960 entities have features, 0 missing (width 256)")


def test_literal_values_and_properties():
    from snagkg.features.literals import expand_property, literal_value

    assert literal_value('"Paris"@en') == "Paris"
    assert literal_value('"say \\"hi\\""^^<http://www.w3.org/2001/XMLSchema#string>') == 'say "hi"'
    assert literal_value("two\\tcolumns\\nand a line \\\\n") == "two\tcolumns\nand a line \\n"  # as convert writes
    assert literal_value("  plain ") == "plain"
    assert expand_property("rdfs:comment") == "http://www.w3.org/2000/01/rdf-schema#comment"
    assert expand_property("<http://schema.org/description>") == expand_property("schema:description")
    assert expand_property("http://ex.org/p") == "http://ex.org/p" and expand_property("ex:p") == "ex:p"
