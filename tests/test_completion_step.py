import pytest
import torch

import snagkg
from snagkg.tasks.completion.loss import self_adversarial_loss
from snagkg.tasks.completion.task import CompletionTask
from snagkg.data.datasets import read_openke
from snagkg.runtime import compilation
from snagkg.tasks.completion import rotate


def test_training_step_equals_naive_scoring(tiny_dataset, device):
    cfg = snagkg.resolve_config(overrides={"dataset": str(tiny_dataset), "encoder.hidden": 16, "train.negatives": 6,
                                           "device": device})
    task = CompletionTask(read_openke(tiny_dataset), cfg)
    assert task.device == torch.device(device)
    task.model.eval()  # no dropout/noise: both computations see the same vectors
    batch = task.train_triples[:40]
    loss = task.step(batch, torch.Generator().manual_seed(7))
    neg, mask = task.sampler.sample(batch, torch.Generator().manual_seed(7))
    with torch.no_grad():
        v = task.model.entity_vectors()
        sc = task.model.interaction
        batch, neg, mask = batch.to(device), neg.to(device), mask.to(device)
        pos = sc.score(v[batch[:, 0]], batch[:, 1], v[batch[:, 2]])
        negs = sc.score(v[neg[..., 0]], neg[..., 1], v[neg[..., 2]])
        ref = self_adversarial_loss(pos, negs, mask, 2.0)
    assert torch.allclose(loss.detach(), ref, atol=1e-5)


def _first_step_moves(tiny_dataset, scale, encoder_scale=None, relation_scale=None):
    overrides = {"dataset": str(tiny_dataset), "encoder.hidden": 16, "train.negatives": 6, "train.lr": 1e-3}
    if relation_scale is not None:
        overrides["completion.relation_lr_scale"] = relation_scale
    if scale is not None:
        overrides["completion.embedding_lr_scale"] = scale
    if encoder_scale is not None:
        overrides["completion.encoder_lr_scale"] = encoder_scale
    task = CompletionTask(read_openke(tiny_dataset), snagkg.resolve_config(overrides=overrides))
    task.model.eval()
    opt, _ = task.make_optimizer()
    before = {n: p.detach().clone() for n, p in task.model.named_parameters()}
    task.step(task.train_triples[:40], torch.Generator().manual_seed(7)).backward()
    opt.step()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in task.model.named_parameters()}
    return opt, moved


def test_embedding_lr_scale_speeds_up_the_structure_table_only(tiny_dataset):
    """Adam's first step moves each parameter by about its lr: the entity table by lr * scale."""
    opt, moved = _first_step_moves(tiny_dataset, None)
    assert len(opt.param_groups) == 1  # the default keeps one group (older checkpoints resume)
    assert abs(moved["entities.structure.weight"] - 1e-3) < 1e-4
    opt, moved = _first_step_moves(tiny_dataset, 4.0)
    assert [g["lr"] for g in opt.param_groups] == [4e-3, 1e-3, 1e-3]
    assert abs(moved["entities.structure.weight"] - 4e-3) < 4e-4
    others = [v for n, v in moved.items() if n != "entities.structure.weight" and v > 0]
    assert others and max(others) < 1.1e-3


def test_encoder_lr_scale_slows_down_the_encoder_only(tiny_dataset):
    opt, moved = _first_step_moves(tiny_dataset, None, 0.1)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-4, 1e-3]
    enc = [v for n, v in moved.items() if n.startswith("entities.encoder.") and v > 0]
    rest = [v for n, v in moved.items() if not n.startswith("entities.encoder.") and v > 0]
    assert enc and max(enc) < 1.1e-4
    assert abs(moved["entities.structure.weight"] - 1e-3) < 1e-4 and max(rest) > 9e-4


def test_relation_lr_scale_slows_down_the_relation_phases_only(tiny_dataset):
    opt, moved = _first_step_moves(tiny_dataset, None, relation_scale=0.05)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3, 5e-5]
    assert 0 < moved["interaction.relation"] < 5.5e-5
    assert abs(moved["entities.structure.weight"] - 1e-3) < 1e-4
    enc = [v for n, v in moved.items() if n.startswith("entities.encoder.") and v > 0]
    assert enc and max(enc) > 9e-4


def _residual_task(tiny_dataset, residual, **extra):
    overrides = {"dataset": str(tiny_dataset), "encoder.hidden": 16, "train.negatives": 6,
                 "encoder.readout": "graph", "completion.structure_residual": residual, **extra}
    return CompletionTask(read_openke(tiny_dataset), snagkg.resolve_config(overrides=overrides))


def test_structure_residual_adds_the_structure_row_to_the_fused_vector(tiny_dataset):
    plain, res = _residual_task(tiny_dataset, False), _residual_task(tiny_dataset, True)
    assert torch.equal(plain.model.entities.structure.weight, res.model.entities.structure.weight)  # same seed, same initialisation
    fused, with_row = plain.entity_vectors(), res.entity_vectors()
    assert torch.allclose(with_row, fused + res.model.entities.structure.weight.detach(), atol=1e-6)
    res.model.eval()
    idx = torch.tensor([3, 0, 7])
    with torch.no_grad():  # the per-row path (evaluation helpers) agrees with the all-rows path
        assert torch.allclose(res.model.entity_vectors(idx), with_row[idx], atol=1e-5)
    # without the encoder's contribution the model is plain RotatE on the structure table
    res.model.output_scale = 0.0
    assert torch.allclose(res.entity_vectors(), res.model.entities.structure.weight.detach())


