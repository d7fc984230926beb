"""Gauss Modality Noise Masking (GMNM), SPEC section 2: a standalone plug-in.

For every row ``i`` of a modality table ``x`` (entities x width), with
probability ``ratio`` (rho)::

    x_i <- (1 - mask) * x_i + mask * (sigma * z + mu),    z ~ N(0, I)

and ``x_i`` is kept otherwise. ``mu`` and ``sigma`` are the per-dimension mean
and std of the table's real rows. ``ratio = 0`` is exactly the identity.

Two ways to use it, around any feature table or embedding:

* :func:`gauss_modality_noise` - one functional call with a fresh draw;
* :class:`ModalityNoise` - an ``nn.Module`` that keeps one draw (which rows,
  which ``z``) until :meth:`ModalityNoise.refresh` is called, so the draw can
  be refreshed once per epoch (the SNAG default) or every step. It acts only
  in training mode; in ``eval()`` mode it returns its input unchanged.

Example::

    noise = ModalityNoise(ratio=0.2, mask=0.7)
    noise.train()
    noise.refresh(num_rows=image.shape[0], width=image.shape[1])
    noisy = noise(image)                  # mu, sigma from image's rows
    noisy = noise(emb.weight, mean=mu, std=sigma)   # or given statistics
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn


def _stats(x: torch.Tensor, real: Optional[torch.Tensor]) -> "tuple[torch.Tensor, torch.Tensor]":
    rows = x.detach() if real is None else x.detach()[real]
    mean = rows.mean(dim=0)
    # two passes over the rows: several times faster than aten::std's column reduction on CPU
    return mean, (rows - mean).square().mean(dim=0).sqrt()


def _check(ratio: float, mask: float) -> None:
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"noise ratio must be in [0, 1], got {ratio}")
    if not 0.0 <= mask <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {mask}")


class _Blend(torch.autograd.Function):
    """``x`` with ``rows`` replaced by ``noised``; the gradient is ``grad`` with those rows times
    ``1 - mask`` (one copy of the table each way: the generic ``index_copy`` / ``index_select``
    backward makes three full-size passes to get the same)."""

    @staticmethod
    def forward(ctx, x, rows, noised, mask):
        ctx.save_for_backward(rows)
        ctx.keep = 1.0 - mask
        return x.index_copy(0, rows, noised)

    @staticmethod
    def backward(ctx, grad):
        (rows,) = ctx.saved_tensors
        g = grad.clone()
        g.index_copy_(0, rows, grad.index_select(0, rows) * ctx.keep)
        return g, None, None, None


def blend(x: torch.Tensor, rows: torch.Tensor, z: torch.Tensor, mask: float,
          mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Replace ``x[rows]`` by ``(1 - mask) x[rows] + mask (std * z + mean)``.

    Differentiable in ``x``; ``mean`` and ``std`` are constants (GMNM takes them from the
    detached table or from stored statistics).
    """
    if rows.numel() == 0 or mask == 0.0:
        return x
    with torch.no_grad():
        noised = ((1.0 - mask) * x.index_select(0, rows) + mask * (z * std + mean)).to(x.dtype)
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x.index_copy(0, rows, noised)
    return _Blend.apply(x, rows, noised, mask)


