"""``snagkg robustness``: metrics of a trained run as modalities go missing."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snagkg.api.robustness import DEFAULT_LEVELS, MODES, PATTERNS, robustness


def cmd_robustness(a: argparse.Namespace) -> int:
    """``snagkg robustness RUN``: :func:`robustness`, then print the table and where the files are."""
    res = robustness(a.run, modality=a.modality, levels=a.drop, mode=a.mode, pattern=a.pattern, split=a.split,
                     seed=a.seed,
                     limit=a.limit, device=a.device, progress=not a.no_progress and sys.stderr.isatty(),
                     echo=lambda s: print(s, file=sys.stderr))
    what = "missing" if res.mode == "drop" and res.pattern != "corrupt" else "corrupted"
    what += f" ({res.pattern})" if res.pattern != "uniform" else ""
    print(f"{res.task} run {a.run}: {res.split} split, {'+'.join(res.modalities)} {what} (seed {res.seed})")
    print(res.table())
    print(f"written: {Path(a.run) / 'robustness.json'}, robustness.csv", file=sys.stderr)
    return 0


def register(sub) -> None:
    """Add ``robustness`` to the ``snagkg`` sub-commands ``sub`` (called by :func:`snagkg.cli.build_parser`)."""
    p = sub.add_parser("robustness", help="evaluate a run with a share of a modality missing or corrupted")
    p.add_argument("run", help="run folder of a trained run (completion or alignment)")
    p.add_argument("--modality", default="all",
                   help="a modality of the run (image, text, relation, ...), a comma-separated list, or 'all' "
                        "(default) = every feature modality; structure is left out unless named explicitly")
    p.add_argument("--drop", default=",".join(f"{v:g}" for v in DEFAULT_LEVELS),
                   help="comma-separated shares of the entities to perturb, each in [0, 1] (default: %(default)s)")
    p.add_argument("--mode", default="drop", choices=MODES,
                   help="drop: refill from N(mu, sigma) and mark missing, as at load time; "
                        "corrupt: add sigma-scaled Gaussian noise (default: drop)")
    p.add_argument("--pattern", default="uniform", choices=PATTERNS,
                   help="which rows go first: uniform (a seeded random order; default), long-tail (the "
                        "least-connected entities first) or corrupt (random rows replaced by N(mu, sigma) "
                        "draws but not marked missing: noisy, not absent)")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--seed", type=int, help="seed of the row choice and the draws (default: the run's seed)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N triples (or links)")
    p.add_argument("--device")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_robustness)
