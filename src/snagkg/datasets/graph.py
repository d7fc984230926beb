"""The in-memory multi-modal knowledge graph every stage after reading sees."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

from ..features.tables import FeatureTable


@dataclass
class KnowledgeGraph:
    """Triples are ``int64`` arrays of shape ``[n, 3]`` in ``(head, relation, tail)`` order."""

    name: str
    entities: List[str]
    relations: List[str]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: Dict[str, FeatureTable] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def split(self, name: str) -> np.ndarray:
        if name not in ("train", "valid", "test"):
            raise KeyError(name)
        return getattr(self, name)

    def all_triples(self) -> np.ndarray:
        return np.concatenate([self.train, self.valid, self.test], axis=0)

    def summary(self) -> Dict[str, object]:
        return {
            "name": self.name,
            "entities": self.num_entities,
            "relations": self.num_relations,
            "train": int(len(self.train)),
            "valid": int(len(self.valid)),
            "test": int(len(self.test)),
            "modalities": {k: {"dim": t.dim, "missing": round(t.missing_fraction, 4)} for k, t in self.features.items()},
        }


def triple_keys(triples: np.ndarray, num_entities: int, num_relations: int) -> np.ndarray:
    """Encode ``(h, r, t)`` rows as unique int64 keys."""
    t = np.asarray(triples, dtype=np.int64)
    return (t[:, 0] * num_relations + t[:, 1]) * num_entities + t[:, 2]


def clean_valid(valid: np.ndarray, train: np.ndarray, test: np.ndarray, n_ent: int, n_rel: int):
    """Deduplicate ``valid`` and drop triples also in train or test.

    Returns the cleaned array and a human-readable note (or ``None``).
    """
    keys = triple_keys(valid, n_ent, n_rel)
    _, first = np.unique(keys, return_index=True)
    first.sort()
    dedup = valid[first]
    dkeys = keys[first]
    in_train = np.isin(dkeys, triple_keys(train, n_ent, n_rel))
    in_test = np.isin(dkeys, triple_keys(test, n_ent, n_rel))
    keep = ~(in_train | in_test)
    dropped_dup = len(valid) - len(dedup)
    if dropped_dup == 0 and keep.all():
        return valid, None
    note = (f"valid cleaned: {len(valid)} lines -> {int(keep.sum())} triples "
            f"({dropped_dup} duplicates, {int(in_train.sum())} also in train, "
            f"{int((in_test & ~in_train).sum())} also in test removed)")
    return dedup[keep], note


def unseen_entity_note(kg_train: np.ndarray, split: np.ndarray, split_name: str):
    seen = np.zeros(int(max(kg_train.max(initial=0), split.max(initial=0))) + 1, dtype=bool)
    seen[kg_train[:, 0]] = True
    seen[kg_train[:, 2]] = True
    ents = np.unique(np.concatenate([split[:, 0], split[:, 2]]))
    unseen = ents[~seen[ents]]
    if unseen.size:
        return f"warning: {unseen.size} entities in {split_name} never appear in train (they keep their initial embedding)"
    return None
