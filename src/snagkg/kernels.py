"""Pairwise distance kernels for ranking: one query chunk against the whole entity table.

The eager formulation materialises a ``[B, N, k]`` intermediate and is bound
by memory traffic; :func:`torch.compile` fuses it into one loop that never
does. The compiled kernel is used when it is available and the table is big
enough for it to matter; the eager one is the fallback and the reference.
Set ``SNAGKG_COMPILE=0`` to force the eager path.
"""
from __future__ import annotations

import logging
import os
import warnings
from typing import Callable, Optional

import torch

log = logging.getLogger(__name__)

# Compile only when a table is large enough to repay the one-off compilation.
COMPILE_MIN_WORK = 2_000_000  # entities x complex width


def complex_l1_pairwise_eager(q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``out[b, n] = sum_k |q[b, k] - e[n, k]|`` for complex vectors stored ``[re..., im...]``."""
    k = q.shape[-1] // 2
    d_re = q[:, None, :k] - e[None, :, :k]
    d_im = q[:, None, k:] - e[None, :, k:]
    return torch.sqrt(d_re * d_re + d_im * d_im).sum(dim=-1)


_compiled: Optional[Callable] = None
_compile_failed = False


def _get_compiled() -> Optional[Callable]:
    global _compiled, _compile_failed
    if _compiled is None and not _compile_failed:
        try:
            _compiled = torch.compile(complex_l1_pairwise_eager, dynamic=True)
        except Exception as exc:  # pragma: no cover - platform without a compiler
            log.info("torch.compile unavailable (%s); using the eager kernel", exc)
            _compile_failed = True
    return _compiled


def use_compiled(num_entities: int, width: int) -> bool:
    if os.environ.get("SNAGKG_COMPILE", "1") == "0" or _compile_failed:
        return False
    return num_entities * (width // 2) >= COMPILE_MIN_WORK


def complex_l1_pairwise(q: torch.Tensor, e: torch.Tensor, compiled: bool) -> torch.Tensor:
    global _compile_failed
    if compiled:
        fn = _get_compiled()
        if fn is not None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return fn(q, e)
            except Exception as exc:  # pragma: no cover - compiler missing at run time
                log.warning("compiled kernel failed (%s); falling back to eager", exc)
                _compile_failed = True
    return complex_l1_pairwise_eager(q, e)


def chunk_size(num_entities: int, width: int, compiled: bool, budget_bytes: int = 256 << 20) -> int:
    """Queries per chunk so that the chunk's intermediates stay within ``budget_bytes``."""
    per_query = num_entities * 4 * (3 if compiled else 3 * max(1, width // 2))
    return int(max(1, min(4096, budget_bytes // max(1, per_query))))
