"""Reader for the OpenKE layout used by DB15K, MKG-W and MKG-Y.

Files (first line of each is a count): ``entity2id.txt`` and
``relation2id.txt`` (``name id``), ``train2id.txt``, ``valid2id.txt``,
``test2id.txt`` (``head tail relation``: note the order). Optional modality
features live in ``features/<modality>.npy`` with ``<modality>.missing.txt``.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from snagkg.data.datasets.graph import (
    KnowledgeGraph,
    clean_valid,
    triple_keys,
    unseen_entity_note,
)
from snagkg.data.feature_dir import load_feature_dir
from snagkg.data.lines import read_int_rows, read_name_id_lines
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import save_numpy, write_text

RESERVED_MODALITIES = ("structure",)


def _dense_names(path: Path) -> List[str]:
    """Read a ``name id`` table whose ids must be exactly ``0..n-1`` (unique, so a permutation)."""
    names, ids, numbers = read_name_id_lines(path, with_count=True)
    n = len(names)
    bad = np.flatnonzero(ids >= n)
    if bad.size:
        first = int(bad[0])
        raise SnagError(f"id {int(ids[first])} is out of range: the {n} ids must be 0..{n - 1}", path,
                        int(numbers[first]))
    if np.array_equal(ids, np.arange(n)):
        return names
    return np.asarray(names, dtype=object)[np.argsort(ids)].tolist()


def _valid_is_clean(valid: np.ndarray, others: Tuple[np.ndarray, ...], n_ent: int, n_rel: int) -> bool:
    """Whether ``valid`` has no duplicate and no triple of ``others`` (sort and binary search)."""
    keys = np.sort(triple_keys(valid, n_ent, n_rel))
    if (np.diff(keys) == 0).any():
        return False
    for other in others:
        ref = np.sort(triple_keys(other, n_ent, n_rel))  # sorted needles and haystack: cache-friendly
        if len(ref) and (ref[np.minimum(np.searchsorted(ref, keys), len(ref) - 1)] == keys).any():
            return False
    return True


def _all_seen(train: np.ndarray, split: np.ndarray, n_ent: int) -> bool:
    """Whether every entity of ``split`` appears in ``train`` (then there is nothing to warn about)."""
    seen = np.zeros(n_ent, dtype=bool)
    seen[train[:, 0]] = True
    seen[train[:, 2]] = True
    return bool(seen[split[:, 0]].all() and seen[split[:, 2]].all())


def is_openke(folder: Path) -> bool:
    """Whether ``folder`` holds an ``entity2id.txt`` (the OpenKE layout's mark)."""
    return (Path(folder) / "entity2id.txt").exists()


def read_openke(folder, seed: int = 0, features: bool = True, storage: str = "memory") -> KnowledgeGraph:
    """Read the OpenKE-layout ``folder`` (``features``: also its ``features/`` tables, kept in memory
    or memory-mapped as ``storage`` says: :func:`snagkg.tables.load_feature_dir`)."""
    folder = Path(folder)
    if not folder.exists():
        raise SnagError("dataset folder not found", folder)
    if not folder.is_dir():
        raise SnagError("dataset path is not a folder", folder)
    ent_path, rel_path = folder / "entity2id.txt", folder / "relation2id.txt"
    entities = _dense_names(ent_path)
    relations = _dense_names(rel_path)
    n_ent, n_rel = len(entities), len(relations)

    splits = {}
    for split in ("train", "valid", "test"):
        path = folder / f"{split}2id.txt"
        rows, _ = read_int_rows(path, 3, True, [("entity id", n_ent), ("entity id", n_ent), ("relation id", n_rel)])
        if len(rows) == 0:
            raise SnagError(f"the {split} split is empty (no triples)", path, 1)
        splits[split] = rows[:, [0, 2, 1]].copy()  # (h, t, r) -> (h, r, t)

    notes: List[str] = []
    if _valid_is_clean(splits["valid"], (splits["train"], splits["test"]), n_ent, n_rel):
        valid, note = splits["valid"], None  # what clean_valid returns then, without its slower np.isin
    else:
        valid, note = clean_valid(splits["valid"], splits["train"], splits["test"], n_ent, n_rel)
    if note:
        notes.append(note)
    if len(valid) == 0:
        raise SnagError("the valid split is empty after removing duplicates and triples in train/test",
                        folder / "valid2id.txt")
    for name, arr in (("valid", valid), ("test", splits["test"])):
        warn = None if _all_seen(splits["train"], arr, n_ent) else unseen_entity_note(splits["train"], arr, name)
        if warn:
            notes.append(warn)
    for reserved in RESERVED_MODALITIES if features else ():
        if (folder / "features" / f"{reserved}.npy").exists():  # checked before any table is read
            raise SnagError(f"'{reserved}' is a reserved modality name (learned, not loaded)",
                            folder / "features" / f"{reserved}.npy")
    tables = load_feature_dir(folder / "features", n_ent, seed=seed, storage=storage) if features else {}
    return KnowledgeGraph(
        name=folder.name, entities=entities, relations=relations,
        train=splits["train"], valid=valid, test=splits["test"], features=tables, notes=notes,
        features_dir=folder / "features",
    )


def write_openke(kg: KnowledgeGraph, folder) -> None:
    """Write ``kg`` in the OpenKE layout (used by tests and the synthetic export)."""

    folder = Path(folder)

    def table(rows: List[Tuple[str, int]]) -> str:
        return f"{len(rows)}\n" + "".join(f"{a}\t{b}\n" for a, b in rows)

    write_text(folder / "entity2id.txt", table([(n, i) for i, n in enumerate(kg.entities)]))
    write_text(folder / "relation2id.txt", table([(n, i) for i, n in enumerate(kg.relations)]))
    for split in ("train", "valid", "test"):
        arr = kg.split(split)
        body = "".join(f"{h} {t} {r}\n" for h, r, t in arr.tolist())
        write_text(folder / f"{split}2id.txt", f"{len(arr)}\n{body}")
    for name, tab in kg.features.items():
        values = tab.values.copy()
        values[tab.missing] = np.nan
        save_numpy(folder / "features" / f"{name}.npy", values)
        if tab.missing.any():
            write_text(folder / "features" / f"{name}.missing.txt",
                       "".join(f"{i}\n" for i in np.flatnonzero(tab.missing)))
