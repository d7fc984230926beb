"""What this machine offers: the CPU's features and caches, the memory free for new work, and the
ranking's memory budget and chunk sizes derived from them; thread control for serial-by-nature ops
and the fused optimizer kernel where this torch build has it."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch


def cpu_capability() -> Optional[dict]:
    """torch's report of this CPU's features and caches (``None`` where the build has no probe)."""
    try:
        return dict(torch._C._cpu._get_cpu_capability())
    except Exception:  # pragma: no cover - a torch build without the probe
        return None


def l2_cache_bytes(default: int = 2 << 20) -> int:
    """The CPU's per-core L2 cache size as torch reports it (``default`` when it cannot tell)."""
    size = int((cpu_capability() or {}).get("l2_cache_size") or 0)
    return size if size > 0 else default


def available_memory_bytes(device=None) -> Optional[int]:
    """Memory free for new work on ``device``: CUDA's free memory, or the OS's ``MemAvailable``
    (Linux) for the CPU; ``None`` when it cannot tell."""
    device = torch.device(device or "cpu")
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, RuntimeError, ValueError, IndexError):
        pass
    return None


#: the ranking's intermediates: at most this much, and at most a quarter of the memory available
RANKING_BUDGET_CPU = 256 << 20
RANKING_BUDGET_CUDA = 1 << 30


def ranking_budget(device=None) -> int:
    """Bytes a ranking chunk may use on ``device``: a fixed cap, lowered to a quarter of what is free."""
    device = torch.device(device or "cpu")
    cap = RANKING_BUDGET_CUDA if device.type == "cuda" else RANKING_BUDGET_CPU
    free = available_memory_bytes(device)
    return cap if free is None else max(8 << 20, min(cap, free // 4))


def chunk_size(num_entities: int, width: int, compiled: bool, budget_bytes: Optional[int] = None,
               cache_bytes: Optional[int] = None, device=None) -> int:
    """Queries per chunk so that the chunk's intermediates stay within ``budget_bytes``
    (default: :func:`ranking_budget` of ``device``, from the memory available now).

    Compiled: the ``[B, N]`` distances and their comparison masks (about 12
    bytes per pair), and on the CPU a query chunk of at most half the per-core L2
    cache (``cache_bytes``, default: this CPU's), since the kernel's inner loop reads
    the whole chunk once per entity: 1 MiB on a 2 MiB-L2 Xeon, 256 KiB on a
    512 KiB-L2 EPYC, where 1 MiB chunks made DB15K's whole test split 1.24x slower.
    Eager: the ``[B, N, k]`` intermediates.
    """
    on_cuda = device is not None and torch.device(device).type == "cuda"
    if budget_bytes is None:
        budget_bytes = ranking_budget(device)
    if compiled:
        per_query = num_entities * 12
        half_l2 = (cache_bytes if cache_bytes is not None else l2_cache_bytes()) // 2
        cache_cap = 4096 if on_cuda else max(64, half_l2 // max(1, 4 * width))
        return int(max(1, min(cache_cap, 4096, budget_bytes // max(1, per_query))))
    per_query = num_entities * 4 * 3 * max(1, width // 2)
    return int(max(1, min(4096, budget_bytes // max(1, per_query))))


@contextlib.contextmanager
def single_threaded():
    """Run the enclosed ops on one intra-op thread (restored afterwards).

    For serial-by-nature ops such as a deterministic ``index_add_`` scatter, whose
    multi-threaded CPU path spends more time synchronising threads than adding
    (10x slower on a busy 2-core machine).
    """
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def fused_optimizer(cls, params, **kwargs) -> torch.optim.Optimizer:
    """``cls(params, fused=True, **kwargs)`` where this torch build has the fused kernel
    (one pass over each parameter, 10-20x faster than the default multi-tensor Adam on CPU
    for an entity table), else ``cls(params, **kwargs)``."""
    params = list(params)
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - older torch or an unsupported device
        return cls(params, **kwargs)
