"""Profile one snagkg training step on DB15K (forward + backward + Adam), by operator.

    .venv/bin/python benchmarks/profile_step.py --dataset /tmp/bench_db15k --modalities structure
    .venv/bin/python benchmarks/profile_step.py --dataset data/DB15K-log1p --preset db15k-cpu --modalities structure
"""
from __future__ import annotations

import argparse
import time

import torch

from snagkg.core.encoder import PROJECTION_ACTIVATIONS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="/tmp/bench_db15k")
    ap.add_argument("--preset", default="db15k", help="the model and batch settings (its precision is overridden)")
    ap.add_argument("--modalities", default="structure")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--no-fusion", action="store_true", help="plain RotatE (encoder.fusion false)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--projection-activation", default="none", choices=PROJECTION_ACTIVATIONS,
                    help="between the preset's two projection layers (gelu: runs saved before the option)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import snagkg
    from snagkg.tasks.completion.task import CompletionTask
    from snagkg.data.datasets import read_openke

    cfg = snagkg.resolve_config(preset=args.preset, overrides={"dataset": args.dataset,
                                                           "modalities": args.modalities.split(","),
                                                           "encoder.fusion": not args.no_fusion,
                                                           "precision": args.precision,
                                                           "encoder.projection_activation":
                                                               args.projection_activation})
    task = CompletionTask(read_openke(args.dataset), cfg)
    opt, _ = task.make_optimizer()
    gen = torch.Generator().manual_seed(0)
    task.model.train()
    task.model.refresh_noise(gen)
    batches = task.batches(gen)

    def one(b):
        opt.zero_grad(set_to_none=True)
        loss = task.step(b, gen)
        loss.backward()
        opt.step()
        return float(loss)

    for b in batches[:2]:
        one(b)
    times = []
    for b in batches[2:2 + args.steps]:
        t0 = time.perf_counter()
        one(b)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(f"step seconds: median {times[len(times) // 2]:.3f}, all {[round(t, 3) for t in times]}; "
          f"{len(batches)} steps per epoch")
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for b in batches[10:13]:
            one(b)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
