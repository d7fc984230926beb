"""Gauss Modality Noise Masking: the rule itself, on its own (SPEC section 2)."""
import pytest
import torch

from snagkg.core.noise import ModalityNoise, blend, gauss_modality_noise


def table(n=4000, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.linspace(0.5, 3.0, d) + torch.arange(d).float()


def test_ratio_zero_is_identity():
    x = table()
    assert gauss_modality_noise(x, ratio=0.0, mask=0.7) is x
    m = ModalityNoise(ratio=0.0, mask=0.7).train()
    m.refresh(x.shape[0], x.shape[1])
    assert torch.equal(m(x), x)


def test_full_noise_rows_have_modality_mean_and_std():
    x = table()
    mu, sigma = x.mean(0), x.std(0, unbiased=False)
    y = gauss_modality_noise(x, ratio=1.0, mask=1.0, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(y, x)
    assert torch.allclose(y.mean(0), mu, atol=0.1 * sigma.max())
    assert torch.allclose(y.std(0), sigma, rtol=0.06)
    # and the rows are fresh draws, independent of the originals
    corr = torch.corrcoef(torch.stack([x[:, 0], y[:, 0]]))[0, 1]
    assert abs(float(corr)) < 0.1


def test_partial_rule_matches_formula_on_selected_rows():
    x = table(n=1000, d=4)
    m = ModalityNoise(ratio=0.3, mask=0.7).train()
    g = torch.Generator().manual_seed(5)
    m.refresh(1000, 4, g)
    mu, sigma = torch.full((4,), 2.0), torch.full((4,), 0.5)
    y = m(x, mean=mu, std=sigma)
    rows = m.rows
    assert 200 < rows.numel() < 400  # about rho of the rows
    expected = 0.3 * x[rows] + 0.7 * (m.z * sigma + mu)
    assert torch.allclose(y[rows], expected, atol=1e-6)
    untouched = torch.ones(1000, dtype=torch.bool)
    untouched[rows] = False
    assert torch.equal(y[untouched], x[untouched])


def test_draw_persists_until_refresh_and_eval_is_clean():
    x = table(n=500, d=3)
    m = ModalityNoise(ratio=0.5, mask=0.5).train()
    m.refresh(500, 3, torch.Generator().manual_seed(0))
    a, b = m(x), m(x)
    assert torch.equal(a, b)  # same draw within an epoch
    m.refresh(500, 3, torch.Generator().manual_seed(1))
    assert not torch.equal(m(x), a)
    m.eval()
    assert torch.equal(m(x), x)  # never noise at evaluation


def test_gradients_flow_to_kept_part():
    x = table(n=50, d=3).requires_grad_()
    m = ModalityNoise(ratio=1.0, mask=0.25).train()
    m.refresh(50, 3)
    m(x, mean=torch.zeros(3), std=torch.ones(3)).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 0.75))


def test_stats_from_real_rows_only():
    x = torch.cat([torch.zeros(100, 2), torch.full((100, 2), 100.0)])
    real = torch.cat([torch.ones(100, dtype=torch.bool), torch.zeros(100, dtype=torch.bool)])
    y = gauss_modality_noise(x, ratio=1.0, mask=1.0, real=real)
    assert torch.allclose(y, torch.zeros_like(y))  # mu = 0, sigma = 0 from the real rows


@pytest.mark.parametrize("ratio,mask", [(-0.1, 0.5), (1.5, 0.5), (0.2, 2.0)])
def test_rejects_out_of_range(ratio, mask):
    with pytest.raises(ValueError):
        ModalityNoise(ratio, mask)


def test_blend_with_no_rows_is_identity():
    x = table(n=10, d=2)
    assert blend(x, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), 0.7, x.mean(0), x.std(0)) is x


def test_blend_gradient_scales_the_noised_rows_only():
    """The blend's gradient: 1 on kept rows, (1 - mask) on noised rows (gradcheck in float64)."""
    torch.manual_seed(0)
    x = torch.randn(60, 5, dtype=torch.float64, requires_grad=True)
    rows = torch.tensor([0, 9, 31, 59])
    z = torch.randn(4, 5, dtype=torch.float64)
    mean, std = x.detach().mean(0), x.detach().std(0)
    assert torch.autograd.gradcheck(lambda t: blend(t, rows, z, 0.7, mean, std), (x,))
    (g,) = torch.autograd.grad(blend(x, rows, z, 0.7, mean, std).sum(), x)
    expect = torch.ones_like(g)
    expect[rows] = 0.3
    assert torch.allclose(g, expect)
    y = blend(x, rows, z, 0.7, mean, std)
    keep = torch.ones(60, dtype=torch.bool)
    keep[rows] = False
    assert torch.equal(y[keep], x[keep])
    assert torch.allclose(y[rows], 0.3 * x[rows] + 0.7 * (z * std + mean))
