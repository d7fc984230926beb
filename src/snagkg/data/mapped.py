"""Feature tables read from disk on demand (``numpy.load(mmap_mode="r")``), for graphs whose tables
do not fit in memory, or that should not be read whole (SPEC section 1, issue: large graphs).

:class:`MappedFeatureTable` is the on-disk twin of :class:`snagkg.tables.FeatureTable`: the same
``missing``, ``mean`` and ``std``, and the same filled values row for row, but the ``values`` stay
a read-only memory map. Only three things are kept in memory: the missing mask (one byte per
entity), the fill of the missing rows (``missing x width`` floats) and the statistics.

* The table is checked and its statistics computed in one streamed pass over row chunks
  (Chan et al.'s parallel mean/variance update, in float64), never reading the table whole.
* :meth:`MappedFeatureTable.rows` gathers the rows of some entities (sorted reads from the map)
  with the missing ones replaced by their fill: the draw that :func:`snagkg.tables.make_table` makes
  (same seed, same order), scaled by the streamed statistics.

``completion.feature_storage`` chooses between the two kinds (``auto``: mapped when a dataset's
tables together exceed :data:`AUTO_BYTES`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from snagkg.data.tables import check_table, missing_fill
from snagkg.runtime.errors import SnagError

#: ``feature_storage: auto`` maps a dataset's tables when together they exceed this many bytes
AUTO_BYTES = 1 << 30
#: rows per chunk of the streamed pass
CHUNK_ROWS = 65536
STORAGES = ("auto", "memory", "mmap")


def open_map(path: Path) -> np.ndarray:
    """``np.load(path, mmap_mode="r")`` with one-line errors (a pickled or broken file is refused)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise SnagError("file not found", path) from None
    except (ValueError, OSError, EOFError) as exc:
        text = str(exc)
        if "pickle" in text.lower() or "object" in text.lower():
            raise SnagError("array holds Python objects (pickled); refusing to load it", path) from None
        raise SnagError(f"not a valid .npy file: {text.splitlines()[0] if text else type(exc).__name__}",
                        path) from None
    if not isinstance(arr, np.ndarray):  # pragma: no cover - an .npz archive named .npy
        raise SnagError("this is an .npz archive; import it with `snagkg features import`", path)
    return arr


def streamed_statistics(values: np.ndarray, missing: np.ndarray, where: object,
                        chunk: int = CHUNK_ROWS) -> Tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (population) of the rows not ``missing``, in one pass over row chunks.

    Also checks every row that is not missing is finite (one-line error naming the first bad row).
    """
    n, width = values.shape
    count = 0
    mean = np.zeros(width, dtype=np.float64)
    m2 = np.zeros(width, dtype=np.float64)
    for start in range(0, n, chunk):
        block = np.asarray(values[start:start + chunk], dtype=np.float64)
        real = ~missing[start:start + chunk]
        finite = np.isfinite(block).all(axis=1)
        bad = np.flatnonzero(~finite & real)
        if bad.size:
            row = start + int(bad[0])
            kind = "NaN" if np.isnan(block[bad[0]]).any() else "inf"
            raise SnagError(f"row {row} (entity id {row}) contains {kind}; mark the entity missing or fix the value",
                            where)
        block = block[real]
        k = len(block)
        if k == 0:
            continue
        b_mean = block.mean(axis=0)
        b_m2 = np.square(block - b_mean).sum(axis=0)
        delta = b_mean - mean
        total = count + k
        mean = mean + delta * (k / total)
        m2 = m2 + b_m2 + np.square(delta) * (count * k / total)
        count = total
    if count == 0:
        raise SnagError("every row is marked missing; nothing to learn from", where)
    return mean.astype(np.float32), np.sqrt(m2 / count).astype(np.float32)


@dataclass
class MappedFeatureTable:
    """One frozen modality kept on disk: ``values`` a read-only map ``[N, D]``; ``missing [N]``;
    ``fill [missing, D]`` the values of the missing rows, in id order; ``mean``/``std`` ``[D]``."""

    name: str
    values: np.ndarray
    missing: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    fill: np.ndarray

    mapped = True

    def __post_init__(self) -> None:
        #: ids of the missing rows, sorted: row ``missing_ids[j]`` holds ``fill[j]``
        self.missing_ids = np.flatnonzero(self.missing)

    @property
    def dim(self) -> int:
        """The table's width ``D``."""
        return int(self.values.shape[1])

    @property
    def shape(self) -> Tuple[int, int]:
        """``(N, D)``."""
        return int(self.values.shape[0]), self.dim

    @property
    def missing_fraction(self) -> float:
        """Share of the entities that lack this modality (0 for an empty table)."""
        return float(self.missing.mean()) if len(self.missing) else 0.0

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """The filled rows ``indices`` as float32 ``[len(indices), D]`` (only those rows are read)."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")  # sorted reads: sequential pages of the map
        out = np.empty((len(indices), self.dim), dtype=np.float32)
        out[order] = self.values[indices[order]]
        miss = self.missing[indices]
        if miss.any():
            slot = np.searchsorted(self.missing_ids, indices[miss])
            out[miss] = self.fill[slot]
        return out


def open_feature_table(name: str, path: Path, missing: Optional[np.ndarray], seed: int = 0,
                       chunk: int = CHUNK_ROWS, values: Optional[np.ndarray] = None) -> MappedFeatureTable:
    """Open ``path`` (or take its map ``values``, already opened by :func:`open_map`) as a
    :class:`MappedFeatureTable`: the checks of :func:`snagkg.tables.make_table`, streamed."""
    values = open_map(path) if values is None else values
    missing = check_table(values, missing, path)
    mean, std = streamed_statistics(values, missing, path, chunk)
    fill = missing_fill(name, seed, int(missing.sum()), mean, std)  # the draw of make_table
    return MappedFeatureTable(name=name, values=values, missing=missing, mean=mean, std=std, fill=fill)


def use_mapped(storage: str, paths) -> bool:
    """Whether ``storage`` (``auto``/``memory``/``mmap``) maps the tables at ``paths``."""
    if storage not in STORAGES:
        raise SnagError(f"feature storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    if storage != "auto":
        return storage == "mmap"
    return sum(Path(p).stat().st_size for p in paths) > AUTO_BYTES
