import pytest
import torch

from snagkg.encoder import READOUTS, ModalityEncoder


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
