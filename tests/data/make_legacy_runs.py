import sys, shutil
from pathlib import Path
sys.path.insert(0, "tests")
from conftest import make_openke
import snagkg
from snagkg.config import schema as C
from snagkg.data.datasets.synthetic_pair import write_synthetic_pair
root = Path("tests/data/legacy_runs"); shutil.rmtree(root, ignore_errors=True); root.mkdir(parents=True)
ds = make_openke(Path("/tmp/legacy_ds"), num_entities=80, num_relations=4, seed=2)
cfg = C.resolve(preset="synthetic", overrides={"dataset": str(ds), "seed": 1, "train.epochs": 2, "train.eval_every": 1,
    "encoder.hidden": 16, "device": "cpu"})
snagkg.train(cfg, root / "completion", progress=False, echo=lambda s: None)
pair = write_synthetic_pair(Path("/tmp/legacy_pair"), entities=60, seed=7, permute_ids=True)
cfg = C.resolve(preset="dbp15k", overrides={"task": "alignment", "dataset": str(pair), "seed": 1,
    "encoder.hidden": 12, "alignment.structure_dim": 12, "alignment.char_vocab": 50, "alignment.valid_ratio": 0.3,
    "train.batch_size": 256, "train.eval_every": 2, "train.checkpoint_every": 1, "train.epochs": 4,
    "alignment.iterative_start": 1, "alignment.propose_every": 1, "alignment.add_every": 2,
    "modalities": "structure,relation,char", "device": "cpu"})
snagkg.train(cfg, root / "alignment", progress=False, echo=lambda s: None)
