"""The in-memory graphs every stage after reading sees.

:class:`Graph` is the small interface both dataset kinds share, so feature
builders (:mod:`snagkg.features`) can take either: a completion
:class:`KnowledgeGraph` or an alignment
:class:`~snagkg.datasets.alignment_pair.AlignmentPair`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from snagkg.data.tables import FeatureTable


class Graph:
    """What every dataset offers, whatever its task.

    Subclasses (dataclasses) hold ``name``, ``entities`` (the entity name or
    URI of each internal index), ``relations`` (the name of each relation
    index), ``features`` (modality name -> :class:`~snagkg.tables.FeatureTable`,
    rows in internal index order) and ``notes`` (human-readable remarks made
    while reading), and define :attr:`feature_triples` and :meth:`summary`.
    """

    name: str
    entities: List[str]
    relations: List[str]
    features: Dict[str, FeatureTable]
    notes: List[str]

    @property
    def num_entities(self) -> int:
        """Number of entities (internal indices ``0 .. num_entities - 1``)."""
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        """Number of relations (internal indices ``0 .. num_relations - 1``)."""
        return len(self.relations)

    @property
    def feature_triples(self) -> np.ndarray:
        """``[n, 3]`` int64 ``(head, relation, tail)`` rows that feature builders may read."""
        raise NotImplementedError

    def degrees(self) -> np.ndarray:
        """How many :attr:`feature_triples` each entity takes part in (as head or tail), ``[num_entities]``."""
        t = np.asarray(self.feature_triples, dtype=np.int64).reshape(-1, 3)
        n = self.num_entities
        return np.bincount(t[:, 0], minlength=n)[:n] + np.bincount(t[:, 2], minlength=n)[:n]

    def feature_summary(self) -> Dict[str, Dict[str, float]]:
        """Width and missing fraction of every feature table, by modality."""
        return {k: {"dim": t.dim, "missing": round(t.missing_fraction, 4)} for k, t in self.features.items()}

    def summary(self) -> Dict[str, object]:
        """A JSON-ready description of the dataset (sizes, modalities)."""
        raise NotImplementedError


@dataclass
class KnowledgeGraph(Graph):
    """A completion dataset: triples are ``int64`` arrays of shape ``[n, 3]`` in ``(head, relation, tail)`` order."""

    name: str
    entities: List[str]
    relations: List[str]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: Dict[str, FeatureTable] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    #: ``(entity, property, value)`` literal statements kept from the source (RDF), all strings
    literals: List[Tuple[str, str, str]] = field(default_factory=list)
    #: triples known to be true but in no split (the valid split replaced by ``valid_from_train``):
    #: filtered in ranking like every other known triple, never trained on or ranked
    known: Optional[np.ndarray] = None
    #: extra JSON-ready entries of :meth:`summary` (how the dataset was read, split or held out)
    info: Dict[str, Any] = field(default_factory=dict)
    #: the folder the feature tables were read from (``None``: generated in memory)
    features_dir: Optional[Path] = None

    @property
    def feature_triples(self) -> np.ndarray:
        """The train split only, so valid and test triples never leak into features."""
        return self.train

    def split(self, name: str) -> np.ndarray:
        """The ``train``, ``valid`` or ``test`` triples (``KeyError`` for any other name)."""
        if name not in ("train", "valid", "test"):
            raise KeyError(name)
        return getattr(self, name)

    def all_triples(self) -> np.ndarray:
        """Train, valid and test triples, concatenated in that order (then :attr:`known`, if any)."""
        parts = [self.train, self.valid, self.test] + ([self.known] if self.known is not None else [])
        return np.concatenate(parts, axis=0)

    def summary(self) -> Dict[str, object]:
        """Name, sizes of the graph and of each split, and the modalities' widths and missing fractions."""
        return {
            "name": self.name,
            "entities": self.num_entities,
            "relations": self.num_relations,
            "train": int(len(self.train)),
            "valid": int(len(self.valid)),
            "test": int(len(self.test)),
            "modalities": self.feature_summary(),
            **self.info,
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
    """A warning if some entities of ``split`` never appear in ``kg_train`` (else ``None``)."""
    seen = np.zeros(int(max(kg_train.max(initial=0), split.max(initial=0))) + 1, dtype=bool)
    seen[kg_train[:, 0]] = True
    seen[kg_train[:, 2]] = True
    ents = np.unique(np.concatenate([split[:, 0], split[:, 2]]))
    unseen = ents[~seen[ents]]
    if unseen.size:
        return f"warning: {unseen.size} entities in {split_name} never appear in train (they keep their initial embedding)"
    return None
