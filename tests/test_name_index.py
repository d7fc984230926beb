"""One rule for the entity names users write, through every command that reads them.

A tiny graph in which two entities share the readable label ``Paris`` (two URIs with one tail),
and the identifier ``Lyon`` of one entity is also the label of another
(``http://ex.org/city/Lyon``). ``snagkg predict`` (``--head`` and ``--triples``),
``snagkg weights --entity``, ``snagkg features import`` (dict keys) and ``snagkg features
numeric`` / ``attributes`` (the entity column of a literals file) must all resolve a name to the
same entity, or all refuse it as ambiguous naming both candidates (docs/own_graph.md,
"Names you write").
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from _helpers import run_main as _cli
from snagkg.cli.main import main
from snagkg.data.datasets.alignment_pair import load_alignment_dataset, unified_names
from snagkg.data.datasets.synthetic_pair import write_synthetic_pair
from snagkg.data.name_index import NameIndex
from snagkg.data.tables import read_missing_ids
from snagkg.runtime.errors import SnagError

ENTITIES = [
    "http://ex.org/city/Paris",     # 0: label "Paris" ...
    "http://ex.org/person/Paris",   # 1: ... shared with this one
    "http://ex.org/city/Lyon",      # 2: label "Lyon" ...
    "Lyon",                         # 3: ... which is this entity's identifier
    "http://ex.org/city/Nice",      # 4: label "Nice", its own
    "France",                       # 5
    "Europe",                       # 6
    "Marie_Curie",                  # 7
    "Seine",                        # 8
    "Rhone",                        # 9
]
RELATIONS = ["locatedIn", "bornIn", "flowsThrough"]
N = len(ENTITIES)
PARIS = "'http://ex.org/city/Paris' (id 0) and 'http://ex.org/person/Paris' (id 1)"
LYON = "'http://ex.org/city/Lyon' (id 2) and 'Lyon' (id 3)"

# name written by the user -> entity id, or the candidates listed by the ambiguity error
CASES = [
    pytest.param("http://ex.org/person/Paris", 1, id="identifier"),
    pytest.param("<http://ex.org/person/Paris>", 1, id="identifier-in-brackets"),
    pytest.param(" http://ex.org/city/Paris ", 0, id="identifier-with-spaces"),
    pytest.param("Lyon", 3, id="identifier-beats-a-label"),
    pytest.param("Nice", 4, id="label"),
    pytest.param("NICE", 4, id="label-any-case"),
    pytest.param("5", 5, id="id"),
    pytest.param("Paris", PARIS, id="shared-label"),
    pytest.param("paris", PARIS, id="shared-label-any-case"),
    pytest.param("lyon", LYON, id="identifier-and-label-in-other-case"),
]


def write_graph(folder: Path) -> Path:
    """An OpenKE folder over :data:`ENTITIES` (every entity in train) with a 4-wide image table."""
    folder.mkdir(parents=True)
    (folder / "entity2id.txt").write_text(f"{N}\n" + "".join(f"{e}\t{i}\n" for i, e in enumerate(ENTITIES)))
    (folder / "relation2id.txt").write_text(f"{len(RELATIONS)}\n"
                                            + "".join(f"{r}\t{i}\n" for i, r in enumerate(RELATIONS)))
    train = [(i, (i + 1) % N, i % 3) for i in range(N)] + [(i, (i + 3) % N, (i + 1) % 3) for i in range(N)]
    splits = {"train": train, "valid": [(i, (i + 5) % N, i % 3) for i in range(2)],
              "test": [(i, (i + 7) % N, (i + 2) % 3) for i in range(2, 4)]}
    for name, rows in splits.items():
        (folder / f"{name}2id.txt").write_text(f"{len(rows)}\n" + "".join(f"{h} {t} {r}\n" for h, t, r in rows))
    (folder / "features").mkdir()
    np.save(folder / "features" / "image.npy", np.random.default_rng(0).standard_normal((N, 4)).astype(np.float32))
    return folder


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> Path:
    return write_graph(tmp_path_factory.mktemp("names") / "ds")


@pytest.fixture(scope="module")
def run(graph) -> Path:
    """A completion run of 1 epoch on :func:`graph` (names are all that matters here)."""
    cfg = graph.parent / "tiny.yaml"
    cfg.write_text("encoder: {hidden: 8, heads: 2}\ntrain: {epochs: 1, batch_size: 64, negatives: 4, eval_every: 1}\n")
    out = graph.parent / "run"
    code = main(["train", "--dataset", str(graph), "--output", str(out), "--config", str(cfg), "--no-progress",
                 "--device", "cpu"])
    assert code == 0
    return out


def _outcome(code, err, resolved, where=""):
    """``resolved`` (an entity id) on success; the error line (checked to name ``where``) otherwise."""
    if code == 0:
        return resolved()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {where}"), err
    return lines[0]


def by_predict(run, key, capsys, tmp_path):
    code, out, err = _cli(["predict", run, "--head", key, "--relation", "locatedIn", "--top", "1",
                           "--format", "json"], capsys)
    return _outcome(code, err, lambda: ENTITIES.index(json.loads(out)["query"]["head"]))


def by_triples_file(run, key, capsys, tmp_path):
    f = tmp_path / "triples.tsv"
    f.write_text(f"France\tlocatedIn\tEurope\n{key}\tlocatedIn\tFrance\n")
    code, out, err = _cli(["predict", run, "--triples", f, "--format", "tsv"], capsys)
    return _outcome(code, err, lambda: ENTITIES.index(out.splitlines()[2].split("\t")[0]), f"{f}:2: ")


def by_weights(run, key, capsys, tmp_path):
    csv = tmp_path / "w.csv"
    code, out, err = _cli(["weights", run, "--entity", key, "--output", csv], capsys)
    return _outcome(code, err, lambda: int(csv.read_text().splitlines()[1].split(",")[0]))


def _copy(graph, tmp_path) -> Path:
    return Path(shutil.copytree(graph, tmp_path / "copy"))


def _present(table: Path) -> int:
    listed = table.with_suffix(".missing.txt")
    missing = read_missing_ids(listed, N) if listed.exists() else np.zeros(N, dtype=bool)
    rows = [i for i in range(N) if not missing[i] and not np.isnan(np.load(table)[i]).all()]
    assert len(rows) == 1, rows
    return rows[0]


def by_import(graph, key, capsys, tmp_path):
    ds = _copy(graph, tmp_path)
    src = tmp_path / "vectors.pt"
    torch.save({key: torch.ones(3)}, src)
    code, out, err = _cli(["features", "import", "--dataset", ds, "--modality", "probe", "--from", src], capsys)
    return _outcome(code, err, lambda: _present(ds / "features" / "probe.npy"), f"{src}: ")


def _by_literals(command, graph, key, capsys, tmp_path):
    ds = _copy(graph, tmp_path)
    lit = tmp_path / "literals.tsv"
    lit.write_text(f"# entity\tproperty\tvalue\n{key}\tdbo:population\t42\n")
    out_file = tmp_path / f"{command}.npy"
    flag = "--from" if command == "numeric" else "--literals"
    code, out, err = _cli(["features", command, "--dataset", ds, flag, lit, "--output", out_file], capsys)
    return _outcome(code, err, lambda: _present(out_file), f"{lit}:2: ")


def by_numeric(graph, key, capsys, tmp_path):
    return _by_literals("numeric", graph, key, capsys, tmp_path)


def by_attributes(graph, key, capsys, tmp_path):
    return _by_literals("attributes", graph, key, capsys, tmp_path)


RUN_COMMANDS = [by_predict, by_triples_file, by_weights]
DATASET_COMMANDS = [by_import, by_numeric, by_attributes]


def _check(got, want, command):
    if isinstance(want, int):
        assert got == want, f"{command.__name__}: {got}"
    else:
        assert isinstance(got, str) and "is ambiguous" in got and want in got, f"{command.__name__}: {got}"


@pytest.mark.parametrize("key,want", CASES)
@pytest.mark.parametrize("command", RUN_COMMANDS, ids=lambda c: c.__name__[3:])
def test_run_commands_resolve_names_by_the_one_rule(run, command, key, want, capsys, tmp_path):
    _check(command(run, key, capsys, tmp_path), want, command)


@pytest.mark.parametrize("key,want", CASES)
@pytest.mark.parametrize("command", DATASET_COMMANDS, ids=lambda c: c.__name__[3:])
def test_feature_commands_resolve_names_by_the_one_rule(graph, command, key, want, capsys, tmp_path):
    got = command(graph, key, capsys, tmp_path)
    _check(got, want, command)
    if not isinstance(want, int):
        assert not (tmp_path / "copy" / "features" / "probe.npy").exists()


def test_unknown_names_are_refused_by_run_commands_and_skipped_in_feature_files(run, graph, capsys, tmp_path):
    for command in RUN_COMMANDS:
        got = command(run, "Atlantis", capsys, tmp_path)
        assert isinstance(got, str) and "unknown entity 'Atlantis'" in got, got
    ds = _copy(graph, tmp_path)
    src = tmp_path / "vectors.pt"
    torch.save({"Atlantis": torch.ones(3), "Nice": torch.ones(3)}, src)
    code, out, err = _cli(["features", "import", "--dataset", ds, "--modality", "probe", "--from", src], capsys)
    assert code == 0 and "1 keys matched no entity" in err + out
    assert _present(ds / "features" / "probe.npy") == 4


def test_a_uri_in_both_graphs_of_an_alignment_pair_is_ambiguous_for_every_feature_command(tmp_path, capsys):
    """The same URI in both graphs (two rows of the unified id space): neither the first nor the last
    row wins; the error names both ids, and the id picks one."""
    folder = write_synthetic_pair(tmp_path / "pair", entities=12, seed=3, layout="dbp15k")
    first = (folder / "ent_ids_1").read_text().splitlines()
    second = (folder / "ent_ids_2").read_text().splitlines()
    ident, uri = first[0].split("\t")
    other = second[0].split("\t")[0]
    (folder / "ent_ids_2").write_text("\n".join([f"{other}\t{uri}"] + second[1:]) + "\n")
    n = len(unified_names(load_alignment_dataset(str(folder), features=False)))
    ids = sorted([int(ident), int(other)])
    src, lit = tmp_path / "v.pt", tmp_path / "literals.tsv"
    for key, want in ((uri, None), (f"<{uri}>", None), (str(ids[1]), ids[1])):
        torch.save({key: torch.ones(2)}, src)
        lit.write_text(f"{key}\tdbo:area\t7\n")
        for argv, where in ((["import", "--modality", "probe", "--from", src], f"{src}: "),
                            (["numeric", "--from", lit], f"{lit}:1: ")):
            code, out, err = _cli(["features", *argv, "--dataset", folder, "--output", tmp_path / "probe.npy"],
                                  capsys)
            if want is None:
                assert code == 2 and err.startswith(f"error: {where}") and "is ambiguous" in err, err
                assert f"(id {ids[0]}) and '{uri}' (id {ids[1]}); give the id" in err, err
            else:
                assert code == 0, err
                got = np.load(tmp_path / "probe.npy")
                assert [i for i in range(n) if not np.isnan(got[i]).all()] == [want]
                (tmp_path / "probe.npy").unlink()


def test_the_same_identifier_twice_is_ambiguous_and_asks_for_the_id():
    """Two graphs of an alignment pair may both have an entity ``X``: neither the first nor the last wins."""
    index = NameIndex(["X", "", "Y", "X"])
    with pytest.raises(SnagError, match=r"'X' \(id 0\) and 'X' \(id 3\); give the id"):
        index.find("X")
    with pytest.raises(SnagError, match="ambiguous"):
        index.lookup("x")
    assert index.find("3") == 3 and index.lookup("1") is None and index.lookup("") is None
    assert NameIndex(["r0", "r1"], "relation").find("1") == 1
