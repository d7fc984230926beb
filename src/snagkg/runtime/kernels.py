"""Fused kernels: ranking distances (one query chunk against the whole entity
table) and the training loss over sampled negatives.

The eager formulations materialise ``[B, N, k]`` (ranking) or ``[B, K, 2k]``
(training) intermediates and are bound by memory traffic and by the number of
separate operations; :func:`torch.compile` fuses each into one loop (training:
one forward and one backward loop) that never writes them. The compiled
kernels are used when compilation is available and the work is big enough to
repay the one-off compilation (cached on disk by inductor across runs); the
eager functions are the fallback and the reference. Set ``SNAGKG_COMPILE=0``
to force the eager path.

Results are equal up to float rounding (the compiled reductions sum in another
order); the compiled training backward has no scatter of its own (gradients
reach the entity table through the eager gather's deterministic backward), so
a CPU run stays bit-for-bit reproducible.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from typing import Callable, Optional

import torch

log = logging.getLogger(__name__)

# Compile only when the work is large enough to repay the one-off compilation.
COMPILE_MIN_WORK = 1_000_000        # ranking: entities x complex width (DB15K at hidden 256: 1.6M)
COMPILE_MIN_TRAIN_WORK = 2_000_000  # training: positives x negatives x complex width
COMPILE_MIN_TOTAL_WORK = 1_000_000_000  # ranking: queries x entities x complex width


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


def _cpu_capability() -> Optional[dict]:
    """torch's report of this CPU's features and caches (``None`` where the build has no probe)."""
    try:
        return dict(torch._C._cpu._get_cpu_capability())
    except Exception:  # pragma: no cover - a torch build without the probe
        return None


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
        cap = _cpu_capability()
        return None if cap is None else bool(cap.get("amx_bf16") or cap.get("avx512_bf16"))
    return None


def precision_warning(precision: str, device) -> Optional[str]:
    """A one-line warning when ``precision`` will be slow on ``device``, else ``None``."""
    if precision == "bf16" and has_native_bf16(device) is False:
        return ("warning: precision bf16 on a device without bfloat16 matrix units (this CPU has no AMX-BF16 "
                "or AVX512-BF16): the products are emulated and much slower than fp32; use --precision fp32")
    return None


def fused_optimizer(cls, params, **kwargs) -> torch.optim.Optimizer:
    """``cls(params, fused=True, **kwargs)`` where this torch build has the fused kernel
    (one pass over each parameter, 10-20x faster than the default multi-tensor Adam on CPU
    for an entity table), else ``cls(params, **kwargs)``."""
    params = list(params)
    try:
        return cls(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - older torch or an unsupported device
        return cls(params, **kwargs)


def compile_enabled() -> bool:
    """Whether compiled kernels may be used (``SNAGKG_COMPILE`` is not ``0``)."""
    return os.environ.get("SNAGKG_COMPILE", "1") != "0"


def _elapsed(t0: float, result) -> float:
    """Seconds since ``t0`` once ``result`` (a tensor or tuple of tensors) is computed (CUDA synchronised)."""
    first = result[0] if isinstance(result, (tuple, list)) and result else result
    if isinstance(first, torch.Tensor) and first.is_cuda:
        torch.cuda.synchronize(first.device)
    return time.perf_counter() - t0


def _signature(a):
    """What a compiled variant is specialised on: device, dtype, rank and which sizes are 0 or 1
    (dynamic shapes specialise on those; every other size shares one variant)."""
    if isinstance(a, torch.Tensor):
        return ("T", a.device.type, a.dtype, tuple(d if d < 2 else -1 for d in a.shape))
    if isinstance(a, dict):
        return tuple((k, _signature(v)) for k, v in a.items())
    if isinstance(a, (list, tuple)):
        return tuple(_signature(v) for v in a)
    if isinstance(a, torch.nn.Module):
        return ("M", type(a).__name__)
    return (type(a).__name__,)


#: seconds spent compiling (or loading compiled code from the on-disk cache) in this process
_COMPILE_SECONDS = [0.0]


def compile_seconds() -> float:
    """Seconds this process has spent so far compiling kernels (or loading them from the cache):
    the first call of each compiled variant, less the time the same call takes once compiled
    (for ``pure`` kernels, whose first call is repeated to measure that)."""
    return _COMPILE_SECONDS[0]


class CompiledFunction:
    """``fn`` compiled on first use, with ``fn`` itself as the fallback.

    The first call of each input signature pays the compilation (or, in a later process, the
    load of the compiled code from torch's on-disk cache); its cost is added to
    :func:`compile_seconds`. A ``pure`` function (no side effects) is called a second time on
    that first call, so that the compile cost excludes the run itself.

    A failure to compile or to run the compiled code is logged and the eager
    function gives that call's result. Before any compiled call has worked (no
    C++ compiler, an unsupported platform) a failure switches compilation off
    for the whole process; after one has, it is taken as a failure of that
    input signature's variant (device, dtype, rank and sizes 0 or 1, what the
    dynamic kernel specialises on), which alone runs eagerly from then on.
    With ``check_backward`` the first compiled call also runs a backward pass
    on detached copies of its inputs, so that a compiler failure in the
    (lazily compiled) backward surfaces here, not inside ``loss.backward()``.
    """

    def __init__(self, fn: Callable, name: str, check_backward: bool = False, pure: bool = False,
                 **compile_kwargs):
        self.fn, self.name, self.pure = fn, name, pure
        self.seen: set = set()
        self.check_backward = check_backward
        self.compile_kwargs = compile_kwargs
        self.compiled: Optional[Callable] = None
        self.failed = False
        self.worked = False
        self.failed_signatures: set = set()
        self.checked = False

    def _fail(self, exc: BaseException, signature) -> None:
        what = type(exc).__name__ + (": " + str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "")
        if self.worked:
            self.failed_signatures.add(signature)
            log.warning("%s: compiled kernel failed for inputs %s (%s); those run eagerly", self.name,
                        signature, what)
        else:
            self.failed = True
            log.warning("%s: compiled kernel unavailable (%s); using the eager one", self.name, what)

    def available(self) -> bool:
        """Whether the compiled kernel may still be tried in this process."""
        return compile_enabled() and not self.failed

    def __call__(self, *args, compiled: bool = True):
        if not (compiled and self.available()):
            return self.fn(*args)
        signature = _signature(args)
        if signature in self.failed_signatures:
            return self.fn(*args)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self.compiled is None:
                    self.compiled = torch.compile(self.fn, **self.compile_kwargs)
                first = signature not in self.seen
                t0 = time.perf_counter()
                if self.check_backward and not self.checked and torch.is_grad_enabled():
                    self._check(args)
                result = self.compiled(*args)
                if first:
                    self.seen.add(signature)
                    spent = _elapsed(t0, result)
                    if self.pure:
                        t1 = time.perf_counter()
                        result = self.compiled(*args)
                        spent -= _elapsed(t1, result)
                    _COMPILE_SECONDS[0] += max(0.0, spent)
        except Exception as exc:  # pragma: no cover - platform without a working compiler
            result = self.fn(*args)  # an error of the inputs themselves is raised here, as eagerly
            self._fail(exc, signature)
            return result
        self.worked = True
        return result

    def _check(self, args) -> None:
        """Run the compiled function and its backward once on detached copies of ``args``.

        Gradients are taken with ``torch.autograd.grad`` (w.r.t. the copies and the parameters
        of module arguments), so nothing accumulates into ``.grad`` and the callers' graphs are
        left alone.
        """
        targets = []

        def copy(a):
            if isinstance(a, torch.Tensor):
                c = a.detach().clone().requires_grad_(a.requires_grad and a.is_floating_point())
                if c.requires_grad:
                    targets.append(c)
                return c
            if isinstance(a, dict):
                return {key: copy(v) for key, v in a.items()}
            if isinstance(a, (list, tuple)):
                return type(a)(copy(v) for v in a)
            if isinstance(a, torch.nn.Module):
                targets.extend(p for p in a.parameters() if p.requires_grad)
            return a

        leaves = [copy(a) for a in args]
        with torch.enable_grad():
            out = self.compiled(*leaves)
            if targets and out.requires_grad:
                torch.autograd.grad(out.sum(), targets, allow_unused=True)
        self.checked = True


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


def complex_l1_pairwise_eager(q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``out[b, n] = sum_k |q[b, k] - e[n, k]|`` for complex vectors stored ``[re..., im...]``."""
    k = q.shape[-1] // 2
    d_re = q[:, None, :k] - e[None, :, :k]
    d_im = q[:, None, k:] - e[None, :, k:]
    return torch.sqrt(d_re * d_re + d_im * d_im).sum(dim=-1)


