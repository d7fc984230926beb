import pytest
import torch

from snagkg.core.encoder import READOUTS, ModalityEncoder


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
