"""Labelled triples: ``head, relation, tail`` names in TSV or CSV files.

* ``.tsv`` (and ``.tab``): fields separated by tabs, no quoting;
* ``.csv``: comma-separated with CSV quoting (Python's :mod:`csv`);
* ``.txt`` (or a ``.tsv``/``.csv`` whose first line says otherwise is not
  guessed: the suffix decides): tabs if the first line has one, else CSV if it
  has a comma, else runs of whitespace;
* each of them may be gzip-compressed (``.tsv.gz``).

Every non-blank line is one triple of exactly three fields, surrounding
whitespace stripped. A first line whose three fields are all column names
(``head``/``relation``/``tail``, ``subject``/``predicate``/``object``,
``h``/``r``/``t``, ``s``/``p``/``o``, ``source``/``edge``/``target``, ...)
is a header: it is skipped and gives the column order, unless ``--columns``
(e.g. ``h,t,r``) sets it. A later line equal to that header (files concatenated
with ``cat``) is skipped too, with a note. A first line of three column names
that gives one role twice (``head, head, tail``) is an error naming the line:
it is neither a header nor a triple anyone means.
"""
from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import regular_file

NameTriple = Tuple[str, str, str]
TEXT_SUFFIXES = (".tsv", ".tab", ".csv", ".txt")

#: header words per role: 0 head, 1 relation, 2 tail
ROLE_WORDS: Dict[str, int] = {}
for _role, _words in enumerate((
        ("h", "head", "subject", "s", "subj", "source", "src", "from", "head_name", "head_entity", "entity1"),
        ("r", "relation", "rel", "predicate", "p", "pred", "property", "edge", "label", "relation_type", "type"),
        ("t", "tail", "object", "o", "obj", "target", "dst", "to", "tail_name", "tail_entity", "entity2"))):
    for _w in _words:
        ROLE_WORDS[_w] = _role
#: what ``--columns`` accepts for each role
COLUMN_WORDS = {"h": 0, "head": 0, "s": 0, "subject": 0, "r": 1, "relation": 1, "p": 1, "predicate": 1,
                "t": 2, "tail": 2, "o": 2, "object": 2}


def parse_columns(spec, flag: str = "--columns") -> Tuple[int, int, int]:
    """``--columns`` (``"h,t,r"``) -> the column index of head, relation and tail (``flag``: its name in errors)."""
    shown = spec if isinstance(spec, str) else ",".join(spec)
    words = [w.strip().lower() for w in (spec.split(",") if isinstance(spec, str) else spec)]
    roles = [COLUMN_WORDS.get(w) for w in words]
    if len(words) != 3 or None in roles or sorted(roles) != [0, 1, 2]:  # type: ignore[type-var]
        raise SnagError(f"{flag} {shown!r}: unknown column spec; give the role of each of the three columns "
                        f"as a permutation of h,r,t (head, relation, tail), e.g. h,t,r")
    return tuple(roles.index(role) for role in (0, 1, 2))  # type: ignore[return-value]


def base_suffix(path: Path) -> str:
    """The suffix that names the format, under a ``.gz`` (``a.tsv.gz`` -> ``.tsv``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (gunzipped if it ends in ``.gz``); a byte order mark is dropped."""
    path = regular_file(path)
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise SnagError(f"cannot read: {getattr(exc, 'strerror', None) or exc}", path) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SnagError("not valid UTF-8", path, line) from None


def _rows(text: str, path: Path) -> Iterator[Tuple[int, List[str]]]:
    """``(line number, fields)`` of every non-blank line, split by the file's format."""
    suffix = base_suffix(path)
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if suffix in (".tsv", ".tab") or (suffix not in (".csv",) and "\t" in first):
        kind = "tab"
    elif suffix == ".csv" or "," in first:
        kind = "csv"
    else:
        kind = "space"
    if kind == "csv":
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            start = 1
            for fields in reader:
                number, start = start, reader.line_num + 1
                if fields and any(f.strip() for f in fields):
                    yield number, fields
        except csv.Error as exc:
            raise SnagError(f"CSV syntax error: {exc}", path, reader.line_num) from None
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        yield number, (line.split("\t") if kind == "tab" else line.split())


