"""``snagkg weights``: which modality each entity trusted."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from snagkg.api.modality_weights import modality_weights
from snagkg.api.run import load_run
from snagkg.runtime.errors import SnagError


def cmd_weights(a: argparse.Namespace) -> int:
    """``snagkg weights RUN``: the rows (to --output, or printed with --entity) and the summary."""

    if a.output is not None and not str(a.output).lower().endswith(".csv"):
        raise SnagError("--output must be a .csv file", a.output)
    task = load_run(a.run, device=a.device)
    table = modality_weights(task, a.entity)
    if a.output is not None:
        table.write_csv(a.output)
        print(f"wrote {len(table.ids)} rows to {a.output}", file=sys.stderr)
    elif a.entity:
        print(table)
        print()
    print(table.summary_text())
    return 0


def register(sub: Any) -> None:
    """Add ``weights`` to the ``snagkg`` sub-commands ``sub``."""
    p = sub.add_parser("weights", help="per-entity modality weights of a run, and their summary per modality")
    p.add_argument("run", help="run folder (completion or alignment)")
    p.add_argument("--entity", action="extend", nargs="+", metavar="NAME",
                   help="show these entities; default: every entity, summary only unless --output")
    p.add_argument("--output", help="write one CSV row per entity here")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's device setting)")
    p.set_defaults(func=cmd_weights)
