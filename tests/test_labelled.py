"""Labelled triples (TSV/CSV names): reading, ids, header, --columns, the seeded split, convert,
--valid-from-train, and bad input. Small graphs only: every test takes seconds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import snagkg
from snagkg.cli.main import main
from snagkg.config import schema as C
from snagkg.data.datasets import load_completion_dataset, read_openke
from snagkg.runtime.errors import SnagError

from conftest import make_openke


def graph_rows(n_ent: int = 30, n_triples: int = 160, seed: int = 0, prefix: str = ""):
    """Distinct ``(head, relation, tail)`` names, sorted; a few names with spaces, two leaf entities."""
    rng = np.random.default_rng(seed)
    ents = [f"{prefix}e{i}" for i in range(n_ent)] + [f"{prefix}New York"]
    rels = [f"{prefix}likes", f"{prefix}knows", f"{prefix}near"]
    rows = set()
    while len(rows) < n_triples:
        h, t = rng.integers(0, len(ents), 2)
        if h != t:
            rows.add((ents[h], rels[int(rng.integers(0, 3))], ents[t]))
    rows.add((ents[0], rels[0], f"{prefix}leaf1"))  # entities in exactly one triple: always in train
    rows.add((f"{prefix}leaf2", rels[1], ents[1]))
    return sorted(rows)


def write_tsv(path: Path, rows, header: str = "", order=(0, 1, 2), sep: str = "\t") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(sep.join(row[i] for i in order) + "\n" for row in rows)
    path.write_text((header + "\n" if header else "") + body)
    return path


def names(kg, part):
    """The triples of one split as name tuples, as a set."""
    return {(kg.entities[h], kg.relations[r], kg.entities[t]) for h, r, t in kg.split(part).tolist()}


def one_error(err: str) -> str:
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_ids_are_sorted_names_and_the_header_is_detected(tmp_path):
    rows = graph_rows()
    plain = load_completion_dataset(str(write_tsv(tmp_path / "a.tsv", rows)))
    headed = load_completion_dataset(str(write_tsv(tmp_path / "b" / "b.tsv", rows, header="head\trelation\ttail")))
    ents = sorted({r[0] for r in rows} | {r[2] for r in rows})
    assert plain.entities == ents == headed.entities and "New York" in ents
    assert plain.relations == ["knows", "likes", "near"] == headed.relations
    for part in ("train", "valid", "test"):
        assert np.array_equal(plain.split(part), headed.split(part))
    assert names(plain, "train") | names(plain, "valid") | names(plain, "test") == set(rows)
    assert plain.info["source"]["header"] is False and headed.info["source"]["header"] is True
    # the file's line order does not matter: same split
    shuffled = load_completion_dataset(str(write_tsv(tmp_path / "c.tsv", rows[::-1])))
    assert np.array_equal(shuffled.test, plain.test)


def test_columns_flag_and_header_order(tmp_path):
    rows = graph_rows()
    ref = load_completion_dataset(str(write_tsv(tmp_path / "ref.tsv", rows)))
    htr = write_tsv(tmp_path / "htr.tsv", rows, order=(0, 2, 1))
    kg = load_completion_dataset(str(htr), columns="h,t,r")
    assert kg.entities == ref.entities and np.array_equal(kg.train, ref.train)
    assert kg.info["source"]["columns"] == "h,t,r"
    wrong = load_completion_dataset(str(htr))  # read as h,r,t: the tails become relations
    assert wrong.num_relations > 3
    # a CSV header in another order gives the columns; quoted names may hold commas
    csv_rows = [(h, r, t if t != "e3" else "e3, the third") for h, r, t in rows]
    path = tmp_path / "g.csv"
    path.write_text("subject,object,predicate\n" + "".join(f'{h},"{t}",{r}\n' for h, r, t in csv_rows))
    kg = load_completion_dataset(str(path))
    assert kg.info["source"] == {"file": "g.csv", "format": "csv", "header": True, "columns": "h,t,r"}
    assert "e3, the third" in kg.entities and kg.relations == ref.relations
    assert names(kg, "train") | names(kg, "valid") | names(kg, "test") == set(csv_rows)


def test_split_keeps_every_valid_and_test_entity_in_train_and_says_how_many_moved(tmp_path):
    # a sparse graph: many entities occur once or twice, so the plain cut would leave some unseen
    rows = graph_rows(n_ent=80, n_triples=120, seed=3)
    f = write_tsv(tmp_path / "sparse.tsv", rows)
    kg = load_completion_dataset(str(f), split="0.7,0.15,0.15", split_seed=5)
    n = len(rows)
    assert (len(kg.valid), len(kg.test)) == (round(n * 0.15), round(n * 0.15)) and len(kg.all_triples()) == n
    seen_e = set(kg.train[:, 0]) | set(kg.train[:, 2])
    for part in (kg.valid, kg.test):
        assert set(part[:, 0]) | set(part[:, 2]) <= seen_e and set(part[:, 1]) <= set(kg.train[:, 1])
    moved = kg.info["split"]["moved_to_train"]
    assert moved > 0 and kg.info["split"] == {"shares": [0.7, 0.15, 0.15], "seed": 5, "moved_to_train": moved}
    assert f"{moved} triples moved to train" in kg.notes[0]
    for name in ("leaf1", "leaf2"):
        i = kg.entities.index(name)
        assert not np.isin(i, kg.valid[:, [0, 2]]) and not np.isin(i, kg.test[:, [0, 2]])
    again = load_completion_dataset(str(f), split="0.7,0.15,0.15", split_seed=5)
    other = load_completion_dataset(str(f), split="0.7,0.15,0.15", split_seed=6)
    assert np.array_equal(again.test, kg.test) and not np.array_equal(other.test, kg.test)


def test_train_and_evaluate_end_to_end_through_the_cli(tmp_path, capsys):
    rows = graph_rows()
    f = write_tsv(tmp_path / "data" / "triples.tsv", rows, header="head\trelation\ttail")
    run = tmp_path / "run"
    args = ["train", "--dataset", str(f), "--output", str(run), "--epochs", "2", "--hidden", "16",
            "--batch-size", "64", "--eval-every", "1", "--device", "cpu", "--no-progress",
            "--valid-from-train", "0.1", "--split-seed", "3"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    kg = load_completion_dataset(str(f), valid_from_train=0.1, split_seed=3)
    assert result["test"]["count"] == len(kg.test) == round(len(rows) * 0.1)
    assert "split 162 triples with seed 3" in err and "valid replaced:" in err
    info = json.loads((run / "dataset.json").read_text())
    held = info["valid_from_train"]
    assert held == {"fraction": 0.1, "seed": 3, "triples": len(kg.valid), "published_valid": 16}
    assert info["valid"] == len(kg.valid) == round((len(rows) - 32) * 0.1)
    assert (run / "entities.tsv").read_text() == "".join(f"{i}\t{n}\n" for i, n in enumerate(kg.entities))
    assert (run / "relations.tsv").read_text() == "0\tknows\n1\tlikes\n2\tnear\n"
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["count"] == result["test"]["count"] and again["mrr"] == pytest.approx(result["test"]["mrr"])
    # renaming an entity keeps the sizes and the ids: the id table still notices
    f.write_text(f.read_text().replace("e0\t", "e00\t").replace("\te0\n", "\te00\n"))
    assert main(["evaluate", str(run), "--device", "cpu", "--no-progress"]) == 2
    msg = one_error(capsys.readouterr().err)
    i = kg.entities.index("e0")  # "New York" sorts first
    assert f"{run / 'entities.tsv'}:{i + 1}: the dataset has changed since training: id {i} is now 'e00'" in msg


def test_convert_round_trips(tmp_path, capsys):
    rows = graph_rows()
    f = write_tsv(tmp_path / "g.tsv", rows)
    out = tmp_path / "openke"
    assert main(["convert", str(f), "--output", str(out), "--split", "0.6,0.2,0.2", "--seed", "2"]) == 0
    assert capsys.readouterr().out.strip() == (f"wrote {out}: 33 entities, 3 relations, train 98 / valid 32 / "
                                               f"test 32")
    ref = load_completion_dataset(str(f), split="0.6,0.2,0.2", split_seed=2)
    back = read_openke(out)
    assert back.entities == ref.entities and back.relations == ref.relations and back.notes == []
    for part in ("train", "valid", "test"):
        assert np.array_equal(back.split(part), ref.split(part))
    assert sorted(p.name for p in out.iterdir()) == ["entity2id.txt", "relation2id.txt", "test2id.txt",
                                                      "train2id.txt", "valid2id.txt"]
    assert main(["convert", str(f), "--output", str(out)]) == 2
    assert "not empty; pass --overwrite" in one_error(capsys.readouterr().err)
    assert main(["convert", str(f), "--output", str(out), "--overwrite"]) == 0
    assert len(read_openke(out).test) == round(len(rows) * 0.1)
    # an OpenKE folder converts to itself, features included
    src = make_openke(tmp_path / "ok", num_entities=60)
    assert main(["convert", str(src), "--output", str(tmp_path / "ok2")]) == 0
    a, b = read_openke(src), read_openke(tmp_path / "ok2")
    assert a.entities == b.entities and np.array_equal(a.test, b.test) and set(b.features) == {"image", "text"}
    assert np.array_equal(a.features["image"].missing, b.features["image"].missing)


def test_a_folder_of_split_files_and_features_beside_it(tmp_path):
    rows = graph_rows()
    folder = tmp_path / "mine"
    write_tsv(folder / "train.tsv", rows[:-20])
    write_tsv(folder / "valid.csv", rows[-20:-10], sep=",")
    write_tsv(folder / "test.tsv", rows[-10:] + rows[-10:-8])  # two duplicates
    ents = sorted({r[0] for r in rows} | {r[2] for r in rows})
    (folder / "features").mkdir()
    np.save(folder / "features" / "image.npy", np.arange(len(ents) * 4, dtype=np.float32).reshape(-1, 4))
    kg = load_completion_dataset(str(folder))
    assert names(kg, "train") == set(rows[:-20]) and names(kg, "valid") == set(rows[-20:-10])
    assert len(kg.test) == 10 and "test: 2 duplicate triples dropped" in kg.notes
    assert kg.features["image"].values[3, 0] == 12.0 and kg.info["source"]["format"] == {
        "train": "tsv", "valid": "csv", "test": "tsv"}
    with pytest.raises(SnagError, match="applies to a single triples file"):
        load_completion_dataset(str(folder), split="0.8,0.1,0.1")
    (folder / "test.tsv").unlink()
    with pytest.raises(SnagError, match="no test file"):
        load_completion_dataset(str(folder))


def test_valid_from_train_on_openke_and_synthetic(tmp_path):
    ds = make_openke(tmp_path / "ds", num_entities=200, features=False)
    base = load_completion_dataset(str(ds))
    assert base.info == {} and base.known is None and "valid_from_train" not in base.summary()
    kg = load_completion_dataset(str(ds), valid_from_train=0.1, split_seed=1)
    key = lambda a: set(map(tuple, a.tolist()))  # noqa: E731
    assert len(kg.valid) == round(len(base.train) * 0.1) and np.array_equal(kg.test, base.test)
    assert key(kg.train) | key(kg.valid) == key(base.train) and not key(kg.train) & key(kg.valid)
    assert np.array_equal(kg.known, base.valid) and len(kg.all_triples()) == len(base.all_triples())
    assert kg.summary()["valid_from_train"] == {"fraction": 0.1, "seed": 1, "triples": len(kg.valid),
                                                "published_valid": len(base.valid)}
    same = load_completion_dataset(str(ds), valid_from_train=0.1, split_seed=1)
    other = load_completion_dataset(str(ds), valid_from_train=0.1, split_seed=2)
    assert np.array_equal(same.valid, kg.valid) and not np.array_equal(other.valid, kg.valid)
    syn = load_completion_dataset("synthetic", valid_from_train=0.05)
    plain = load_completion_dataset("synthetic")
    assert np.array_equal(syn.test, plain.test) and len(syn.valid) == round(len(plain.train) * 0.05)
    with pytest.raises(SnagError, match="--split applies to a triples file"):
        load_completion_dataset(str(ds), split="0.8,0.1,0.1")


@pytest.mark.parametrize("content, extra, where, fragment", [
    ("a\tr\tb\nc\tr\n", [], "g.tsv:2", "expected 3 columns (head, relation, tail), found 2"),
    ("a,r,b\nc,r,d,e\n", [], "g.csv:2", "expected 3 columns (head, relation, tail), found 4"),
    ("", [], "g.tsv", "empty file: no triples"),
    ("head\trelation\ttail\n", [], "g.tsv", "empty file: no triples after the header"),
    ("a\tr\tb\n", ["--columns", "h,x,t"], "command line", "--columns: dataset_columns 'h,x,t': unknown column spec"),
    ("a\tr\tb\n", ["--split", "0.8,0.1,0.2"], "command line", "the shares sum to 1.1, not 1"),
    ("a\tr\tb\n", ["--split", "0.8,0.2"], "command line", "expected three numbers"),
    ("a\tr\tb\n\t r\tc\n", [], "g.tsv:2", "empty head name"),
    ("a\tr\tb\nb\tr\tc\n", [], "g.tsv", "the valid split is empty"),
    ('a,r,"b\n', [], "g.csv:1", "CSV syntax error"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, content, extra, where, fragment):
    name = where.split(":")[0] if where.startswith("g.") else "g.tsv"
    f = tmp_path / name
    f.write_text(content)
    run = tmp_path / "run"
    code = main(["train", "--dataset", str(f), "--output", str(run), "--epochs", "1", "--device", "cpu",
                 "--no-progress", *extra])
    assert code == 2
    msg = one_error(capsys.readouterr().err)
    prefix = f"error: {tmp_path / where}" if where.startswith("g.") else f"error: {where}"
    assert msg.startswith(prefix + ":") and fragment in msg, msg
    assert not run.exists()
    assert main(["convert", str(f), "--output", str(tmp_path / "out"), *extra]) == 2
    assert fragment.split(":")[-1].strip() in one_error(capsys.readouterr().err)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_config_keys_reload_the_same_dataset(tmp_path):
    f = write_tsv(tmp_path / "g.tsv", graph_rows(), order=(0, 2, 1))
    cfg = snagkg.resolve_config(overrides={"dataset": str(f), "dataset_columns": "h,t,r",
                                           "dataset_split": "0.6,0.2,0.2", "valid_from_train": 0.2})
    y = tmp_path / "config.yaml"
    y.write_text(C.dump(cfg))
    again = C.load_run_config(y)
    assert again == cfg
    from snagkg.api.run import build_task
    a, b = build_task(cfg, device="cpu").kg, build_task(again, device="cpu").kg
    assert np.array_equal(a.valid, b.valid) and a.relations == ["knows", "likes", "near"]
    y.write_text("dataset_split: 0.5,0.1,0.1\n")
    with pytest.raises(SnagError, match=r"config.yaml:1: dataset_split '0.5,0.1,0.1': the shares sum to 0.7"):
        snagkg.resolve_config(config_file=str(y))
