"""``snagkg export``: every entity vector, modality weight and feature row of a run, to one file."""
from __future__ import annotations

import argparse
import json
from typing import Any

from snagkg.api.export import export_run


# -- the command line ------------------------------------------------------------------------------
def cmd_export(a: argparse.Namespace) -> int:
    """``snagkg export RUN --output FILE``: :func:`export_run`, then print its summary as JSON."""
    print(json.dumps(export_run(a.run, a.output, device=a.device)))
    return 0


def register(sub: Any) -> None:
    """Add ``export`` to the ``snagkg`` sub-commands ``sub``."""
    p = sub.add_parser("export", help="write a run's entity vectors, relation parameters and modality weights "
                                      "(.npz, .tsv or .parquet)")
    p.add_argument("run", help="run folder (completion or alignment)")
    p.add_argument("--output", required=True, help="vectors.npz, vectors.tsv or vectors.parquet")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's device setting)")
    p.set_defaults(func=cmd_export)
