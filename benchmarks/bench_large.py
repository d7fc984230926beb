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
    import torch
    import yaml

    import snagkg
    from snagkg.callbacks import NoiseRefresh
    from snagkg.run import build_task

    overrides = {"dataset": args.dataset, "seed": 1}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    cfg = snagkg.resolve_config(preset="synthetic", overrides=overrides)
    t0 = time.perf_counter()
    task = build_task(cfg)
    load = time.perf_counter() - t0
    opt, _ = task.make_optimizer()
    model = task.model
    model.train()
    NoiseRefresh(model.entities).on_epoch_start(None, 1, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    n_train = len(task.train_triples)
    perm = torch.randperm(n_train, generator=gen)[: (args.steps + args.warmup) * cfg.train.batch_size]
    batches = task.train_triples[perm].split(cfg.train.batch_size)
    times = []
    for i, batch in enumerate(batches):
        s = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = task.step(batch, gen)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - s)
    step = statistics.median(times)
    steps = math.ceil(n_train / cfg.train.batch_size)
    n_test = len(task.kg.test)
    full = task.evaluate("test", limit=args.eval_limit)
    sampled = task.evaluate("test", limit=args.sampled_limit, candidates=args.candidates)
    row = {
        "dataset": args.dataset, "entities": task.kg.num_entities, "train triples": n_train,
        "test triples": n_test, "sparse updates": bool(model.sparse), "mapped tables": model.entities.mapped,
        "load s": round(load, 2), "s/step": round(step, 4), "steps timed": len(times), "steps/epoch": steps,
        "s/epoch": round(step * steps, 1), "s per 1k triples": round(1000 * step * steps / n_train, 4),
        "eval full s (measured)": full["seconds"], "eval full triples": full["count"],
        "eval full s": round(full["seconds"] * n_test / max(1, full["count"]), 1),
        "eval sampled s": round(sampled["seconds"] * n_test / max(1, sampled["count"]), 1),
        "sampled": args.candidates, "compile s": round(full.get("compile_seconds", 0.0), 2),
        "loss": round(float(loss), 4),
        "peak RSS MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "overrides": args.set, "env": common.environment(),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
