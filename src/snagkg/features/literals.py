"""Reading per-entity input files for the ``snagkg features`` commands built from raw data.

* :class:`EntityIndex` resolves an entity written in a user's file to its row
  (the entity id): the exact name of ``entity2id.txt`` (or the URI of an
  alignment folder) first, then another spelling of it (without ``<>``, the
  URI tail, the display name; :func:`snagkg.datasets.names.name_aliases`),
  then a number as the entity id.
* :func:`read_literals` reads an ``entity<TAB>property<TAB>value`` table (the
  ``literals.tsv`` of a converted RDF graph, ``numeric_literals.tsv``, ...):
  lines starting with ``#`` are comments; a value may be an RDF literal
  (``"text"@en``, ``"1.5"^^<...#double>``), whose quotes, language tag and
  datatype are removed, and may hold the escapes ``snagkg convert`` writes
  (``\\t``, ``\\n``, ``\\r``, ``\\\\``).
* :func:`expand_property` turns ``rdfs:comment`` into the full IRI; properties
  match when their expanded, bracket-free forms are equal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from snagkg.data.datasets.names import name_aliases
from snagkg.data.lines import read_lines
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


class EntityIndex:
    """Resolve entity names, other spellings of them and ids (module docstring) to rows."""

    def __init__(self, names: List[str]):
        self.names = names
        self.exact: Dict[str, int] = {}
        for i, name in enumerate(names):
            if name:
                self.exact.setdefault(name, i)
        self.alias: Dict[str, List[int]] = {}
        for i, name in enumerate(names):
            if not name:
                continue
            for a in name_aliases(name):
                ids = self.alias.setdefault(a, [])
                if i not in ids:
                    ids.append(i)

    def __len__(self) -> int:
        return len(self.names)

    def find(self, key: str, path: Optional[Path] = None, line: Optional[int] = None) -> Optional[int]:
        """The row ``key`` names, ``None`` if it names no entity; a :class:`SnagError` if it could
        name several (a shared spelling, e.g. two URIs with the same tail)."""
        if key in self.exact:
            return self.exact[key]
        k = key.strip()
        if len(k) >= 2 and k[0] == "<" and k[-1] == ">" and k not in self.alias:
            k = k[1:-1].strip()  # <IRI> for an entity written without brackets
        if k in self.exact:
            return self.exact[k]
        ids = self.alias.get(k)
        if ids:
            if len(ids) > 1:
                raise SnagError(f"{k[:60]!r} could name several entities (ids {', '.join(map(str, ids[:5]))}); "
                                "give the full name or the id", path, line)
            return ids[0]
        if k.isdigit():
            i = int(k)
            if i < len(self.names) and self.names[i]:
                return i
        return None


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


def read_literals(path, index: EntityIndex, prop: Optional[str] = None):
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
        row = index.find(ent, path, number)
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
