"""Compiled kernels: :class:`CompiledFunction` wraps a pure tensor function in
:func:`torch.compile`, compiled on first use, with the function itself as the fallback
and the reference.

The eager formulations of the hot loops (ranking distances, the training loss over sampled
negatives, the encoder's readout) materialise large intermediates and are bound by memory
traffic and by the number of separate operations; :func:`torch.compile` fuses each into one
loop that never writes them. A compiled kernel is used when compilation is available and the
work is big enough to repay the one-off compilation (cached on disk by inductor across runs);
the callers decide that with thresholds such as :data:`COMPILE_MIN_ENCODER_WORK`. Set
``SNAGKG_COMPILE=0`` to force the eager paths. Results are equal up to float rounding (the
compiled reductions sum in another order).
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Callable, Optional

import torch

log = logging.getLogger(__name__)

COMPILE_MIN_ENCODER_WORK = 1_000_000  # encoder: entities x modalities x hidden width


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


def use_compiled_encoder(rows: int, width: int) -> bool:
    """Whether fusing ``rows`` entities of total token ``width`` repays compiling the encoder."""
    return compile_enabled() and rows * width >= COMPILE_MIN_ENCODER_WORK
