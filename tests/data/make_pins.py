"""Record metrics of fixed-seed synthetic runs (pinned by tests/test_redesign_pins.py)."""
import json, sys
from pathlib import Path
import snagkg
from snagkg import config as C
from snagkg.datasets.synthetic_pair import write_synthetic_pair

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
RUNS = {
 "completion_mean": dict(preset="synthetic", overrides={"dataset": "synthetic", "seed": 3, "train.epochs": 6,
    "train.eval_every": 2, "train.lr": 0.01, "encoder.hidden": 32, "device": "cpu"}),
 "completion_gated": dict(preset="synthetic", overrides={"dataset": "synthetic", "seed": 4, "train.epochs": 3,
    "train.eval_every": 1, "train.lr": 0.01, "encoder.hidden": 32, "encoder.readout": "graph",
    "encoder.projection_layers": 2, "completion.structure_residual": True, "completion.residual_gate": True,
    "device": "cpu"}),
 "completion_plain": dict(preset="synthetic", overrides={"dataset": "synthetic", "seed": 5, "train.epochs": 3,
    "train.eval_every": 3, "train.lr": 0.01, "encoder.hidden": 32, "encoder.fusion": False,
    "modalities": "structure", "noise.ratio": 0.0, "device": "cpu"}),
}
pair = write_synthetic_pair(out / "pair", entities=120, seed=7, permute_ids=True)
RUNS["alignment"] = dict(preset="dbp15k", overrides={"task": "alignment", "dataset": str(pair), "seed": 3,
    "encoder.hidden": 24, "alignment.structure_dim": 24, "alignment.char_vocab": 200, "alignment.valid_ratio": 0.3,
    "train.batch_size": 256, "train.eval_every": 3, "train.patience": 100, "train.lr": 0.005,
    "train.checkpoint_every": 3, "train.epochs": 6, "alignment.iterative_start": 2, "alignment.propose_every": 1,
    "alignment.add_every": 2, "modalities": "structure,relation,char", "device": "cpu"})
res = {}
for name, kw in RUNS.items():
    r = snagkg.train(C.resolve(**kw), out / name, overwrite=True, progress=False, echo=lambda s: None)
    res[name] = {"valid": r.valid, "test": r.test, "best_epoch": r.best_epoch}
    for s in ("valid", "test"):
        res[name][s].pop("seconds", None)
print(json.dumps(res, indent=1))
