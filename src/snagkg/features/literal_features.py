"""Modalities from literal properties (``entity<TAB>property<TAB>value`` tables), for both tasks.

* ``snagkg features attributes`` (:func:`build_attribute_features`): the
  SPEC's attribute bag, 1 where the entity has at least one value of the
  property, over the ``--top`` properties with the most rows (ties: property
  IRI order) -> ``features/attribute.npy``; entities with none of them are
  missing.
* ``snagkg features numeric`` (:func:`build_numeric_features`): for each of
  the ``--top`` properties with the most entities, one column with the
  entity's value normalised per property and one 0/1 presence column
  (``[values..., presence...]``). Several values of one property are averaged
  first. ``--scale zscore`` (default): ``(v - mean) / std`` over the entities
  that have the property, clipped to [-5, 5] so that a few extreme values
  (populations, areas) do not dominate; ``--scale minmax``: ``(v - min) / (max - min)``; a
  property with a single distinct value gives 0. Entities without a value are
  0 in both columns; entities with no value at all are missing. Values are
  numbers (an RDF literal's quotes and datatype are removed) or dates
  ``YYYY-MM-DD`` (as fractional years); other values are skipped and counted.

Rows of entities the dataset does not have are skipped and counted in the
summary; the entity column may hold a name, a URI with or without ``<>``, or
an id (:class:`~snagkg.data.name_index.NameIndex`).
"""
from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from typing import Dict, List, Optional

import numpy as np

from snagkg.data.name_index import NameIndex
from snagkg.data.tables import save_feature_table
from snagkg.features.common import (
    FeatureSummary,
    dataset_folder,
    output_path,
    read_entity_names,
)
from snagkg.features.literals import Literal, literals_path, read_literals
from snagkg.runtime.errors import SnagError

SCALES = ("zscore", "minmax")
Z_CLIP = 5.0
_DATE = re.compile(r"^(-?\d{1,4})-(\d{2})-(\d{2})")


def parse_number(text: str) -> Optional[float]:
    """A float for a number or a ``YYYY-MM-DD`` date (fractional year), ``None`` for anything else."""
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    m = _DATE.match(t)
    if m:
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if 1 <= month <= 12 and 1 <= day <= 31:
            return year + (month - 1) / 12 + (day - 1) / 365.25
    return None


def _top(counts: Counter, top: int) -> List[str]:
    if top < 1:
        raise SnagError(f"--top must be at least 1, got {top}")
    return sorted(counts, key=lambda p: (-counts[p], p))[:top]


def _read(dataset, source: Optional[str]):
    folder = dataset_folder(dataset, alignment=True)
    raw = read_entity_names(folder)
    path = literals_path(folder.root, source)
    rows, unknown = read_literals(path, NameIndex(raw))
    if not rows:
        raise SnagError("no row names an entity of the dataset"
                        + (f" ({unknown} rows name unknown entities)" if unknown else ""), path)
    return folder, raw, path, rows, unknown


def build_attribute_features(dataset, literals: Optional[str] = None, top: int = 1000,
                             output: Optional[str] = None) -> FeatureSummary:
    """``snagkg features attributes``: write ``attribute.npy`` (module docstring)."""
    if top < 1:
        raise SnagError(f"--top must be at least 1, got {top}")
    folder, raw, path, rows, unknown = _read(dataset, literals)
    out = output_path(folder, "attribute", output)
    chosen = _top(Counter(r.prop for r in rows), top)
    col = {p: j for j, p in enumerate(chosen)}
    values = np.zeros((len(raw), len(chosen)), dtype=np.float32)
    for r in rows:
        j = col.get(r.prop)
        if j is not None:
            values[r.entity, j] = 1.0
    missing = values.sum(axis=1) == 0
    values[missing] = np.nan
    save_feature_table(out, values, missing)
    nprops = len({r.prop for r in rows})
    note = (f"0/1 over the top {len(chosen)} of {nprops} properties in {path}"
            + (f"; {unknown} rows of unknown entities skipped" if unknown else ""))
    return FeatureSummary("attribute", out, len(raw), int((~missing).sum()), len(chosen), note=note)


def numeric_table(rows: List[Literal], num_entities: int, top: int = 1000, scale: str = "zscore"):
    """``(values [N, 2P] float32 with NaN rows for missing, missing [N], properties [P], skipped)``
    from literal rows (module docstring); ``skipped`` counts the values that are not numbers."""
    if scale not in SCALES:
        raise SnagError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    sums: Dict[str, Dict[int, List[float]]] = defaultdict(dict)
    skipped = 0
    for r in rows:
        v = parse_number(r.value)
        if v is None:
            skipped += 1
            continue
        if not math.isfinite(v):
            raise SnagError(f"value {r.value[:40]!r} is not finite", None, None)
        acc = sums[r.prop].setdefault(r.entity, [0.0, 0])
        acc[0] += v
        acc[1] += 1
    if not sums:
        raise SnagError(f"no value is a number ({skipped} values skipped)")
    chosen = _top(Counter({p: len(d) for p, d in sums.items()}), top)
    k = len(chosen)
    values = np.zeros((num_entities, 2 * k), dtype=np.float64)
    for j, p in enumerate(chosen):
        ents = np.fromiter(sums[p].keys(), dtype=np.int64)
        vals = np.asarray([s / n for s, n in sums[p].values()], dtype=np.float64)
        if scale == "zscore":
            std = vals.std()
            norm = np.clip((vals - vals.mean()) / std, -Z_CLIP, Z_CLIP) if std > 0 else np.zeros_like(vals)
        else:
            span = vals.max() - vals.min()
            norm = (vals - vals.min()) / span if span > 0 else np.zeros_like(vals)
        values[ents, j] = norm
        values[ents, k + j] = 1.0
    missing = values[:, k:].sum(axis=1) == 0
    values = values.astype(np.float32)
    values[missing] = np.nan
    return values, missing, chosen, skipped


def build_numeric_features(dataset, source: Optional[str] = None, top: int = 1000, scale: str = "zscore",
                           output: Optional[str] = None) -> FeatureSummary:
    """``snagkg features numeric``: write ``numeric.npy`` (module docstring)."""
    if scale not in SCALES:
        raise SnagError(f"--scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if top < 1:
        raise SnagError(f"--top must be at least 1, got {top}")
    folder, raw, path, rows, unknown = _read(dataset, source)
    out = output_path(folder, "numeric", output)
    for r in rows:  # a value that parses but is inf/nan is a broken line, named as such
        v = parse_number(r.value)
        if v is not None and not math.isfinite(v):
            raise SnagError(f"value {r.value[:40]!r} is not a finite number", path, r.line)
    try:
        values, missing, chosen, skipped = numeric_table(rows, len(raw), top=top, scale=scale)
    except SnagError as exc:
        raise SnagError(exc.message, path) from None
    save_feature_table(out, values, missing)
    note = (f"{scale} values + presence of the top {len(chosen)} properties from {path}"
            + (f"; {skipped} non-numeric values skipped" if skipped else "")
            + (f"; {unknown} rows of unknown entities skipped" if unknown else ""))
    return FeatureSummary("numeric", out, len(raw), int((~missing).sum()), values.shape[1], note=note)