_pairwise = CompiledFunction(complex_l1_pairwise_eager, "complex_l1_pairwise", pure=True, dynamic=True)


def use_compiled(num_entities: int, width: int, queries: int = 0) -> bool:
    """Whether ranking ``num_entities`` rows of ``width`` (for ``queries`` queries, when known)
    repays compiling its kernel: a large table, or a large total of query x entity work (the eager
    distances cost about 50x the compiled kernel's: 4,000 queries against 15,000 entities of
    width 128 took 37 s eager, 0.7 s compiled, plus a one-off compilation of a few seconds)."""
    work = num_entities * (width // 2)
    return _pairwise.available() and (work >= COMPILE_MIN_WORK or queries * work >= COMPILE_MIN_TOTAL_WORK)


def pairwise_available() -> bool:
    """Whether the compiled ranking kernel can be used (compilation enabled and not failed)."""
    return _pairwise.available()


def complex_l1_pairwise(q: torch.Tensor, e: torch.Tensor, compiled: bool) -> torch.Tensor:
    """``[B, N]`` distances of every query to every entity.

    The compiled kernel is called as ``(e, q)`` and transposed back: its outer
    (parallel) loop then runs over entities and its inner loop over the query
    chunk, which stays in cache, instead of streaming the whole entity table
    from memory once per query (2x faster on CPU; bit-identical values, since
    ``|a - b| = |b - a|`` exactly).
    """
    if compiled and _pairwise.available():
        return _pairwise(e, q, compiled=True).t()
    return complex_l1_pairwise_eager(q, e)


def l2_cache_bytes(default: int = 2 << 20) -> int:
    """The CPU's per-core L2 cache size as torch reports it (``default`` when it cannot tell)."""
    size = int((_cpu_capability() or {}).get("l2_cache_size") or 0)
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


# -- training ------------------------------------------------------------------

COMPILE_MIN_ENCODER_WORK = 1_000_000  # encoder: entities x modalities x hidden width


def use_compiled_encoder(rows: int, width: int) -> bool:
    """Whether fusing ``rows`` entities of total token ``width`` repays compiling the encoder."""
    return compile_enabled() and rows * width >= COMPILE_MIN_ENCODER_WORK


def use_compiled_training(pairs: int, width: int) -> bool:
    """Whether a step of ``pairs`` scored pairs of ``width`` repays compiling the training kernels."""
    return compile_enabled() and pairs * (width // 2) >= COMPILE_MIN_TRAIN_WORK
