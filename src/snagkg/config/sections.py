"""The config sections every task shares but the encoder's, and their base.

:class:`Section` is the base of every config section (a frozen dataclass, one YAML mapping);
:class:`ConfigValueError` is what a section's :meth:`Section.check` raises. The ``encoder``
section and :class:`~snagkg.config.schema.RunConfig` are in :mod:`snagkg.config.schema`,
which re-exports these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ConfigValueError(ValueError):
    """An out-of-range config value; ``keys`` are the dotted keys involved (first: the main one)."""

    def __init__(self, message: str, *keys: str):
        super().__init__(message)
        self.keys = keys


class Section:
    """Base of the config sections: frozen dataclasses of options, one YAML mapping each."""

    def check(self) -> None:
        """Raise :class:`ConfigValueError` for an out-of-range option (the default: none)."""


def positive(obj: Any, section: str, *names: str) -> None:
    """Raise :class:`ConfigValueError` unless every option ``names`` of ``obj`` is positive."""
    for name in names:
        v = getattr(obj, name)
        if v <= 0:
            raise ConfigValueError(f"{section}.{name} must be positive, got {v}", f"{section}.{name}")


@dataclass(frozen=True)
class NoiseConfig(Section):
    """Gaussian modality noise masking (GMNM, SPEC section 2; :mod:`snagkg.noise`)."""
    ratio: float = 0.2              # rho: probability that a row is noised
    mask: float = 0.7               # eps: how much of the row is replaced
    per_step: bool = False          # refresh the draw every step instead of every epoch
    structure_scale: float = 1.0    # structure embedding gets (rho, eps) * this (alignment: 0.5)

    def check(self) -> None:
        """Every ratio in [0, 1]."""
        for name in ("ratio", "mask", "structure_scale"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigValueError(f"noise.{name} must be in [0, 1], got {v}", f"noise.{name}")


@dataclass(frozen=True)
class TrainConfig(Section):
    """The training loop (:mod:`snagkg.training`), shared by every task."""
    epochs: int = 1000
    batch_size: int = 1024
    lr: float = 1e-4
    weight_decay: float = 0.0
    negatives: int = 32
    eval_every: int = 10            # evaluate on VALID every N epochs
    patience: int = 10              # stop after N evaluations without a better valid MRR
    eval_limit: int = 0             # rank only the first N valid triples during training (0: all)
    eval_candidates: int = 0        # completion: rank against N sampled candidates, not all entities (0: all)
    test_limit: int = 0             # rank only the first N queries of the final test metrics (0: all)
    grad_clip: float = 0.0          # 0: off
    checkpoint_every: int = 1       # save a resumable checkpoint every N epochs

    def check(self) -> None:
        """Counts and the learning rate positive; weight decay, clipping, limits and candidates not negative."""
        positive(self, "train", "epochs", "batch_size", "negatives", "eval_every", "patience", "checkpoint_every")
        if not self.lr > 0:
            raise ConfigValueError(f"train.lr must be positive, got {self.lr}", "train.lr")
        for name in ("weight_decay", "grad_clip", "eval_limit", "eval_candidates", "test_limit"):
            if getattr(self, name) < 0:
                raise ConfigValueError(f"train.{name} must not be negative, got {getattr(self, name)}",
                                       f"train.{name}")
