"""Strict line readers shared by every dataset layout and by :mod:`snagkg.tables`.

The lowest layer of reading (below :mod:`snagkg.datasets` and
:mod:`snagkg.tables`): it imports nothing else of the package but the errors.
Each reader reports the first problem it finds as a :class:`SnagError` naming
the file and the 1-based line number.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from snagkg.runtime.errors import PathLike, SnagError
from snagkg.runtime.io import regular_file


def read_lines(path: Path) -> List[Tuple[int, str]]:
    """Return ``(line_number, text)`` for every non-empty line of a UTF-8 file.

    Blank lines are allowed only at the end of the file.
    """
    path = regular_file(path)
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
    fast = _fast_name_ids(path, with_count, id_first)
    if fast is not None:
        return fast
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
        first_line(seen_ids, ident, path, number, f"duplicate id {ident} (first on line {{first}})")
        first_line(seen_names, name, path, number, f"duplicate name {_show(name)} (first on line {{first}})")
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
    fast = _fast_int_rows(path, columns, with_count, limits)
    if fast is not None:
        return fast
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


# Fast paths: whole-file parsing for well-formed files (millions of lines). Each returns
# None whenever anything looks unusual; the strict per-line readers above then run and
# report the exact problem (file and line), so both paths give the same results and errors.

_MAX_DIGITS = 18  # any run of at most 18 digits fits in int64


def _read_raw(path: Path) -> Optional[bytes]:
    """The file's bytes without a UTF-8 byte order mark (``None`` if it cannot be read)."""
    try:
        raw = path.read_bytes() if path.is_file() else None
    except OSError:
        return None
    if raw is not None and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw


def _fast_count(header: bytes) -> Optional[int]:
    """The value of a count line that is one plain ASCII number (else ``None``)."""
    token = header.strip(b" \t\r\n")
    if not token or not token.isdigit() or len(token) > _MAX_DIGITS:
        return None
    return int(token)


def _fast_int_rows(path: Path, columns: int, with_count: bool,
                   limits: Sequence[Tuple[str, int]]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """:func:`read_int_rows` of a file of ASCII digits, blanks and newlines in one ``np.loadtxt`` call."""

    raw = _read_raw(path)
    if raw is None:
        return None
    rest = raw.translate(None, b"0123456789 \t\n")  # what is neither a digit nor a separator
    if rest.strip(b"\r") or raw.count(b"\r") != raw.count(b"\r\n"):
        return None
    end = _content_end(raw)
    start = 0
    if with_count:
        start = raw.find(b"\n") + 1
        count = _fast_count(raw[:start] if start else raw)
        if not start or count is None or start > end:
            return None
    body_lines = raw.count(b"\n", start, end) + 1 if end > start else 0
    if body_lines == 0 or (with_count and count != body_lines):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rows = np.loadtxt(io.BytesIO(raw), dtype=np.int64, comments=None, ndmin=2,
                              skiprows=1 if with_count else 0)
    except (ValueError, OverflowError, UserWarning):
        return None
    if rows.shape != (body_lines, columns):  # a blank line inside, or other widths
        return None
    for j, (_, bound) in enumerate(limits[:columns]):
        if bound >= 0 and rows.size and int(rows[:, j].max()) >= bound:
            return None
    first = 2 if with_count else 1
    return rows, np.arange(first, first + body_lines, dtype=np.int64)


def _content_end(raw: bytes) -> int:
    """Length of ``raw`` without its trailing blanks and newlines (no copy of the whole file)."""
    end = len(raw)
    while end > 0:
        tail = raw[max(0, end - 4096):end]
        kept = len(tail.rstrip(b" \t\r\n"))
        if kept:
            return end - len(tail) + kept
        end -= len(tail)
    return 0


def _fast_name_ids(path: Path, with_count: bool,
                   id_first: bool) -> Optional[Tuple[List[str], np.ndarray, np.ndarray]]:
    """:func:`read_name_id_lines` of a file of ``name<TAB>id`` (or ``id<TAB>name``) lines."""
    raw = _read_raw(path)
    if raw is None or b"\r" in raw:
        return None
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None
    while lines and not lines[-1].strip():
        lines.pop()
    if with_count:
        if not lines or _fast_count(lines[0].encode()) != len(lines) - 1:
            return None
        lines = lines[1:]
    if not lines:
        return None
    parts = "\t".join(lines).split("\t")
    if len(parts) != 2 * len(lines):
        return None
    names, tokens = (parts[1::2], parts[0::2]) if id_first else (parts[0::2], parts[1::2])
    digits = "".join(tokens)
    if (min(map(len, tokens)) == 0 or max(map(len, tokens)) > _MAX_DIGITS
            or not (digits.isascii() and digits.isdigit())):
        return None
    if min(map(len, names)) == 0 or not all(map(str.__eq__, names, map(str.strip, names))):
        return None
    ids = np.fromiter(map(int, tokens), dtype=np.int64, count=len(tokens))
    if len(set(names)) != len(names) or (np.diff(np.sort(ids)) == 0).any():  # sort: faster than np.unique
        return None
    first = 2 if with_count else 1
    return names, ids, np.arange(first, first + len(names), dtype=np.int64)


def first_line(seen: Dict[Any, int], key: Any, path: PathLike, number: int, message: str) -> None:
    """Note that ``key`` stands on line ``number``; a key seen before is the error ``message``, which may
    name the first line as ``{first}``."""
    if key in seen:
        raise SnagError(message.format(first=seen[key]), path, number)
    seen[key] = number
