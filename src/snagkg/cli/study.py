"""``snagkg study``: train a grid of runs (variants x seeds) from a SPEC, or summarise a study folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from snagkg.api.study import load_spec, run_study
from snagkg.api.study_summary import summarize_study, write_summary
from snagkg.runtime.errors import SnagError


def register(sub: Any) -> None:
    """Add ``study`` to the ``snagkg`` sub-commands ``sub``."""
    p = sub.add_parser("study", help="a grid of runs (variants x seeds) from a SPEC file, resumable; "
                                     "--summary: means over seeds and paired differences with intervals")
    p.add_argument("path", help="the SPEC (YAML), or with --summary a study folder")
    p.add_argument("--output", help="study folder: one run folder per variant and seed")
    p.add_argument("--jobs", type=int, help="runs trained at a time, each in its own process (default 1)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: the cores split between the jobs)")
    p.add_argument("--summary", action="store_true", help="print and write the summary of a study folder")
    p.add_argument("--samples", type=int, default=2000, help="bootstrap resamples of each difference (default 2000)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_study)


def cmd_study(a: argparse.Namespace) -> int:
    """Run the SPEC's unfinished runs (``--output``), or with ``--summary`` print a study folder's summary."""
    path = Path(a.path)
    if a.summary:
        if a.output is not None or a.jobs is not None:
            raise SnagError("study --summary takes a study folder and no --output or --jobs")
        summary = summarize_study(path, samples=a.samples)
        written = write_summary(summary, path)
        sys.stdout.write(summary.markdown())
        print(f"written: {', '.join(p.name for p in written)} in {path}", file=sys.stderr)
        return 0
    if a.output is None:
        raise SnagError("study: --output DIR is required (or --summary on a study folder)")
    spec = load_spec(path)
    run_study(spec, a.output, jobs=a.jobs or 1, threads=a.threads, progress=not a.no_progress,
              echo=lambda s: print(s, file=sys.stderr))
    summary = summarize_study(a.output, samples=a.samples)
    write_summary(summary, a.output)
    sys.stdout.write(summary.markdown())
    return 0
