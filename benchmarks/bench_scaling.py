"""How filtered-ranking time and memory grow with entities x test triples (synthetic).

    .venv/bin/python benchmarks/bench_scaling.py                       # 10k, 50k, 200k entities
    .venv/bin/python benchmarks/bench_scaling.py --entities 10000,50000 --triples 250,1000

Random entity tables (width 256 = 128 complex numbers, as DB15K's), random
relations and test triples, and ``10 x entities`` random known triples for the
filter; ``snagkg.evaluation.evaluate_ranking`` ranks both sides of every test
triple. Reported per size: median seconds over ``--repeats`` warm calls
(compilation excluded: one untimed warm-up call per table), nanoseconds per
(query x candidate) pair, and the peak resident memory above the process's
before the calls (sampled every 5 ms). Linear growth shows as a constant
ns/pair; memory is the entity table plus a query chunk of bounded size.
"""
from __future__ import annotations

import argparse

import common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", default="10000,50000,200000")
    ap.add_argument("--triples", default="250,1000", help="test triples (each ranked on both sides)")
    ap.add_argument("--relations", type=int, default=200)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    common.set_threads(args.threads)
    import torch
    from snagkg.runtime import hardware
    from snagkg.tasks.completion import rotate
    from snagkg.tasks.completion.scorers import RotatE
    from snagkg.tasks.completion.evaluation import FilterIndex, evaluate_ranking

    common.log(common.environment())
    rows = []
    for n in [int(x) for x in args.entities.split(",")]:
        g = torch.Generator().manual_seed(n)
        scorer = RotatE(args.relations, args.width)
        vecs = torch.rand(n, args.width, generator=g) * 0.2 - 0.1
        known = torch.stack([torch.randint(0, n, (10 * n,), generator=g),
                             torch.randint(0, args.relations, (10 * n,), generator=g),
                             torch.randint(0, n, (10 * n,), generator=g)], 1)
        filters = FilterIndex(known, n, args.relations)
        compiled = rotate.use_compiled(n, args.width)
        chunk = hardware.chunk_size(n, args.width, compiled)
        evaluate_ranking(vecs, scorer, known[:64], filters)  # warm-up: compile / load the kernels
        for q in [int(x) for x in args.triples.split(",")]:
            test = known[torch.randperm(len(known), generator=g)[:q]]
            base = common.rss_mb()
            times = []
            with common.RssSampler() as mem:
                for _ in range(args.repeats):
                    times.append(evaluate_ranking(vecs, scorer, test, filters)["seconds"])
            sec = common.median(times)
            pairs = 2 * q * n
            rows.append({"entities": n, "test triples": q, "queries x entities": f"{pairs:.2e}",
                         "median s": sec, "runs s": " ".join(f"{t:.2f}" for t in times),
                         "ns / pair": 1e9 * sec / pairs, "chunk": chunk,
                         "peak extra RSS MiB": mem.peak - base,
                         "table MiB": n * args.width * 4 / 2**20})
            common.log(f"{n} entities x {q} triples: {sec:.2f}s, peak +{mem.peak - base:.0f} MiB")
    print(f"\nFiltered ranking, random graphs (width {args.width}, both sides); {common.environment()}")
    print(common.table(rows, ["entities", "test triples", "queries x entities", "median s", "runs s", "ns / pair",
                              "chunk", "peak extra RSS MiB", "table MiB"]))


if __name__ == "__main__":
    main()
