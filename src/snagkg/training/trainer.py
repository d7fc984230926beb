"""The training loop shared by both tasks: epochs, batches, optimiser steps, progress,
crash-safe checkpoints and exact resume.

A *task* supplies the task-specific parts (the :class:`Task` contract); everything around
the loop (noise refresh, learning-rate schedules, iterative learning, validation and early
stopping) is a :class:`~snagkg.callbacks.TrainingCallback`. All randomness of epoch ``e`` is
seeded from ``(seed, e)``, so resuming from the checkpoint of epoch ``e - 1`` replays epoch
``e`` exactly: an interrupted and resumed CPU run ends with the same numbers as an
uninterrupted one.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import regular_file, save_torch, torch_load, write_text
from snagkg.training import distributed
from snagkg.training.callbacks import TrainingCallback
from snagkg.training.sparse import clip_gradients

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
LOG = "metrics.jsonl"


class Task(ABC):
    """What a task gives the trainer and the run functions (:mod:`snagkg.api.run`, export, report).

    Both tasks (:class:`snagkg.tasks.completion.task.CompletionTask`,
    :class:`snagkg.tasks.alignment.task.AlignmentTask`) subclass it; a new task subclasses it and
    registers the class in :data:`snagkg.core.registry.TASKS` (the run functions call
    :meth:`build`). Abstract methods are required; the others are capabilities with a default,
    so callers never ask a task what it has (no ``hasattr``) nor which task it is.
    """

    #: the registry name (``RunConfig.task``)
    name: str = ""
    #: the validation metric that selects the best model (higher is better)
    selection_metric: str = ""
    #: the metrics ``snagkg report`` puts side by side (default: the selection metric)
    summary_metrics: Tuple[str, ...] = ()
    #: whether :meth:`evaluate` can rank against ``candidates`` sampled candidates
    sampled_candidates: bool = False
    #: whether the task trains data-parallel under ``torchrun`` (:mod:`snagkg.training.distributed`)
    data_parallel: bool = False
    #: the preset ``snagkg train --task NAME`` starts from when no preset or config is given
    default_preset: Optional[str] = None

    #: the model: a ``torch.nn.Module`` holding a ``MultiModalEntityRepresentation`` as ``entities``
    model: torch.nn.Module
    #: where the model lives
    device: torch.device
    #: the run's config (a :class:`snagkg.config.schema.RunConfig`)
    cfg: Any

    @classmethod
    @abstractmethod
    def build(cls, cfg: Any) -> "Task":
        """Read ``cfg.dataset`` and build the task (every input error is raised here)."""

    def graph_stats(self) -> Any:
        """The :class:`snagkg.config.auto.GraphStats` the defaults of an unseen graph are chosen from,
        or ``None`` (the default): no rule, the config stays as resolved."""
        return None

    def rebuild(self, cfg: Any) -> "Task":
        """The task for ``cfg`` on the data already read (default: :meth:`build` reads it again)."""
        return type(self).build(cfg)

    # -- training --------------------------------------------------------------
    @abstractmethod
    def make_optimizer(self) -> "tuple[torch.optim.Optimizer, Any]":
        """The optimiser and an optional learning-rate scheduler (saved in checkpoints)."""

    def callbacks(self, scheduler: Any) -> List[TrainingCallback]:
        """The task's own callbacks (e.g. the learning-rate schedule, iterative learning); default none."""
        return []

    @abstractmethod
    def batches(self, generator: torch.Generator) -> List[torch.Tensor]:
        """The epoch's training batches, shuffled with ``generator``."""

    @abstractmethod
    def step(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The scalar loss of one batch (the trainer back-propagates and steps)."""

    # -- evaluation -------------------------------------------------------------
    @abstractmethod
    def evaluate(self, split: str, ties: Optional[str] = None, limit: int = 0,
                 progress: bool = False, candidates: int = 0) -> Dict[str, Any]:
        """Metrics of the current model on ``split`` (``valid`` or ``test``); ``candidates`` only where
        :attr:`sampled_candidates`."""

    def entity_degrees(self) -> np.ndarray:
        """How many training triples each entity takes part in, by id (``robustness --pattern long-tail``
        perturbs the least-connected entities first)."""
        raise SnagError(f"the {type(self).__name__} task gives no entity degrees")

    def query_ranks(self, split: str, ties: Optional[str] = None) -> np.ndarray:
        """The rank of every query of ``split``, in the order its metrics average them (what paired
        comparisons between runs read; :mod:`snagkg.api.study`)."""
        raise SnagError(f"the {type(self).__name__} task gives no per-query ranks")

    @abstractmethod
    def validate(self) -> Dict[str, Any]:
        """Metrics on the validation split, as logged during training."""

    def final_evaluation(self, split: str, **options: Any) -> Dict[str, Any]:
        """The metrics a finished run reports for ``split``: :meth:`evaluate` (with ``options``) of all of
        it, or of the first ``train.test_limit`` queries of test when that is set (the metrics then carry
        ``"limit"``)."""
        limit = int(self.cfg.train.test_limit) if split == "test" else 0
        metrics = self.evaluate(split, limit=limit, **options)
        return {**metrics, "limit": limit} if limit else metrics

    # -- bookkeeping ------------------------------------------------------------
    @abstractmethod
    def fingerprint(self) -> Dict[str, Any]:
        """What a checkpoint must match to be loaded (dataset and model shape)."""

    @abstractmethod
    def dataset_info(self) -> Dict[str, Any]:
        """The dataset summary written as ``dataset.json``."""

    def notes(self) -> List[str]:
        """One-line notes of the dataset loader that a run echoes (default: none)."""
        return []

    def save_ids(self, folder: Path) -> None:
        """Write the id tables later commands reload into run ``folder`` (default: none)."""

    def check_ids(self, folder: Path) -> None:
        """A one-line error when the reloaded dataset's ids differ from run ``folder``'s (default: none)."""

    # -- using a trained model --------------------------------------------------
    @abstractmethod
    def entity_names(self) -> List[str]:
        """The entities' names, by id."""

    @abstractmethod
    def entity_vectors(self) -> torch.Tensor:
        """Every entity's final vector ``[N, d]`` (clean, eval mode): what an export writes."""

    def export_arrays(self) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Task-specific arrays and meta entries of ``snagkg export`` (default: none)."""
        return {}, {}

    def predict(self, head: Optional[str] = None, relation: Optional[str] = None, tail: Optional[str] = None,
                top: int = 10, include_known: bool = False) -> Any:
        """Ranked answers of a query by name (default: a one-line error: the task does not predict)."""
        raise SnagError(f"`snagkg predict` does not apply to a {self.name} run: it does not predict triples")

    def score_triples(self, rows: Any, path: Any = None, lines: Any = None) -> Any:
        """Scores of name triples (default: a one-line error: the task does not score triples)."""
        raise SnagError(f"`snagkg predict --triples` does not apply to a {self.name} run: it does not score triples")

    def align(self, split: str = "test", all_unaligned: bool = False, topk: int = 10) -> Dict[str, Any]:
        """One-to-one aligned entity pairs (default: a one-line error: the task does not align)."""
        raise SnagError(f"`snagkg align` does not apply to a {self.name} run: it does not align entities")


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """The seed of random stream ``stream`` (0: dropout, 1: noise and batches) in ``epoch``."""
    return (int(seed) * 1_000_003 + int(epoch) * 9_176 + stream * 7_919) % (2**63 - 1)


@dataclass
class TrainState:
    """Where a run is: epochs done, best validation score and epoch, early-stop counter, history."""

    epoch: int = 0
    best_score: float = float("-inf")
    best_epoch: int = 0
    bad_evals: int = 0
    stopped_early: bool = False
    finished: bool = False
    epoch_seconds: List[float] = field(default_factory=list)
    history: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """The state as a plain dict (saved in checkpoints)."""
        return dict(self.__dict__)


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Load a checkpoint without unpickling code (``weights_only=True``)."""
    path = regular_file(path, "checkpoint")
    try:
        ckpt = torch_load(path, weights_only=True)  # torch's warnings silenced: the error below says it all
    except Exception as exc:  # unpickling refused, truncated file, not a checkpoint
        text = str(exc).strip()
        if "weights_only" in text or "Unsupported global" in text or "GLOBAL" in text:
            first = "it holds Python objects other than tensors; refusing to unpickle them"
        else:
            first = text.splitlines()[0][:160] if text else type(exc).__name__
        raise SnagError(f"not a loadable snagkg checkpoint ({first})", path) from None
    if not isinstance(ckpt, dict):
        raise SnagError(f"not a snagkg checkpoint (it holds a {type(ckpt).__name__}, not a dict)", path)
    _check_finite(ckpt.get("model"), path)
    return ckpt


def _check_finite(state: Any, path: Path) -> None:
    """A one-line error naming the first tensor of ``state`` (a ``state_dict``) that holds NaN or inf."""
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            kind = "NaN" if bool(torch.isnan(value).any()) else "inf"
            raise SnagError(f"tensor {name!r} holds {kind}: the checkpoint is damaged (a bad copy, bit rot); "
                            "use another copy or retrain", path)


def check_fingerprint(saved: Dict[str, Any], current: Dict[str, Any], path: Path) -> None:
    """Raise a one-line error when a checkpoint's fingerprint differs from the current task's."""
    if not isinstance(saved, dict):
        raise SnagError("checkpoint has no valid dataset/config fingerprint", path)
    for key, value in current.items():
        if saved.get(key) != value:
            raise SnagError(f"checkpoint does not match this dataset/config: {key} is {saved.get(key)!r} "
                            f"in the checkpoint but {value!r} now", path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


class Trainer:
    """Train ``task`` into ``folder`` for ``epochs`` epochs with ``callbacks``.

    ``callbacks``: :class:`~snagkg.callbacks.TrainingCallback` objects called in order (see
    :func:`snagkg.run.standard_callbacks`); ``grad_clip``: the gradient norm clip (0: off);
    ``checkpoint_every``: epochs between resumable checkpoints; ``progress``: a progress bar
    (default: when stderr is a terminal); ``log``: where one-line messages go.
    """

    def __init__(self, task: Task, folder: Path, epochs: int, seed: int,
                 callbacks: Sequence[TrainingCallback] = (), grad_clip: float = 0.0,
                 checkpoint_every: int = 1, progress: Optional[bool] = None, log=print,
                 optimizer: Any = None):
        self.task, self.folder = task, Path(folder)
        self.epochs, self.seed, self.grad_clip = epochs, seed, grad_clip
        self.checkpoint_every = checkpoint_every
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.log = log
        self.optimizer, self.scheduler = optimizer if optimizer is not None else task.make_optimizer()
        self.callbacks = list(callbacks)
        self.state = TrainState()
        self.last_loss = float("nan")

    # -- checkpoints -------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write ``checkpoint.pt`` (model, optimiser, scheduler, state) and ``metrics.jsonl`` atomically
        (rank 0 only when data-parallel)."""
        if not distributed.is_main():
            return
        save_torch(self.folder / CHECKPOINT, {
            "kind": "snagkg-checkpoint",
            "model": self.task.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "state": self.state.to_dict(),
            "fingerprint": self.task.fingerprint(),
        })
        write_text(self.folder / LOG, "".join(json.dumps(h) + "\n" for h in self.state.history))

    def save_best(self) -> None:
        """Write the current model as ``best.pt`` (rank 0 only when data-parallel)."""
        if not distributed.is_main():
            return
        save_torch(self.folder / BEST, {
            "kind": "snagkg-model",
            "model": self.task.model.state_dict(),
            "epoch": self.state.epoch,
            "fingerprint": self.task.fingerprint(),
        })

    def resume(self) -> None:
        """Load ``checkpoint.pt`` of ``folder`` (one-line errors for a foreign or broken checkpoint)."""
        path = self.folder / CHECKPOINT
        ckpt = load_checkpoint(path)
        if ckpt.get("kind") != "snagkg-checkpoint":
            raise SnagError("not a snagkg training checkpoint", path)
        check_fingerprint(ckpt.get("fingerprint", {}), self.task.fingerprint(), path)
        try:
            self.task.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None and ckpt.get("scheduler") is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise SnagError(f"checkpoint is incompatible with this model ({_first_line(exc)})", path) from None
        try:
            state = TrainState(**ckpt["state"])
            int(state.epoch)
        except (KeyError, TypeError, ValueError) as exc:
            raise SnagError(f"checkpoint has no valid training state ({_first_line(exc)})", path) from None
        self.state = state

    # -- loop --------------------------------------------------------------
    def _epoch(self, epoch: int) -> float:
        task = self.task
        torch.manual_seed(epoch_seed(self.seed, epoch, 0))  # dropout
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 1))
        task.model.train()
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch, gen)
        batches = task.batches(gen)
        total = sum(len(b) for b in batches)
        bar = None
        if self.progress:
            bar = tqdm(total=total, desc=f"epoch {epoch}/{self.epochs}", unit="triple", unit_scale=True,
                       leave=False, mininterval=0.5, file=sys.stderr)
        losses = []
        for i, batch in enumerate(batches):
            for cb in self.callbacks:
                cb.on_batch_start(self, epoch, i, len(batches), gen)
            self.optimizer.zero_grad(set_to_none=True)
            loss = task.step(batch, gen)
            loss.backward()
            loss = distributed.sync_gradients(task.model, loss)  # data-parallel: mean gradients and loss
            if not torch.isfinite(loss):
                raise self._diverged(epoch, f"the loss is {float(loss.detach())}")
            if self.grad_clip > 0:
                clip_gradients(task.model.parameters(), self.grad_clip)  # sparse entity-table gradients too
            self.optimizer.step()
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if bar is not None:
            bar.close()
        if not all(bool(torch.isfinite(p).all()) for p in task.model.parameters()):
            raise self._diverged(epoch, "a parameter is not finite")  # before any checkpoint holds it
        return sum(losses) / max(1, len(losses))

    def _diverged(self, epoch: int, what: str) -> SnagError:
        st = self.state
        kept = "the last checkpoint.pt" if st.epoch else "no checkpoint"
        best = f" and best.pt (epoch {st.best_epoch})" if st.best_epoch else ""
        return SnagError(f"training diverged at epoch {epoch}: {what}; kept {kept}{best}; "
                         f"try a lower --lr (or --precision fp32)", self.folder)

    def fit(self) -> TrainState:
        """Train until ``epochs`` or an early stop; returns the final :class:`TrainState`."""
        st = self.state
        while st.epoch < self.epochs and not st.stopped_early:
            epoch = st.epoch + 1
            t0 = time.perf_counter()
            self.last_loss = loss = self._epoch(epoch)
            seconds = time.perf_counter() - t0
            st.epoch = epoch
            st.epoch_seconds.append(seconds)
            entry: Dict[str, Any] = {"epoch": epoch, "loss": round(loss, 6), "seconds": round(seconds, 3)}
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, entry)
            st.history.append(entry)
            if epoch % self.checkpoint_every == 0 or st.stopped_early or epoch == self.epochs:
                self.save_checkpoint()
        st.finished = True
        self.save_checkpoint()
        return st

    def median_epoch_seconds(self) -> float:
        """Median wall time of the epochs run so far."""
        return float(statistics.median(self.state.epoch_seconds)) if self.state.epoch_seconds else 0.0
