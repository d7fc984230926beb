"""RDF graphs: N-Triples (``.nt``), Turtle (``.ttl``) and N-Quads (``.nq``), each optionally ``.gz``.

Parsed with rdflib (the optional extra ``snagkg[rdf]``). What becomes what:

* a statement whose object is an IRI or a blank node is a triple
  ``(subject, predicate, object)``: entities are named by their IRI string
  (``http://example.org/a``, no angle brackets), relations by the predicate's
  IRI; ``rdf:type`` statements are triples like any other (classes become entities);
* a statement whose object is a literal is attribute data:
  ``(subject, predicate, lexical form)`` in :attr:`KnowledgeGraph.literals`
  (``snagkg convert`` writes it as ``literals.tsv``); the datatype and the
  language tag are dropped (``"chat"@fr`` -> ``chat``), so several languages
  give several rows;
* a blank node is an entity named ``_:b0``, ``_:b1``, ... in the order the
  blank nodes first appear in the file (the labels in the file are not kept,
  and the same label in two files is two nodes);
* in N-Quads the graph name (fourth term) is ignored: all graphs are merged.

A syntax error is a one-line error with the file and line rdflib reports.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from snagkg.data.datasets.labelled import base_suffix, read_text
from snagkg.runtime.errors import SnagError

NameTriple = Tuple[str, str, str]
RDF_SUFFIXES = (".nt", ".ttl", ".nq")
INSTALL_HINT = "reading RDF needs rdflib: pip install 'snagkg[rdf]'"


def _rdflib():
    try:
        import rdflib  # deferred: optional extra [rdf]
    except ImportError:
        raise SnagError(INSTALL_HINT) from None
    return rdflib


class _Names:
    """Names of RDF terms: IRIs as strings, blank nodes numbered by first appearance."""

    def __init__(self, rdflib) -> None:
        self.BNode, self.Literal = rdflib.BNode, rdflib.Literal
        self.blank: Dict[object, str] = {}

    def __call__(self, term) -> str:
        if isinstance(term, self.BNode):
            name = self.blank.get(term)
            if name is None:
                name = self.blank[term] = f"_:b{len(self.blank)}"
            return name
        return str(term)


def _collect(statements, names: _Names, triples: List[NameTriple], literals: List[NameTriple]) -> None:
    for s, p, o in statements:
        subject, predicate = names(s), str(p)
        if isinstance(o, names.Literal):
            literals.append((subject, predicate, str(o)))
        else:
            triples.append((subject, predicate, names(o)))


def _line_statements(text: str, path: Path, quads: bool, rdflib):
    """Parse N-Triples / N-Quads line by line with rdflib's parser (so errors have a line number)."""
    from rdflib.plugins.parsers import ntriples as nt  # deferred: optional extra [rdf]

    parser = nt.W3CNTriplesParser()
    context: dict = {}
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        parser.line = line
        step = "a subject (<IRI> or _:blank)"
        try:
            parser.eat(nt.r_wspace)
            if not parser.line or parser.line.startswith("#"):
                continue
            s = parser.subject(context)
            parser.eat(nt.r_wspace)
            step = "a predicate (<IRI>)"
            p = parser.predicate()
            parser.eat(nt.r_wspace)
            step = "an object (<IRI>, _:blank or \"literal\")"
            o = parser.object(context)
            parser.eat(nt.r_wspace)
            if quads:
                step = "a graph name or '.'"
                parser.uriref() or parser.nodeid(context)  # the graph name: read and ignored
            step = "'.' at the end of the statement"
            parser.eat(nt.r_tail)
            if parser.line:
                raise nt.ParseError("trailing garbage")
        except nt.ParseError as exc:
            what = (str(exc).splitlines() or [""])[0]
            if what.startswith("Failed to eat") and " at " in what:  # rdflib shows its regular expression
                rest = what.split(" at ", 1)[1].strip()
                what = (f"expected {step} at {rest[:60]!r}" if rest else
                        f"expected {step}, but the line ends: {line.strip()[:80]!r}")
            raise SnagError(f"RDF syntax error: {what}", path, number) from None
        out.append((s, p, o))
    return out


def _turtle_statements(text: str, path: Path, rdflib):
    """Parse Turtle with rdflib, keeping the statements in the order the parser makes them."""
    from rdflib.plugins.parsers.notation3 import (  # deferred: optional extra [rdf]
        BadSyntax,  # deferred: optional extra [rdf]
    )

    class Recorder(rdflib.Graph):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list = []

        def add(self, triple):  # noqa: D401  (rdflib's sink interface)
            self.seen.append(triple)
            return self

    graph = Recorder()
    try:
        graph.parse(data=text, format="turtle", publicID=path.resolve().as_uri())
    except BadSyntax as exc:
        raise SnagError(f"RDF syntax error: {exc._why}", path, exc.lines + 1) from None
    except Exception as exc:  # rdflib raises several types for bad input
        raise SnagError(f"RDF syntax error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                        path) from None
    return graph.seen


def read_rdf(path) -> Tuple[List[NameTriple], List[NameTriple]]:
    """``(triples, literals)`` of one RDF file, as names (see the module docstring)."""
    rdflib = _rdflib()
    path = Path(path)
    suffix = base_suffix(path)
    if suffix not in RDF_SUFFIXES:
        raise SnagError(f"not an RDF file suffix {suffix!r} (use {', '.join(RDF_SUFFIXES)}, optionally .gz)", path)
    text = read_text(path)
    if suffix == ".ttl":
        statements = _turtle_statements(text, path, rdflib)
    else:
        statements = _line_statements(text, path, suffix == ".nq", rdflib)
    names = _Names(rdflib)
    triples: List[NameTriple] = []
    literals: List[NameTriple] = []
    _collect(statements, names, triples, literals)
    if not triples and not literals:
        raise SnagError("empty file: no RDF statements", path)
    return triples, literals


def read_rdf_files(paths: Dict[str, Path]) -> Tuple[Dict[str, List[NameTriple]], List[NameTriple]]:
    """Read several RDF files (a split name -> path); blank nodes are numbered across them all."""
    triples: Dict[str, List[NameTriple]] = {}
    literals: List[NameTriple] = []
    offset = 0
    for part, path in paths.items():
        rows, lits = read_rdf(path)
        if offset:  # blank nodes of different files are different nodes: number them on
            rows = [tuple(_shift(n, offset) for n in row) for row in rows]  # type: ignore[misc]
            lits = [(_shift(e, offset), p, v) for e, p, v in lits]
        offset += _count_blank(rows, lits)
        triples[part] = rows  # type: ignore[assignment]
        literals.extend(lits)
    return triples, literals


def _shift(name: str, offset: int) -> str:
    if name.startswith("_:b") and name[3:].isdigit():
        return f"_:b{int(name[3:]) + offset}"
    return name


def _count_blank(rows, lits) -> int:
    seen = {n for row in rows for n in (row[0], row[2]) if n.startswith("_:b")} | \
           {e for e, _, _ in lits if e.startswith("_:b")}
    return len(seen)
