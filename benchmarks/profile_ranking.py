"""Where the filtered ranking of DB15K's whole test split spends its time, and an A/B against an older
``evaluation.py``.

    .venv/bin/python benchmarks/profile_ranking.py
    git show 13a97bf:src/snagkg/evaluation.py > /tmp/ev_old.py
    .venv/bin/python benchmarks/profile_ranking.py --against /tmp/ev_old.py --rounds 4
    .venv/bin/python benchmarks/profile_ranking.py --chunks 128,256,1024 --rounds 3

The model is bench_eval.py's (SNAG's encoder on the structure modality, untrained: timing only).
One run with timers around the stages of ``rank_triples`` (distance kernel, rank counting, filter
lookup, the rest), then, with ``--against``, the two versions alternate on the whole split and the
script checks that they give the same ranks.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import statistics
import time
from pathlib import Path

import common


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path, default=Path("/work/data/DB15K"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--against", type=Path, help="an older src/snagkg/evaluation.py to compare with")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--chunks", help="comma-separated query chunk sizes to alternate on the whole split "
                                     "(e.g. 256,1024), with the same-ranks check")
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch

    import bench_eval
    import snagkg.tasks.completion.evaluation as new
    from snagkg.runtime import hardware

    task = bench_eval.snagkg_task(args.dataset)
    task.model.eval()
    with torch.no_grad():
        vecs, scorer, test = task.model.entity_vectors(), task.model.interaction, torch.from_numpy(task.kg.test).long()
        new.rank_triples(vecs, scorer, test[:2000], task.filters)  # compile / load the kernels

        spent: "collections.Counter[str]" = collections.Counter()
        saved = []

        def timed(owner, name, label):
            f = getattr(owner, name)
            saved.append((owner, name, f))

            def g(*a, **k):
                t = time.perf_counter()
                try:
                    return f(*a, **k)
                finally:
                    spent[label] += time.perf_counter() - t
            setattr(owner, name, g)

        timed(scorer, "pairwise", "distance kernel")
        timed(new, "counts_from_distances", "rank counting")
        timed(task.filters, "lookup", "filter lookup")
        t = time.perf_counter()
        new.rank_triples(vecs, scorer, test, task.filters)
        total = time.perf_counter() - t
        for owner, name, f in saved:
            setattr(owner, name, f)
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in spent.items())
        print(f"whole test split ({len(test)} x 2): {total:.2f} s: {parts}, the rest {total - sum(spent.values()):.2f} s")

        if args.against:
            spec = importlib.util.spec_from_file_location("snagkg._evaluation_before", args.against)
            old = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(old)
            same = torch.equal(old.rank_triples(vecs, scorer, test, task.filters),
                               new.rank_triples(vecs, scorer, test, task.filters))
            times = {"before": [], "now": []}
            for _ in range(args.rounds):
                for label, mod in (("before", old), ("now", new)):
                    t = time.perf_counter()
                    mod.rank_triples(vecs, scorer, test, task.filters)
                    times[label].append(time.perf_counter() - t)
            for label, ts in times.items():
                print(f"{label}: median {statistics.median(ts):.2f} s ({' '.join(f'{x:.2f}' for x in ts)})")
            print(f"same ranks: {same}")

        if args.chunks:
            sizes = [int(c) for c in args.chunks.split(",")]
            print(f"default chunk here: {hardware.chunk_size(len(vecs), vecs.shape[1], True)} queries "
                  f"(L2 {hardware.l2_cache_bytes() >> 10} KiB)")
            ranks = [new.rank_triples(vecs, scorer, test, task.filters, chunk=c) for c in sizes]
            times = {c: [] for c in sizes}
            for _ in range(args.rounds):
                for c in sizes:
                    t = time.perf_counter()
                    new.rank_triples(vecs, scorer, test, task.filters, chunk=c)
                    times[c].append(time.perf_counter() - t)
            for c, ts in times.items():
                print(f"chunk {c}: median {statistics.median(ts):.2f} s ({' '.join(f'{x:.2f}' for x in ts)})")
            print(f"same ranks: {all(torch.equal(ranks[0], r) for r in ranks[1:])}")


if __name__ == "__main__":
    main()
