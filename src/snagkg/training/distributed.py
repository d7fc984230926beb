"""Data-parallel training on PyTorch's own distributed runtime, started with ``torchrun``.

    torchrun --standalone --nproc-per-node 2 -m snagkg train --task completion --dataset synthetic --output runs/ddp

``torchrun`` starts one process per rank and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` sees ``WORLD_SIZE > 1`` and joins the
process group (``gloo`` on CPU, ``nccl`` on CUDA with device ``cuda:LOCAL_RANK``). Every
collective waits at most ``SNAGKG_DIST_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT`); a
rank that dies or stops answering ends the others with a one-line :class:`SnagError` instead
of a hang. Without ``torchrun`` (or with one process) every helper is a no-op: ``rank() == 0``,
``world_size() == 1``.

How a step is shared (the completion task, :meth:`CompletionTask.step`): every rank draws the
same shuffled global batch and its negatives with the epoch's generator (so the generators stay
in step), keeps its rows ``rank::world`` (:func:`shard_rows`), scales its loss by
``local * world / global`` and back-propagates; :func:`sync_gradients` then averages the
gradients (dense ones in flat buckets, sparse COO ones by gathering their indices and values)
and the loss, so every rank takes the optimiser step of the single-process global batch.
Evaluation ranks a contiguous slice of the triples per rank (:func:`split_rows`) and
:func:`combine_metrics` gives every rank the same metrics.
"""
from __future__ import annotations

import atexit
import contextlib
import io
import os
import sys
from datetime import timedelta
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from snagkg.runtime.devices import device_name
from snagkg.runtime.errors import SnagError

ENV_TIMEOUT = "SNAGKG_DIST_TIMEOUT"
#: seconds a collective may wait for the other ranks (``SNAGKG_DIST_TIMEOUT`` overrides)
DEFAULT_TIMEOUT = 300.0
ONLY_COMPLETION = ("data-parallel training supports --task completion only: an alignment step runs the GAT "
                   "over both whole graphs (or the whole batch's sampled neighbourhoods) and its contrastive loss "
                   "needs the whole batch of links, so ranks would only repeat the same work; train alignment as "
                   "one process")
BUCKET_BYTES = 25 * 1024 * 1024  # dense gradients are all-reduced in flat buckets of this size

_state: Dict[str, Any] = {"device": None, "timeout": DEFAULT_TIMEOUT, "quiet": False}


