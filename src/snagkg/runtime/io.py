"""Crash-safe file writing and a run-folder lock.

Every file the project writes goes through :func:`atomic_write`: the bytes go
to a temporary file in the same folder, are flushed to disk, and the file is
renamed into place. A crash therefore leaves the old version or the new one,
never half of one.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Union

import numpy as np
import torch

from snagkg.runtime.errors import SnagError

PathLike = Union[str, "os.PathLike[str]"]


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



# -- files written together ------------------------------------------------------------------------
# Several files that only make sense together (a feature table and its missing list) are written
# with one commit point: each new file goes to a durable temp file, then a manifest naming every
# file's checksum (and its temp) is written atomically, then the temps are renamed into place.
# A reader that follows the manifest (:func:`read_together`) sees the old set (a kill before the
# manifest) or the new one (a kill after: a file not yet renamed is read from its temp), never a
# mix; the next write of the set finishes or removes what a killed writer left.

def _digest(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stat_key(path: PathLike) -> Optional[Dict[str, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_manifest(manifest: Path) -> Optional[Dict[str, Any]]:
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("name"), str)
                                                  for f in files):
            raise ValueError("'files' must be a list of objects with a 'name'")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnagError(f"not a valid snagkg manifest ({str(exc).splitlines()[0][:120]}); delete it to use the "
                        "files beside it as they are", manifest) from None
    return data


def _matches(path: Path, entry: Dict[str, Any]) -> bool:
    key = _stat_key(path)
    if key is None:
        return False
    if key == entry.get("stat"):
        return True
    return key["size"] == entry.get("size") and _digest(path) == entry.get("sha256")


def read_together(manifest: PathLike, names: Any) -> Dict[str, Optional[Path]]:
    """Where to read each of ``names`` (files beside ``manifest``), or ``None`` where it is absent.

    Without a manifest the files are taken as they are. With one, every file must be the one the
    manifest names (checksum): a file whose rename a kill cut short is read from its temp; a file
    changed since is a one-line error.
    """
    manifest = Path(manifest)
    folder = manifest.parent
    data = _read_manifest(manifest)
    if data is None:
        return {n: (folder / n if (folder / n).exists() else None) for n in names}
    entries = {f["name"]: f for f in data["files"]}
    out: Dict[str, Optional[Path]] = {}
    for n in names:
        path, entry = folder / n, entries.get(n)
        if entry is None:
            out[n] = path if path.exists() else None
        elif entry.get("absent"):
            stale = path.exists() and _stat_key(path) != entry.get("replaces")
            if stale:
                raise SnagError(f"{n} is not part of the set {manifest.name} describes (added by hand, or a write "
                                f"was cut); rerun the command that wrote them, or delete {manifest.name}", path)
            out[n] = None
        elif _matches(path, entry):
            out[n] = path
        elif entry.get("tmp") and _matches(folder / entry["tmp"], entry):
            out[n] = folder / entry["tmp"]  # committed, rename not done yet
        else:
            raise SnagError(f"does not match {manifest.name} (changed by hand, or a write was cut); rerun the "
                            f"command that wrote it, or delete {manifest.name} to use the files as they are", path)
    return out


def settle_together(manifest: PathLike) -> None:
    """Finish the renames a killed :func:`write_together` left after its commit, then delete dead temps."""
    manifest = Path(manifest)
    folder = manifest.parent
    try:
        data = _read_manifest(manifest)
    except SnagError:
        data = None  # a broken manifest is replaced by the write that follows
    for entry in (data or {}).get("files", []):
        path = folder / entry["name"]
        try:
            if entry.get("absent"):
                if path.exists() and _stat_key(path) == entry.get("replaces"):
                    path.unlink()
            elif entry.get("tmp") and (folder / entry["tmp"]).exists() and not _matches(path, entry):
                os.replace(folder / entry["tmp"], path)
        except OSError as exc:
            raise _fail(path, exc) from None
        remove_dead_temps(path)
    remove_dead_temps(manifest)


def write_together(manifest: PathLike, files: Mapping[str, Optional[Callable[[io.BufferedWriter], None]]]) -> None:
    """Write the files ``files`` (name beside ``manifest`` -> writer, or ``None`` to remove it) as one set.

    The manifest is the commit point (see above): a kill before it leaves the old set, a kill after
    it the new one; either way :func:`read_together` never mixes them.
    """
    manifest = Path(manifest)
    folder = manifest.parent
    temps: Dict[str, str] = {}
    committed = False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        settle_together(manifest)
        for name in files:
            remove_dead_temps(folder / name)
        entries = []
        for name, write in files.items():
            path = folder / name
            if write is None:
                entries.append({"name": name, "absent": True, "replaces": _stat_key(path)})
                continue
            tmp = temps[name] = _temp_beside(path, write, _new_file_mode(path))
            key = _stat_key(tmp)
            entries.append({"name": name, "sha256": _digest(tmp), "size": key["size"], "stat": key,
                            "tmp": Path(tmp).name})
        write_json(manifest, {"format": "snagkg-file-set", "version": 1, "files": entries})
        committed = True  # from here on the new set is what readers see
        for entry in entries:
            path = folder / entry["name"]
            if entry.get("absent"):
                path.unlink(missing_ok=True)
            else:
                os.replace(temps.pop(entry["name"]), path)
        _fsync_dir(folder)
    except OSError as exc:
        raise _fail(manifest, exc) from None
    finally:
        if not committed:  # the old set stands: its would-be replacements go
            for tmp in temps.values():
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def swap_in_folder(new: PathLike, target: PathLike) -> None:
    """Put folder ``new`` at ``target`` (replacing a folder there) so that a reader sees one or the other.

    On Linux the two are exchanged in one ``renameat2(RENAME_EXCHANGE)`` and the old one removed;
    elsewhere ``target`` is moved aside first (a kill in between is undone by :func:`restore_folder`).
    """
    new, target = Path(new), Path(target)
    if target.exists():
        if _exchange(new, target):
            shutil.rmtree(new, ignore_errors=True)  # now the old folder
            return
        aside = target.parent / f".{target.name}.old-{os.getpid()}.tmp"
        os.replace(target, aside)
        os.replace(new, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, target)
    _fsync_dir(target.parent)


def restore_folder(target: PathLike) -> None:
    """Undo what a killed :func:`swap_in_folder` (or writer of ``target``) left: put a moved-aside
    ``target`` back, and delete temp folders of writers that are gone."""
    target = Path(target)
    for tmp in sorted(target.parent.glob(f".{glob.escape(target.name)}.*.tmp")):
        pid = int(re.sub(r"\D", "", tmp.name.rsplit("-", 1)[-1]) or 0) if "-" in tmp.name else 0
        if not pid or pid == os.getpid() or _alive(pid):
            continue
        if tmp.name.startswith(f".{target.name}.old-") and not target.exists():
            os.replace(tmp, target)
        else:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    return False


def torch_load(path: PathLike, **kwargs: Any) -> Any:
    """``torch.load`` without torch's warnings (about odd pickles, legacy formats): every caller turns
    a refusal into one error line, and the warning would print lines before it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", **kwargs)
