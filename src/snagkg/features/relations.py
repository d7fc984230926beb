"""``snagkg features relations``: the relation-context modality (SPEC section 1).

For each entity, the number of TRAIN triples in which it takes part through
each of the ``top`` most frequent train relations, head and tail occurrences
both counted (a self-loop ``(e, r, e)`` counts twice). Columns are the top
relations, most frequent first (ties: lower relation id first). Values are raw
counts as the SPEC states; ``log1p=True`` writes ``log(1 + count)`` instead,
which tames hub entities. Entities in no train triple are missing (NaN row,
listed in ``relation.missing.txt``); an entity whose train triples all use
rarer relations gets a real all-zero row.
Only the train split is read, so valid/test triples never leak into features.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import SnagError
from .common import FeatureSummary, dataset_folder, output_path
from .tables import save_feature_table


def relation_counts(train_hrt: np.ndarray, num_entities: int, num_relations: int, top: int,
                    log1p: bool = False):
    """``(values [N, k] float32 with NaN rows for missing, missing [N] bool, relation ids [k])``."""
    if top < 1:
        raise SnagError(f"--top must be at least 1, got {top}")
    h, r, t = train_hrt[:, 0], train_hrt[:, 1], train_hrt[:, 2]
    freq = np.bincount(r, minlength=num_relations)
    present = np.flatnonzero(freq)
    order = present[np.lexsort((present, -freq[present]))]  # by count desc, then id
    chosen = order[:top]
    column = np.full(num_relations, -1, dtype=np.int64)
    column[chosen] = np.arange(len(chosen))
    counts = np.zeros((num_entities, len(chosen)), dtype=np.float64)
    keep = column[r] >= 0
    np.add.at(counts, (h[keep], column[r[keep]]), 1.0)
    np.add.at(counts, (t[keep], column[r[keep]]), 1.0)
    seen = np.zeros(num_entities, dtype=bool)
    seen[h] = True
    seen[t] = True
    values = (np.log1p(counts) if log1p else counts).astype(np.float32)
    values[~seen] = np.nan
    return values, ~seen, chosen


def build_relation_features(dataset, top: int = 1000, output: Optional[str] = None,
                            log1p: bool = False) -> FeatureSummary:
    from ..datasets.openke import read_openke

    if top < 1:
        raise SnagError(f"--top must be at least 1, got {top}")
    folder = dataset_folder(dataset)
    out = output_path(folder, "relation", output)
    kg = read_openke(folder, features=False)
    values, missing, chosen = relation_counts(kg.train, len(kg.entities), len(kg.relations), top, log1p=log1p)
    save_feature_table(out, values, missing)
    note = f"{'log1p ' if log1p else ''}counts over the top {len(chosen)} of {len(kg.relations)} relations in train"
    return FeatureSummary("relation", out, len(kg.entities), int((~missing).sum()), len(chosen), note=note)
