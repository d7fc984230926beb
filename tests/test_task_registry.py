"""A third task added from outside the library: the registries are the only contract.

The toy task is a package written into ``tmp_path`` and put on ``sys.path``: it registers a
config section (``register_task``), an interaction, a loss (``LOSSES``) and its task class
(``TASKS``), then trains through :func:`snagkg.train` and evaluates through
:func:`snagkg.evaluate` -- without touching any file of ``snagkg``.
"""
from __future__ import annotations

import importlib
import json
import sys
import textwrap
from dataclasses import replace

import pytest
import torch

import snagkg
from snagkg.config import schema as C
from snagkg.core.interaction import LOSSES, Interaction, Loss, TripleInteraction
from snagkg.core.registry import TASKS
from snagkg.training.trainer import Task

TOY = textwrap.dedent('''
    """A toy task: link prediction on a ring graph, dot-product interaction, logistic loss."""
    from dataclasses import dataclass

    import torch
    import torch.nn.functional as F
    from torch import nn

    from snagkg.config.schema import ConfigValueError, Section, register_task
    from snagkg.core.interaction import LOSSES, Interaction, Loss
    from snagkg.core.registry import TASKS
    from snagkg.core.representation import EmbeddingStructure, MultiModalEntityRepresentation
    from snagkg.training.trainer import Task


    @dataclass(frozen=True)
    class ToyConfig(Section):
        entities: int = 12
        margin: float = 1.0

        def check(self):
            if self.entities < 4:
                raise ConfigValueError("toy.entities must be at least 4", "toy.entities")


    register_task("toy", ToyConfig)


    class Dot(Interaction):
        name = "dot"

        def score(self, x, y):
            return (x * y).sum(-1)


    @LOSSES.register("toy-logistic")
    class Logistic(Loss):
        name = "toy-logistic"

        def forward(self, pos, neg):
            return F.softplus(-pos).mean() + F.softplus(neg).mean()


    class ToyModel(nn.Module):
        def __init__(self, n, section, cfg):
            super().__init__()
            structure = EmbeddingStructure(torch.randn(n, cfg.encoder.hidden) * 0.1)
            self.entities = MultiModalEntityRepresentation(structure, {}, ["structure"], cfg.encoder, cfg.noise,
                                                           cfg.precision)
            self.interaction = Dot()
            self.loss = LOSSES.get("toy-logistic")()

        def parameter_count(self):
            return sum(p.numel() for p in self.parameters())


    class ToyTask(Task):
        name = "toy"
        selection_metric = "hits@1"

        def __init__(self, cfg):
            self.cfg, self.device = cfg, torch.device("cpu")
            n = cfg.toy.entities
            self.edges = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n], dim=1)
            torch.manual_seed(cfg.seed)
            self.model = ToyModel(n, cfg.toy, cfg)

        @classmethod
        def build(cls, cfg):
            return cls(cfg)

        def make_optimizer(self):
            return torch.optim.Adam(self.model.parameters(), lr=self.cfg.train.lr), None

        def batches(self, generator):
            return list(self.edges[torch.randperm(len(self.edges), generator=generator)].split(self.cfg.train.batch_size))

        def step(self, batch, generator):
            fused = self.model.entities(torch.arange(self.cfg.toy.entities)).vector
            neg = torch.randint(0, self.cfg.toy.entities, (len(batch),), generator=generator)
            score = self.model.interaction.score
            return self.model.loss(score(fused[batch[:, 0]], fused[batch[:, 1]]), score(fused[batch[:, 0]], fused[neg]))

        def evaluate(self, split, ties=None, limit=0, progress=False, candidates=0):
            self.model.eval()
            with torch.no_grad():
                v = self.entity_vectors()
                scores = v @ v.t()
                best = scores.argmax(dim=1)
            return {"hits@1": float((best[self.edges[:, 0]] == self.edges[:, 1]).float().mean()), "count": len(v)}

        def validate(self):
            return self.evaluate("valid")

        def fingerprint(self):
            return {"task": "toy", "entities": self.cfg.toy.entities}

        def dataset_info(self):
            return {"entities": self.cfg.toy.entities, "edges": len(self.edges)}

        def entity_names(self):
            return [f"e{i}" for i in range(self.cfg.toy.entities)]

        def entity_vectors(self):
            with torch.no_grad():
                return self.model.entities().vector.float()


    TASKS.register("toy")(ToyTask)
''')


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy package imported from ``tmp_path``; every registration it made is undone afterwards."""
    pkg = tmp_path / "toytask"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toytask")
    yield module
    sys.modules.pop("toytask", None)
    C.unregister_task("toy")
    TASKS.unregister("toy")
    LOSSES.unregister("toy-logistic")


def test_a_third_task_trains_and_evaluates_through_the_registries(toy, tmp_path):
    cfg = snagkg.resolve_config(overrides={"task": "toy", "toy.entities": 8, "train.epochs": 2,
                                           "train.batch_size": 4, "train.eval_every": 1, "train.lr": 0.05,
                                           "encoder.hidden": 8, "encoder.heads": 1, "device": "cpu",
                                           "modalities": ["structure"]})
    assert isinstance(cfg.toy, toy.ToyConfig) and cfg.toy.entities == 8
    assert cfg.to_dict()["toy"] == {"entities": 8, "margin": 1.0}
    results = snagkg.train(cfg, tmp_path / "run", progress=False, echo=lambda s: None)
    assert results.epochs_run == 2 and 0.0 <= results.test["hits@1"] <= 1.0
    saved = C.load_run_config(tmp_path / "run" / "config.yaml")
    assert saved == cfg and saved.task == "toy"
    again = snagkg.evaluate(tmp_path / "run", split="test", device="cpu")
    assert again["hits@1"] == results.test["hits@1"] and again["split"] == "test"
    assert json.loads((tmp_path / "run" / "results.json").read_text())["config"]["toy"]["entities"] == 8
    with pytest.raises(snagkg.SnagError, match="toy.entities must be at least 4"):
        snagkg.resolve_config(overrides={"task": "toy", "toy.entities": 2})
    task = snagkg.load_run(tmp_path / "run", device="cpu")
    with pytest.raises(snagkg.SnagError, match="does not apply to a toy run"):
        task.predict(head="e0", relation="r")
    with pytest.raises(snagkg.SnagError, match="`snagkg align` does not apply"):
        task.align()


def test_sections_of_tasks_load_and_replace_generically(toy):
    cfg = C.RunConfig(toy=toy.ToyConfig(entities=5))
    assert cfg.toy.entities == 5 and cfg.section("toy") is cfg.toy
    assert replace(cfg, toy=replace(cfg.toy, entities=6)).toy.entities == 6
    assert "completion" in cfg.to_dict() and "alignment" in cfg.to_dict()
    with pytest.raises(AttributeError):
        cfg.no_such_section  # noqa: B018
    with pytest.raises(ValueError, match="not a task section"):
        C.register_task("seed", toy.ToyConfig)


def test_contracts_are_abstract():
    for base in (Interaction, TripleInteraction, Loss, Task):
        with pytest.raises(TypeError, match="abstract"):
            base()
    assert {"query", "distance", "pairwise"} <= TripleInteraction.__abstractmethods__
    assert {"build", "make_optimizer", "batches", "step", "evaluate", "validate", "fingerprint",
            "dataset_info", "entity_names", "entity_vectors"} <= Task.__abstractmethods__
    assert not {"callbacks", "notes", "save_ids", "check_ids", "export_arrays", "predict", "align",
                "final_evaluation"} & Task.__abstractmethods__


def test_every_registered_task_is_a_task_with_its_config_section():
    for name in TASKS.names():
        cls = TASKS.get(name)
        assert issubclass(cls, Task) and cls.name == name and cls.selection_metric
        assert name in C.TASKS and isinstance(C.RunConfig().section(name), C.Section)


def test_csls_interaction_scores_as_the_metrics_rank():
    from snagkg.tasks.alignment.metrics import alignment_metrics
    from snagkg.tasks.alignment.model import CSLSInteraction

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(20, 8, generator=g), dim=-1)
    y = torch.nn.functional.normalize(x + 0.3 * torch.randn(20, 8, generator=g), dim=-1)
    csls = CSLSInteraction(3)
    assert csls.metrics(x, y)["mrr"] == alignment_metrics(x, y, k=3)["mrr"]
    scores = csls.score(x, y)
    ranks = (scores > scores.diagonal()[:, None]).sum(1) + 1
    assert float((1.0 / ranks.double()).mean()) == pytest.approx(csls.metrics(x, y)["lr_mrr"], abs=1e-6)
