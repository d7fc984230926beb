import math

import pytest
import torch
from torch import nn

from snagkg.core.encoder import READOUTS, FusionLayer, ModalityEncoder
from snagkg.runtime import compilation


def inputs(n=6):
    torch.manual_seed(0)
    return {"structure": torch.randn(n, 8), "image": torch.randn(n, 5), "text": torch.randn(n, 3)}


@pytest.mark.parametrize("name,width", [("graph", 16), ("mean", 16), ("attention_weighted", 48), ("global_weighted", 48)])
def test_readout_widths(name, width):
    enc = ModalityEncoder({"structure": 8, "image": 5, "text": 3}, hidden=16, readout=name).eval()
    out = enc(inputs())
    assert out.vector.shape == (6, width) and enc.width == width
    assert out.tokens.shape == out.outputs.shape == (6, 3, 16)


def test_weights_are_a_distribution_and_graph_readout_is_structure_token():
    enc = ModalityEncoder({"structure": 8, "image": 5, "text": 3}, hidden=16, readout="graph").eval()
    out = enc(inputs())
    assert torch.allclose(out.weights.sum(-1), torch.ones(6))
    assert torch.equal(out.vector, out.outputs[:, 0])


def test_weighted_readouts_use_normalized_tokens():
    enc = ModalityEncoder({"structure": 8, "image": 5}, hidden=4, readout="global_weighted").eval()
    out = enc({"structure": torch.randn(3, 8), "image": torch.randn(3, 5)})
    parts = out.vector.view(3, 2, 4)
    # softmax of a ones-initialised vector: equal weights 1/2 on unit vectors
    assert torch.allclose(parts.norm(dim=-1), torch.full((3, 2), 0.5), atol=1e-6)


def test_index_selects_rows():
    enc = ModalityEncoder({"structure": 8, "image": 5, "text": 3}, hidden=16).eval()
    x = inputs()
    full = enc(x).vector
    idx = torch.tensor([4, 1])
    assert torch.allclose(enc(x, idx).vector, full[idx], atol=1e-6)


def test_registry_reports_unknown_names():
    with pytest.raises(KeyError, match="did you mean 'mean'"):
        READOUTS.get("maen")


@pytest.mark.parametrize("layers", [2, 3])
def test_linear_projection_chain_is_folded_exactly(layers):
    """activation "none": one product with the folded weight, same value and gradients as the chain."""
    from snagkg.core.encoder import Projection
    torch.manual_seed(1)
    p = Projection(5, 4, layers, "none").double()
    assert p.folded
    x = torch.randn(7, 5, dtype=torch.float64)
    out = p(x)
    chain = x
    for lin in list(p)[::2]:
        chain = lin(chain)
    assert torch.allclose(out, chain, atol=1e-12)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, list(p.parameters()), g)
    want = torch.autograd.grad(chain, list(p.parameters()), g)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-12)


def test_gelu_projection_keeps_parameter_names_and_differs():
    from snagkg.core.encoder import Projection
    torch.manual_seed(2)
    lin, gelu = Projection(5, 4, 2, "none"), Projection(5, 4, 2, "gelu")
    assert list(lin.state_dict()) == list(gelu.state_dict())  # old checkpoints load into either
    gelu.load_state_dict(lin.state_dict())
    x = torch.randn(3, 5)
    assert not gelu.folded and not torch.allclose(lin(x), gelu(x))
    with pytest.raises(ValueError, match="activation"):
        Projection(5, 4, 2, "relu")


# -- the readout-only fast path (vectors) against the full layer stack ----------------------------
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
@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)])  # compiling: seconds
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
