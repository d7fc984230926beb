"""Strict line readers shared by every dataset layout and by :mod:`snagkg.tables`.

The lowest layer of reading (below :mod:`snagkg.datasets` and
:mod:`snagkg.tables`): it imports nothing else of the package but the errors.
Each reader reports the first problem it finds as a :class:`SnagError` naming
the file and the 1-based line number.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .errors import SnagError


def read_lines(path: Path) -> List[Tuple[int, str]]:
    """Return ``(line_number, text)`` for every non-empty line of a UTF-8 file.

    Blank lines are allowed only at the end of the file.
    """
    path = Path(path)
    if not path.exists():
        raise SnagError("file not found", path)
    if not path.is_file():
        raise SnagError("not a regular file", path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SnagError(f"cannot read: {exc.strerror}", path) from None
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark (some editors add one)
        raw = raw[3:]
    out: List[Tuple[int, str]] = []
    blank_at: Optional[int] = None
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SnagError(f"not valid UTF-8 (byte {exc.start + 1} of the line)", path, number) from None
        text = text.rstrip("\r")
        if not text.strip():
            if blank_at is None:
                blank_at = number
            continue
        if blank_at is not None:
            raise SnagError("blank line in the middle of the file", path, blank_at)
        out.append((number, text))
    return out


_INT = re.compile(r"[+-]?[0-9]{1,30}")
INT64_MAX = 2**63 - 1


def _show(token: str, limit: int = 40) -> str:
    """``repr`` of a token, cut short so an error stays one readable line."""
    return repr(token if len(token) <= limit else token[:limit] + "...")


def parse_int(token: str, path: Path, line: int, what: str) -> int:
    """A non-negative decimal integer that fits in int64 (ASCII digits only)."""
    if not _INT.fullmatch(token):
        raise SnagError(f"{what} {_show(token)} is not an integer", path, line)
    value = int(token)
    if value < 0:
        raise SnagError(f"{what} {value} is negative", path, line)
    if value > INT64_MAX:
        raise SnagError(f"{what} {value} is too large", path, line)
    return value


def split_count(lines: List[Tuple[int, str]], path: Path, with_count: bool) -> List[Tuple[int, str]]:
    """Check and strip an OpenKE count header (first line: number of records)."""
    if not with_count:
        return lines
    if not lines:
        raise SnagError("empty file (expected a count on the first line)", path, 1)
    number, text = lines[0]
    parts = text.split()
    if len(parts) != 1:
        raise SnagError(f"expected a count on the first line, found {len(parts)} columns", path, number)
    count = parse_int(parts[0], path, number, "count")
    body = lines[1:]
    if count != len(body):
        raise SnagError(f"count header says {count} lines but the file has {len(body)}", path, number)
    return body


def read_name_ids(path: Path, with_count: bool, id_first: bool = False) -> Tuple[List[str], np.ndarray]:
    """Read ``name id`` (or ``id name`` when ``id_first``) lines.

    Returns names and ids in file order; names may contain spaces when the id
    is the last column. Duplicate ids or names are errors.
    """
    names, ids, _ = read_name_id_lines(path, with_count, id_first)
    return names, ids


def read_name_id_lines(path: Path, with_count: bool,
                       id_first: bool = False) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """:func:`read_name_ids` plus the 1-based line number of every record."""
    path = Path(path)
    lines = split_count(read_lines(path), path, with_count)
    names: List[str] = []
    ids: List[int] = []
    seen_ids: dict = {}
    seen_names: dict = {}
    for number, text in lines:
        if id_first:
            parts = text.split("\t") if "\t" in text else text.split(None, 1)
            if len(parts) != 2:
                raise SnagError(f"expected 2 columns (id, name), found {len(parts)}", path, number)
            id_tok, name = parts[0].strip(), parts[1].strip()
        else:
            parts = text.rsplit(None, 1)
            if len(parts) != 2:
                raise SnagError(f"expected 2 columns (name, id), found {len(parts)}", path, number)
            name, id_tok = parts[0].strip(), parts[1]
        ident = parse_int(id_tok, path, number, "id")
        if not name:
            raise SnagError("empty name", path, number)
        if ident in seen_ids:
            raise SnagError(f"duplicate id {ident} (first on line {seen_ids[ident]})", path, number)
        if name in seen_names:
            raise SnagError(f"duplicate name {_show(name)} (first on line {seen_names[name]})", path, number)
        seen_ids[ident] = number
        seen_names[name] = number
        names.append(name)
        ids.append(ident)
    if not lines:
        raise SnagError("no records", path)
    numbers = np.asarray([number for number, _ in lines], dtype=np.int64)
    return names, np.asarray(ids, dtype=np.int64), numbers


def read_int_rows(
    path: Path,
    columns: int,
    with_count: bool,
    limits: Sequence[Tuple[str, int]],
) -> Tuple[np.ndarray, np.ndarray]:
    """Read rows of ``columns`` non-negative integers.

    ``limits`` gives, per column, a name and an exclusive upper bound (``-1``
    for none). Returns the ``[n, columns]`` array and the line number of each row.
    """
    path = Path(path)
    lines = split_count(read_lines(path), path, with_count)
    rows = np.empty((len(lines), columns), dtype=np.int64)
    numbers = np.empty(len(lines), dtype=np.int64)
    for i, (number, text) in enumerate(lines):
        parts = text.split()
        if len(parts) != columns:
            raise SnagError(f"expected {columns} columns, found {len(parts)}", path, number)
        for j, token in enumerate(parts):
            what, bound = limits[j]
            value = parse_int(token, path, number, what)
            if 0 <= bound <= value:
                raise SnagError(f"unknown {what} {value} (only {bound} are defined)", path, number)
            rows[i, j] = value
        numbers[i] = number
    return rows, numbers
