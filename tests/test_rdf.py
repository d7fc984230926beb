"""RDF graphs (N-Triples, Turtle, N-Quads, gzip): the same ids and triples as the TSV of the same
graph, literals kept as attribute data, blank nodes, syntax errors with file and line, the missing
rdflib message, and convert."""
from __future__ import annotations

import gzip
import sys

import numpy as np
import pytest

from snagkg.cli.main import main
from snagkg.data.datasets import load_completion_dataset, read_openke
from snagkg.runtime.errors import SnagError

from test_labelled import graph_rows, names, one_error, write_tsv

X = "http://example.org/"


def iri_rows():
    """The graph of test_labelled with IRIs as names (no spaces in IRIs)."""
    return [tuple(n.replace(" ", "_") for n in row) for row in graph_rows(prefix=X)]


def nt_text(rows, graph_name: str = "") -> str:
    g = f" <{graph_name}>" if graph_name else ""
    return "".join(f"<{h}> <{r}> <{t}>{g} .\n" for h, r, t in rows)


def test_n_triples_give_the_same_ids_and_triples_as_the_tsv(tmp_path):
    pytest.importorskip("rdflib")
    rows = iri_rows()
    tsv = load_completion_dataset(str(write_tsv(tmp_path / "a" / "g.tsv", rows)))
    (tmp_path / "g.nt").write_text(nt_text(rows[::-1]))
    nt = load_completion_dataset(str(tmp_path / "g.nt"))
    assert nt.entities == tsv.entities and nt.relations == tsv.relations
    assert X + "New_York" in nt.entities and all(e.startswith(X) for e in nt.entities)
    for part in ("train", "valid", "test"):
        assert np.array_equal(nt.split(part), tsv.split(part))
    assert nt.info["source"] == {"file": "g.nt", "format": "nt"} and nt.literals == []


def test_turtle_n_quads_and_gzip_read_the_same_graph(tmp_path):
    pytest.importorskip("rdflib")
    rows = iri_rows()
    (tmp_path / "g.nt").write_text(nt_text(rows))
    ref = load_completion_dataset(str(tmp_path / "g.nt"))
    (tmp_path / "q.nq").write_text(nt_text(rows[:80], X + "graphA") + nt_text(rows[80:]))  # graph names ignored
    ttl = "@prefix ex: <http://example.org/> .\n" + "".join(
        f"<{h}> <{r}> <{t}> .\n" for h, r, t in rows)
    (tmp_path / "t.ttl").write_text(ttl)
    (tmp_path / "z.nt.gz").write_bytes(gzip.compress(nt_text(rows).encode()))
    for name in ("q.nq", "t.ttl", "z.nt.gz"):
        kg = load_completion_dataset(str(tmp_path / name))
        assert kg.entities == ref.entities and np.array_equal(kg.test, ref.test), name
        assert X + "graphA" not in kg.entities


def test_literals_are_kept_and_blank_nodes_named_in_order(tmp_path, capsys):
    pytest.importorskip("rdflib")
    rows = iri_rows()
    extra = (
        f'<{X}e1> <{X}label> "Eins"@de .\n'
        f'<{X}e1> <{X}label> "One"@en .\n'
        f'<{X}e2> <{X}population> "42"^^<http://www.w3.org/2001/XMLSchema#integer> .\n'
        f'<{X}e3> <{X}comment> "two\\tcolumns\\nand a line" .\n'
        f'_:zz <{X}near> <{X}e1> .\n'
        f'_:aa <{X}near> _:zz .\n'
        f'_:aa <{X}label> "anon" .\n'
    )
    (tmp_path / "g.nt").write_text(nt_text(rows) + extra)
    kg = load_completion_dataset(str(tmp_path / "g.nt"))
    assert kg.literals == [(X + "e1", X + "label", "Eins"), (X + "e1", X + "label", "One"),
                           (X + "e2", X + "population", "42"), (X + "e3", X + "comment", "two\tcolumns\nand a line"),
                           ("_:b1", X + "label", "anon")]
    assert kg.info["literals"] == 5 and "5 literal values kept as attribute data" in kg.notes
    # first appearance: _:zz is _:b0, _:aa is _:b1; literal predicates are not relations
    assert {"_:b0", "_:b1"} <= set(kg.entities) and X + "label" not in kg.relations
    assert (("_:b1", X + "near", "_:b0") in names(kg, "train") | names(kg, "valid") | names(kg, "test"))
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "g.nt"), "--output", str(out)]) == 0
    assert "5 literals" in capsys.readouterr().out
    lines = (out / "literals.tsv").read_text().splitlines()
    assert lines[3] == f"{X}e3\t{X}comment\ttwo\\tcolumns\\nand a line" and len(lines) == 5
    back = read_openke(out)
    assert back.entities == kg.entities and np.array_equal(back.train, kg.train)


def test_a_folder_of_rdf_split_files(tmp_path):
    pytest.importorskip("rdflib")
    rows = iri_rows()
    folder = tmp_path / "rdf"
    folder.mkdir()
    (folder / "train.nt").write_text(nt_text(rows[:-20]))
    (folder / "valid.ttl").write_text(nt_text(rows[-20:-10]))
    (folder / "test.nq.gz").write_bytes(gzip.compress(nt_text(rows[-10:]).encode()))
    kg = load_completion_dataset(str(folder))
    assert names(kg, "valid") == set(rows[-20:-10]) and names(kg, "test") == set(rows[-10:])
    assert kg.info["source"]["format"] == {"train": "nt", "valid": "ttl", "test": "nq"}
    with pytest.raises(SnagError, match="--columns applies to TSV/CSV triples, not to RDF"):
        load_completion_dataset(str(folder), columns="h,t,r")


@pytest.mark.parametrize("name, text, line, fragment", [
    ("bad.nt", f"<{X}a> <{X}p> <{X}b> .\n<{X}a> <{X}p> {X}b> .\n", 2, "RDF syntax error"),
    ("bad.nq", f"<{X}a> <{X}p> <{X}b> <{X}g> .\n\n<{X}a> <{X}p> <{X}b> <{X}g> <{X}h> .\n", 3, "RDF syntax error"),
    ("bad.ttl", f"@prefix x: <{X}> .\nx:a x:p x:b ;\n  x:q x:c .\nx:a x:p x:c\n x:d .\n", 5,
     "RDF syntax error: expected '.'"),
    ("empty.nt", "# nothing here\n", None, "empty file: no RDF statements"),
])
def test_rdf_syntax_errors_name_file_and_line(tmp_path, capsys, name, text, line, fragment):
    pytest.importorskip("rdflib")
    f = tmp_path / name
    f.write_text(text)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(f), "--output", str(run), "--epochs", "1", "--no-progress"]) == 2
    msg = one_error(capsys.readouterr().err)
    where = f"error: {f}:{line}: " if line else f"error: {f}: "
    assert msg.startswith(where) and fragment in msg, msg
    assert not run.exists()
    if name.endswith(".nt"):  # the same line inside a .gz
        gz = tmp_path / (name + ".gz")
        gz.write_bytes(gzip.compress(text.encode()))
        assert main(["convert", str(gz), "--output", str(tmp_path / "o")]) == 2
        assert one_error(capsys.readouterr().err).startswith(f"error: {gz}:{line}" if line else f"error: {gz}")
        assert not (tmp_path / "o").exists()


def test_without_rdflib_the_error_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rdflib", None)  # import rdflib now raises ImportError
    f = tmp_path / "g.ttl"
    f.write_text(nt_text(iri_rows()))
    assert main(["convert", str(f), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "error: reading RDF needs rdflib: pip install 'snagkg[rdf]'\n"
