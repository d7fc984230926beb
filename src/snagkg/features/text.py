"""``snagkg features text``: encode each entity's readable name with a frozen sentence encoder."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ..datasets.names import entity_display_name
from ..errors import SnagError
from .common import FeatureSummary, dataset_folder, output_path, read_entity_names, resolve_device
from .extractors import DEFAULT_TEXT_ENCODER, get_extractor
from .tables import save_feature_table


def build_text_features(dataset, output: Optional[str] = None, batch_size: int = 256, device: str = "auto",
                        encoder: str = DEFAULT_TEXT_ENCODER, progress: Optional[bool] = None) -> FeatureSummary:
    """Write ``text.npy`` (+ ``text.missing.txt``) for the OpenKE dataset in ``dataset``.

    Entities without a readable name (bare Wikidata QIDs) get a NaN row and
    are listed as missing. ``progress=None`` shows a bar only on a terminal.
    """
    from tqdm import tqdm

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
                        folder / "entity2id.txt")
    load = get_extractor(encoder)
    model = load(resolve_device(device))
    dim = int(model.dim)
    # encode each distinct name once
    unique: Dict[str, int] = {}
    for i in have:
        unique.setdefault(names[i], len(unique))
    texts: List[str] = list(unique)
    vectors = np.empty((len(texts), dim), dtype=np.float32)
    bar = tqdm(total=len(texts), unit="name", desc=f"text ({model.name})",
               disable=(None if progress is None else not progress))
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
    values = np.full((len(raw), dim), np.nan, dtype=np.float32)
    missing = np.ones(len(raw), dtype=bool)
    for i in have:
        values[i] = vectors[unique[names[i]]]
        missing[i] = False
    bad = np.flatnonzero(~np.isfinite(values[~missing]).all(axis=1))
    if bad.size:
        i = int(np.flatnonzero(~missing)[bad[0]])
        raise SnagError(f"text encoder {model.name!r} produced NaN/inf for entity id {i} ({names[i]!r})")
    save_feature_table(out, values, missing)
    return FeatureSummary("text", out, len(raw), len(have), dim,
                          note=f"encoder {model.name}, {len(texts)} distinct names")
