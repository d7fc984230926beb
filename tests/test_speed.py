"""The fast paths compute the same numbers as the plain references (up to float rounding).

* the training loss with its hand-written backward (``SampledLoss``) against autograd of
  the reference formulation, eagerly and compiled (and compiled runs are deterministic);
* the encoder's ``vectors()`` against ``forward().vector``, including the dropout draws;
* a whole training step in training mode (dropout and noise on) against the step as it
  was written before the fast paths;
* filtered ranks with duplicated known triples, and the ranking chunk sizes.
"""
import math

import pytest
import torch
from torch import nn

import snagkg
from snagkg.runtime import compilation, hardware
from snagkg.tasks.completion.loss import self_adversarial_loss
from snagkg.tasks.completion import rotate
from snagkg.tasks.completion.rotate import SampledLoss, rotate_sampled_loss
from snagkg.tasks.completion.scorers import RotatE
from snagkg.tasks.completion.task import CompletionTask
from snagkg.data.datasets import read_openke
from snagkg.core.encoder import FusionLayer, ModalityEncoder
from snagkg.tasks.completion.evaluation import FilterIndex, rank_triples


def _batch(n_ent=40, d=8, b=6, k=5, n_rel=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    vecs = torch.randn(n_ent, d, generator=g, dtype=dtype, requires_grad=True)
    relation = (torch.rand(n_rel, d // 2, generator=g, dtype=dtype) * 2 - 1).requires_grad_()
    r = torch.randint(0, n_rel, (b,), generator=g)
    idx = torch.randint(0, n_ent, (b * (k + 2),), generator=g)
    corrupt_head = torch.rand(b, k, generator=g) < 0.5
    mask = torch.rand(b, k, generator=g) < 0.8
    mask[0] = False  # a row without usable negatives
    return vecs, relation, r, idx, corrupt_head, mask


SCALE = 2.5  # radians per unit of the relation parameter


def _reference(vecs, relation, r, idx, corrupt_head, mask):
    loss = rotate_sampled_loss(vecs[idx], relation[r] * SCALE, corrupt_head, mask, 12.0, 2.0)
    return (loss, *torch.autograd.grad(loss * 1.5, [vecs, relation]))


def _fused(vecs, relation, r, idx, corrupt_head, mask, compiled):
    loss = SampledLoss.apply(vecs, relation, r, SCALE, idx, corrupt_head, mask, 12.0, 2.0, compiled)
    return (loss, *torch.autograd.grad(loss * 1.5, [vecs, relation]))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_hand_written_backward_equals_autograd(dtype, tol):
    args = _batch(dtype=dtype)
    for ref, got in zip(_reference(*args), _fused(*args, compiled=False)):
        assert torch.allclose(got, ref, rtol=tol, atol=tol * ref.abs().max().item())


@pytest.mark.parametrize("compiled", [False, True])
def test_loss_gradient_is_finite_when_a_distance_is_zero(compiled):
    """A self-loop (e, r, e) whose relation phase reached 0 (and a negative equal to its query)
    has a zero complex difference: |z| is not differentiable there, and the gradient must be
    0 (the subgradient), not nan (a DB15K run diverged at epoch 36 that way)."""
    vecs, relation, r, idx, ch, mask = _batch(seed=4)
    b, k = ch.shape
    with torch.no_grad():
        relation[r[1]] = 0.0                 # identity rotation for row 1's relation
        idx[b + 1] = idx[1]                  # row 1's tail = its head: (e, r, e)
        idx[2 * b + k + 0] = idx[1]          # row 1's first negative = e as well
        ch[1, 0], mask[1, 0] = False, True   # ... replacing the tail: distance 0 again
    ref = _reference(vecs, relation, r, idx, ch, mask)
    got = _fused(vecs, relation, r, idx, ch, mask, compiled=compiled)
    for g_ref, g_got in zip(ref, got):
        assert torch.isfinite(g_ref).all() and torch.isfinite(g_got).all()
        assert torch.allclose(g_got, g_ref, rtol=1e-5, atol=1e-5 * g_ref.abs().max().item())


def test_reference_loss_is_rotate_with_the_self_adversarial_loss():
    """``rotate_sampled_loss`` on gathered rows scores every pair as RotatE does (SPEC section 4)."""
    vecs, relation, r, idx, ch, mask = _batch()
    phase = relation[r] * SCALE
    b, k = ch.shape
    kk = vecs.shape[1] // 2
    with torch.no_grad():
        h, t, c = vecs[idx[:b]], vecs[idx[b:2 * b]], vecs[idx[2 * b:]].view(b, k, -1)
        cos, sin = torch.cos(phase), torch.sin(phase)

        def dist(a, s, e):  # sum_k |a_k e^{i theta_k} - e_k| with sin(theta) = s
            re = a[:, :kk] * cos - a[:, kk:] * s - e[:, :kk]
            im = a[:, :kk] * s + a[:, kk:] * cos - e[:, kk:]
            return torch.sqrt(re * re + im * im).sum(-1)

        pos = 12.0 - dist(h, sin, t)
        negs = torch.stack([torch.where(ch[:, j], 12.0 - dist(t, -sin, c[:, j]), 12.0 - dist(h, sin, c[:, j]))
                            for j in range(k)], 1)
        ref = self_adversarial_loss(pos, negs, mask, 2.0)
        got = rotate_sampled_loss(vecs[idx], phase, ch, mask, 12.0, 2.0)
    assert torch.allclose(got, ref, atol=1e-6)


def test_compiled_training_loss_equals_eager_and_is_deterministic():
    args = _batch(n_ent=300, d=32, b=64, k=16, seed=3)
    eager = _fused(*args, compiled=False)
    first = _fused(*args, compiled=True)
    again = _fused(*args, compiled=True)
    for e, c, c2 in zip(eager, first, again):
        assert torch.allclose(c, e, rtol=1e-5, atol=1e-6 * e.abs().max().item())
        assert torch.equal(c, c2)  # no atomics: a CPU run is reproducible bit for bit


def _encoders(modalities, layers=1, ffn=False, readout="graph"):
    dims = {m: w for m, w in {"structure": 16, "image": 5, "text": 3}.items() if m in modalities}
    torch.manual_seed(0)
    enc = ModalityEncoder(dims, hidden=32, heads=2, layers=layers, ffn=ffn, readout=readout, dropout=0.3)
    x = {m: torch.randn(200, w, requires_grad=True) for m, w in dims.items()}
    return enc, x


def _full_masks(layer, keep, n, m, pos):
    """The last layer's masks of ``draw_keeps(..., pos=pos)`` embedded in full-size masks."""
    if keep is None:
        return None
    d = layer.out.out_features
    full = [torch.ones(n, layer.heads, m, m, dtype=torch.bool), torch.ones(n, m, d, dtype=torch.bool)]
    full[0][:, :, pos] = keep[0][:, :, 0]
    full[1][:, pos] = keep[1]
    if layer.ffn is not None:
        full.append(torch.ones(n, m, d, dtype=torch.bool))
        full[2][:, pos] = keep[2]
    return tuple(full)


@pytest.mark.parametrize("modalities,layers,ffn", [
    (["structure"], 1, False), (["structure", "image", "text"], 1, False), (["structure", "image", "text"], 2, True)])
@pytest.mark.parametrize("compiled", [False, True])
def test_encoder_vectors_equal_forward_with_the_same_dropout(monkeypatch, modalities, layers, ffn, compiled):
    """The readout-only path (the last layer for the structure token alone, through folded
    attention weights) equals the full layer stack given the same dropout masks, with gradients."""
    monkeypatch.setattr(compilation, "COMPILE_MIN_ENCODER_WORK", 0 if compiled else 10**12)
    enc, x = _encoders(modalities, layers, ffn)
    w = torch.randn(200, 32)
    n, m, pos = 200, len(modalities), enc.modalities.index("structure")
    for training in (True, False):
        enc.train(training)
        torch.manual_seed(5)
        keeps = [layer.draw_keeps(n, m, x["structure"], pos if i == layers - 1 else None)
                 for i, layer in enumerate(enc.layers)]
        after_ref = torch.rand(3)
        h = torch.tanh(enc._tokens(x, None))
        for layer, keep in zip(enc.layers[:-1], keeps[:-1]):
            h, _ = layer.forward_with(h, keep)
        ref = enc.layers[-1].forward_with(h, _full_masks(enc.layers[-1], keeps[-1], n, m, pos))[0][:, pos] * 0.5
        if not training:
            assert torch.allclose(enc(x).vector * 0.5, ref, atol=1e-6)
        torch.manual_seed(5)
        got = enc.vectors(x, scale=0.5)
        after_got = torch.rand(3)
        assert torch.equal(after_ref, after_got)  # the random stream is consumed alike
        assert torch.allclose(got, ref, atol=1e-5)
        params = list(enc.parameters()) + list(x.values())
        g_ref = torch.autograd.grad((ref * w).sum(), params, allow_unused=True)
        g_got = torch.autograd.grad((got * w).sum(), params, allow_unused=True)
        for a, b in zip(g_ref, g_got):
            if a is None or b is None:
                assert (a is None or not a.any()) and (b is None or not b.any())
            else:
                assert torch.allclose(b, a, rtol=1e-4, atol=1e-5 * a.abs().max().item())


def test_one_token_attention_folds_the_weights_exactly():
    """The folded single-token attention equals q/k/v attention in float64, biases included."""
    torch.manual_seed(0)
    layer = FusionLayer(32, heads=4, dropout=0.0).double().eval()
    for p in layer.parameters():
        nn.init.normal_(p)
    x = torch.randn(50, 3, 32, dtype=torch.float64)
    full, _ = layer(x)
    for pos in range(3):
        assert torch.allclose(layer.forward_with(x, None, pos), full[:, pos], atol=1e-9)


def test_single_token_layer_matches_full_attention():
    """With one token the layer skips q and k: same outputs as the general formula."""
    enc, x = _encoders(["structure"])
    layer = enc.layers[0].eval()
    h = torch.randn(50, 1, 32)
    out, attn = layer(h)
    d, nh = 32, layer.heads
    q, k, v = layer.qkv(h).view(50, 1, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // nh), dim=-1)
    ref = layer.norm1(h + layer.out((a @ v).transpose(1, 2).reshape(50, 1, d)))
    assert torch.equal(attn, a) and torch.allclose(out, ref, atol=1e-6)


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


@pytest.mark.parametrize("readout,compiled", [("graph", False), ("mean", False), ("graph", True)])
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


def test_duplicated_known_triples_are_filtered_once():
    torch.manual_seed(0)
    n_ent, n_rel = 30, 2
    vecs = torch.randn(n_ent, 8)
    scorer = RotatE(n_rel, 8)
    known = torch.stack([torch.randint(0, n_ent, (80,)), torch.randint(0, n_rel, (80,)),
                         torch.randint(0, n_ent, (80,))], 1)
    test = known[:10]
    with torch.no_grad():
        once = rank_triples(vecs, scorer, test, FilterIndex(known, n_ent, n_rel))
        twice = rank_triples(vecs, scorer, test, FilterIndex(torch.cat([known, known, test]), n_ent, n_rel))
    assert torch.equal(once, twice)


@pytest.mark.parametrize("n_ent", [100, 12_842, 200_000, 5_000_000])
def test_ranking_chunks_fit_the_memory_budget(n_ent):
    for compiled in (True, False):
        c = hardware.chunk_size(n_ent, 256, compiled, budget_bytes=256 << 20)
        assert c >= 1
        per_pair = 12 if compiled else 4 * 3 * 128
        assert c == 1 or c * n_ent * per_pair <= 256 << 20


@pytest.mark.parametrize("l2, want", [(2 << 20, 1024), (512 << 10, 256), (0, 64)])
def test_compiled_query_chunk_fits_half_the_l2_cache(l2, want):
    # 256-wide float32 queries are 1 KiB each; the chunk never shrinks below 64 queries
    assert hardware.chunk_size(12_842, 256, True, cache_bytes=l2) == want
    assert hardware.l2_cache_bytes() > 0


@pytest.mark.parametrize("free, want", [(None, 256 << 20), (64 << 30, 256 << 20), (400 << 20, 100 << 20),
                                        (1 << 20, 8 << 20)])
def test_ranking_budget_follows_the_memory_available(monkeypatch, free, want):
    monkeypatch.setattr(hardware, "available_memory_bytes", lambda device=None: free)
    assert hardware.ranking_budget("cpu") == want
    # the chunk follows the budget: 12 bytes per (query, entity) pair at 200k entities
    c = hardware.chunk_size(200_000, 256, True, cache_bytes=64 << 20)
    assert c == max(1, min(4096, want // (200_000 * 12)))


def test_available_memory_is_read_on_this_machine():
    free = hardware.available_memory_bytes("cpu")
    assert free is None or free > 0


def test_ranks_do_not_depend_on_the_chunk(monkeypatch):
    n_ent, n_rel = 300, 5
    g = torch.Generator().manual_seed(0)
    vecs = torch.randn(n_ent, 16, generator=g)
    scorer = RotatE(n_rel, 16)
    known = torch.stack([torch.randint(0, n_ent, (600,), generator=g), torch.randint(0, n_rel, (600,), generator=g),
                         torch.randint(0, n_ent, (600,), generator=g)], 1)
    filters, test = FilterIndex(known, n_ent, n_rel), known[:120]
    with torch.no_grad():
        whole = rank_triples(vecs, scorer, test, filters)
        monkeypatch.setattr(hardware, "available_memory_bytes", lambda device=None: 1 << 20)  # a tight machine
        assert torch.equal(rank_triples(vecs, scorer, test, filters), whole)
        assert torch.equal(rank_triples(vecs, scorer, test, filters, chunk=7), whole)


def test_single_threaded_restores_the_thread_count():
    n = torch.get_num_threads()
    with hardware.single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == n


@pytest.mark.parametrize("filtered", [True, False])
def test_sample_candidates_are_the_negatives_of_sample(filtered):
    from snagkg.tasks.completion.sampler import BernoulliNegativeSampler
    g = torch.Generator().manual_seed(0)
    n = 15
    train = torch.stack([torch.randint(0, n, (300,), generator=g), torch.randint(0, 3, (300,), generator=g),
                         torch.randint(0, n, (300,), generator=g)], 1)
    s = BernoulliNegativeSampler(train, n, 3, num_negatives=16, filtered=filtered)
    batch = train[:64]
    neg, mask = s.sample(batch, torch.Generator().manual_seed(5))
    cand, head_side, mask2 = s.sample_candidates(batch, torch.Generator().manual_seed(5))
    assert torch.equal(head_side, neg[..., 0] != batch[:, None, 0])
    assert torch.equal(cand, torch.where(head_side, neg[..., 0], neg[..., 2]))
    assert torch.equal(mask2, mask)


@pytest.mark.parametrize("chunk", [1, 3, None])
@pytest.mark.parametrize("ties", ["realistic", "optimistic"])
def test_shared_queries_are_ranked_like_separate_ones(chunk, ties):
    """Test triples sharing (anchor, relation) are scored once; every triple keeps its own rank."""
    torch.manual_seed(1)
    n_ent, n_rel = 25, 2
    vecs = torch.randn(n_ent, 8)
    vecs[7] = vecs[3]  # exact ties
    scorer = RotatE(n_rel, 8)
    test = torch.tensor([[0, 0, 1], [0, 0, 2], [0, 0, 3], [5, 1, 3], [0, 1, 3], [6, 0, 3], [6, 0, 7], [1, 1, 0]])
    known = torch.cat([test, torch.tensor([[0, 0, 7], [5, 1, 6], [9, 0, 3]])])
    known_set = {tuple(x) for x in known.tolist()}
    expected = []
    with torch.no_grad():
        for predict_tail in (True, False):
            for h, r, t in test.tolist():
                anchor, true = (h, t) if predict_tail else (t, h)
                q = scorer.query(vecs[anchor:anchor + 1], torch.tensor([r]), predict_tail)
                d = scorer.distance(q, vecs)
                keep = [e for e in range(n_ent) if e == true or
                        ((h, r, e) if predict_tail else (e, r, t)) not in known_set]
                better = sum(1 for e in keep if e != true and d[e] < d[true])
                equal = sum(1 for e in keep if e != true and d[e] == d[true])
                expected.append(1 + better if ties == "optimistic" else 1 + better + equal / 2)
        got = rank_triples(vecs, scorer, test, FilterIndex(known, n_ent, n_rel), ties=ties, chunk=chunk)
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64))


def test_noised_frozen_tables_are_built_once_per_noise_draw(tiny_dataset):
    """The frozen feature tables are blended once per draw and reused; a new draw, eval
    mode or another dtype gives the matching table, never a stale one."""
    cfg = snagkg.resolve_config(overrides={"dataset": str(tiny_dataset), "encoder.hidden": 16,
                                           "noise.ratio": 0.5, "noise.mask": 0.7})
    task = CompletionTask(read_openke(tiny_dataset), cfg)
    model = task.model.entities
    frozen = [m for m in model.modalities if m != "structure"]
    assert frozen
    model.train()
    model.refresh_noise(torch.Generator().manual_seed(1))
    first = model.inputs()
    again = model.inputs()
    for m in frozen:
        assert again[m] is first[m]  # reused, not re-blended
        noise = model.noise[m]
        expect = noise(model.table(m), mean=getattr(model, f"mean_{m}"), std=getattr(model, f"std_{m}"))
        assert torch.equal(first[m], expect)
        assert not torch.equal(first[m], model.table(m))  # the noise is on
        assert torch.equal(model.inputs(torch.bfloat16)[m], expect.to(torch.bfloat16))
    model.refresh_noise(torch.Generator().manual_seed(2))
    second = model.inputs()
    for m in frozen:
        assert not torch.equal(second[m], first[m])  # a new draw, a new table
    model.eval()
    for m, x in model.inputs().items():
        assert torch.equal(x, model.table(m))  # no noise in eval mode
    cast = model.inputs(torch.bfloat16)
    for m in frozen:
        assert torch.equal(cast[m], model.table(m).to(torch.bfloat16))
        assert model.inputs(torch.bfloat16)[m] is cast[m]  # the cast is made once, not per step
    model.train()
    assert all(torch.equal(model.inputs()[m], second[m]) for m in frozen)


class _FlakyCompiled:
    """Stands in for torch.compile's output: fails for inputs of one row, counts its calls."""

    def __init__(self, fail_always=False):
        self.calls, self.fail_always = 0, fail_always

    def __call__(self, x):
        self.calls += 1
        if self.fail_always or x.shape[0] == 1:
            raise RuntimeError("codegen failed\nsecond line")
        return x * 2 + 1  # not fn's result: shows which path answered


def test_compiled_failure_for_one_signature_keeps_the_others_compiled(caplog):
    cf = compilation.CompiledFunction(lambda x: x * 2, "flaky")
    cf.compiled = fake = _FlakyCompiled()
    assert torch.equal(cf(torch.ones(4)), torch.full((4,), 3.0))  # compiled
    with caplog.at_level("WARNING", logger="snagkg"):
        assert torch.equal(cf(torch.ones(1)), torch.full((1,), 2.0))  # failed: the eager result
    assert "failed for inputs" in caplog.text and "codegen failed" in caplog.text and "second line" not in caplog.text
    calls = fake.calls
    assert torch.equal(cf(torch.ones(1)), torch.full((1,), 2.0)) and fake.calls == calls  # not retried
    assert torch.equal(cf(torch.ones(7)), torch.full((7,), 3.0)) and fake.calls == calls + 1  # still compiled
    assert cf.available() and not cf.failed


def test_compiled_failure_before_any_success_switches_compilation_off():
    cf = compilation.CompiledFunction(lambda x: x * 2, "broken")
    cf.compiled = fake = _FlakyCompiled(fail_always=True)
    assert torch.equal(cf(torch.ones(3)), torch.full((3,), 2.0))
    assert cf.failed and not cf.available()
    assert torch.equal(cf(torch.ones(5)), torch.full((5,), 2.0)) and fake.calls == 1


def test_compiled_function_raises_the_inputs_own_errors():
    """An error the eager function raises too (bad inputs) is the caller's, not a compiler failure."""
    cf = compilation.CompiledFunction(lambda x: x.view(3, 3), "shape")
    cf.compiled = lambda x: x.view(3, 3)
    with pytest.raises(RuntimeError):
        cf(torch.ones(4))
    assert not cf.failed and not cf.failed_signatures