def _header_order(fields: Sequence[str]) -> Optional[Tuple[int, int, int]]:
    """The column of head, relation and tail if ``fields`` is a header line, else ``None``."""
    roles = [ROLE_WORDS.get(f.strip().lower().replace(" ", "_")) for f in fields]
    if len(roles) != 3 or None in roles or sorted(roles) != [0, 1, 2]:  # type: ignore[type-var]
        return None
    return tuple(roles.index(role) for role in (0, 1, 2))  # type: ignore[return-value]


def _repeated_role(fields: Sequence[str]) -> Optional[str]:
    """The role that a line of three column names gives twice (``head, head, tail``), else ``None``."""
    words = [f.strip().lower().replace(" ", "_") for f in fields]
    roles = [ROLE_WORDS.get(w) for w in words]
    if len(roles) != 3 or None in roles or sorted(roles) == [0, 1, 2]:  # type: ignore[type-var]
        return None
    twice = next(r for r in roles if roles.count(r) > 1)
    return ("head", "relation", "tail")[twice]  # type: ignore[index]


def read_labelled(path, columns=None) -> Tuple[List[NameTriple], Dict[str, object]]:
    """The name triples of one labelled file, and how it was read (``header``, ``columns``, and
    ``repeated_header``: the numbers of later lines equal to the header, skipped)."""
    path = Path(path)
    text = read_text(path)
    order = parse_columns(columns) if columns is not None else None
    out: List[NameTriple] = []
    header = False
    header_words: Optional[List[str]] = None
    repeated: List[int] = []
    first = True
    for number, fields in _rows(text, path):
        if first:
            first = False
            found = _header_order(fields)
            if found is not None:
                header = True
                header_words = [f.strip().lower() for f in fields]
                order = order or found
                continue
            twice = _repeated_role(fields)
            if twice is not None:
                raise SnagError(f"this looks like a header ({', '.join(f.strip() for f in fields)}) but names the "
                                f"{twice} column twice; name each of head, relation and tail once (or remove "
                                f"the line)", path, number)
        elif header_words is not None and [f.strip().lower() for f in fields] == header_words:
            repeated.append(number)  # the header again (files concatenated): not a triple
            continue
        if len(fields) != 3:
            raise SnagError(f"expected 3 columns (head, relation, tail), found {len(fields)}", path, number)
        names = [f.strip() for f in fields]
        for role, col in zip(("head", "relation", "tail"), order or (0, 1, 2)):
            if not names[col]:
                raise SnagError(f"empty {role} name (column {col + 1})", path, number)
            if any(c in names[col] for c in "\t\n\r"):
                raise SnagError(f"the {role} name contains a tab or a line break", path, number)
        h, r, t = (names[c] for c in (order or (0, 1, 2)))
        out.append((h, r, t))
    if not out:
        raise SnagError("empty file: no triples" + (" after the header" if header else ""), path)
    cols = "".join("hrt"[(order or (0, 1, 2)).index(i)] for i in range(3))
    how: Dict[str, object] = {"header": header, "columns": ",".join(cols)}
    if repeated:
        how["repeated_header"] = repeated
    return out, how


def header_note(path: Path, how: Dict[str, object]) -> Optional[str]:
    """The note on header lines repeated later in ``path`` (skipped), if any."""
    lines = how.get("repeated_header") or []
    if not lines:
        return None
    shown = ", ".join(str(n) for n in lines[:5]) + (", ..." if len(lines) > 5 else "")  # type: ignore[index]
    return (f"{Path(path).name}: the header line appears again on line{'s' if len(lines) > 1 else ''} "  # type: ignore[arg-type]
            f"{shown}; skipped (concatenated files?)")
