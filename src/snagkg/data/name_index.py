"""Find entities and relations by the names users type.

A dataset names its entities by id (``entity_17``) or by URI
(``<http://dbpedia.org/resource/Barack_Obama>``). :class:`NameIndex` finds a
name first exactly, then through its readable forms
(:func:`snagkg.datasets.names.name_aliases`: the URI tail such as
``Barack_Obama``, the display name ``Barack Obama``), then the same forms
case-insensitively. A name that matches nothing, or more than one entry at
the first level where it matches anything, is a one-line
:class:`~snagkg.errors.SnagError` that lists up to five close candidates.
"""
from __future__ import annotations

import difflib
from typing import Dict, List, Optional, Sequence

from snagkg.data.datasets.names import name_aliases
from snagkg.runtime.errors import PathLike, SnagError

#: candidates listed in an error
MAX_CANDIDATES = 5


class NameIndex:
    """Index of ``names`` (one per internal id) for :meth:`find`; ``what`` names the kind in errors."""

    def __init__(self, names: Sequence[str], what: str = "entity"):
        self.names = list(names)
        self.what = what
        self._exact: Dict[str, List[int]] = {}
        for i, name in enumerate(self.names):
            self._exact.setdefault(name, []).append(i)
        self._alias: Optional[Dict[str, List[int]]] = None
        self._folded: Optional[Dict[str, List[int]]] = None

    def _build_aliases(self) -> None:
        alias: Dict[str, List[int]] = {}
        folded: Dict[str, List[int]] = {}
        for i, name in enumerate(self.names):
            for form in name_aliases(name):
                ids = alias.setdefault(form, [])
                if not ids or ids[-1] != i:
                    ids.append(i)
                low = folded.setdefault(form.casefold(), [])
                if not low or low[-1] != i:
                    low.append(i)
        self._alias, self._folded = alias, folded

    def find(self, name: str, path: Optional[PathLike] = None, line: Optional[int] = None) -> int:
        """The internal id of ``name``; a :class:`SnagError` (at ``path:line`` when given) if there is
        no such name or it is ambiguous."""
        if not isinstance(name, str) or not name.strip():
            raise SnagError(f"empty {self.what} name", path, line)
        ids = self._exact.get(name)
        if ids is None:
            if self._alias is None:
                self._build_aliases()
            assert self._alias is not None and self._folded is not None
            ids = self._alias.get(name) or self._alias.get(name.strip())
            if ids is None:
                ids = self._folded.get(name.strip().casefold())
        if ids and len(ids) == 1:
            return ids[0]
        if ids:
            shown = ", ".join(repr(self.names[i]) for i in ids[:MAX_CANDIDATES])
            more = f" and {len(ids) - MAX_CANDIDATES} more" if len(ids) > MAX_CANDIDATES else ""
            raise SnagError(f"{self.what} name {name!r} is ambiguous: it matches {shown}{more}; "
                            f"give the full name", path, line)
        close = self.candidates(name)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SnagError(f"unknown {self.what} {name!r}{hint}", path, line)

    def candidates(self, name: str, n: int = MAX_CANDIDATES) -> List[str]:
        """Up to ``n`` full names close to ``name`` (difflib over the names and their readable forms)."""
        if self._alias is None:
            self._build_aliases()
        assert self._alias is not None and self._folded is not None
        out: List[str] = []
        for pool, key in ((self._alias, name), (self._folded, name.strip().casefold())):
            for match in difflib.get_close_matches(key, list(pool), n=n * 2, cutoff=0.6):
                for i in pool[match]:
                    if self.names[i] not in out:
                        out.append(self.names[i])
            if len(out) >= n:
                break
        return out[:n]
