"""Crash-safe file writing and a run-folder lock.

Every file the project writes goes through :func:`atomic_write`: the bytes go
to a temporary file in the same folder, are flushed to disk, and the file is
renamed into place. A crash therefore leaves the old version or the new one,
never half of one.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch

from snagkg.runtime.errors import SnagError

PathLike = Union[str, "os.PathLike[str]"]


def regular_file(path: PathLike, what: str = "file") -> Path:
    """``path`` as a :class:`Path` if it is a regular file; else ``<what> not found`` or ``<what> is not a
    regular file`` as a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise SnagError(f"{what} not found" if not path.exists() else f"{what} is not a regular file", path)
    return path


def _fail(path: PathLike, exc: OSError) -> SnagError:
    if exc.errno == errno.ENOSPC:
        what = "no space left on device; the previous version is intact"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "cannot write here (permission denied or read-only)"
    else:
        what = f"cannot write: {exc.strerror or exc}"
    return SnagError(what, path)


_UMASK = None


def _new_file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give (``mkstemp`` files are 0600)."""
    global _UMASK
    try:
        return path.stat().st_mode & 0o7777  # replacing a file keeps its mode
    except OSError:
        pass
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every OS/filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_name_pid(name: str, tmp_name: str) -> int:
    """The writer's pid in a temp file name ``.<name>.<pid>.<random>.tmp`` (0: not one of ours)."""
    rest = tmp_name[len(name) + 2:-len(".tmp")]
    pid, _, _ = rest.partition(".")
    return int(pid) if pid.isdigit() else 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: a process of another user holds that pid
        return True
    return True


def remove_dead_temps(path: PathLike) -> None:
    """Delete the temp files of ``path`` left by writers that died mid-write (``kill -9``).

    Temp files are named ``.<name>.<pid>.<random>.tmp``; one whose process is gone is removed,
    one of a live process (a concurrent writer) is left alone.
    """
    path = Path(path)
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = _temp_name_pid(path.name, tmp.name)
        if pid and pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _temp_beside(path: Path, write: Callable[[io.BufferedWriter], None], mode: int) -> str:
    """Write a durable temp file beside ``path`` (removed if ``write`` fails); returns its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` atomically; ``write`` receives a binary file object.

    If anything fails (full disk, no permission, an exception inside
    ``write``), the previous ``path`` is left as it was and the temporary
    file is removed; an ``OSError`` becomes a one-line :class:`SnagError`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = _new_file_mode(path)
        remove_dead_temps(path)
        tmp = _temp_beside(path, write, mode)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise _fail(path, exc) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(data))


def write_text(path: PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_line(path: PathLike, line: str) -> None:
    """Append one line to a log by rewriting it atomically (logs are small)."""
    path = Path(path)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"  # never glue the new line onto an unterminated last line
    write_bytes(path, old + line.rstrip("\n").encode("utf-8") + b"\n")


def save_torch(path: PathLike, obj: Any) -> None:
    """``torch.save`` through :func:`atomic_write`.

    The object is serialised in memory first: torch's zip writer reports a
    failed write (full disk) as a generic ``RuntimeError``, while a plain
    ``write`` of the bytes raises the ``OSError`` that :func:`atomic_write`
    turns into a one-line error.
    """

    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getbuffer()
    atomic_write(path, lambda fh: fh.write(data))


def save_numpy(path: PathLike, array: Any) -> None:
    """Save ``array`` as ``.npy`` at ``path`` atomically."""

    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


class RunLock:
    """An exclusive lock on a run folder (``.lock``), held by the OS.

    The lock is an ``fcntl.flock`` on an open file: when the process dies,
    even by ``kill -9``, the OS releases it, so a crash never leaves a run
    stuck. A second process that tries to train into the same folder gets a
    clear error.
    """

    def __init__(self, folder: PathLike):
        self.path = Path(folder) / ".lock"
        self._fh = None

    def acquire(self) -> "RunLock":
        """Take the folder's lock or raise a one-line error naming the process that holds it."""
        try:
            import fcntl  # deferred: POSIX only
        except ImportError:  # pragma: no cover - Windows: no locking
            return self
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(self.path, "a+")
            except OSError as exc:
                raise _fail(self.path, exc) from None
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                raise SnagError(
                    "another snagkg process is training into this folder (locked); wait for it or choose "
                    "another --output", self.path.parent,
                ) from None
            # The holder we waited for may have unlinked the file just before we locked it:
            # then our lock is on a dead inode, so start again with the current file.
            try:
                same = os.fstat(fh.fileno()).st_ino == os.stat(self.path).st_ino
            except OSError:
                same = False
            if same:
                break
            fh.close()
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        except OSError:
            pass  # the pid is informational only
        self._fh = fh
        return self

    def release(self) -> None:
        """Give the lock back (remove the lock file)."""
        if self._fh is not None:
            with contextlib.suppress(OSError):  # unlink while still holding the lock (see acquire)
                self.path.unlink()
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()



def torch_load(path: PathLike, **kwargs: Any) -> Any:
    """``torch.load`` without torch's warnings (about odd pickles, legacy formats): every caller turns
    a refusal into one error line, and the warning would print lines before it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", **kwargs)
