"""Training step cost of the negative-sampling schemes (``completion.negatives_scheme``), one JSON line.

    .venv/bin/python benchmarks/bench_negatives.py synthetic --preset synthetic
    .venv/bin/python benchmarks/bench_negatives.py /work/bench/synth-15k --preset synthetic \\
        --set completion.negatives_scheme=shared --set completion.shared_chunk=64
    .venv/bin/python benchmarks/bench_negatives.py /work/data/DB15K --preset db15k-cpu --set precision=fp32 \\
        --set modalities=[structure,text,relation] --set completion.negatives_scheme=shared

As :mod:`bench_large` (whose set-up and timing loop this uses) for one dataset and one configuration: ``s/step`` is
the median of ``--steps`` timed training steps after ``--warmup`` untimed ones, each a whole optimiser
step (sampling, fusion, loss, backward, update), and ``s/epoch`` that times the steps of an epoch.
``touched``: the mean number of distinct entities a batch touches (positives' heads and tails and every
negative candidate); ``batch path``: the share of steps that fused only those entities
(``completion.fusion_scope: auto`` takes the batch path when they are at most half of the graph).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics

import common
from bench_large import build, time_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--preset", default="synthetic")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="config override key=value (YAML value)")
    args = ap.parse_args()

    common.set_threads(args.threads)
    import torch

    cfg, task, load = build(args.dataset, args.preset, args.set)
    model = task.model
    touched, batch_path = [], []
    sample = task.sampler.sample_candidates

    def counting(batch, generator):  # the step's own draw, counted on the side
        out = sample(batch, generator)
        ent = torch.cat([batch[:, 0], batch[:, 2], out[0].reshape(-1)])
        touched.append(len(torch.unique(ent)))
        batch_path.append(model.batch_entities(batch[:, 0], batch[:, 2], out[0]) is not None)
        return out

    task.sampler.sample_candidates = counting
    step, timed, loss = time_steps(task, cfg, args.steps, args.warmup)
    n_train = len(task.train_triples)
    steps = math.ceil(n_train / cfg.train.batch_size)
    comp = cfg.completion
    print(json.dumps({
        "dataset": args.dataset, "preset": args.preset, "entities": task.kg.num_entities, "train triples": n_train,
        "scheme": comp.negatives_scheme, "chunk": comp.shared_chunk if comp.negatives_scheme == "shared" else None,
        "batch": cfg.train.batch_size, "negatives": cfg.train.negatives, "load s": round(load, 2),
        "s/step": round(step, 4), "steps timed": timed, "steps/epoch": steps, "s/epoch": round(step * steps, 1),
        "touched": round(statistics.mean(touched)), "batch path": round(statistics.mean(batch_path), 2),
        "loss": round(loss, 4), "overrides": args.set, "env": common.environment(),
    }))


if __name__ == "__main__":
    main()