# -- where this process is ------------------------------------------------
def requested() -> bool:
    """True when a launcher (``torchrun``) started this process as one of several ranks."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise SnagError(f"WORLD_SIZE must be a whole number, got {os.environ.get('WORLD_SIZE')!r}") from None


def active() -> bool:
    """True when this process is in a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of ranks (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the one rank that writes files and prints."""
    return rank() == 0


def check_task(data_parallel: bool) -> None:
    """Refuse a task that does not train data-parallel (``Task.data_parallel``: completion only) when
    started as several ranks (one-line error, exit 2)."""
    if requested() and not data_parallel:
        raise SnagError(ONLY_COMPLETION)


def timeout_seconds() -> float:
    """The collectives' timeout: ``SNAGKG_DIST_TIMEOUT`` seconds, else :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get(ENV_TIMEOUT, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SnagError(f"{ENV_TIMEOUT} must be a positive number of seconds, got {text!r}")
    return value


# -- joining and leaving ----------------------------------------------------
def setup(device: str = "auto") -> Optional[torch.device]:
    """Join the process group when started as several ranks; returns this rank's device, else ``None``.

    ``device`` is the run config's device: ``cpu`` (or ``auto`` without CUDA) uses ``gloo``;
    ``auto``/``cuda`` with CUDA uses ``nccl`` on ``cuda:LOCAL_RANK``. Ranks other than 0 are
    made quiet (:func:`quiet`). Calling it again in a joined process returns the same device.
    """
    if not requested():
        return None
    if dist.is_initialized():
        return _state["device"]
    timeout = timeout_seconds()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name(device, check_name=False).startswith("cuda"):
        if local >= torch.cuda.device_count():
            raise SnagError(f"LOCAL_RANK is {local} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                            "start at most that many processes per node")
        torch.cuda.set_device(local)
        backend, dev = "nccl", torch.device("cuda", local)
    else:
        backend, dev = "gloo", torch.device("cpu")
    with _guard("joining the process group", timeout):
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    _state.update(device=dev, timeout=timeout)
    if not is_main():
        quiet()
    atexit.register(teardown)
    return dev


def teardown(wait: bool = False) -> None:
    """Leave the process group (a no-op when not in one).

    ``wait=True`` (a rank that finished its work normally) first waits at a barrier for the
    other ranks, so that no rank closes its connections while another is still using them (a
    rank whose peer vanished mid-exchange can be aborted by gloo's worker threads at exit).
    After an error the barrier is skipped: the other ranks may be gone, and the timeout on
    the process group would only delay the error.
    """
    if dist.is_available() and dist.is_initialized():
        if wait and dist.get_world_size() > 1:
            with _guard("waiting for the other ranks to finish"):
                dist.barrier()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _state["device"] = None


class _ErrorLines(io.TextIOBase):
    """A text stream that passes on only the lines starting with ``error:`` (a quiet rank's stderr)."""

    def __init__(self, stream: Any):
        self.stream, self.pending = stream, ""

    def write(self, text: str) -> int:
        """Buffer ``text``; forward each complete ``error:`` line."""
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.startswith("error:"):
                self.stream.write(line + "\n")
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        """Flush the underlying stream."""
        self.stream.flush()


def quiet() -> None:
    """Make this process print nothing but ``error:`` lines (stdout dropped): rank 0 alone reports."""
    if _state["quiet"]:
        return
    sys.stdout = open(os.devnull, "w")
    sys.stderr = _ErrorLines(sys.stderr)
    _state["quiet"] = True


@contextlib.contextmanager
def _guard(what: str, timeout: Optional[float] = None) -> Iterator[None]:
    """Turn a failed collective (a rank died, or did not answer in time) into one line."""
    try:
        yield
    except RuntimeError as exc:  # DistBackendError, gloo's connection and timeout errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        t = _state["timeout"] if timeout is None else timeout
        raise SnagError(f"data-parallel training: rank {os.environ.get('RANK', rank())} stopped while {what}: "
                        f"another rank died or did not answer within {t:g} s ({ENV_TIMEOUT}); ({first})") from None


def _comm_device() -> torch.device:
    return _state["device"] or torch.device("cpu")


# -- collectives ------------------------------------------------------------
def barrier() -> None:
    """Wait until every rank is here (no-op alone)."""
    if active():
        with _guard("waiting at a barrier"):
            dist.barrier()


def on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only and give its result to every rank; a :class:`SnagError` (or any
    error) it raises is raised on every rank with the same message, so no rank waits for a dead one."""
    if not active():
        return fn()
    box: List[Any] = [None]
    if is_main():
        try:
            box = [("ok", fn())]
        except SnagError as exc:
            box = [("error", str(exc))]
            _broadcast_object(box)
            raise
        except BaseException as exc:
            box = [("error", f"rank 0 failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")]
            _broadcast_object(box)
            raise
    _broadcast_object(box)
    kind, value = box[0]
    if kind == "error":
        raise SnagError(value)
    return value


def _broadcast_object(box: List[Any]) -> None:
    with _guard("waiting for rank 0"):
        dist.broadcast_object_list(box, src=0, device=_comm_device())


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters to every rank (they are equal already when seeded alike; a guard)."""
    if not active():
        return
    with _guard("receiving rank 0's parameters"), torch.no_grad():
        for p in model.parameters():
            dist.broadcast(p.data, src=0)


def all_gather_varlen(tensor: torch.Tensor) -> List[torch.Tensor]:
    """Every rank's ``tensor`` (same trailing shape, any length along dim 0), in rank order."""
    if not active():
        return [tensor]
    dev = tensor.device
    sizes = [torch.zeros(1, dtype=torch.long, device=dev) for _ in range(world_size())]
    with _guard("gathering tensors"):
        dist.all_gather(sizes, torch.tensor([len(tensor)], dtype=torch.long, device=dev))
    counts = [int(s) for s in sizes]
    padded = torch.zeros((max(counts), *tensor.shape[1:]), dtype=tensor.dtype, device=dev)
    padded[:len(tensor)] = tensor
    out = [torch.empty_like(padded) for _ in counts]
    with _guard("gathering tensors"):
        dist.all_gather(out, padded)
    return [o[:n] for o, n in zip(out, counts)]


def _sync_sparse(param: torch.nn.Parameter, world: int) -> torch.Tensor:
    """The mean over ranks of ``param``'s sparse COO gradient (a rank without one counts as zero)."""
    g = param.grad
    if g is None:  # torch's sparse gradients (embedding lookups) have one sparse dimension
        idx = torch.zeros((0, 1), dtype=torch.long, device=param.device)
        vals = torch.zeros((0, *param.shape[1:]), dtype=param.dtype, device=param.device)
    else:
        g = g.coalesce()
        idx, vals = g.indices().t().contiguous(), g.values()
    indices = torch.cat(all_gather_varlen(idx)).t()
    values = torch.cat(all_gather_varlen(vals)) / world
    return torch.sparse_coo_tensor(indices, values, param.shape).coalesce()


def _buckets(grads: Sequence[torch.Tensor], limit: int) -> Iterator[List[torch.Tensor]]:
    groups: Dict[Tuple[torch.dtype, torch.device], List[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault((g.dtype, g.device), []).append(g)
    for group in groups.values():
        bucket: List[torch.Tensor] = []
        size = 0
        for g in group:
            if bucket and size + g.numel() * g.element_size() > limit:
                yield bucket
                bucket, size = [], 0
            bucket.append(g)
            size += g.numel() * g.element_size()
        if bucket:
            yield bucket


def sync_gradients(model: torch.nn.Module, loss: torch.Tensor, bucket_bytes: int = BUCKET_BYTES) -> torch.Tensor:
    """Average ``model``'s gradients and ``loss`` over the ranks (after backward, before clipping and
    the step); returns the mean loss. Alone: returns ``loss`` untouched.

    Dense gradients are summed in flat buckets of ``bucket_bytes`` and divided by the world size;
    sparse COO gradients are gathered (indices and values, padded to the longest) and coalesced.
    A parameter without a gradient on some ranks counts as zero there; without one on every rank
    it keeps ``grad = None`` (the optimiser skips it, as it would alone).
    """
    if not active():
        return loss
    world = world_size()
    params = [p for p in model.parameters() if p.requires_grad]
    flags = [float(loss.detach())] + [float(p.grad is not None) for p in params] \
        + [float(p.grad is not None and p.grad.is_sparse) for p in params]
    meta = torch.tensor(flags, dtype=torch.float64, device=_comm_device())
    with _guard("averaging gradients"):
        dist.all_reduce(meta)
    n = len(params)
    has, sparse = (meta[1:1 + n] > 0).tolist(), (meta[1 + n:] > 0).tolist()
    dense = []
    for p, h, s in zip(params, has, sparse):
        if h and not s:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dense.append(p.grad)
    for bucket in _buckets(dense, bucket_bytes):
        flat = torch.cat([g.reshape(-1) for g in bucket])
        with _guard("averaging gradients"):
            dist.all_reduce(flat)
        flat /= world
        for g, part in zip(bucket, flat.split([g.numel() for g in bucket])):
            g.copy_(part.view_as(g))
    for p, s in zip(params, sparse):
        if s:
            p.grad = _sync_sparse(p, world)
    return torch.as_tensor(float(meta[0]) / world, dtype=loss.dtype)


# -- sharding ---------------------------------------------------------------
def shard_rows(*tensors: torch.Tensor, rank_: Optional[int] = None,
               world: Optional[int] = None) -> Tuple[Tuple[torch.Tensor, ...], float]:
    """This rank's rows ``rank::world`` of each of ``tensors`` (one global batch, same length) and the
    loss scale ``local * world / global`` that makes the ranks' mean gradient the global batch's.
    Alone: the tensors as given and 1.0."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    if w == 1:
        return tensors, 1.0
    total = len(tensors[0])
    out = tuple(t[r::w] for t in tensors)
    return out, len(out[0]) * w / max(1, total)


def split_rows(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of ``tensor`` (evaluation triples; balanced sizes)."""
    if not active():
        return tensor
    return tensor.tensor_split(world_size())[rank()]


def combine_metrics(metrics: Dict[str, Any], weight: str = "count") -> Dict[str, Any]:
    """The metrics of all ranks' slices as if computed at once, identical on every rank.

    Every metric of a ranking evaluation is a mean over queries, so the global value is the
    ``weight``-weighted mean of the ranks' values (exact); ``weight`` itself is summed, timings
    (``seconds``, ``compile_seconds``) take the slowest rank; other values (the same on every rank)
    are kept as they are. Every rank must pass the same keys.
    """
    if not active():
        return metrics
    keys = [k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    n = float(metrics.get(weight, 0))
    sums = torch.tensor([n] + [0.0 if n == 0 else float(metrics[k]) * n for k in keys], dtype=torch.float64)
    times = torch.tensor([float(metrics[k]) if k.endswith("seconds") else 0.0 for k in keys], dtype=torch.float64)
    dev = _comm_device()
    sums, times = sums.to(dev), times.to(dev)
    with _guard("combining evaluation metrics"):
        dist.all_reduce(sums)
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
    sums, times = sums.cpu().tolist(), times.cpu().tolist()
    total = sums[0]
    out = dict(metrics)
    for i, k in enumerate(keys):
        if k == weight:
            value: Any = total
        elif k.endswith("seconds"):
            value = times[i]
        else:
            value = sums[1 + i] / total if total else 0.0
        out[k] = int(round(value)) if isinstance(metrics[k], int) else value
    return out
