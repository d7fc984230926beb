"""Run precision: the ``precision`` names a run may ask for, their autocast context, and whether a
device multiplies bfloat16 matrices in hardware (a warning where it would be emulated)."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from snagkg.runtime.hardware import cpu_capability

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def autocast(device: torch.device, precision: str = "fp32"):
    """The context for a run's ``precision``: nothing for fp32, else ``torch.autocast`` to that dtype.

    Autocast runs matrix products in the lower precision and keeps reductions, norms and
    softmax in float32; callers cast what leaves the block back to float32.
    """
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def has_native_bf16(device) -> Optional[bool]:
    """Whether ``device`` multiplies bfloat16 matrices in hardware (``None``: cannot tell).

    CPUs: AMX-BF16 or AVX512-BF16 units, as torch reports them. Without them (e.g. AVX2-only
    CPUs) bfloat16 products are emulated: on an AVX2 AMD EPYC, a 12,842 x 256 x 512 bf16
    product ran at about 1 GFLOP/s, against 42 (1 thread) and 97 (2 threads) in float32
    (BENCHMARKS.md).
    """
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported())
        except Exception:  # pragma: no cover - a CUDA build that cannot tell
            return None
    if device.type == "cpu":
        cap = cpu_capability()
        return None if cap is None else bool(cap.get("amx_bf16") or cap.get("avx512_bf16"))
    return None


def precision_warning(precision: str, device) -> Optional[str]:
    """A one-line warning when ``precision`` will be slow on ``device``, else ``None``."""
    if precision == "bf16" and has_native_bf16(device) is False:
        return ("warning: precision bf16 on a device without bfloat16 matrix units (this CPU has no AMX-BF16 "
                "or AVX512-BF16): the products are emulated and much slower than fp32; use --precision fp32")
    return None
