"""``snagkg report``: one HTML page of runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snagkg.api.report import INSTALL_HINT, write_report
from snagkg.api.study import SPEC_FILE
from snagkg.api.study_report import write_study_report
from snagkg.runtime.errors import SnagError


def cmd_report(a: argparse.Namespace) -> int:
    """``snagkg report``: write the HTML report (of runs, or of one study folder); one line on stderr says where."""
    if len(a.runs) == 1 and (Path(a.runs[0]) / SPEC_FILE).is_file():
        out = write_study_report(a.runs[0], a.output, figures=a.figures)
        saved = f" (plots as PNG files in {a.figures})" if a.figures else ""
        print(f"report: study {a.runs[0]} -> {out}{saved}", file=sys.stderr)
        return 0
    if a.figures:
        raise SnagError("--figures is for one study folder (snagkg study); a report of runs embeds its plots only")
    out = write_report(a.runs, a.output, device=a.device, weights=not a.no_weights,
                       progress=None if not a.no_progress else False)
    print(f"report: {len(a.runs)} run{'s' if len(a.runs) != 1 else ''} -> {out}", file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add ``report`` to the ``snagkg`` sub-commands ``sub`` (called by :func:`snagkg.cli.build_parser`)."""
    r = sub.add_parser("report", help="write a self-contained HTML report of one or more runs",
                       description="Write one HTML file (plots embedded, no network needed) with each run's config, "
                                   "training curves, final metrics, robustness curves (robustness.json) and "
                                   f"modality-weight distribution; several runs are also compared. Needs {INSTALL_HINT}.")
    r.add_argument("runs", nargs="+", metavar="RUN", help="run folders (written by snagkg train), or one study folder "
                                                          "(snagkg study): variants, differences, intensity and robustness plots")
    r.add_argument("--output", required=True, help="HTML file to write, e.g. report.html")
    r.add_argument("--figures", metavar="DIR", help="a study folder only: also write each plot as a PNG file in DIR "
                                                    "(intensity.png, robustness-PATTERN-MODALITY.png)")
    r.add_argument("--device", default="cpu", help="device to load the models on for the modality weights (cpu)")
    r.add_argument("--no-weights", action="store_true", help="do not load the models (no modality-weight plots)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_report)
