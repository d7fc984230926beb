"""Find entities and relations by the names users write: the one resolver of every command.

``snagkg predict`` (``--head``, ``--triples``), ``snagkg weights --entity``, ``snagkg features
import`` (dict keys) and the ``snagkg features`` commands that read per-entity files (literals,
descriptions, names, images) all turn a user's name into an id with :class:`NameIndex`, by one
rule. A name is tried, in this order, as written, with surrounding spaces removed and without one
pair of ``<>``:

1. **identifier**: the name exactly as the dataset writes it (``entity2id.txt``,
   ``entities.tsv``, the triples file, an alignment URI);
2. **readable form**: another spelling of an identifier (:func:`snagkg.data.uri_labels.name_aliases`:
   without ``<>``, the URI tail such as ``Barack_Obama`` or ``Q42``, the display name
   ``Barack Obama``);
3. the same forms **in any case**;
4. a whole number: the **id** itself.

The first level where the name matches anything decides: so an identifier always finds its own
entity, even when it is also another entity's readable form. If that level matches several
entries (two URIs with one tail ``Paris``; the same URI in both graphs of an alignment pair), the
name is **ambiguous**: a one-line :class:`~snagkg.runtime.errors.SnagError` (at the file and line
when the name comes from a file) that lists the candidates with their ids; never a silent pick.
:meth:`NameIndex.find` also refuses a name that matches nothing (listing up to five close names);
:meth:`NameIndex.lookup` returns ``None`` for it, for files that may mention entities the dataset
does not have.
"""
from __future__ import annotations

import difflib
from typing import Dict, List, Optional, Sequence, Tuple

from snagkg.data.uri_labels import name_aliases, unbracket
from snagkg.runtime.errors import PathLike, SnagError

#: candidates listed in an error
MAX_CANDIDATES = 5


def _key_forms(name: str) -> List[str]:
    """``name`` as written, stripped, and without one pair of ``<>``; duplicates and empties dropped."""
    out: List[str] = []
    for form in (name, name.strip(), unbracket(name)):
        if form and form not in out:
            out.append(form)
    return out


class NameIndex:
    """Index of ``names`` (one per internal id; ``""`` for an unused id) for :meth:`find` and
    :meth:`lookup`; ``what`` names the kind in errors."""

    def __init__(self, names: Sequence[str], what: str = "entity"):
        self.names = list(names)
        self.what = what
        self._exact: Dict[str, List[int]] = {}
        for i, name in enumerate(self.names):
            if name:
                self._exact.setdefault(name, []).append(i)
        self._alias: Optional[Dict[str, List[int]]] = None
        self._folded: Optional[Dict[str, List[int]]] = None

    def __len__(self) -> int:
        return len(self.names)

    def _aliases(self) -> Tuple[Dict[str, List[int]], Dict[str, List[int]]]:
        if self._alias is None or self._folded is None:
            alias: Dict[str, List[int]] = {}
            folded: Dict[str, List[int]] = {}
            for i, name in enumerate(self.names):
                if not name:
                    continue
                for form in name_aliases(name):
                    for table, key in ((alias, form), (folded, form.casefold())):
                        ids = table.setdefault(key, [])
                        if not ids or ids[-1] != i:
                            ids.append(i)
            self._alias, self._folded = alias, folded
        return self._alias, self._folded

    def row(self, ident: int) -> Optional[int]:
        """``ident`` if it is the id of a named entry, else ``None``."""
        return ident if 0 <= ident < len(self.names) and self.names[ident] else None

    def match(self, name: str) -> Tuple[List[int], str]:
        """The ids ``name`` matches at the first level that matches anything, and that level:
        ``"name"`` (identifier), ``"label"`` (readable form), ``"case"`` (any case) or ``"id"``;
        ``([], "")`` when nothing matches."""
        forms = _key_forms(name) if isinstance(name, str) else []
        if not forms:
            return [], ""
        for form in forms:
            if form in self._exact:
                return self._exact[form], "name"
        alias, folded = self._aliases()
        for level, table, keys in (("label", alias, forms), ("case", folded, [f.casefold() for f in forms])):
            for key in keys:
                if key in table:
                    return table[key], level
        text = forms[-1]
        if text.isascii() and text.isdigit():
            ident = self.row(int(text))
            if ident is not None:
                return [ident], "id"
        return [], ""

    def lookup(self, name: str, path: Optional[PathLike] = None, line: Optional[int] = None) -> Optional[int]:
        """The id of ``name``, ``None`` if it names nothing; a :class:`SnagError` (at ``path:line`` when
        given) if it is ambiguous."""
        ids, _ = self.match(name)
        if len(ids) > 1:
            raise self.ambiguous(name, ids, path, line)
        return ids[0] if ids else None

    def find(self, name: str, path: Optional[PathLike] = None, line: Optional[int] = None) -> int:
        """The id of ``name``; a :class:`SnagError` (at ``path:line`` when given) if there is no such
        name or it is ambiguous."""
        if not isinstance(name, str) or not name.strip():
            raise SnagError(f"empty {self.what} name", path, line)
        ident = self.lookup(name, path, line)
        if ident is not None:
            return ident
        close = self.candidates(name)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SnagError(f"unknown {self.what} {name!r}{hint}", path, line)

    def ambiguous(self, name: str, ids: Sequence[int], path: Optional[PathLike] = None,
                  line: Optional[int] = None) -> SnagError:
        """The error for ``name`` matching the entries ``ids``: each candidate with its id."""
        shown = [f"{self.names[i]!r} (id {i})" for i in ids[:MAX_CANDIDATES]]
        listed = ", ".join(shown[:-1]) + " and " + shown[-1] if len(ids) <= MAX_CANDIDATES else \
            ", ".join(shown) + f" and {len(ids) - MAX_CANDIDATES} more"
        fix = "give the id" if len({self.names[i] for i in ids}) == 1 else "give the full name or the id"
        short = name if len(name) <= 80 else name[:77] + "..."
        plural = "entities" if self.what == "entity" else self.what + "s"
        return SnagError(f"{self.what} {short!r} is ambiguous: it could name several {plural}, {listed}; {fix}",
                         path, line)

    def candidates(self, name: str, n: int = MAX_CANDIDATES) -> List[str]:
        """Up to ``n`` full names close to ``name`` (difflib over the names and their readable forms)."""
        alias, folded = self._aliases()
        out: List[str] = []
        for pool, key in ((alias, name), (folded, name.strip().casefold())):
            for match in difflib.get_close_matches(key, list(pool), n=n * 2, cutoff=0.6):
                for i in pool[match]:
                    if self.names[i] not in out:
                        out.append(self.names[i])
            if len(out) >= n:
                break
        return out[:n]
