"""``snagkg features import``: bring in feature vectors users already have.

Accepted sources (by file suffix):

- ``.npy``: an ``[N, D]`` float array, row ``i`` = entity id ``i``;
- ``.npz``: an archive holding one such array (or pick one with ``--key``);
- ``.pt`` / ``.pth``: a torch tensor ``[N, D]``, or a dict keyed by entity
  name or id whose values are tensors/arrays; loaded with
  ``torch.load(weights_only=True)``, which cannot run code;
- ``.pkl`` / ``.pickle``: a dict keyed by entity name or id (or an array).
  Unpickling can run arbitrary code, so a pickle is opened only with
  ``trust_pickle=True`` (``--trust-pickle``); the same flag lets a torch file
  that ``weights_only`` refuses be loaded in full.

In a dict, a value is one vector, or several (a list, or a 2-D array/tensor:
e.g. several images of an entity), which are averaged; an empty list means
the entity has none (missing). ``--key`` picks one entry of an ``.npz``
archive or of a dict before anything else happens.

Dict keys are matched to entities by :class:`snagkg.data.name_index.NameIndex`,
the rule of every command: the exact name as written in ``entity2id.txt``
first, then another spelling of it (without ``<>``, the URI tail such as
``Barack_Obama`` or ``Q42``, the display name ``Barack Obama``), then those in
any case, then a key of digits (or an integer key) as the entity id; a key
that several entities share at that level is an error naming them. Entities
no key matches are missing (NaN row + ``<modality>.missing.txt``). In an array, a
row that is entirely NaN marks that entity missing; any other NaN or inf is
an error.
"""
from __future__ import annotations

import contextlib
import importlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from snagkg.data.name_index import NameIndex
from snagkg.data.tables import load_npy, save_feature_table
from snagkg.features.common import (
    FeatureSummary,
    check_modality_name,
    dataset_folder,
    output_path,
    read_entity_names,
)
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import regular_file, torch_load

SUFFIXES = {".npy": "npy", ".npz": "npz", ".pt": "torch", ".pth": "torch", ".pkl": "pickle", ".pickle": "pickle"}
PICKLE_REFUSED = ("refusing to open a pickle without --trust-pickle: unpickling runs whatever code the file "
                  "contains; pass --trust-pickle only for a file you trust, or convert it to .npy/.npz")


def _short(key: Any, limit: int = 60) -> str:
    text = repr(key)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- loading

def _load_npz(path: Path, key: Optional[str]) -> np.ndarray:

    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if not names:
                raise SnagError("the .npz archive holds no arrays", path)
            if key is None:
                if len(names) > 1:
                    raise SnagError(f"the .npz archive holds {len(names)} arrays ({', '.join(names[:8])}"
                                    f"{', ...' if len(names) > 8 else ''}); pick one with --key", path)
                key = names[0]
            elif key not in names:
                raise SnagError(f"--key {key!r} is not in the .npz archive (it holds: {', '.join(names[:8])}"
                                f"{', ...' if len(names) > 8 else ''})", path)
            return archive[key]
    except SnagError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise SnagError("the .npz array holds Python objects (pickled); refusing to load it", path) from None
        raise SnagError(f"not a valid .npz file: {exc}", path) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise SnagError(f"not a valid .npz file: {exc}", path) from None


