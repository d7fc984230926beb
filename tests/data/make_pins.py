"""The fixed-seed synthetic runs whose metrics tests/data/redesign_pins.json pins.

``python tests/data/make_pins.py OUT > tests/data/redesign_pins.json`` rewrites the pins
(only when a change of numbers is intended); tests/test_pinned_metrics.py reruns them, both with 2
torch threads.
"""
import json
import sys
from pathlib import Path

import snagkg
from snagkg.config import schema as C
from snagkg.data.datasets.synthetic_pair import write_synthetic_pair


def runs(out: Path) -> dict:
    """name -> ``resolve_config`` keyword arguments (the alignment pair is written under ``out``)."""
    pair = write_synthetic_pair(out / "pair", entities=120, seed=7, permute_ids=True)
    return {
        "completion_mean": dict(preset="synthetic", overrides={
            "dataset": "synthetic", "seed": 3, "train.epochs": 6, "train.eval_every": 2, "train.lr": 0.01,
            "encoder.hidden": 32, "device": "cpu"}),
        "completion_gated": dict(preset="synthetic", overrides={
            "dataset": "synthetic", "seed": 4, "train.epochs": 3, "train.eval_every": 1, "train.lr": 0.01,
            "encoder.hidden": 32, "encoder.readout": "graph", "encoder.projection_layers": 2,
            "completion.structure_residual": True, "completion.residual_gate": True, "device": "cpu"}),
        "completion_plain": dict(preset="synthetic", overrides={
            "dataset": "synthetic", "seed": 5, "train.epochs": 3, "train.eval_every": 3, "train.lr": 0.01,
            "encoder.hidden": 32, "encoder.fusion": False, "modalities": "structure", "noise.ratio": 0.0,
            "device": "cpu"}),
        "alignment": dict(preset="dbp15k", overrides={
            "task": "alignment", "dataset": str(pair), "seed": 3, "encoder.hidden": 24,
            "alignment.structure_dim": 24, "alignment.char_vocab": 200, "alignment.valid_ratio": 0.3,
            "train.batch_size": 256, "train.eval_every": 3, "train.patience": 100, "train.lr": 0.005,
            "train.checkpoint_every": 3, "train.epochs": 6, "alignment.iterative_start": 2,
            "alignment.propose_every": 1, "alignment.add_every": 2, "modalities": "structure,relation,char",
            "device": "cpu"}),
    }


def run(name: str, kwargs: dict, out: Path) -> dict:
    """Train one pinned run into ``out / name``; its valid/test metrics (without timings) and best epoch."""
    r = snagkg.train(C.resolve(**kwargs), out / name, overwrite=True, progress=False, echo=lambda s: None)
    res = {"valid": dict(r.valid), "test": dict(r.test), "best_epoch": r.best_epoch}
    for split in ("valid", "test"):
        res[split].pop("seconds", None)
    return res


if __name__ == "__main__":
    import torch

    torch.set_num_threads(2)  # as tests/test_pinned_metrics.py runs them
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    print(json.dumps({name: run(name, kw, folder) for name, kw in runs(folder).items()}, indent=1))
