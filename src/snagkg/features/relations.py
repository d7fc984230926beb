"""Bag-of-relations and bag-of-attributes modalities (SPEC section 1), for both tasks.

Relation bag (one implementation, :func:`relation_counts`): for each entity,
the number of triples in which it takes part through each of the ``top``
most frequent relations, head and tail occurrences both counted (a self-loop
``(e, r, e)`` counts twice). Columns are the top relations, most frequent
first (ties: lower relation id first). Values are raw counts as the SPEC
states; ``log1p=True`` gives ``log(1 + count)`` instead, which tames hub
entities. The triples are the graph's :attr:`~snagkg.datasets.graph.Graph.feature_triples`:
for completion the train split only, so valid/test triples never leak into
features; for alignment both graphs.

Which entities are missing is the one difference between the callers,
explicit in ``missing``:

* ``"no_triple"`` (``snagkg features relations``, completion): entities in
  no triple; an entity whose triples all use rarer relations gets a real
  all-zero row;
* ``"no_count"`` (the alignment ``relation`` modality): entities whose row
  is all zero, i.e. also those whose triples all use rarer relations.

Attribute bag (alignment ``attribute``): a 0/1 bag over the most frequent
attribute names, chosen the same way.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from snagkg.data.datasets.named import apply_valid_from_train
from snagkg.data.datasets.openke import read_openke
from snagkg.data.tables import FeatureTable, make_table, save_feature_table
from snagkg.features.common import FeatureSummary, dataset_folder, output_path, read_triples_graph
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import write_text

MISSING_RULES = ("no_triple", "no_count")


def top_ids(freq: np.ndarray, top: int) -> np.ndarray:
    """Ids of the ``top`` largest non-zero counts in ``freq``, most frequent first (ties: lower id first)."""
    present = np.flatnonzero(freq)
    order = present[np.lexsort((present, -freq[present]))]  # by count desc, then id
    return order[:top]


def _relation_counts(triples: np.ndarray, num_entities: int, num_relations: int, top: int,
                     log1p: bool = False, missing: str = "no_triple"):
    """:func:`relation_counts` without the check of ``top``."""
    if missing not in MISSING_RULES:
        raise ValueError(f"missing must be one of {MISSING_RULES}, got {missing!r}")
    h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
    chosen = top_ids(np.bincount(r, minlength=num_relations), top)
    column = np.full(num_relations, -1, dtype=np.int64)
    column[chosen] = np.arange(len(chosen))
    counts = np.zeros((num_entities, len(chosen)), dtype=np.float64)
    keep = column[r] >= 0
    np.add.at(counts, (h[keep], column[r[keep]]), 1.0)
    np.add.at(counts, (t[keep], column[r[keep]]), 1.0)
    if missing == "no_triple":
        seen = np.zeros(num_entities, dtype=bool)
        seen[h] = True
        seen[t] = True
    else:
        seen = counts.sum(axis=1) != 0
    values = (np.log1p(counts) if log1p else counts).astype(np.float32)
    values[~seen] = np.nan
    return values, ~seen, chosen


def relation_counts(triples: np.ndarray, num_entities: int, num_relations: int, top: int,
                    log1p: bool = False, missing: str = "no_triple"):
    """Relation bag of ``(head, relation, tail)`` rows: ``(values [N, k] float32 with NaN rows for
    missing, missing [N] bool, relation ids [k])``; ``missing`` picks the rule (module docstring)."""
    if top < 1:
        raise SnagError(f"--top must be at least 1, got {top}")
    return _relation_counts(triples, num_entities, num_relations, top, log1p=log1p, missing=missing)


def relation_bag(graph, top: int, seed: int = 0) -> FeatureTable:
    """The alignment ``relation`` table of a :class:`~snagkg.datasets.graph.Graph`: raw counts over
    its ``top`` most frequent relations, entities with an all-zero row missing (filled by ``make_table``)."""
    values, missing, chosen = _relation_counts(graph.feature_triples, graph.num_entities, graph.num_relations,
                                               top, missing="no_count")
    if len(chosen) == 0:  # no relation counted at all: one all-missing column
        values, missing = np.zeros((graph.num_entities, 1), dtype=np.float32), np.ones(graph.num_entities, bool)
    return make_table("relation", values, missing, seed=seed, own=True)


def attribute_bag(pair, top: int, seed: int = 0) -> FeatureTable:
    """The alignment ``attribute`` table of an :class:`~snagkg.datasets.alignment_pair.AlignmentPair`:
    1 where the entity has the attribute, over the ``top`` most frequent attribute names."""
    at = pair.attributes
    if len(at) == 0:
        raise SnagError("modality 'attribute' needs attribute triples (attr_triples_1/2); this dataset has none")
    keep = top_ids(np.bincount(at[:, 1], minlength=len(pair.attribute_names)), top)
    col = np.full(len(pair.attribute_names), -1, dtype=np.int64)
    col[keep] = np.arange(len(keep))
    values = np.zeros((pair.num_entities, max(1, len(keep))), dtype=np.float32)
    c = col[at[:, 1]]
    ok = c >= 0
    values[at[ok, 0], c[ok]] = 1.0
    return make_table("attribute", values, values.sum(axis=1) == 0, seed=seed, own=True)


def build_relation_features(dataset, top: int = 1000, output: Optional[str] = None,
                            log1p: bool = False, valid_from_train: float = 0.0,
                            split_seed: int = 0, split: Optional[str] = None) -> FeatureSummary:
    """``snagkg features relations``: write ``relation.npy`` (+ missing list) for a completion dataset
    (an OpenKE folder, a triples file or a folder of split files; ``split``: a triples file's
    ``--split``, drawn with ``split_seed`` as ``snagkg train`` does).

    ``valid_from_train`` > 0 counts over train without the triples that ``snagkg train
    --valid-from-train F --split-seed S`` holds out as its validation split (the same seeded
    draw), so that validation triples do not leak into the features either.
    """

    if top < 1:
        raise SnagError(f"--top must be at least 1, got {top}")
    folder = dataset_folder(dataset)
    out = output_path(folder, "relation", output)
    if folder.kind == "openke":
        if split is not None:
            raise SnagError("--split applies to a triples file (TSV, CSV or RDF), not to an OpenKE folder",
                            folder.path)
        kg = read_openke(folder.path, features=False)
    else:
        kg = read_triples_graph(folder, split=split, seed=split_seed)
    if valid_from_train:
        apply_valid_from_train(kg, valid_from_train, seed=split_seed)
    values, missing, chosen = relation_counts(kg.feature_triples, kg.num_entities, kg.num_relations, top,
                                              log1p=log1p)
    save_feature_table(out, values, missing)
    write_text(split_record_path(out), json.dumps({"valid_from_train": float(valid_from_train),
                                                   "split_seed": int(split_seed)}) + "\n")
    note = f"{'log1p ' if log1p else ''}counts over the top {len(chosen)} of {len(kg.relations)} relations in train"
    if valid_from_train:
        note += (f" without the {len(kg.valid)} triples held out by --valid-from-train {valid_from_train:g} "
                 f"(split seed {split_seed}): train with the same two options")
    return FeatureSummary("relation", out, len(kg.entities), int((~missing).sum()), len(chosen), note=note)


def split_record_path(npy) -> Path:
    """``<stem>.split.json`` beside a relation table: the train split it was counted over."""
    npy = Path(npy)
    return npy.with_name(f"{npy.stem}.split.json")


def split_note(npy, valid_from_train: float, split_seed: int) -> Optional[str]:
    """A note when the relation table ``npy`` was counted over another train split than a run's.

    ``snagkg features relations`` records in ``relation.split.json`` whether it left out the
    triples of ``--valid-from-train F --split-seed S``. A run with another split either counts
    its own validation triples in the features (validation slightly optimistic) or misses
    train triples it trains on; tables without the record (imported, or built before it
    existed) count every train triple.
    """
    def split(fraction, seed) -> Tuple[float, int]:  # the seed means nothing without a held-out share
        fraction = float(fraction or 0.0)
        return (fraction, int(seed) if fraction else 0)

    record = split_record_path(npy)
    built = (0.0, 0)
    if record.is_file():
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            built = split(data.get("valid_from_train", 0.0), data.get("split_seed", 0))
        except (ValueError, TypeError, AttributeError, OSError):
            return f"note: {record} is unreadable; cannot tell which train split {Path(npy).name} counts"
    run = split(valid_from_train, split_seed)
    if built == run:
        return None
    fix = (f"`snagkg features relations --valid-from-train {run[0]:g} --split-seed {run[1]}` (with the same --top "
           f"and --log1p) counts this run's split" if run[0] else
           "`snagkg features relations` without --valid-from-train counts all of train")
    if built[0] == 0.0:
        what = (f"{Path(npy).name} counts every train triple, also the ones this run holds out as validation "
                f"(--valid-from-train {run[0]:g}): validation metrics are slightly optimistic, test is unaffected")
    else:
        what = (f"{Path(npy).name} leaves out the triples of --valid-from-train {built[0]:g} --split-seed {built[1]}, "
                f"not this run's split")
    return f"note: {what}; {fix}"

