"""Reading per-entity input files for the ``snagkg features`` commands built from raw data.

* :func:`read_literals` reads an ``entity<TAB>property<TAB>value`` table (the
  ``literals.tsv`` of a converted RDF graph, ``numeric_literals.tsv``, ...):
  lines starting with ``#`` are comments; a value may be an RDF literal
  (``"text"@en``, ``"1.5"^^<...#double>``), whose quotes, language tag and
  datatype are removed, and may hold the escapes ``snagkg convert`` writes
  (``\\t``, ``\\n``, ``\\r``, ``\\\\``). Its entity column is resolved by
  :class:`snagkg.data.name_index.NameIndex` (identifier, readable form, any
  case, id; a name shared by several entities is an error at its line).
* :func:`expand_property` turns ``rdfs:comment`` into the full IRI; properties
  match when their expanded, bracket-free forms are equal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from snagkg.data.lines import read_lines
from snagkg.data.name_index import NameIndex
from snagkg.runtime.errors import SnagError

#: prefixes understood in ``--property`` and in property columns
PREFIXES = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "dcterms": "http://purl.org/dc/terms/",
    "schema": "http://schema.org/",
    "dbo": "http://dbpedia.org/ontology/",
    "dbp": "http://dbpedia.org/property/",
    "wdt": "http://www.wikidata.org/prop/direct/",
}
LITERALS_FILE = "literals.tsv"
_LITERAL = re.compile(r'^"(.*)"(?:@[A-Za-z0-9-]+|\^\^\S+)?$', re.S)
_ESCAPE = re.compile(r'\\([\\tnr"])')
_ESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", '"': '"'}
_CURIE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*):([^/].*)?$")


def expand_property(prop: str) -> str:
    """``rdfs:comment`` -> ``http://www.w3.org/2000/01/rdf-schema#comment``; ``<IRI>`` -> ``IRI``."""
    text = prop.strip()
    if len(text) >= 2 and text[0] == "<" and text[-1] == ">":
        text = text[1:-1].strip()
    m = _CURIE.match(text)
    if m and m.group(1) in PREFIXES:
        return PREFIXES[m.group(1)] + (m.group(2) or "")
    return text


def literal_value(raw: str) -> str:
    """A value's text: an RDF literal loses its quotes, language tag and datatype (``"Paris"@en`` ->
    ``Paris``), and the escapes ``\\t``, ``\\n``, ``\\r``, ``\\\\``, ``\\"`` (as ``snagkg convert`` writes
    ``literals.tsv``) are decoded."""
    text = raw.strip()
    m = _LITERAL.match(text)
    if m:
        text = m.group(1)
    return _ESCAPE.sub(lambda e: _ESCAPES[e.group(1)], text)


@dataclass
class Literal:
    """One row of an ``entity, property, value`` table (``entity``: the row, ``line``: 1-based)."""

    entity: int
    prop: str
    value: str
    line: int


def _columns(text: str, path: Path, number: int) -> List[str]:
    parts = text.split("\t")
    if len(parts) < 3:
        raise SnagError(f"expected 3 tab-separated columns (entity, property, value), found {len(parts)}",
                        path, number)
    return [parts[0], parts[1], "\t".join(parts[2:])]


def read_literals(path, index: NameIndex, prop: Optional[str] = None):
    """Rows of the ``entity<TAB>property<TAB>value`` file ``path`` whose entity ``index`` knows
    (and whose property is ``prop``, compared by :func:`expand_property`).

    Returns ``(rows, unknown)``: the :class:`Literal` rows and the number of rows (of that
    property) that name no entity of the dataset, which are skipped."""
    path = Path(path)
    want = expand_property(prop) if prop is not None else None
    rows: List[Literal] = []
    unknown = 0
    for number, text in read_lines(path):
        if text.lstrip().startswith("#"):
            continue
        ent, p, value = _columns(text, path, number)
        p = expand_property(p)
        if not ent.strip() or not p:
            raise SnagError("empty entity or property column", path, number)
        if want is not None and p != want:
            continue
        row = index.lookup(ent, path, number)
        if row is None:
            unknown += 1
            continue
        rows.append(Literal(row, p, literal_value(value), number))
    return rows, unknown


def literals_path(folder: Path, given: Optional[str]) -> Path:
    """``--literals FILE`` or the dataset's ``literals.tsv``; a one-line error saying how to give one."""
    if given is not None:
        p = Path(given)
        if not p.is_file():
            raise SnagError("literals file not found", p)
        return p
    p = Path(folder) / LITERALS_FILE
    if not p.is_file():
        raise SnagError(f"no {LITERALS_FILE} in the dataset folder; give an entity<TAB>property<TAB>value "
                        "table with --literals FILE", p)
    return p
