"""``snagkg align RUN --export pairs.tsv``: one-to-one aligned pairs of a trained alignment run.

Writes ``uri_kg1<TAB>uri_kg2<TAB>score`` lines (atomically), sorted by
descending CSLS score, and prints a JSON summary (pairs written and, for the
test entities, how many match the gold links).

``--topk K`` writes candidates instead: the ``K`` best CSLS candidates of every
KG1 entity of the scope, ``uri_kg1<TAB>uri_kg2<TAB>score<TAB>rank`` (rank 1 to
K; equal scores ranked by the earlier candidate), KG1 entities in scope order.
``--index`` picks the candidate retrieval (default: the run's
``alignment.index``; see :mod:`snagkg.tasks.alignment.retrieval`), ``--hubness``
the score (default: the run's ``alignment.hubness``, CSLS; or NICDM).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, Optional

from snagkg.api.run import load_run
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import atomic_write, write_text
from snagkg.tasks.alignment.retrieval import HUBNESS, INDEXES


def align_run(run, export, split: str = "test", all_unaligned: bool = False, topk: Optional[int] = None,
              round_candidates: int = 10, index: Optional[str] = None, device=None,
              hubness: Optional[str] = None) -> Dict[str, Any]:
    """Write the one-to-one aligned pairs (or with ``topk`` the ``topk`` best candidates of every KG1
    entity) of alignment run ``run`` to ``export``; returns the JSON summary."""

    if topk is not None and topk < 1:
        raise SnagError(f"--topk must be at least 1, got {topk}")
    if round_candidates < 1:
        raise SnagError(f"--round-candidates must be at least 1, got {round_candidates}")
    if index is not None and index not in INDEXES:
        raise SnagError(f"--index must be one of {', '.join(INDEXES)}, got {index!r}")
    if hubness is not None and hubness not in HUBNESS:
        raise SnagError(f"--hubness must be one of {', '.join(HUBNESS)}, got {hubness!r}")
    out = Path(export)
    if out.exists() and out.is_dir():
        raise SnagError("export path is a folder", out)
    task = load_run(run, device=device)
    scope = "all unaligned" if all_unaligned else split
    ents = task.entity_names()
    if topk is not None:
        res = task.candidates(topk, split=split, all_unaligned=all_unaligned, index=index, hubness=hubness)
        left, right, scores = res["left"].tolist(), res["right"].numpy(), res["scores"].numpy()

        def write(fh) -> None:
            for r, a in enumerate(left):
                lines = [f"{ents[a]}\t{ents[b]}\t{scores[r, c]:.6f}\t{c + 1}\n"
                         for c, b in enumerate(right[r].tolist()) if b >= 0]
                fh.write("".join(lines).encode("utf-8"))

        atomic_write(out, write)
        return {"candidates": int((right >= 0).sum()), "topk": topk, "export": str(out), "scope": scope,
                "judged": res["judged"], "hits@1": res["hits@1"], f"hits@{topk}": res["hits@topk"]}
    res = task.align(split=split, all_unaligned=all_unaligned, topk=round_candidates, index=index, hubness=hubness)
    order = sorted(range(len(res["left"])), key=lambda i: -float(res["scores"][i]))
    lines = [f"{ents[int(res['left'][i])]}\t{ents[int(res['right'][i])]}\t{float(res['scores'][i]):.6f}\n"
             for i in order]
    write_text(out, "".join(lines))
    summary = {"pairs": len(lines), "export": str(out), "scope": scope,
               "judged": res["judged"], "correct": res["correct"],
               "accuracy": round(res["correct"] / res["judged"], 6) if res["judged"] else None}
    return summary


def cmd_align(a: argparse.Namespace) -> int:
    """``snagkg align RUN --export FILE``: :func:`align_run`, then print its summary as JSON."""
    summary = align_run(a.run, a.export, split=a.split, all_unaligned=a.all, topk=a.topk,
                        round_candidates=a.round_candidates, index=a.index, device=a.device, hubness=a.hubness)
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
    p.add_argument("--topk", type=int, metavar="K",
                   help="export the K best CSLS candidates of every KG1 entity instead "
                        "(uri_kg1 <TAB> uri_kg2 <TAB> score <TAB> rank)")
    p.add_argument("--round-candidates", type=int, default=10, metavar="N",
                   help="one-to-one: candidates listed per entity in each greedy round")
    p.add_argument("--index", choices=list(INDEXES),
                   help="candidate retrieval (default: the run's alignment.index; auto: Faiss flat when "
                        "installed, else exact; ivf, hnsw: approximate, need Faiss)")
    p.add_argument("--hubness", choices=list(HUBNESS),
                   help="score (default: the run's alignment.hubness): csls, or nicdm (-|x - y|^2 / (mu_x mu_y), "
                        "mu the mean distance to the alignment.csls_k nearest of the other side)")
    p.add_argument("--device")
    p.set_defaults(func=cmd_align)
