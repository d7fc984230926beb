"""Alignment robustness split by which side of each test link lost its rows.

    .venv/bin/python benchmarks/robustness_sides.py RUN [--modality relation] [--levels 0,0.2,...] \
        [--pattern uniform|long-tail] [--threads T]

RUN is an alignment run folder (an entity alignment study's ``<variant>/seed-<n>``). At each level
the rows of ``--modality`` are dropped exactly as ``snagkg robustness RUN --modality M`` drops them
(the same seeded draws), and every test link's reciprocal rank (left to right, the queries of the
headline MRR) is put in one of three groups: neither entity of the link lost its row,
one of the two did, both did. A drop curve that falls and then rises again is read from the
groups: the share of one-sided links, 2p(1-p) under a uniform drop, is largest at p = 0.5.
Nothing is written; the table goes to stdout.
"""
from __future__ import annotations

import argparse
from contextlib import ExitStack

import numpy as np

import common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--modality", default="relation")
    ap.add_argument("--levels", default="0,0.2,0.4,0.6,0.8,1")
    ap.add_argument("--pattern", default="uniform", choices=["uniform", "long-tail"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    common.set_threads(args.threads)

    from snagkg.api import load_run
    from snagkg.api.robustness import modality_draws, parse_levels, perturbation, select_modalities

    task = load_run(args.run)
    if task.cfg.task != "alignment":
        raise SystemExit(f"error: {args.run}: an alignment run is needed (this one is {task.cfg.task})")
    ent = task.model.entities
    mods = select_modalities(ent.modalities, args.modality)
    degrees = task.entity_degrees() if args.pattern == "long-tail" else None
    draws = modality_draws(ent, mods, int(task.cfg.seed), degrees)
    links = task.split_links("test")

    def share(values: np.ndarray, mask: np.ndarray) -> str:
        return f"{values[mask].mean() * 100:.1f} ({int(mask.sum())})" if mask.any() else "-"

    print(f"{args.run}: {'+'.join(mods)} dropped ({args.pattern}); test MRR (links) by the sides that lost rows")
    print("| level | MRR | neither | one side | both |")
    print("|---|---|---|---|---|")
    for level in parse_levels(args.levels):
        with ExitStack() as stack:
            lost = np.zeros(ent.num_entities, dtype=bool)
            for m in mods:
                rows, values = perturbation(ent, m, draws[m], level, "drop")
                stack.enter_context(ent.overridden_rows(m, rows, values, mark_missing=True))
                lost[rows.cpu().numpy()] = True
            ranks = task.query_ranks("test")
        per_link = 1.0 / ranks.astype(np.float64)
        a, b = lost[links[:, 0]], lost[links[:, 1]]
        print(f"| {level:g} | {per_link.mean() * 100:.1f} | {share(per_link, ~a & ~b)} | {share(per_link, a ^ b)} "
              f"| {share(per_link, a & b)} |", flush=True)


if __name__ == "__main__":
    main()