def _numpy_safe_globals() -> List[Any]:
    """What a pickled numpy array needs; the restricted unpickler still vets everything inside it."""
    out: List[Any] = [np.ndarray, np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            out.append(importlib.import_module(mod)._reconstruct)
        except (ImportError, AttributeError):
            continue
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float16DType", "Float32DType", "Float64DType", "Int32DType", "Int64DType"):
        if dtypes is not None and hasattr(dtypes, name):
            out.append(getattr(dtypes, name))
    return out


def _why_refused(exc: BaseException) -> str:
    """The useful part of torch's long multi-line refusal message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    m = re.search(r"GLOBAL (\S+)", text)
    if m:
        return f"it refers to {m.group(1)}"
    m = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    if m:
        return m.group(1).strip()[:160]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:160] if lines else type(exc).__name__


def _load_torch(path: Path, trust_pickle: bool) -> Any:

    safe = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with (safe(_numpy_safe_globals()) if safe is not None else contextlib.nullcontext()):
            return torch_load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise SnagError(f"torch.load(weights_only=True) refuses this file ({_why_refused(exc)}): it holds "
                            "Python objects beyond tensors, arrays and plain containers; save the tensors alone, "
                            "or pass --trust-pickle if you trust the file (loading it in full can run code)",
                            path) from None
    except Exception as exc:  # a restricted load cannot run code; anything else means a broken file
        raise SnagError(f"not a valid torch file: {_why_refused(exc)}", path) from None
    try:
        return torch_load(path, weights_only=False)
    except Exception as exc:  # unpickling a trusted file can fail in any way
        raise SnagError(f"cannot load the torch file: {type(exc).__name__}: {_why_refused(exc)}", path) from None


def _load_pickle(path: Path, trust_pickle: bool) -> Any:
    if not trust_pickle:
        raise SnagError(PICKLE_REFUSED, path)
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception as exc:  # unpickling can fail in any way
        raise SnagError(f"cannot unpickle: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                        path) from None


def load_source(path, key: Optional[str] = None, trust_pickle: bool = False) -> Any:
    """Read ``path`` into an array or a dict (``--key`` applied); never unpickles untrusted files."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise SnagError(f"unsupported file type {path.suffix or '(no suffix)'!r}: use .npy, .npz, .pt/.pth "
                        "or .pkl/.pickle", path)
    if kind == "pickle" and not trust_pickle:  # before touching the file at all
        raise SnagError(PICKLE_REFUSED, path)
    regular_file(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise SnagError(f"cannot read: {exc.strerror or exc}", path) from None
    if kind == "npy" and head != b"\x93NUMPY":
        raise SnagError("not a valid .npy file (no NumPy header)", path)
    if kind == "npz" and not head.startswith(b"PK"):
        raise SnagError("not a valid .npz file (not a zip archive)", path)
    if kind == "torch" and not (head.startswith(b"PK") or head.startswith(b"\x80")):
        raise SnagError("not a valid torch file (neither a torch.save zip archive nor a legacy pickle)", path)
    if kind == "npy":
        if key is not None:
            raise SnagError("--key picks an array of an .npz archive or an entry of a dict; a .npy file holds "
                            "one array", path)
        return load_npy(path)
    if kind == "npz":
        return _load_npz(path, key)
    obj = _load_torch(path, trust_pickle) if kind == "torch" else _load_pickle(path, trust_pickle)
    if key is not None:
        if not isinstance(obj, Mapping):
            raise SnagError(f"--key {key!r} given but the file holds a {type(obj).__name__}, not a dict", path)
        if key in obj:
            obj = obj[key]
        elif key.isdigit() and int(key) in obj:
            obj = obj[int(key)]
        else:
            keys = ", ".join(_short(k, 30) for k in list(obj)[:8])
            raise SnagError(f"--key {key!r} is not in the dict (keys: {keys}{', ...' if len(obj) > 8 else ''})",
                            path)
    return obj


# ----------------------------------------------------------------------------- converting

def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):

        t = x.detach().cpu()
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()  # bfloat16 has no numpy twin
        return t.numpy()
    if isinstance(x, (list, tuple)) and x and any(_is_tensor(v) or isinstance(v, np.ndarray) for v in x):
        parts = [_to_numpy(v) for v in x]
        shapes = {p.shape for p in parts}
        if len(shapes) > 1:
            raise ValueError("parts have different shapes: " + ", ".join(str(s) for s in sorted(shapes)))
        return np.stack(parts)
    return np.asarray(x)


