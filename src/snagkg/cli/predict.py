"""``snagkg predict``: ranked tails or heads of a query (or of a file of queries, with one model load), or
scores of given triples, from a completion run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from snagkg.api.run import load_run
from snagkg.runtime.errors import PathLike, SnagError
from snagkg.tasks.completion.predict import FORMATS, read_queries, read_targets, read_triples


# -- the command line --------------------------------------------------------------------------------
def _format(result: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result.to_dict())
    if fmt == "tsv":
        rows = result.to_rows()
        cols = list(rows[0]) if rows else []
        return "\n".join(["\t".join(cols)] + ["\t".join("" if r[c] is None else str(r[c]) for c in cols)
                                               for r in rows])
    return str(result)


def load_completion_run(run: PathLike, device: Optional[str] = None) -> Any:
    """:func:`snagkg.load_run` of a run; a run whose task does not predict fails on ``task.predict``."""
    return load_run(Path(run), device=device)


def cmd_predict(a: argparse.Namespace) -> int:
    """``snagkg predict RUN``: ranked tails (--head), ranked heads (--tail), the answers to a file of
    queries (--queries) or scores (--triples)."""
    single = a.head is not None or a.tail is not None or a.relation is not None
    if a.triples is not None and a.queries is not None:
        raise SnagError("give one of --triples FILE (scores) and --queries FILE (rankings)")
    if a.triples is not None:
        if single or a.targets is not None:
            raise SnagError("--triples scores a file; it takes no --head, --relation, --tail or --targets")
        rows, numbers = read_triples(a.triples)
        task = load_completion_run(a.run, a.device)
        result: Any = task.score_triples(rows, path=a.triples, lines=numbers)
        sys.stdout.write(_format(result, a.format) + "\n")
        return 0
    if a.queries is not None:
        if single:
            raise SnagError("--queries ranks the rows of a file; it takes no --head, --relation or --tail")
        rows, numbers = read_queries(a.queries)
    elif a.relation is None or (a.head is None) == (a.tail is None):
        raise SnagError("predict: give --relation with one of --head or --tail, --queries FILE or --triples FILE")
    targets = read_targets(a.targets) if a.targets is not None else None
    task = load_completion_run(a.run, a.device)
    if a.queries is not None:
        result = task.predict_queries(rows, path=a.queries, lines=numbers, top=a.top, include_known=a.include_known,
                                      targets=targets)
    else:
        result = task.predict(head=a.head, relation=a.relation, tail=a.tail, top=a.top,
                              include_known=a.include_known, targets=targets)
    sys.stdout.write(_format(result, a.format) + "\n")
    return 0


def register(sub: Any) -> None:
    """Add ``predict`` to the ``snagkg`` sub-commands ``sub`` (called by :func:`snagkg.cli.build_parser`)."""
    p = sub.add_parser("predict", help="ranked tails or heads of a query, or scores of given triples, "
                                       "from a completion run")
    p.add_argument("run", help="run folder of a completion run")
    p.add_argument("--head", help="rank tails of (HEAD, RELATION, ?)")
    p.add_argument("--relation", help="relation name")
    p.add_argument("--tail", help="rank heads of (?, RELATION, TAIL)")
    p.add_argument("--triples", help="score the head<TAB>relation<TAB>tail rows of this file")
    p.add_argument("--queries", metavar="FILE",
                   help="rank the answers of every head<TAB>relation<TAB>? or ?<TAB>relation<TAB>tail row of this "
                        "file, loading the model once (table: one block per query; tsv/json: a query column)")
    p.add_argument("--targets", metavar="FILE",
                   help="rank only these candidate entities: one name (or id) per line")
    p.add_argument("--top", type=int, default=10, help="rows to show (default 10)")
    p.add_argument("--include-known", action="store_true",
                   help="keep known true triples (train, valid, test) in the ranking")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's device setting)")
    p.set_defaults(func=cmd_predict)

