"""``snagkg features text --from FILE`` / ``--property P``: the text modality from descriptions.

Descriptions come from

* a TSV ``entity<TAB>text`` (``--from``): the entity is its name, another
  spelling of it or its id (:class:`~snagkg.data.name_index.NameIndex`);
  lines starting with ``#`` are comments; an entity the dataset does not
  have is a one-line error naming the file and line;
* the literal rows of one property (``--property rdfs:comment`` or a full IRI)
  of an ``entity<TAB>property<TAB>value`` table (``--literals FILE``, default
  ``DATASET/literals.tsv``); rows of entities the dataset does not have are
  skipped and counted in the summary.

Several descriptions of one entity are joined with a space in file order and
encoded once (``--aggregate join``, the default) or encoded one by one and
their vectors averaged (``--aggregate mean``). Entities without a description
are missing the modality, unless ``--fallback names``: then their readable
name is encoded instead (as plain ``snagkg features text`` does).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from snagkg.data.lines import read_lines
from snagkg.data.name_index import NameIndex
from snagkg.data.tables import save_feature_table
from snagkg.data.uri_labels import entity_display_name
from snagkg.features.common import (
    FeatureSummary,
    dataset_folder,
    output_path,
    read_entity_names,
)
from snagkg.features.extractors import DEFAULT_TEXT_ENCODER, get_extractor
from snagkg.features.literals import literals_path, read_literals
from snagkg.features.text import encode_texts
from snagkg.runtime.devices import device_name
from snagkg.runtime.errors import SnagError

AGGREGATES = ("join", "mean")
FALLBACKS = ("none", "names")


def read_descriptions(path, index: NameIndex) -> Dict[int, List[str]]:
    """``{row: [texts in file order]}`` from an ``entity<TAB>text`` file (module docstring)."""
    path = Path(path)
    out: Dict[int, List[str]] = {}
    for number, text in read_lines(path):
        if text.lstrip().startswith("#"):
            continue
        parts = text.split("\t", 1)
        if len(parts) < 2:
            raise SnagError("expected 2 tab-separated columns (entity, text), found 1", path, number)
        ent, desc = parts[0], parts[1].strip()
        if not ent.strip():
            raise SnagError("empty entity column", path, number)
        if not desc:
            raise SnagError("empty description", path, number)
        row = index.lookup(ent, path, number)
        if row is None:
            raise SnagError(f"unknown entity {ent.strip()[:60]!r}: not a name or id of the dataset", path, number)
        out.setdefault(row, []).append(desc)
    if not out:
        raise SnagError("no descriptions in the file", path)
    return out


def build_description_features(dataset, source: Optional[str] = None, prop: Optional[str] = None,
                               literals: Optional[str] = None, fallback: str = "none", aggregate: str = "join",
                               output: Optional[str] = None, batch_size: int = 256, device: str = "auto",
                               encoder: str = DEFAULT_TEXT_ENCODER,
                               progress: Optional[bool] = None) -> FeatureSummary:
    """Write ``text.npy`` (+ ``text.missing.txt``) from descriptions (module docstring)."""
    if aggregate not in AGGREGATES:
        raise SnagError(f"--aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    if fallback not in FALLBACKS:
        raise SnagError(f"--fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
    if batch_size < 1:
        raise SnagError(f"--batch-size must be at least 1, got {batch_size}")
    if (source is None) == (prop is None):
        raise SnagError("give descriptions with exactly one of --from FILE or --property P")
    if literals is not None and prop is None:
        raise SnagError("--literals is read only with --property (which literal property holds descriptions)")
    folder = dataset_folder(dataset, alignment=True)
    out = output_path(folder, "text", output)
    raw = read_entity_names(folder)
    index = NameIndex(raw)
    unknown = 0
    if source is not None:
        where = Path(source)
        desc = read_descriptions(where, index)
    else:
        where = literals_path(folder.root, literals)
        rows, unknown = read_literals(where, index, prop)
        desc = {}
        for r in rows:
            if r.value:
                desc.setdefault(r.entity, []).append(r.value)
        if not desc:
            raise SnagError(f"no literal of property {prop!r} names an entity of the dataset"
                            + (f" ({unknown} rows name unknown entities)" if unknown else ""), where)
    names: Dict[int, str] = {}
    if fallback == "names":
        for i, r in enumerate(raw):
            if i not in desc and r:
                n = entity_display_name(r)
                if n is not None:
                    names[i] = n
    # the texts each entity's vector is the mean of (one text when joined)
    per_entity: Dict[int, List[str]] = {}
    for i, texts in desc.items():
        per_entity[i] = [" ".join(texts)] if aggregate == "join" else texts
    for i, n in names.items():
        per_entity[i] = [n]
    unique: Dict[str, int] = {}
    for texts in per_entity.values():
        for t in texts:
            unique.setdefault(t, len(unique))
    model = get_extractor(encoder)(device_name(device))
    vectors = encode_texts(model, list(unique), batch_size, progress, f"text ({model.name})")
    dim = int(model.dim)
    values = np.full((len(raw), dim), np.nan, dtype=np.float32)
    missing = np.ones(len(raw), dtype=bool)
    for i, texts in per_entity.items():
        values[i] = vectors[[unique[t] for t in texts]].mean(axis=0)
        missing[i] = False
    save_feature_table(out, values, missing)
    note = (f"encoder {model.name}, descriptions of {len(desc)} entities from {where} (aggregate {aggregate})"
            + (f", names of {len(names)}" if fallback == "names" else "")
            + (f", {unknown} rows of unknown entities skipped" if unknown else ""))
    return FeatureSummary("text", out, len(raw), int((~missing).sum()), dim, note=note)