def _check_float(arr: np.ndarray, what: str, where: Path) -> None:
    if arr.dtype.kind == "O":
        raise SnagError(f"{what} holds Python objects, not numbers", where)
    if arr.dtype.kind != "f":
        raise SnagError(f"{what} has dtype {arr.dtype}, not floating point (convert it, e.g. "
                        "arr.astype('float32'))", where)


def _from_array(arr: np.ndarray, names: List[str], src: Path) -> Tuple[np.ndarray, np.ndarray, str]:
    n = len(names)
    _check_float(arr, "the table", src)
    if arr.ndim != 2:
        raise SnagError(f"the table has shape {tuple(arr.shape)}; expected 2-D (entities x width), "
                        "or a dict keyed by entity name or id", src)
    if arr.shape[1] == 0:
        raise SnagError("the table has zero width (no feature columns)", src)
    if arr.shape[0] != n:
        raise SnagError(f"the table has {arr.shape[0]} rows but the dataset has {n} entities (row i must be "
                        "entity id i; to match rows by name, import a dict keyed by entity name)", src)
    values = arr.astype(np.float32)
    nan_row = np.isnan(values).all(axis=1)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1) & ~nan_row)
    if bad.size:
        i = int(bad[0])
        kind = "inf" if np.isinf(values[i]).any() else "NaN"
        why = " (after conversion to float32)" if np.isfinite(arr[i]).all() else ""
        raise SnagError(f"row {i} (entity {names[i]!r}) contains {kind}{why}; an entirely NaN row marks an "
                        "entity missing, anything else must be finite", src)
    values[nan_row] = np.nan
    return values, nan_row, "rows by entity id"


def _resolve(index: NameIndex, key: Any, src: Path) -> Tuple[Optional[int], str]:
    """The entity id a dict key names (:class:`NameIndex`: an ambiguous key is an error) and how:
    ``"name"`` or ``"id"``; ``(None, "")`` when it names no entity."""
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            raise SnagError(f"key {_short(key)} is not valid UTF-8", src) from None
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (str, int, np.integer)):
        raise SnagError(f"key {_short(key)} ({type(key).__name__}) is neither an entity name nor an id", src)
    if not isinstance(key, str):
        return index.row(int(key)), "id"
    ids, level = index.match(key)
    if len(ids) > 1:
        raise index.ambiguous(key, ids, src)
    return (ids[0], "id" if level == "id" else "name") if ids else (None, "")


def _vector(key: Any, value: Any, src: Path) -> Optional[np.ndarray]:
    """One float vector for ``value`` (several are averaged); ``None`` for an empty list."""
    try:
        arr = _to_numpy(value)
    except (ValueError, TypeError) as exc:
        raise SnagError(f"key {_short(key)}: vectors have inconsistent shapes ({exc})", src) from None
    if arr.dtype.kind == "O":
        raise SnagError(f"key {_short(key)}: the value is not a vector of numbers (vectors of different "
                        "widths, or Python objects)", src)
    if arr.ndim == 2 and arr.shape[0] == 0 or arr.ndim == 1 and arr.size == 0 and isinstance(value, (list, tuple)):
        return None
    _check_float(arr, f"the value of key {_short(key)}", src)
    if arr.ndim not in (1, 2):
        raise SnagError(f"key {_short(key)}: the value has shape {tuple(arr.shape)}; expected a vector or a "
                        "list/2-D array of vectors", src)
    if arr.shape[-1] == 0:
        raise SnagError(f"key {_short(key)}: the vector has zero width", src)
    if not np.isfinite(arr).all():
        kind = "NaN" if np.isnan(arr).any() else "inf"
        raise SnagError(f"key {_short(key)}: the value contains {kind}", src)
    vec = arr.astype(np.float64).mean(axis=0) if arr.ndim == 2 else arr
    vec = vec.astype(np.float32)
    if not np.isfinite(vec).all():
        raise SnagError(f"key {_short(key)}: the value overflows float32 (inf after conversion)", src)
    return vec


