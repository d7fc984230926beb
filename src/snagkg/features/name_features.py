"""``snagkg features names``: the ``name`` modality from a names file or from the entity URIs.

Writes ``features/name.npy``: each entity's name encoded by a frozen text
encoder (:data:`~snagkg.features.extractors.FEATURE_EXTRACTORS`), rows
L2-normalised. In an entity-alignment folder this table is what
``--modalities ...,name`` uses (instead of encoding the URI names at the start
of every run), so translated names only need encoding once.

Names come from

* ``--from FILE.json``: a JSON list of ``[id, [tokens]]`` or ``[id, "text"]``
  pairs (the ``translated_ent_name/dbp_*_en.json`` files of DBP15K), or a JSON
  object ``{entity name or id: tokens or text}``; tokens are joined with spaces;
* ``--from FILE`` (any other suffix): a TSV ``entity<TAB>name``;
* no ``--from``: the URI name of each entity
  (:func:`snagkg.data.uri_labels.entity_name`: lower-cased URI tail, ``_`` as
  space), as the alignment ``name`` modality builds it.

An entity with no name (or an empty one) is missing the modality; an entity
the dataset does not have is a one-line error.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from snagkg.data.name_index import NameIndex
from snagkg.data.tables import save_feature_table
from snagkg.data.uri_labels import entity_name
from snagkg.features.common import (
    FeatureSummary,
    dataset_folder,
    output_path,
    read_entity_names,
)
from snagkg.features.descriptions import encode_texts, read_descriptions
from snagkg.features.extractors import DEFAULT_TEXT_ENCODER, get_extractor
from snagkg.runtime.devices import device_name
from snagkg.runtime.errors import SnagError


def _text(value, path: Path, where: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return " ".join(t.strip() for t in value if t.strip())
    raise SnagError(f"{where}: expected a name (text or a list of tokens), found {type(value).__name__}", path)


def _row(key, index: NameIndex, path: Path, where: str) -> int:
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise SnagError(f"{where}: expected an entity id or name, found {key!r:.60}", path)
    row = index.row(key) if isinstance(key, int) else index.lookup(key, path)
    if row is None:
        raise SnagError(f"{where}: unknown entity {key!r:.60}: not a name or id of the dataset", path)
    return row


def read_names_json(path, index: NameIndex) -> Dict[int, str]:
    """``{row: name}`` from a JSON names file (module docstring)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnagError("names file not found", path) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SnagError(f"not a readable JSON file: {str(exc)[:120]}", path) from None
    items = list(data.items()) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SnagError("expected a JSON list of [id, tokens] pairs or an object {entity: name}", path)
    out: Dict[int, str] = {}
    for k, item in enumerate(items):
        where = f"entry {k}"
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise SnagError(f"{where}: expected a pair [id, tokens]", path)
        row = _row(item[0], index, path, where)
        if row in out:
            raise SnagError(f"{where}: entity {item[0]!r:.60} is named twice", path)
        out[row] = _text(item[1], path, where)
    return out


def build_name_features(dataset, source: Optional[str] = None, encoder: str = DEFAULT_TEXT_ENCODER,
                        batch_size: int = 256, device: str = "auto", output: Optional[str] = None,
                        progress: Optional[bool] = None) -> FeatureSummary:
    """Write ``name.npy`` (+ ``name.missing.txt``) for an alignment or OpenKE folder (module docstring)."""
    if batch_size < 1:
        raise SnagError(f"--batch-size must be at least 1, got {batch_size}")
    folder = dataset_folder(dataset, alignment=True)
    out = output_path(folder, "name", output)
    raw = read_entity_names(folder)
    index = NameIndex(raw)
    if source is None:
        names = {i: entity_name(r) for i, r in enumerate(raw) if r}
        origin = "URI names"
    elif Path(source).suffix.lower() == ".json":
        names = read_names_json(source, index)
        origin = str(source)
    else:
        names = {i: " ".join(t) for i, t in read_descriptions(source, index).items()}
        origin = str(source)
    names = {i: n for i, n in names.items() if n}
    if not names:
        raise SnagError("no entity has a name to encode", source or folder.path)
    unique: Dict[str, int] = {}
    for n in names.values():
        unique.setdefault(n, len(unique))
    model = get_extractor(encoder)(device_name(device))
    texts: List[str] = list(unique)
    vectors = encode_texts(model, texts, batch_size, progress, f"name ({model.name})")
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    values = np.full((len(raw), int(model.dim)), np.nan, dtype=np.float32)
    missing = np.ones(len(raw), dtype=bool)
    for i, n in names.items():
        values[i] = vectors[unique[n]]
        missing[i] = False
    save_feature_table(out, values, missing)
    note = f"encoder {model.name}, {len(texts)} distinct names from {origin}"
    return FeatureSummary("name", out, len(raw), int((~missing).sum()), int(model.dim), note=note)
