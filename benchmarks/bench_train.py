"""Training epochs on DB15K (or another OpenKE graph): snagkg and PyKEEN side by side, in one process.

    .venv/bin/python benchmarks/bench_train.py                 # 3 rounds, 2 threads
    .venv/bin/python benchmarks/bench_train.py --rounds 5 --configs structure
    .venv/bin/python benchmarks/bench_train.py --preset db15k-cpu --configs rotate,snag,snag-shared
    .venv/bin/python benchmarks/bench_train.py --source ../shared/data/mkgc/MKG-W --dataset-dir /tmp/bench_mkgw \
        --preset mkg-w-cpu --modalities structure,relation --configs rotate,snag,snag-shared

Same settings for both: RotatE with 128 complex dimensions (snagkg hidden 256),
self-adversarial (NSSA) loss with margin 12 and adversarial temperature 2,
32 Bernoulli negatives per positive filtered against train, batch 1024, Adam
lr 1e-4, 2 torch threads. snagkg runs preset ``db15k`` structure-only
(``--modalities structure``) and the full SNAG with three modalities
(structure + relation-context features + a random 384-wide "text" table; ``--modalities``
changes the list); ``rotate`` (``--no-fusion``) is snagkg's plain RotatE, the same model as
PyKEEN's (up to L1/L2); ``snag-shared`` is ``snag`` with ``--negatives-scheme shared``.
``--preset`` picks the snagkg model (default ``db15k``; ``db15k-cpu`` is the gated plug-in);
every config runs in fp32 unless its name ends in ``-bf16``, whatever the preset says; snagkg's
learning rate is the preset's (PyKEEN keeps 1e-4; an epoch's cost does not depend on it).

Each round times one epoch of every system back to back (PyKEEN, then each
snagkg config), so a change in machine load hits all of them; the table
reports the median epoch over the rounds, the ratio of medians, and the
median of the per-round ratios. snagkg's first epoch (which includes
``torch.compile``, cached in /tmp/torchinductor_* across runs) and PyKEEN's
first epoch are reported separately and not in the medians. A snagkg epoch is
``Trainer._epoch`` (noise refresh, batching, sampling, steps, Adam); a PyKEEN
epoch runs from its first batch to its ``post_epoch`` callback (its per-call
set-up is excluded, in its favour).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common


def snagkg_trainer(dataset: Path, modalities, folder: Path, seed: int = 1, device: str = "cpu",
                   preset: str = "db15k", **overrides):
    import snagkg
    from snagkg.tasks.completion.task import CompletionTask
    from snagkg.data.datasets import read_openke
    from snagkg.api.run import standard_callbacks
    from snagkg.training.trainer import Trainer

    cfg = snagkg.resolve_config(preset=preset, overrides={
        "dataset": str(dataset), "modalities": list(modalities), "encoder.hidden": 256,
        "device": device, "seed": seed, "precision": "fp32", "train.batch_size": 1024, "train.negatives": 32,
        **overrides})
    task = CompletionTask(read_openke(dataset), cfg)
    optimizer, scheduler = task.make_optimizer()
    return Trainer(task, folder, epochs=10_000, seed=seed, callbacks=standard_callbacks(task, cfg, scheduler),
                   progress=False, log=lambda s: None, optimizer=(optimizer, scheduler))


class PyKEENRun:
    def __init__(self, kg, seed: int = 1, sampler: str = "bernoulli", filtered: bool = True, p: int = 2,
                 device: str = "cpu"):
        import torch
        from pykeen.training import SLCWATrainingLoop
        from pykeen.training.callbacks import TrainingCallback

        self.model, self.tf = common.pykeen_rotate(kg, seed=seed, p=p, device=device)
        self.device = device
        opt = torch.optim.Adam(self.model.get_grad_params(), lr=1e-4)
        self.loop = SLCWATrainingLoop(model=self.model, triples_factory=self.tf, optimizer=opt,
                                      negative_sampler=sampler,
                                      negative_sampler_kwargs=dict(num_negs_per_pos=32, filtered=filtered))
        self.epochs = 0
        run = self

        class EpochTimer(TrainingCallback):
            def pre_batch(self, **kwargs):
                if run._start is None:
                    common.synchronize(run.device)
                    run._start = time.perf_counter()

            def post_epoch(self, epoch, epoch_loss, **kwargs):
                common.synchronize(run.device)
                run._seconds = time.perf_counter() - run._start
                run.loss = epoch_loss

        self.callback = EpochTimer()

    def epoch(self) -> float:
        self._start, self._seconds = None, None
        self.epochs += 1
        with common.quiet():
            # continue_training: without it PyKEEN re-initialises the weights on every call
            self.loop.train(triples_factory=self.tf, num_epochs=self.epochs, batch_size=1024, use_tqdm=False,
                            use_tqdm_batch=False, callbacks=self.callback, continue_training=self.epochs > 1)
        return self._seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset-dir", default="/tmp/bench_db15k", help="private copy of the graph (created)")
    ap.add_argument("--source", default=str(common.SHARED_DB15K), help="the OpenKE folder linked into --dataset-dir")
    ap.add_argument("--preset", default="db15k", help="snagkg preset of every snagkg config")
    ap.add_argument("--modalities", default="structure,relation,text",
                    help="modalities of the snag configs (text: a random 384-wide table, relation: counts)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="structure,snag",
                    help="snagkg configs: structure, snag (the SNAG encoder), snag-shared (with shared negatives), "
                         "rotate (--no-fusion: plain RotatE), and each with -bf16 (--precision bf16)")
    ap.add_argument("--skip-pykeen", action="store_true")
    ap.add_argument("--pykeen-sampler", default="bernoulli", help="PyKEEN negative sampler (bernoulli, basic)")
    ap.add_argument("--pykeen-unfiltered", action="store_true", help="do not filter PyKEEN's negatives")
    common.add_pykeen_norm_option(ap, default=2)
    common.add_device_option(ap)
    args = ap.parse_args()
    dev = common.check_device(args.device)

    common.set_threads(args.threads)
    mods = [m for m in args.modalities.split(",") if m]
    per_triple = {"completion.negatives_scheme": "per_triple"}  # whatever the preset says
    configs = {"structure": (["structure"], per_triple), "snag": (mods, per_triple),
               "snag-shared": (mods, {"completion.negatives_scheme": "shared"}),
               "rotate": (["structure"], {**per_triple, "encoder.fusion": False, "completion.structure_residual": False,
                                          "completion.residual_gate": False})}
    configs.update({f"{k}-bf16": (v[0], {**v[1], "precision": "bf16"}) for k, v in configs.items()})
    chosen = [c for c in args.configs.split(",") if c]
    dataset = common.prepare_dataset(Path(args.dataset_dir), source=Path(args.source),
                                     features=[m for m in ("relation", "text") if m in mods])
    from snagkg.data.datasets import read_openke
    kg = read_openke(dataset, features=False)

    systems = {}
    first = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    if not args.skip_pykeen:
        common.require_pykeen()
        systems["PyKEEN 1.11 RotatE"] = PyKEENRun(kg, sampler=args.pykeen_sampler,
                                                  filtered=not args.pykeen_unfiltered, p=args.pykeen_norm,
                                                  device=dev)
    for c in chosen:
        cmods, overrides = configs[c]
        systems[f"snagkg {c} ({'+'.join(cmods)})"] = snagkg_trainer(dataset, cmods, tmp / c, device=dev,
                                                                   preset=args.preset, **overrides)

    def one_epoch(name, sys_):
        if isinstance(sys_, PyKEENRun):
            return sys_.epoch(), sys_.loss
        sys_.state.epoch += 1
        common.synchronize(dev)
        t0 = time.perf_counter()
        loss = sys_._epoch(sys_.state.epoch)
        common.synchronize(dev)
        return time.perf_counter() - t0, loss

    common.log(common.environment())
    for name, s in systems.items():
        sec, loss = one_epoch(name, s)
        first[name] = sec
        common.log(f"warm-up epoch: {name}: {sec:.1f}s (loss {loss:.4f})")
    times = {name: [] for name in systems}
    losses = {name: [] for name in systems}
    for r in range(args.rounds):
        for name, s in systems.items():
            sec, loss = one_epoch(name, s)
            times[name].append(sec)
            losses[name].append(loss)
            common.log(f"round {r + 1}: {name}: {sec:.1f}s (loss {loss:.4f})")

    ref = "PyKEEN 1.11 RotatE" if "PyKEEN 1.11 RotatE" in systems else None
    rows = []
    for name in systems:
        row = {"system": name, "first epoch s": first[name], "median epoch s": common.median(times[name]),
               "epochs s": " ".join(f"{t:.1f}" for t in times[name])}
        if ref:
            row["ratio of medians"] = row["median epoch s"] / common.median(times[ref])
            row["median per-round ratio"] = common.median(a / b for a, b in zip(times[name], times[ref]))
        rows.append(row)
    cols = ["system", "first epoch s", "median epoch s", "epochs s"] + (
        ["ratio of medians", "median per-round ratio"] if ref else [])
    print(f"\n{Path(args.source).name} ({args.preset}), one training epoch ({len(kg.train)} triples, batch 1024, 32 negatives), "
          f"{args.rounds} rounds, on {dev}; {common.environment()}")
    print(common.table(rows, cols))
    gpu = common.cuda_peak_mb(dev)
    print(f"peak RSS {common.peak_rss_mb():.0f} MiB" + ("" if gpu != gpu else f", peak CUDA {gpu:.0f} MiB"))


if __name__ == "__main__":
    main()
