"""``snagkg synthetic``: a synthetic graph streamed to disk."""
from __future__ import annotations

import json
import math
import sys
from typing import Tuple

from snagkg.data.datasets.synthetic_pair_stream import write_synthetic_pair_stream
from snagkg.data.datasets.synthetic_stream import write_synthetic
from snagkg.runtime.errors import SnagError


def _split_arg(text: str) -> Tuple[float, ...]:
    """``"0.8,0.1,0.1"`` -> three floats (one-line error otherwise)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise SnagError(f"synthetic: --split must be three fractions like 0.8,0.1,0.1, got {text!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise SnagError(f"synthetic: --split must be three fractions like 0.8,0.1,0.1, got {text!r}")
    return values


def cmd_synthetic(a) -> int:
    """``snagkg synthetic``: write the dataset, print a one-line JSON summary."""
    if a.pair:
        summary = write_synthetic_pair_stream(
            a.output, a.entities, relations=a.relations if a.relations is not None else 64, degree=a.degree,
            drop=a.drop, name_noise=a.name_noise, image_dim=a.image_dim, text_dim=a.text_dim, missing=a.missing,
            seed=a.seed, overwrite=a.overwrite)
        print(json.dumps(summary))
        return 0
    if a.triples is None:
        raise SnagError("synthetic: --triples is required (or --pair for an alignment pair)")
    relations = 16 if a.relations is None else a.relations
    summary = write_synthetic(a.output, a.entities, a.triples, relations=relations, image_dim=a.image_dim,
                              text_dim=a.text_dim, missing=a.missing, split=_split_arg(a.split), seed=a.seed,
                              chunk=a.chunk, progress=not a.no_progress and sys.stderr.isatty(),
                              overwrite=a.overwrite)
    print(json.dumps(summary))
    return 0


def register(sub) -> None:
    """Add ``synthetic`` to the ``snagkg`` sub-commands ``sub`` (called by :func:`snagkg.cli.build_parser`)."""
    s = sub.add_parser("synthetic", help="write a synthetic multi-modal graph of any size in the OpenKE layout",
                       description="Entities on a torus, relations as rotations, image and text features as "
                                   "noisy views of the positions; written in streamed chunks (train with "
                                   "--dataset DIR).")
    s.add_argument("--entities", type=int, required=True)
    s.add_argument("--triples", type=int, help="distinct triples, all splits together (required without --pair)")
    s.add_argument("--output", required=True, help="dataset folder to write (must be new or empty)")
    s.add_argument("--relations", type=int, help="relation types (default 16; --pair: 64 a graph)")
    s.add_argument("--pair", action="store_true",
                   help="write an entity-alignment pair instead (DBP15K layout, --entities a side; heavy-tailed "
                        "degrees, image/text tables with missing rows, noisy names; train with --task alignment)")
    s.add_argument("--degree", type=float, default=4.0, help="--pair: latent triples per entity")
    s.add_argument("--drop", type=float, default=0.1, help="--pair: share of the latent triples each graph drops")
    s.add_argument("--name-noise", type=float, default=0.15, help="--pair: share of name letters changed in KG2")
    s.add_argument("--image-dim", type=int, default=64, help="0: no image table")
    s.add_argument("--text-dim", type=int, default=32, help="0: no text table")
    s.add_argument("--missing", type=float, default=0.2, help="fraction of entities without each feature")
    s.add_argument("--split", default="0.8,0.1,0.1", help="train,valid,test fractions")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--chunk", type=int, default=1 << 18, help="rows per step (memory; not the output)")
    s.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_synthetic)
