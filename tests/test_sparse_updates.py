"""Sparse entity-table updates (``completion.entity_updates: sparse``, snagkg.training.sparse): the
gradient and Adam's first step of the dense path, touching only a batch's rows."""
from __future__ import annotations

import pytest
import torch

from _helpers import run_main
from snagkg.training.sparse import SplitOptimizer, clip_gradients
from _helpers import small_completion_task as _task




def test_sparse_updates_give_the_dense_gradient_and_first_step(tiny_dataset):
    tasks = {u: _task(tiny_dataset, "memory", u, **{"noise.structure_scale": 0.0}) for u in ("dense", "sparse")}
    assert tasks["sparse"].model.sparse and not tasks["dense"].model.sparse
    batch = tasks["dense"].train_triples[:16]
    out = {}
    for u, task in tasks.items():
        opt, _ = task.make_optimizer()
        assert isinstance(opt, SplitOptimizer) == (u == "sparse")
        task.model.train()
        task.model.refresh_noise(torch.Generator().manual_seed(1))
        opt.zero_grad()
        loss = task.step(batch, torch.Generator().manual_seed(7))
        loss.backward()
        weight = task.model.entities.structure.weight
        assert weight.grad.is_sparse == (u == "sparse")
        start = weight.detach().clone()
        grad = weight.grad.to_dense().clone()
        opt.step()
        out[u] = (loss.detach(), grad, weight.detach() - start)
    (l_d, g_d, step_d), (l_s, g_s, step_s) = out["dense"], out["sparse"]
    assert torch.allclose(l_s, l_d, rtol=1e-6)
    assert torch.allclose(g_s, g_d, rtol=1e-5, atol=1e-7)
    # Adam's first step moves only the rows with a gradient, by what lazy Adam moves them (SparseAdam
    # adds its eps outside the bias correction: the same step wherever the gradient is well above eps)
    clear = g_d.abs() > 1e-4
    assert clear.sum() > 100 and torch.allclose(step_s[clear], step_d[clear], rtol=1e-2, atol=0)
    untouched = g_d.abs().sum(1) == 0
    assert untouched.any() and not step_s[untouched].any() and not step_d[untouched].any()


def test_clip_gradients_takes_sparse_gradients_like_their_dense_copy():
    a = torch.nn.Parameter(torch.randn(20, 4))
    b = torch.nn.Parameter(torch.randn(3))
    idx = torch.tensor([1, 5, 5, 9])
    (torch.nn.functional.embedding(idx, a, sparse=True).pow(2).sum() * 10 + b.sum()).backward()
    dense = [a.grad.to_dense().clone(), b.grad.clone()]
    ref = [torch.nn.Parameter(torch.zeros(20, 4)), torch.nn.Parameter(torch.zeros(3))]
    ref[0].grad, ref[1].grad = dense
    norm_ref = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    norm = clip_gradients([a, b], 1.0)
    assert float(norm) == pytest.approx(float(norm_ref), rel=1e-5)
    assert torch.allclose(a.grad.to_dense(), ref[0].grad, atol=1e-6)
    assert torch.allclose(b.grad, ref[1].grad, atol=1e-6)


def test_fusion_scope_table_with_sparse_updates_is_a_one_line_error(tiny_dataset, tmp_path, capsys):
    code, out, err = run_main(["train", "--dataset", tiny_dataset, "--output", tmp_path / "r", "--epochs", "1",
                               "--fusion-scope", "table", "--entity-updates", "sparse"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--entity-updates dense" in err
    assert not (tmp_path / "r").exists()
