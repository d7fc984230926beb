"""Fusing only the batch's entities gives the same loss and gradients as fusing the whole table."""
from __future__ import annotations

import pytest
import torch

import snagkg
from snagkg.tasks.completion.model import bucket
from snagkg.tasks.completion.task import CompletionTask
from snagkg.data.datasets import read_openke


def _task(tiny_dataset, scope, **extra):
    o = {"dataset": str(tiny_dataset), "encoder.hidden": 16, "train.negatives": 6, "encoder.dropout": 0.0,
         "noise.ratio": 0.5, "completion.fusion_scope": scope, "seed": 3}
    o.update(extra)
    return CompletionTask(read_openke(tiny_dataset), snagkg.resolve_config(overrides=o))


@pytest.mark.parametrize("extra", [
    {"encoder.readout": "mean"},
    {"encoder.readout": "graph", "encoder.projection_layers": 2, "completion.structure_residual": True,
     "completion.residual_gate": True},
    {"encoder.fusion": False, "modalities": "structure"},
])
def test_batch_path_equals_the_whole_table_path(tiny_dataset, extra):
    tasks = {scope: _task(tiny_dataset, scope, **extra) for scope in ("table", "batch")}
    batch = tasks["table"].train_triples[:16]
    out = {}
    for scope, task in tasks.items():
        task.model.train()
        if task.model.gate is not None:
            with torch.no_grad():
                task.model.gate.fill_(0.7)  # a gate of 0 would hide the encoder's gradient
        task.model.refresh_noise(torch.Generator().manual_seed(1))  # the same draw for both
        if scope == "batch":
            touched = task.model.batch_entities(batch[:, 0], batch[:, 2], torch.zeros(16, 6, dtype=torch.long))
            assert touched is not None and len(touched[0]) < task.kg.num_entities  # a real subset
        loss = task.step(batch, torch.Generator().manual_seed(7))
        params = dict(task.model.named_parameters())
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        out[scope] = (loss, dict(zip(params, grads)))
    (l_table, g_table), (l_batch, g_batch) = out["table"], out["batch"]
    assert torch.allclose(l_batch, l_table, rtol=1e-5, atol=1e-6)
    for name, g in g_table.items():
        other = g_batch[name]
        if g is None or other is None:
            assert (g is None or not g.abs().any()) and (other is None or not other.abs().any()), name
            continue
        assert torch.allclose(other, g, rtol=1e-4, atol=1e-6), name
    touched = g_table["entities.structure.weight"].abs().sum(1) > 0
    assert 0 < int(touched.sum()) < len(touched)  # rows outside the batch get no gradient on either path


def test_auto_takes_the_batch_path_only_on_large_graphs(tiny_dataset):
    task = _task(tiny_dataset, "auto")
    n = task.kg.num_entities
    few = torch.arange(4)
    assert task.model.batch_entities(few, few + 4, torch.zeros(4, 1, dtype=torch.long)) is not None
    every = torch.arange(n)
    assert task.model.batch_entities(every, every, every[:, None]) is None
    assert [bucket(k) for k in (16, 17, 1000, 34000)] == [16, 18, 1024, 36864]
    assert all(k <= bucket(k) <= k * 1.125 + 1 for k in range(1, 5000, 7))
