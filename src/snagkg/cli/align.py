"""``snagkg align RUN --export pairs.tsv``: one-to-one aligned pairs of a trained alignment run.

Writes ``uri_kg1<TAB>uri_kg2<TAB>score`` lines (atomically), sorted by
descending CSLS score, and prints a JSON summary (pairs written and, for the
test entities, how many match the gold links).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

from snagkg.api.run import load_run
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import write_text


def align_run(run, export, split: str = "test", all_unaligned: bool = False, topk: int = 10,
              device=None) -> Dict[str, Any]:
    """Write the one-to-one aligned pairs of alignment run ``run`` to ``export``; returns the JSON summary."""

    if topk < 1:
        raise SnagError(f"--topk must be at least 1, got {topk}")
    out = Path(export)
    if out.exists() and out.is_dir():
        raise SnagError("export path is a folder", out)
    task = load_run(run, device=device)
    res = task.align(split=split, all_unaligned=all_unaligned, topk=topk)  # a one-line error if it does not align
    ents = task.entity_names()
    order = sorted(range(len(res["left"])), key=lambda i: -float(res["scores"][i]))
    lines = [f"{ents[int(res['left'][i])]}\t{ents[int(res['right'][i])]}\t{float(res['scores'][i]):.6f}\n"
             for i in order]
    write_text(out, "".join(lines))
    summary = {"pairs": len(lines), "export": str(out), "scope": "all unaligned" if all_unaligned else split,
               "judged": res["judged"], "correct": res["correct"],
               "accuracy": round(res["correct"] / res["judged"], 6) if res["judged"] else None}
    return summary


def cmd_align(a: argparse.Namespace) -> int:
    """``snagkg align RUN --export FILE``: :func:`align_run`, then print its summary as JSON."""
    summary = align_run(a.run, a.export, split=a.split, all_unaligned=a.all, topk=a.topk, device=a.device)
    print(json.dumps(summary))
    return 0


def register(sub) -> None:
    """Add ``align`` to the ``snagkg`` sub-commands ``sub`` (called by :func:`snagkg.cli.build_parser`)."""
    p = sub.add_parser("align", help="export one-to-one aligned entity pairs of an alignment run")
    p.add_argument("run", help="run folder of a `snagkg train --task alignment` run")
    p.add_argument("--export", required=True, help="output TSV: uri_kg1 <TAB> uri_kg2 <TAB> score")
    p.add_argument("--split", default="test", choices=["valid", "test"],
                   help="align the entities of this split's links (default: test)")
    p.add_argument("--all", action="store_true",
                   help="align all entities that are in no training or validation link")
    p.add_argument("--topk", type=int, default=10, help="candidates listed per entity in each greedy round")
    p.add_argument("--device")
    p.set_defaults(func=cmd_align)
