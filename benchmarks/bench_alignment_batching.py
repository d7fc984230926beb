"""Seconds per alignment training epoch: the GAT over both whole graphs against sampled neighbourhoods.

    snagkg synthetic --pair --entities 15000 --output /tmp/pair15000     # one pair per size
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_alignment_batching.py /tmp/pair2000 /tmp/pair15000

Each pair is loaded once per mode with the ``dbp15k-cpu`` preset (``alignment.batching`` whole, then
sampled with ``alignment.gat_fanout``) and trained for ``--epochs`` epochs (iterative learning
off), without validation or test evaluation; the table gives the median training seconds of an epoch
(the trainer's own epoch timer: batches, steps and the noise refresh). This is what set
``SAMPLED_FROM`` in ``snagkg/tasks/alignment/model.py`` (BENCHMARKS.md, "Alignment at scale").
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", help="pair folders (snagkg synthetic --pair)")
    ap.add_argument("--preset", default="dbp15k-cpu")
    ap.add_argument("--fanout", default="10", help="alignment.gat_fanout of the sampled runs")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default="whole,sampled")
    args = ap.parse_args()

    common.set_threads(args.threads)
    from snagkg.config import schema as C
    from snagkg.data.datasets.alignment_pair import load_alignment_dataset
    from snagkg.tasks.alignment.task import AlignmentTask
    from snagkg.training.callbacks import NoiseRefresh
    from snagkg.training.trainer import Trainer

    common.log(common.environment())
    rows = []
    for pair in args.pairs:
        row = {"pair": Path(pair).name}
        for mode in args.modes.split(","):
            cfg = C.resolve(preset=args.preset, overrides={
                "task": "alignment", "dataset": str(pair), "train.epochs": args.epochs, "alignment.iterative": False,
                "alignment.batching": mode, "alignment.gat_fanout": args.fanout})
            task = AlignmentTask(load_alignment_dataset(str(pair), seed=cfg.seed), cfg)
            row["entities"] = task.pair.num_entities
            row["steps"] = -(-len(task.training_links()) // cfg.train.batch_size)
            with tempfile.TemporaryDirectory() as out:
                trainer = Trainer(task, Path(out), args.epochs, cfg.seed, progress=False, log=lambda s: None,
                                  grad_clip=cfg.train.grad_clip, checkpoint_every=args.epochs + 1)
                trainer.callbacks = [NoiseRefresh(task.model.entities), *task.callbacks(trainer.scheduler)]
                trainer.fit()
            row[f"{mode} s/epoch"] = round(common.median(trainer.state.epoch_seconds), 2)
            row[f"{mode} loss"] = round(trainer.last_loss, 4)
            common.log(f"{row['pair']} {mode}: {row[f'{mode} s/epoch']} s/epoch")
        rows.append(row)
    print(common.table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
