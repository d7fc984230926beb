"""Files written together: a set of files (a feature table and its missing list, an export) committed
by one manifest, so a reader sees the old set or the new set, never one of each; and a folder
swapped in whole (``convert``)."""
from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from snagkg.runtime.errors import PathLike, SnagError
from snagkg.runtime.io import (  # the atomic-write primitives this module composes
    _alive,
    _fail,
    _fsync_dir,
    _new_file_mode,
    _temp_beside,
    remove_dead_temps,
    write_json,
)

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