def _from_dict(obj: Mapping, names: List[str], src: Path) -> Tuple[np.ndarray, np.ndarray, str]:
    n = len(names)
    if not obj:
        raise SnagError("the dict is empty", src)
    index = NameIndex(names)
    rows: Dict[int, np.ndarray] = {}
    owner: Dict[int, Any] = {}
    width: Optional[int] = None
    first_key: Any = None
    unmatched: List[Any] = []
    empty = 0
    how = set()
    for key, value in obj.items():
        ident, by = _resolve(index, key, src)
        if ident is None:
            unmatched.append(key)
            continue
        if ident in owner:
            raise SnagError(f"keys {_short(owner[ident])} and {_short(key)} both name entity id {ident} "
                            f"({names[ident]!r})", src)
        owner[ident] = key
        how.add(by)
        vec = _vector(key, value, src)
        if vec is None:
            empty += 1
            continue
        if width is None:
            width, first_key = int(vec.shape[0]), key
        elif vec.shape[0] != width:
            raise SnagError(f"key {_short(key)}: vector width {vec.shape[0]} differs from width {width} of key "
                            f"{_short(first_key)} (shapes are inconsistent)", src)
        rows[ident] = vec
    if not owner:
        sample = ", ".join(_short(k, 40) for k in list(obj)[:3])
        hint = ""
        tables = [k for k, v in obj.items() if getattr(v, "ndim", 0) == 2 and getattr(v, "shape", (0,))[0] == n]
        if tables:
            hint = f"; to import the {n}-row table {_short(tables[0], 40)} pick it with --key"
        raise SnagError(f"no key matches any entity of the dataset (keys look like {sample}; entity names look "
                        f"like {_short(names[0], 60)}){hint}", src)
    if not rows:
        raise SnagError(f"every matched key ({len(owner)}) has an empty list of vectors; nothing to import", src)
    values = np.full((n, width), np.nan, dtype=np.float32)
    missing = np.ones(n, dtype=bool)
    for ident, vec in rows.items():
        values[ident] = vec
        missing[ident] = False
    note = "keys by " + " and ".join(sorted(how))
    if unmatched:
        note += f"; {len(unmatched)} keys matched no entity (e.g. {_short(unmatched[0], 40)})"
    if empty:
        note += f"; {empty} keys had no vectors"
    return values, missing, note


def import_features(dataset, modality: str, source, output: Optional[str] = None, trust_pickle: bool = False,
                    key: Optional[str] = None) -> FeatureSummary:
    """Convert ``source`` into ``<dataset>/features/<modality>.npy`` (+ ``.missing.txt``)."""
    check_modality_name(modality)
    folder = dataset_folder(dataset, alignment=True)
    out = output_path(folder, modality, output)
    if output is not None and out.stem != modality:
        raise SnagError(f"--output file is named {out.name!r} but --modality is {modality!r}; the loader takes "
                        f"the modality name from the file name, so name it {modality}.npy", out)
    names = read_entity_names(folder)
    src = Path(source)
    obj = load_source(src, key=key, trust_pickle=trust_pickle)
    if isinstance(obj, Mapping):
        values, missing, note = _from_dict(obj, names, src)
    elif isinstance(obj, (np.ndarray, list, tuple)) or _is_tensor(obj):
        try:
            arr = _to_numpy(obj)
        except (ValueError, TypeError) as exc:
            raise SnagError(f"the rows have inconsistent shapes ({exc})", src) from None
        values, missing, note = _from_array(arr, names, src)
    else:
        raise SnagError(f"the file holds a {type(obj).__name__}; expected an array/tensor [entities x width] or "
                        "a dict keyed by entity name or id", src)
    if missing.all():
        raise SnagError("every row is NaN (all entities missing); nothing to import", src)
    save_feature_table(out, values, missing)
    return FeatureSummary(modality, out, len(names), int((~missing).sum()), int(values.shape[1]),
                          note=f"from {src.name}, {note}")
