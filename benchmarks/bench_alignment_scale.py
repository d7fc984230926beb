"""Alignment evaluation at scale on a trained run: seconds, peak memory and recall of each candidate index.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_alignment_scale.py RUN --sample 2000 --indexes flat,ivf

For each index (``exact``, ``flat``, ``ivf``, ``hnsw``; ``--cells`` / ``--probe`` override the run's
``alignment.index_cells`` / ``index_probe``) the test metrics of the first ``--sample`` test links (the
loader shuffles the links, so they are a random sample), both directions, each against every test
link's entity on the other side: what ``snagkg evaluate --limit`` and ``train --test-limit`` rank.
Reported: seconds of the CSLS context (the ``csls_k`` nearest of every test entity on the other side,
both sides: the part that grows with the square of the links), seconds of the ranking, H@1, MRR.

Recall@10 of an approximate index against exact search, over the first ``--recall`` left test
entities: the share of their 10 nearest right test entities by cosine (exact search) that the index
returns among its 10 (the neighbours CSLS's context reads), and the same over the CSLS-augmented right
vectors ``[2y, -r_x(y)]`` queried with ``[x, 1]`` (the candidates ``snagkg align`` reads; ``r`` as the
index computed it). Peak memory: the process's resident high-water mark after each index.
"""
from __future__ import annotations

import argparse
import json
import time

import common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a trained alignment run folder")
    ap.add_argument("--sample", type=int, default=2000, help="test links ranked (the first N; 0: all)")
    ap.add_argument("--indexes", default="flat,ivf", help="indexes to measure, in order")
    ap.add_argument("--cells", type=int, default=-1, help="ivf cells (default: the run's alignment.index_cells)")
    ap.add_argument("--probe", type=int, default=-1, help="ivf cells searched / hnsw efSearch (default: the run's)")
    ap.add_argument("--recall", type=int, default=2000, help="left entities of the recall@10 measurement (0: none)")
    ap.add_argument("--recall-only", action="store_true",
                    help="measure only the cosine recall@10 of each approximate index (no metrics, no context)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args()

    common.set_threads(args.threads)

    import snagkg
    from snagkg.evaluation.ranking import summarize
    from snagkg.tasks.alignment.metrics import rank_alignment

    common.log(common.environment())
    t0 = time.perf_counter()
    task = snagkg.load_run(args.run, device="cpu")
    inter = task.model.interaction
    if args.cells >= 0:
        inter.cells = args.cells
    if args.probe >= 0:
        inter.probe = args.probe
    x, y = task.pair_vectors(task.split_links("test"))
    x, y = x.detach().float().cpu().contiguous(), y.detach().float().cpu().contiguous()
    k = int(task.cfg.alignment.csls_k)
    common.log(f"{args.run}: {x.shape[0]:,} test links, width {x.shape[1]}, csls_k {k}, "
               f"{time.perf_counter() - t0:.0f} s to load and encode, {common.peak_rss_mb() / 1024:.2f} GiB peak")
    report = {"run": args.run, "test_links": int(x.shape[0]), "dim": int(x.shape[1]), "sample": args.sample,
              "rows": []}
    for name in args.indexes.split(","):
        options = inter.retrieval(name)
        index = options.pop("index")
        hub = options.pop("hubness")
        if args.recall_only:
            if index in ("ivf", "hnsw"):
                t = time.perf_counter()
                row = {"index": index, "cells": inter.cells, "probe": inter.probe,
                       **recall(x, y, None, min(args.recall or 2000, x.shape[0]), index, options),
                       "recall_s": round(time.perf_counter() - t, 1), "peak_gib": round(common.peak_rss_mb() / 1024, 2)}
                report["rows"].append(row)
                common.log(json.dumps(row))
            continue
        count = x.shape[0] if not args.sample else min(args.sample, x.shape[0])
        info: dict = {}
        lr, rl = rank_alignment(x, y, k, task.cfg.ties, limit=count, index=index, info=info, hubness=hub, **options)
        context_s, rank_s, n_exhaustive = info["context_seconds"], info["rank_seconds"], info["exhaustive"]
        ry = info["context"][1]
        m, m_rl = summarize(lr), summarize(rl)
        row = {"index": index, "cells": inter.cells, "probe": inter.probe, "context_s": round(context_s, 1),
               "rank_s": round(rank_s, 1), "eval_s": round(context_s + rank_s, 1), "exhaustive": n_exhaustive,
               "hits@1": round(100 * m["hits@1"], 2), "mrr": round(m["mrr"], 4),
               "rl_hits@1": round(100 * m_rl["hits@1"], 2),
               "peak_gib": round(common.peak_rss_mb() / 1024, 2)}
        if args.recall and index in ("ivf", "hnsw"):
            row.update(recall(x, y, ry, min(args.recall, x.shape[0]), index, options))
        report["rows"].append(row)
        common.log(json.dumps(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


def recall(x, y, ry, n, index, options):
    """Recall@10 of ``index`` against exact search for the first ``n`` rows of ``x``: over ``y`` by cosine,
    and over the CSLS-augmented ``[2y, -r_x(y)]`` queried with ``[x, 1]`` (``ry`` as that index gave it;
    ``None``: cosine only)."""
    import torch

    from snagkg.tasks.alignment.retrieval import Searcher
    opts = {"nlist": options["nlist"], "probe": options["probe"], "seed": options["seed"]}
    q = x[:n]
    out = {"recall_queries": n}
    pairs = [("cosine", y, q)]
    if ry is not None:
        pairs.append(("csls", torch.cat([2.0 * y, -ry.float()[:, None]], dim=1), torch.cat([q, torch.ones(n, 1)], dim=1)))
    for name, base, queries in pairs:
        truth = Searcher(base, "exact").search(queries, 10)[1]
        got = Searcher(base, index, **opts).search(queries, 10)[1]
        out[f"recall@10_{name}"] = round(_recall(truth, got), 4)
    return out


def _recall(truth, got) -> float:
    """Mean share of each row of ``truth`` (``[q, 10]`` ids) found in the same row of ``got``."""
    hits = (truth[:, :, None] == got[:, None, :]).any(dim=2).float()
    return float(hits.mean())


if __name__ == "__main__":
    main()