def test_structure_residual_trains_the_structure_row_at_its_own_rate(tiny_dataset):
    """The loss's gradient reaches the entity table directly, not only through the encoder."""
    grads = {}
    for residual in (False, True):
        task = _residual_task(tiny_dataset, residual)
        task.model.eval()
        task.step(task.train_triples[:40], torch.Generator().manual_seed(7)).backward()
        grads[residual] = task.model.entities.structure.weight.grad.clone()
    assert not torch.allclose(grads[True], grads[False])
    assert grads[True].abs().sum() > grads[False].abs().sum()


def test_structure_residual_needs_the_structure_modality(tiny_dataset):
    import pytest

    from snagkg.runtime.errors import SnagError
    with pytest.raises(SnagError, match="needs the structure modality"):
        _residual_task(tiny_dataset, True, modalities=["image"])


def test_residual_gate_starts_from_plain_rotate_and_learns_the_encoders_share(tiny_dataset):
    """With the gate the model is plain RotatE at step 0; the loss moves the gate off 0,
    and from then on the encoder trains too."""
    task = _residual_task(tiny_dataset, True, **{"completion.residual_gate": True, "train.lr": 1e-2})
    m = task.model
    assert m.gate is not None and m.gate.item() == 0.0
    assert torch.equal(task.entity_vectors(), m.entities.structure.weight.detach())  # exactly the structure rows
    m.eval()
    opt, _ = task.make_optimizer()
    enc = [p for p in m.entities.encoder.parameters()]
    task.step(task.train_triples[:40], torch.Generator().manual_seed(7)).backward()
    assert m.gate.grad is not None and float(m.gate.grad.abs()) > 0
    assert all(p.grad is None or float(p.grad.abs().max()) == 0 for p in enc)  # gate 0: no signal yet
    opt.step()
    assert abs(m.gate.item()) > 5e-3
    opt.zero_grad()
    task.step(task.train_triples[:40], torch.Generator().manual_seed(7)).backward()
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in enc)
    with torch.no_grad():  # both paths apply the gate
        table = m.entities.structure.weight
        fused = m.entities().vector * m.output_scale
        assert torch.allclose(m.vectors(), fused * m.gate + table, atol=1e-5)
        assert torch.allclose(m.entity_vectors(torch.tensor([2, 5])), (fused * m.gate + table)[[2, 5]],
                              atol=1e-5)


def test_residual_gate_trains_with_the_encoder_and_needs_the_residual(tiny_dataset):
    import pytest

    from snagkg.runtime.errors import SnagError
    task = _residual_task(tiny_dataset, True, **{"completion.residual_gate": True,
                                                 "completion.encoder_lr_scale": 0.5})
    opt, _ = task.make_optimizer()
    (group,) = [g for g in opt.param_groups if any(p is task.model.gate for p in g["params"])]
    assert group["lr"] == 0.5 * task.cfg.train.lr
    assert _residual_task(tiny_dataset, True).model.gate is None  # off by default: older runs load as before
    with pytest.raises(SnagError, match="needs completion.structure_residual"):
        _residual_task(tiny_dataset, False, **{"completion.residual_gate": True})


def _old_step(task, batch, generator):
    """The training step as written before the fast paths (eager autograd, full encoder forward)."""
    neg, mask = task.sampler.sample(batch, generator)
    vecs = task.model.entity_vectors()
    scorer = task.model.interaction
    h, r, t = batch[:, 0], batch[:, 1], batch[:, 2]
    q_tail = scorer.query(vecs[h], r, True)
    q_head = scorer.query(vecs[t], r, False)
    pos = scorer.margin - scorer.distance(q_tail, vecs[t])
    corrupt_head = neg[..., 0] != h.unsqueeze(1)
    candidate = torch.where(corrupt_head, neg[..., 0], neg[..., 2])
    q = torch.where(corrupt_head.unsqueeze(-1), q_head.unsqueeze(1), q_tail.unsqueeze(1))
    negs = scorer.margin - scorer.distance(q, vecs[candidate])
    return self_adversarial_loss(pos, negs, mask, task.cfg.completion.adversarial_temperature)


@pytest.mark.parametrize("readout,compiled", [("graph", False), ("mean", False),
                                             pytest.param("graph", True, marks=pytest.mark.slow)])  # compiling: ~15 s
def test_training_step_equals_the_reference_step_in_training_mode(tiny_dataset, monkeypatch, readout, compiled):
    if compiled:
        for module, name in ((compilation, "COMPILE_MIN_ENCODER_WORK"), (rotate, "COMPILE_MIN_TRAIN_WORK")):
            monkeypatch.setattr(module, name, 0)
    else:
        monkeypatch.setenv("SNAGKG_COMPILE", "0")
    # Dropout off: the readout-only path draws the last layer's masks for the structure token
    # alone, so its masks differ from a full forward's (that path is compared with the same
    # masks in test_encoder_vectors_equal_forward_with_the_same_dropout).
    cfg = snagkg.resolve_config(overrides={"dataset": str(tiny_dataset), "encoder.hidden": 16, "train.negatives": 6,
                                           "encoder.readout": readout, "encoder.dropout": 0.0})
    task = CompletionTask(read_openke(tiny_dataset), cfg)
    task.model.train()  # the noise draw is on
    task.model.refresh_noise(torch.Generator().manual_seed(1))
    batch = task.train_triples[:64]
    params = [p for p in task.model.parameters() if p.requires_grad]

    torch.manual_seed(11)
    ref = _old_step(task, batch, torch.Generator().manual_seed(7))
    g_ref = torch.autograd.grad(ref, params, allow_unused=True)
    torch.manual_seed(11)
    got = task.step(batch, torch.Generator().manual_seed(7))
    g_got = torch.autograd.grad(got, params, allow_unused=True)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(g_ref, g_got):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            assert torch.allclose(b, a, rtol=1e-4, atol=1e-5 * max(a.abs().max().item(), 1e-12))