def gauss_modality_noise(
    x: torch.Tensor,
    ratio: float = 0.2,
    mask: float = 0.7,
    mean: Optional[torch.Tensor] = None,
    std: Optional[torch.Tensor] = None,
    real: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Return ``x`` with Gaussian modality noise on a random ``ratio`` of its rows.

    ``mean``/``std`` default to the statistics of ``x``'s rows (only the rows
    where the boolean ``real`` is true, when given). Gradients flow to ``x``.
    """
    _check(ratio, mask)
    if ratio == 0.0 or mask == 0.0:
        return x
    if mean is None or std is None:
        m, s = _stats(x, real)
        mean = m if mean is None else mean
        std = s if std is None else std
    n, width = x.shape[0], x.shape[-1]
    picked = torch.rand(n, generator=generator, device="cpu") < ratio
    rows = picked.nonzero().flatten().to(x.device)
    z = torch.randn(int(rows.numel()), width, generator=generator, device="cpu").to(x.device, x.dtype)
    return blend(x, rows, z, mask, mean.to(x.device), std.to(x.device))


class ModalityNoise(nn.Module):
    """GMNM with a draw that persists until :meth:`refresh` (per-epoch noise).

    Only the selected rows' ``z`` is stored (``ratio * rows * width`` floats).
    """

    def __init__(self, ratio: float = 0.2, mask: float = 0.7):
        super().__init__()
        _check(ratio, mask)
        self.ratio = float(ratio)
        self.mask = float(mask)
        self.register_buffer("rows", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("z", torch.zeros(0, 0), persistent=False)
        self._slot: Optional[torch.Tensor] = None  # row -> position in ``rows`` (-1: not noised), per draw

    @property
    def active(self) -> bool:
        """Whether the noise changes its input (training mode, ratio and mask above 0)."""
        return self.training and self.ratio > 0.0 and self.mask > 0.0

    def refresh(self, num_rows: int, width: int, generator: Optional[torch.Generator] = None) -> None:
        """Draw which rows are noised and their ``z`` (on CPU, for reproducibility)."""
        if self.ratio == 0.0:
            self.rows = torch.zeros(0, dtype=torch.long, device=self.rows.device)
            self.z = torch.zeros(0, width, device=self.rows.device)
            self._slot = None
            return
        picked = torch.rand(num_rows, generator=generator) < self.ratio
        rows = picked.nonzero().flatten()
        z = torch.randn(int(rows.numel()), width, generator=generator)
        self.rows = rows.to(self.rows.device)
        self.z = z.to(self.rows.device)
        self._slot = None

    def forward(self, x: torch.Tensor, mean: Optional[torch.Tensor] = None,
                std: Optional[torch.Tensor] = None, real: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x`` with the stored draw blended in (``x`` itself when inactive)."""
        if not self.active:
            return x
        mean, std = self._statistics(x, mean, std, real)
        return blend(x, self.rows, self.z, self.mask, mean, std)

    def _statistics(self, x: torch.Tensor, mean: Optional[torch.Tensor], std: Optional[torch.Tensor],
                    real: Optional[torch.Tensor] = None) -> "tuple[torch.Tensor, torch.Tensor]":
        """Check that the draw fits ``x``; ``mean``/``std``, each defaulting to ``x``'s (real) rows' own."""
        if self.z.shape[-1] != x.shape[-1] or (self.rows.numel() and int(self.rows.max()) >= x.shape[0]):
            raise RuntimeError("ModalityNoise: call refresh(num_rows, width) for this table first")
        if mean is None or std is None:
            m, s = _stats(x, real)
            mean = m if mean is None else mean
            std = s if std is None else std
        return mean, std

    def gather(self, x: torch.Tensor, indices: torch.Tensor, mean: Optional[torch.Tensor] = None,
               std: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``forward(x)[indices]`` without blending the whole table: the rows ``indices`` of ``x``
        with the stored draw applied to those of them that the draw picked (the same values and
        the same gradient as the whole-table path, at the cost of the gathered rows).

        ``mean``/``std`` default to the statistics of all of ``x``'s rows, as :meth:`forward`.
        """
        rows = x.index_select(0, indices)
        if not self.active:
            return rows
        mean, std = self._statistics(x, mean, std)  # checks that the draw fits x
        return self._blend_rows(rows, indices, x.shape[0], mean, std)

    def gather_rows(self, rows: torch.Tensor, indices: torch.Tensor, num_rows: int, mean: torch.Tensor,
                    std: torch.Tensor) -> torch.Tensor:
        """The rows ``rows = x[indices]`` of a ``num_rows``-row table ``x`` (already gathered, e.g. from a
        memory map) with the stored draw applied to those the draw picked: :meth:`gather` without
        ``x``, so the statistics ``mean``/``std`` must be given."""
        if not self.active:
            return rows
        if self.z.shape[-1] != rows.shape[-1] or (self.rows.numel() and int(self.rows.max()) >= num_rows):
            raise RuntimeError("ModalityNoise: call refresh(num_rows, width) for this table first")
        return self._blend_rows(rows, indices, num_rows, mean, std)

    def _blend_rows(self, rows: torch.Tensor, indices: torch.Tensor, num_rows: int, mean: torch.Tensor,
                    std: torch.Tensor) -> torch.Tensor:
        dev = rows.device
        if self._slot is None or self._slot.numel() != num_rows or self._slot.device != dev:
            slot = torch.full((num_rows,), -1, dtype=torch.long, device=dev)
            slot[self.rows] = torch.arange(self.rows.numel(), device=dev)
            self._slot = slot
        pos = self._slot.index_select(0, indices)
        picked = (pos >= 0).nonzero().flatten()
        return blend(rows, picked, self.z.index_select(0, pos[picked]), self.mask, mean, std)

    def extra_repr(self) -> str:
        """``ratio=..., mask=...`` for the module's repr."""
        return f"ratio={self.ratio}, mask={self.mask}"


class NoisedTables:
    """A model's frozen feature tables with their :class:`ModalityNoise` applied, built once
    per noise draw (the draw changes only on ``refresh``) and reused by every step until
    :meth:`clear` (call it after each refresh and after moving the model to another device).

    With the noise inactive (evaluation, or ``ratio = 0``) the table itself is returned, or its
    cast to ``dtype`` when given, also built once (not once per step).
    """

    def __init__(self) -> None:
        self._tables: Dict[Tuple[str, Optional[torch.dtype], bool], torch.Tensor] = {}

    def clear(self) -> None:
        """Forget every cached table (after a new draw or a device move)."""
        self._tables.clear()

    def get(self, name: str, noise: ModalityNoise, table: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
            dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """The table ``name`` with ``noise`` applied (and cast to ``dtype``), built once per draw."""
        active = noise.active
        if not active and dtype is None:
            return table
        key = (name, dtype, active)
        if key not in self._tables:
            with torch.no_grad():
                y = noise(table, mean=mean, std=std) if active else table
                self._tables[key] = y if dtype is None else y.to(dtype)
        return self._tables[key]


def modality_noises(modalities, ratio: float, mask: float, structure_scale: float = 1.0) -> nn.ModuleDict:
    """One :class:`ModalityNoise` per modality name; ``structure`` gets ``ratio`` and ``mask``
    times ``structure_scale`` (SPEC section 2: the trainable structure embedding)."""
    return nn.ModuleDict({
        m: ModalityNoise(ratio * (structure_scale if m == "structure" else 1.0),
                         mask * (structure_scale if m == "structure" else 1.0))
        for m in modalities})
