"""Aligned text tables for a terminal, with display widths that count wide characters as two columns.

Every table the command line prints (``predict``, ``weights``, ``robustness``, ``presets``) goes
through :func:`format_table`, so a CJK or full-width name (``東京``: four columns, two characters)
keeps the columns after it aligned. The width of a character follows
:func:`unicodedata.east_asian_width` (``W`` and ``F``: two columns) and
:func:`unicodedata.combining` (combining marks: none), as terminals draw them.
"""
from __future__ import annotations

import unicodedata
from typing import Any, Optional, Sequence

__all__ = ["display_width", "pad", "format_table"]


def display_width(text: str) -> int:
    """The number of terminal columns ``text`` takes (wide and full-width characters count two)."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def pad(text: str, width: int, align: str = "<") -> str:
    """``text`` padded with spaces to ``width`` display columns, left (``<``) or right (``>``) aligned."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if align == ">" else text + fill


def format_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], align: Optional[str] = None,
                 sep: str = "  ") -> str:
    """``header`` and ``rows`` as aligned lines (trailing spaces stripped); ``align``: one ``<`` or ``>``
    per column (default: all left)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    n = len(cells[0])
    width = [max(display_width(r[i]) for r in cells) for i in range(n)]
    how = align or "<" * n
    return "\n".join(sep.join(pad(c, w, a) for c, w, a in zip(r, width, how)).rstrip() for r in cells)
