"""``snagkg tune``: a hyper-parameter search on Optuna from a SPEC (:mod:`snagkg.api.tune`), resumable."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from snagkg.api.tune import load_tune_spec, run_tune
from snagkg.api.tune_summary import summarize_tune
from snagkg.runtime.errors import SnagError


def cmd_tune(a: argparse.Namespace) -> int:
    """Run the search until DIR holds ``--trials`` finished trials (or, ``--summary``, only summarise a tune
    folder); print the trials table."""
    if a.summary:
        if a.output is not None:
            raise SnagError("tune --summary takes a tune folder and no --output")
        summary = summarize_tune(a.path)
    else:
        if a.output is None:
            raise SnagError("tune: --output DIR is required (or --summary on a tune folder)")
        spec = load_tune_spec(a.path)
        summary = run_tune(spec, a.output, trials=a.trials, echo=lambda s: print(s, file=sys.stderr),
                           progress=None if not a.no_progress else False, tracker=a.tracker, device=a.device)
    sys.stdout.write(summary.table())
    if summary.best is not None:
        print(f"best: trial {summary.best} (marked *)", file=sys.stderr)
    print(f"written: {', '.join(str(p) for p in summary.written)}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("tune", help="hyper-parameter search (Optuna TPE, pruning, resumable): trials as run "
                                    "folders, the best config as a preset file DIR/best.yaml")
    p.add_argument("path", help="the SPEC (YAML: base run and search space), or with --summary a tune folder")
    p.add_argument("--trials", type=int, default=20, help="trials wanted in all, finished ones included (default 20)")
    p.add_argument("--output", help="tune folder: study.db, trial-NNN run folders, best.yaml, trials.csv, tune.png")
    p.add_argument("--tracker", metavar="NAME[,NAME]", help="experiment trackers for every trial (as snagkg train)")
    p.add_argument("--device", help="device of every trial (default: the SPEC's)")
    p.add_argument("--summary", action="store_true", help="print and write the summary of a tune folder")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_tune)
