"""One exception type for every bad input the user can fix.

The CLI turns a :class:`SnagError` into one line on stderr,
``error: <file>:<line>: <what is wrong>``, and exit code 2.
"""
from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


class SnagError(Exception):
    """A problem with user input (files, configs, arguments)."""

    def __init__(self, message: str, path: Optional[PathLike] = None, line: Optional[int] = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        return where + self.message.replace("\n", " ")
