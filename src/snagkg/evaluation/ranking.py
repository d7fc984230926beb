"""The tie-aware ranking core that both tasks' evaluators call (SPEC sections 4 and 5).

An evaluator counts, for each query, the candidates scored strictly ``better`` than the true
answer and those scored ``equal`` to it (the true answer itself not counted), then:

* ``optimistic`` rank = ``1 + better``;
* ``realistic`` rank = the mean of the optimistic and pessimistic (``1 + better + equal``)
  ranks, ``1 + better + equal / 2`` (the default).

:func:`summarize` turns ranks into metrics; a ``prefix`` names the direction of the queries
(``tail_``/``head_`` for link prediction, ``lr_``/``rl_`` for alignment).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch

TIES = ("realistic", "optimistic")


def check_ties(ties: str) -> None:
    """Raise ``ValueError`` unless ``ties`` is ``realistic`` or ``optimistic``."""
    if ties not in TIES:
        raise ValueError(f"ties must be 'realistic' or 'optimistic', got {ties!r}")


def tie_aware_rank(better: torch.Tensor, equal: torch.Tensor, ties: str = "realistic") -> torch.Tensor:
    """Ranks (float64) from the counts of strictly better and of equally scored other candidates."""
    optimistic = 1.0 + better.double()
    return optimistic if ties == "optimistic" else optimistic + equal.double() / 2.0


def summarize(ranks: torch.Tensor, ks: Sequence[int] = (1, 3, 10), prefix: str = "") -> Dict[str, float]:
    """``mrr``, ``mr`` and ``hits@k`` for each ``k`` of ``ranks`` (zeros when there is no rank)."""
    if ranks.numel() == 0:
        return {f"{prefix}{name}": 0.0 for name in ("mrr", "mr", *(f"hits@{k}" for k in ks))}
    r = ranks.double()
    out = {f"{prefix}mrr": float((1.0 / r).mean()), f"{prefix}mr": float(r.mean())}
    for k in ks:
        out[f"{prefix}hits@{k}"] = float((r <= k).double().mean())
    return out
