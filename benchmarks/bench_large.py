"""Training and evaluation cost on one machine as the graph grows (synthetic OpenKE folders).

    .venv/bin/snagkg synthetic --entities 100000 --triples 1000000 --output /data/synth-100k
    /usr/bin/time -v .venv/bin/python benchmarks/bench_large.py /data/synth-100k --steps 40

For one dataset folder and one configuration (the ``synthetic`` preset's model: structure +
image + text, fp32, plus ``--set key=value`` overrides), reported as one JSON line:

* ``load s``: reading the folder and building the task (feature tables per
  ``completion.feature_storage``);
* ``s/step``: median of ``--steps`` timed training steps (after ``--warmup`` untimed ones),
  each a whole optimiser step (sampling, fusion, loss, backward, update); ``s/epoch`` is that
  times the epoch's steps (a fraction of an epoch timed and scaled), ``s per 1k triples`` per
  1,000 training triples;
* ``eval full s``: filtered ranking of ``--eval-limit`` test triples (both sides) against every
  entity, scaled linearly to the whole test split (``eval full s (measured)`` is the part run);
* ``eval sampled s``: the same against ``--candidates`` sampled candidates per query;
* ``peak RSS MiB``: the process's resident peak (``ru_maxrss``), everything included.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time

import common


def build(dataset: str, preset: str, sets):
    """``(cfg, task, load seconds)`` for ``dataset`` with ``preset`` and ``key=value`` overrides (YAML values)."""
    import yaml

    import snagkg
    from snagkg.api.run import build_task

    overrides = {"dataset": dataset, "seed": 1}
    for item in sets:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    cfg = snagkg.resolve_config(preset=preset, overrides=overrides)
    t0 = time.perf_counter()
    task = build_task(cfg)
    return cfg, task, time.perf_counter() - t0


def time_steps(task, cfg, steps: int, warmup: int):
    """``(median seconds, timed steps, last loss)`` of ``warmup + steps`` whole optimiser steps on random
    training batches after one noise draw, the first ``warmup`` untimed."""
    import torch

    from snagkg.training.callbacks import NoiseRefresh

    opt, _ = task.make_optimizer()
    task.model.train()
    NoiseRefresh(task.model.entities).on_epoch_start(None, 1, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    perm = torch.randperm(len(task.train_triples), generator=gen)[: (steps + warmup) * cfg.train.batch_size]
    times = []
    for i, batch in enumerate(task.train_triples[perm].split(cfg.train.batch_size)):
        s = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = task.step(batch, gen)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - s)
    return statistics.median(times), len(times), float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--eval-limit", type=int, default=200)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--sampled-limit", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="config override key=value (YAML value)")
    args = ap.parse_args()

    common.set_threads(args.threads)
    cfg, task, load = build(args.dataset, "synthetic", args.set)
    model = task.model
    step, timed, loss = time_steps(task, cfg, args.steps, args.warmup)
    n_train = len(task.train_triples)
    steps = math.ceil(n_train / cfg.train.batch_size)
    n_test = len(task.kg.test)
    full = task.evaluate("test", limit=args.eval_limit)
    sampled = task.evaluate("test", limit=args.sampled_limit, candidates=args.candidates)
    row = {
        "dataset": args.dataset, "entities": task.kg.num_entities, "train triples": n_train,
        "test triples": n_test, "sparse updates": bool(model.sparse), "mapped tables": model.entities.mapped,
        "load s": round(load, 2), "s/step": round(step, 4), "steps timed": timed, "steps/epoch": steps,
        "s/epoch": round(step * steps, 1), "s per 1k triples": round(1000 * step * steps / n_train, 4),
        "eval full s (measured)": full["seconds"], "eval full triples": full["count"],
        "eval full s": round(full["seconds"] * n_test / max(1, full["count"]), 1),
        "eval sampled s": round(sampled["seconds"] * n_test / max(1, sampled["count"]), 1),
        "sampled": args.candidates, "compile s": round(full.get("compile_seconds", 0.0), 2),
        "loss": round(loss, 4),
        "peak RSS MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "overrides": args.set, "env": common.environment(),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
