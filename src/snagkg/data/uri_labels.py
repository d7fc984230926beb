"""Readable names for entities whose ids are URIs (DBpedia, Wikidata, ...).

``entity2id.txt`` files name entities by URI. A sentence encoder needs the
words, so :func:`entity_display_name` turns

- ``<http://dbpedia.org/resource/Barack_Obama>`` into ``Barack Obama``
  (everything after ``/resource/``, so ``HIV/AIDS`` keeps its slash;
  URL-decoded; underscores become spaces);
- any other URI into its fragment (after ``#``) or its last path segment,
  decoded the same way;
- a plain name into itself (surrounding whitespace stripped).

A bare Wikidata id (``Q42``, also inside ``<http://www.wikidata.org/entity/Q42>``)
carries no words, so it has no display name (``None``): the entity counts as
missing the text modality.

Entity alignment keys its ``char`` and ``name`` modalities by
:func:`entity_name`, built from the same pieces with looser rules
(``lenient=True`` of :func:`uri_segment`, no space folding, lower case):
any text containing ``/resource/`` is cut after it, any ``#`` starts a
fragment, any ``/`` a path segment (no scheme needed, so ``a/b`` -> ``b``);
runs of spaces are kept; Wikidata ids stay (``q42``); the result is ``""``
rather than ``None`` when nothing is left.

:func:`name_aliases` lists the readable forms under which
:class:`snagkg.data.name_index.NameIndex` finds an entity.
"""
from __future__ import annotations

import re
from typing import List, Optional
from urllib.parse import unquote

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DBPEDIA = re.compile(r"^https?://(?:[A-Za-z0-9-]+\.)?dbpedia\.org/resource/(.+)$")
_QID = re.compile(r"Q\d+")
_SPACES = re.compile(r"\s+")


def unbracket(raw: str) -> str:
    """``raw`` stripped, without one pair of surrounding angle brackets."""
    text = raw.strip()
    if len(text) >= 2 and text[0] == "<" and text[-1] == ">":
        text = text[1:-1].strip()
    return text


def uri_segment(raw: str, lenient: bool = False) -> Optional[str]:
    """The identifying tail of a URI, undecoded (``None`` for a plain name).

    DBpedia resources: everything after ``/resource/``; other URIs: the
    fragment if there is one, else the last non-empty path segment.

    ``lenient`` (the alignment rule of :func:`entity_name`): any text, URI or
    not, all surrounding ``<``/``>`` removed; after the first ``/resource/``
    on any host, else after the last ``#`` (even if empty), else the last
    ``/``-separated segment, else the text itself; never ``None``.
    """
    if lenient:
        text = raw.strip().strip("<>")
        if "/resource/" in text:
            return text.split("/resource/", 1)[1]
        if "#" in text:
            return text.rsplit("#", 1)[1]
        if "/" in text.rstrip("/"):
            return text.rstrip("/").rsplit("/", 1)[1]
        return text
    text = unbracket(raw)
    if not _SCHEME.match(text):
        return None
    m = _DBPEDIA.match(text)
    if m:
        return m.group(1)
    if "#" in text:
        frag = text.rsplit("#", 1)[1]
        if frag:
            return frag
        text = text[:-1]
    rest = _SCHEME.sub("", text, count=1).rstrip("/")
    if "/" not in rest:  # only a host: nothing that names the entity
        return None
    seg = rest.rsplit("/", 1)[1]
    return seg or None


def _readable(segment: str, fold_spaces: bool = True) -> str:
    """URL-decode ``segment``, underscores to spaces, runs of spaces to one (``fold_spaces``), strip."""
    text = unquote(segment).replace("_", " ")
    return (_SPACES.sub(" ", text) if fold_spaces else text).strip()


def entity_display_name(raw: str) -> Optional[str]:
    """A readable name for the entity named ``raw`` in ``entity2id.txt``, or ``None``."""
    text = unbracket(raw)
    if not text:
        return None
    if _SCHEME.match(text):
        seg = uri_segment(text)
        if seg is None:
            return None
        if _QID.fullmatch(unquote(seg).strip()):
            return None
        name = _readable(seg)
    else:
        name = _SPACES.sub(" ", text)
    if not name or _QID.fullmatch(name):
        return None
    return name


def entity_name(raw: str) -> str:
    """Alignment's lower-cased name of an entity URI: ``http://x/resource/New_York`` -> ``new york``.

    The lenient rules of :func:`uri_segment`, decoded without folding runs of
    spaces; ``""`` when nothing is left (see the module docstring for how
    this differs from :func:`entity_display_name`).
    """
    return _readable(uri_segment(raw, lenient=True) or "", fold_spaces=False).lower()


def name_aliases(raw: str) -> List[str]:
    """Other spellings under which users key features for the entity ``raw``.

    In order: the name as written, without angle brackets, the URI tail as
    written and URL-decoded (underscores kept, e.g. ``Barack_Obama`` or
    ``Q42``), and the display name. Duplicates are dropped.
    """
    out: List[str] = []

    def add(value: Optional[str]) -> None:
        if value and value not in out:
            out.append(value)

    add(raw)
    add(raw.strip())
    add(unbracket(raw))
    seg = uri_segment(raw)
    if seg is not None:
        add(seg)
        add(unquote(seg))
    add(entity_display_name(raw))
    return out
