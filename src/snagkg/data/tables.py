"""Modality feature tables with missing masks (SPEC section 1).

A table holds one row per entity id. Rows of entities that lack the modality
are filled once, at load time, with a draw from ``N(mu, sigma)``, the
per-dimension mean and std of the real rows, and the entity is recorded as
missing that modality.

This module sits below both :mod:`snagkg.datasets` (whose graphs carry
tables) and :mod:`snagkg.features` (whose builders write them); it imports
neither.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from snagkg.data.lines import parse_int, read_lines
from snagkg.runtime.errors import SnagError
from snagkg.runtime.file_sets import read_together, write_together


@dataclass
class FeatureTable:
    """One frozen modality: ``values`` ``[N, D]`` float32 with missing rows filled."""

    name: str
    values: np.ndarray
    missing: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def dim(self) -> int:
        """The table's width ``D``."""
        return int(self.values.shape[1])

    @property
    def missing_fraction(self) -> float:
        """Share of the entities that lack this modality (0 for an empty table)."""
        return float(self.missing.mean()) if len(self.missing) else 0.0


def modality_seed(seed: int, name: str) -> int:
    """A stable per-modality seed (independent of Python's hash randomisation)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def check_table(values: np.ndarray, missing: Optional[np.ndarray], where: object) -> np.ndarray:
    """Check a table's dtype and shape and its missing mask's shape (one-line errors naming ``where``);
    returns the mask as a fresh boolean array (all false when ``missing`` is ``None``)."""
    if values.dtype.kind != "f":
        raise SnagError(f"feature dtype {values.dtype} is not a floating-point type", where)
    if values.ndim != 2:
        raise SnagError(f"feature table must be 2-D (entities x width), got shape {values.shape}", where)
    if values.shape[1] == 0:
        raise SnagError("feature table has zero width", where)
    n = values.shape[0]
    missing = np.zeros(n, dtype=bool) if missing is None else np.asarray(missing, dtype=bool).copy()
    if missing.shape != (n,):
        raise SnagError(f"missing mask has shape {missing.shape}, expected ({n},)", where)
    return missing


def missing_fill(name: str, seed: int, count: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The values of a modality's ``count`` missing rows, in id order: draws from ``N(mean, std)``
    seeded by ``(seed, name)``, the same whether the table is in memory or memory-mapped."""
    rng = np.random.default_rng(modality_seed(seed, name))
    return rng.standard_normal((count, len(mean))).astype(np.float32) * std + mean


def make_table(name: str, values: np.ndarray, missing: Optional[np.ndarray], seed: int = 0,
               source: Optional[Path] = None, own: bool = False) -> FeatureTable:
    """Validate ``values`` and fill the missing rows; returns a :class:`FeatureTable`. ``own``: the caller
    hands ``values`` over (a float32 table it no longer uses): its missing rows are filled in place
    instead of in a copy, which saves a table's worth of memory while it is built."""
    where = source if source is not None else f"<{name} features>"
    values = np.asarray(values)
    missing = check_table(values, missing, where)
    values = values.astype(np.float32, copy=not own)
    finite = np.isfinite(values).all(axis=1)
    bad = np.flatnonzero(~finite & ~missing)
    if bad.size:
        row = int(bad[0])
        kind = "NaN" if np.isnan(values[row]).any() else "inf"
        raise SnagError(f"row {row} (entity id {row}) contains {kind}; mark the entity missing or fix the value", where)
    real = ~missing
    if not real.any():
        raise SnagError("every row is marked missing; nothing to learn from", where)
    mean = values[real].mean(axis=0)
    std = values[real].std(axis=0)
    if missing.any():
        values[missing] = missing_fill(name, seed, int(missing.sum()), mean, std)
    return FeatureTable(name=name, values=values, missing=missing, mean=mean.astype(np.float32),
                        std=std.astype(np.float32))


def read_missing_ids(path: Path, num_entities: int) -> np.ndarray:
    """Read ``<modality>.missing.txt``: one entity id per line."""
    mask = np.zeros(num_entities, dtype=bool)
    for number, text in read_lines(path):
        parts = text.split()
        if len(parts) != 1:
            raise SnagError(f"expected one entity id per line, found {len(parts)} columns", path, number)
        ident = parse_int(parts[0], path, number, "entity id")
        if ident >= num_entities:
            raise SnagError(f"unknown entity id {ident} (only {num_entities} entities)", path, number)
        mask[ident] = True
    return mask


def load_npy(path: Path) -> np.ndarray:
    """``np.load`` that never unpickles and reports problems as one line."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SnagError("file not found", path) from None
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise SnagError("array holds Python objects (pickled); refusing to load it", path) from None
        raise SnagError(f"not a valid .npy file: {exc}", path) from None
    except (OSError, EOFError) as exc:
        raise SnagError(f"not a valid .npy file: {exc}", path) from None
    if isinstance(arr, np.lib.npyio.NpzFile):  # pragma: no cover - .npz named .npy
        raise SnagError("this is an .npz archive; import it with `snagkg features import`", path)
    return arr


def missing_path_for(npy: Path) -> Path:
    """``<folder>/<modality>.missing.txt`` next to ``<folder>/<modality>.npy``."""
    npy = Path(npy)
    return npy.with_name(f"{npy.stem}.missing.txt")


def manifest_path_for(npy: Path) -> Path:
    """``<folder>/<modality>.manifest.json``: the checksums of a table and its missing list, written together."""
    npy = Path(npy)
    return npy.with_name(f"{npy.stem}.manifest.json")


def save_feature_table(npy: Path, values: np.ndarray, missing: np.ndarray) -> None:
    """Write a table the way :func:`load_feature_dir` reads it back.

    ``values`` is ``[N, D]`` float32 whose missing rows are NaN; ``missing``
    is the ``[N]`` mask. The table is validated first (exactly as the loader
    will), so a table that could not be loaded is never written. Writes
    ``npy`` and ``<stem>.missing.txt`` (one id per line) as one pair, with
    ``<stem>.manifest.json`` as the commit point (a stale missing file is
    removed when nothing is missing): a reader through :func:`table_files`
    sees the old pair or the new one, never one of each, even after a kill.
    """

    npy = Path(npy)
    values = np.asarray(values, dtype=np.float32)
    missing = np.asarray(missing, dtype=bool)
    make_table(npy.stem, values, missing, source=npy)  # raises SnagError if the loader would refuse it
    listed = "".join(f"{i}\n" for i in np.flatnonzero(missing)).encode()
    write_together(manifest_path_for(npy), {
        npy.name: lambda fh: np.save(fh, values, allow_pickle=False),
        missing_path_for(npy).name: (lambda fh: fh.write(listed)) if missing.any() else None,
    })


def table_files(npy: Path) -> "tuple[Path, Optional[Path]]":
    """Where to read a table and its missing list (``None``: none) so that they are one pair: the
    pair its manifest names, when :func:`save_feature_table` wrote it (see
    :func:`snagkg.runtime.file_sets.read_together`), else the files as they are."""
    npy = Path(npy)
    miss = missing_path_for(npy)
    where = read_together(manifest_path_for(npy), [npy.name, miss.name])
    return where[npy.name] or npy, where[miss.name]
