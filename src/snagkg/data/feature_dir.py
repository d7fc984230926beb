"""A dataset's ``features/`` folder read as modality tables, in memory or memory-mapped."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

from snagkg.data.mapped import open_feature_table, open_map, use_mapped
from snagkg.data.tables import FeatureTable, load_npy, make_table, read_missing_ids, table_files
from snagkg.runtime.errors import SnagError


def load_feature_dir(folder: Path, num_entities: int, seed: int = 0, storage: str = "memory") -> Dict[str, FeatureTable]:
    """Load every ``<modality>.npy`` (with optional ``<modality>.missing.txt``) in ``folder``.

    ``storage``: ``memory`` reads each table whole; ``mmap`` opens it as a
    :class:`snagkg.mapped.MappedFeatureTable` (read on demand, statistics streamed); ``auto``
    maps them when together they exceed :data:`snagkg.mapped.AUTO_BYTES`.
    """
    tables: Dict[str, FeatureTable] = {}
    if not folder.is_dir():
        return tables
    files = [npy for npy in sorted(folder.glob("*.npy")) if not npy.stem.startswith(".")]
    mapped = use_mapped(storage, files)
    for npy in files:
        name = npy.stem
        source, miss_path = table_files(npy)  # the pair written together (or the files as they are)
        values = open_map(source) if mapped else load_npy(source)
        if values.ndim >= 1 and values.shape[0] != num_entities:
            raise SnagError(
                f"feature table has {values.shape[0]} rows but the dataset has {num_entities} entities", npy)
        missing = read_missing_ids(miss_path, num_entities) if miss_path is not None else None
        tables[name] = (open_feature_table(name, npy, missing, seed=seed, values=values)  # type: ignore[assignment]
                        if mapped
                        else make_table(name, values, missing, seed=seed, source=npy))
    return tables
