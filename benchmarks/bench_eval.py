"""Filtered ranking evaluation on DB15K: snagkg and PyKEEN side by side, in one process.

    .venv/bin/python benchmarks/bench_eval.py                  # 500 test triples, 3 repeats, 2 threads
    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) .venv/bin/python benchmarks/bench_eval.py   # cold compile

Both rank the true tail and the true head of each test triple among all
12,842 entities after removing the other known triples (train, valid, test),
with RotatE at 128 complex dimensions. Timed: from the query triples to the
metrics, excluding start-up and model building; for snagkg this includes
fusing every entity through the encoder (``CompletionTask.evaluate``). The
first snagkg call in a process also traces and compiles (or loads from the
inductor cache in /tmp/torchinductor_*) its kernels and is reported
separately; warm numbers are medians of ``--repeats`` calls. Peak memory is
the process's resident set size sampled every 5 ms during the calls, above
what it held before them.

Note: PyKEEN 1.11's RotatE scores ``-||h o r - t||_2`` (an L2 norm over the
complex vector); snagkg's is the original RotatE ``-sum_k |h_k r_k - t_k|``
(L1 over the moduli, one square root per coordinate). The work per candidate
is of the same order; ``--pykeen-norm 1`` gives PyKEEN the L1 distance too
(``common.pykeen_rotate``). The models here are untrained (timing only).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import common


def snagkg_task(dataset: Path, seed: int = 1, device: str = "cpu"):
    import snagkg
    from snagkg.tasks.completion.task import CompletionTask
    from snagkg.data.datasets import read_openke

    cfg = snagkg.resolve_config(preset="db15k", overrides={
        "dataset": str(dataset), "modalities": ["structure"], "encoder.hidden": 256, "device": device, "seed": seed})
    return CompletionTask(read_openke(dataset), cfg)


def check_against_reference(task, count: int) -> str:
    """Ranks of the compiled path and of the eager float32 path against an eager float64 reference.

    Both float32 paths may differ from the float64 ranks where two candidates' distances agree to
    float32 rounding (about 1e-7 relative): that is the expected size of any difference.
    """
    import copy
    import os

    import torch
    from snagkg.tasks.completion.evaluation import rank_triples
    triples = torch.from_numpy(task.kg.split("test")).long()[:count]
    vecs = task.entity_vectors()
    fast = rank_triples(vecs, task.model.interaction, triples, task.filters)
    old = os.environ.get("SNAGKG_COMPILE")
    os.environ["SNAGKG_COMPILE"] = "0"
    try:
        eager = rank_triples(vecs, task.model.interaction, triples, task.filters, chunk=16)
        ref = rank_triples(vecs.double(), copy.deepcopy(task.model.interaction).double(), triples, task.filters, chunk=8)
    finally:
        if old is None:
            del os.environ["SNAGKG_COMPILE"]
        else:
            os.environ["SNAGKG_COMPILE"] = old

    def diff(a):
        d = (a - ref).abs()
        return f"{int((d > 0).sum())} of {len(d)} ranks differ, by at most {float(d.max()):g}"
    return f"vs float64 ranks on {count} test triples: compiled {diff(fast)}; eager float32 {diff(eager)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset-dir", default="/tmp/bench_db15k", help="private copy of DB15K (created)")
    ap.add_argument("--triples", type=int, default=500, help="test triples ranked against PyKEEN")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pykeen-batch", type=int, default=None, help="PyKEEN evaluation batch size (default: its own)")
    ap.add_argument("--skip-pykeen", action="store_true")
    common.add_pykeen_norm_option(ap, default=2)
    common.add_device_option(ap)
    ap.add_argument("--full-repeats", type=int, default=3, help="snagkg runs over the whole test split (0: skip)")
    ap.add_argument("--check", type=int, default=200, help="compare ranks with float64 on N triples (0: skip)")
    args = ap.parse_args()

    common.set_threads(args.threads)
    import torch
    dev = common.check_device(args.device)
    dataset = common.prepare_dataset(Path(args.dataset_dir))
    task = snagkg_task(dataset, device=dev)
    kg = task.kg
    n_test = len(kg.test)
    rows = []
    common.log(common.environment())

    pykeen_eval = None
    if not args.skip_pykeen:
        common.require_pykeen()
        from pykeen.evaluation import RankBasedEvaluator
        model, _ = common.pykeen_rotate(kg, p=args.pykeen_norm, device=dev)
        model.eval()
        test = torch.from_numpy(kg.test).long()[:args.triples]
        filt = [torch.from_numpy(kg.train).long(), torch.from_numpy(kg.valid).long()]
        evaluator = RankBasedEvaluator(filtered=True)

        def pykeen_eval():
            with common.quiet():
                evaluator.evaluate(model, mapped_triples=test, additional_filter_triples=filt,
                                   batch_size=args.pykeen_batch, use_tqdm=False)

    # -- first calls: snagkg traces and compiles (or loads from the inductor cache) its kernels
    base = common.rss_mb()
    common.cuda_peak_mb(dev, reset=True)
    with common.RssSampler() as mem:
        first = common.timed(lambda: task.evaluate("test", limit=args.triples), dev)
    common.log(f"snagkg first call ({args.triples} triples): {first:.2f}s")
    # -- warm runs, alternating the two libraries so that a change in machine load hits both
    snag, pk = [], []
    for r in range(args.repeats):
        with common.RssSampler() as m:
            snag.append(common.timed(lambda: task.evaluate("test", limit=args.triples), dev))
        mem.peak = max(mem.peak, m.peak)
        msg = f"round {r + 1}: snagkg {snag[-1]:.3f}s"
        if pykeen_eval is not None:
            pk.append(common.timed(pykeen_eval, dev))
            msg += f", PyKEEN {pk[-1]:.2f}s ({pk[-1] / snag[-1]:.1f}x)"
        common.log(msg)
    snag_peak = mem.peak - base
    gpu_peak = common.cuda_peak_mb(dev, reset=True)  # PyKEEN's evaluation included
    full, full_peak, full_gpu = [], float("nan"), float("nan")
    if args.full_repeats:
        with common.RssSampler() as mem:
            for _ in range(args.full_repeats):
                full.append(common.timed(lambda: task.evaluate("test"), dev))
                common.log(f"snagkg whole test split ({n_test} triples): {full[-1]:.2f}s")
        full_peak = mem.peak - base
        full_gpu = common.cuda_peak_mb(dev)

    check = check_against_reference(task, args.check) if args.check else ""

    both = f"{args.triples} test triples x 2 sides"
    rows.append({"system": "snagkg (compiled kernels)", "queries": both, "first call s": first,
                 "median s": common.median(snag), "runs s": " ".join(f"{t:.3f}" for t in snag),
                 "peak extra RSS MiB": snag_peak, "peak CUDA MiB": gpu_peak})
    if pk:
        rows[-1]["PyKEEN / snagkg"] = common.median(pk) / common.median(snag)
        rows[-1]["median per-run speed-up"] = common.median(p / s for p, s in zip(pk, snag))
        rows.append({"system": "PyKEEN 1.11 RotatE", "queries": both,
                     "median s": common.median(pk), "runs s": " ".join(f"{t:.2f}" for t in pk)})
    if full:
        rows.append({"system": "snagkg (compiled kernels)", "queries": f"whole test split, {n_test} x 2",
                     "median s": common.median(full), "runs s": " ".join(f"{t:.2f}" for t in full),
                     "peak extra RSS MiB": full_peak, "peak CUDA MiB": full_gpu})
    cols = ["system", "queries", "first call s", "median s", "runs s", "peak extra RSS MiB"] + (
        ["peak CUDA MiB"] if common.is_cuda(dev) else []) + ["PyKEEN / snagkg", "median per-run speed-up"]
    print(f"\nDB15K filtered ranking ({kg.num_entities} entities, both sides, realistic ties) on {dev}; "
          f"{common.environment()}")
    print(common.table(rows, cols))
    print(f"process peak RSS {common.peak_rss_mb():.0f} MiB (includes PyKEEN)")
    if check:
        print(f"ranks {check}")


if __name__ == "__main__":
    main()
