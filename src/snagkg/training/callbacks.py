"""Training callbacks: what happens around the generic loop of :class:`snagkg.training.Trainer`.

The loop itself only draws batches, steps the optimiser and writes checkpoints; everything
else is a :class:`TrainingCallback` (as PyKEEN's ``TrainingCallback``):

* :class:`NoiseRefresh` draws new modality noise once per epoch (SPEC section 2's default) or
  before every step (``noise.per_step``);
* :class:`ScheduleByPosition` sets a learning-rate scheduler from the position in the run
  (the alignment warm-up + cosine, :class:`WarmupCosine`);
* :class:`Validation` evaluates on the validation split every ``eval_every`` epochs, keeps the
  best model (``best.pt``) and stops early after ``patience`` evaluations without a gain;
* task callbacks, e.g. the alignment task's iterative learning
  (:class:`snagkg.alignment.task.IterativeLearning`).

All randomness a callback uses comes from the epoch's generator, so a resumed run replays
exactly (see :func:`snagkg.training.epoch_seed`).
"""
from __future__ import annotations

import math
from typing import Any, Dict

import torch


class TrainingCallback:
    """Hooks called by the trainer; each does nothing unless overridden.

    Order within an epoch: ``on_epoch_start`` (before the batches are drawn), then for each
    batch ``on_batch_start`` (before the loss), and ``on_epoch_end`` (after the last step,
    with the log ``entry`` of the epoch, which a callback may add to).
    """

    def on_epoch_start(self, trainer: Any, epoch: int, generator: torch.Generator) -> None:
        """Called at the start of ``epoch`` (1-based), in training mode."""

    def on_batch_start(self, trainer: Any, epoch: int, batch: int, num_batches: int,
                       generator: torch.Generator) -> None:
        """Called before the loss of batch ``batch`` (0-based) of ``num_batches``."""

    def on_epoch_end(self, trainer: Any, epoch: int, entry: Dict[str, Any]) -> None:
        """Called after the last step of ``epoch``; ``entry`` holds ``epoch``, ``loss`` and ``seconds``."""


class NoiseRefresh(TrainingCallback):
    """Draw the modality noise of ``model`` (anything with ``refresh_noise(generator)``) once per epoch,
    and before every step when ``per_step``."""

    def __init__(self, model: Any, per_step: bool = False):
        self.model, self.per_step = model, per_step

    def on_epoch_start(self, trainer, epoch, generator):
        """Draw the epoch's noise."""
        self.model.refresh_noise(generator)

    def on_batch_start(self, trainer, epoch, batch, num_batches, generator):
        """Draw new noise before the step when ``per_step``."""
        if self.per_step:
            self.model.refresh_noise(generator)


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up over the first ``warmup`` share of ``epochs``, then cosine decay to 0.

    The factor is a function of the position in the run (``epoch - 1 + batch / num_batches``,
    set with :meth:`set_position` before each step), not of a step count, so the schedule
    stays the same when the number of batches per epoch changes (iterative learning adds
    links) and when a run is resumed.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, warmup: float):
        self.epochs, self.warmup = max(1, int(epochs)), float(warmup)
        self.position = (1, 0, 1)
        super().__init__(optimizer)

    def factor(self) -> float:
        """The learning-rate factor at the current position."""
        epoch, batch, num_batches = self.position
        total, nb = self.epochs, max(1, num_batches)
        p = (epoch - 1 + batch / nb) / total
        if p < self.warmup:
            return min(1.0, (p + 1.0 / (total * nb)) / self.warmup)
        if self.warmup >= 1.0:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (p - self.warmup) / (1.0 - self.warmup))))

    def get_lr(self):
        """Every group's base learning rate times :meth:`factor`."""
        f = self.factor()
        return [base * f for base in self.base_lrs]

    def set_position(self, epoch: int, batch: int, num_batches: int) -> None:
        """Move to batch ``batch`` of ``num_batches`` in ``epoch`` and set the groups' learning rates."""
        self.position = (epoch, batch, num_batches)
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


class ScheduleByPosition(TrainingCallback):
    """Set a :class:`WarmupCosine` (anything with ``set_position``) before every step."""

    def __init__(self, scheduler: WarmupCosine):
        self.scheduler = scheduler

    def on_batch_start(self, trainer, epoch, batch, num_batches, generator):
        """Set the learning rates for this batch's position in the run."""
        self.scheduler.set_position(epoch, batch, num_batches)


class Validation(TrainingCallback):
    """Model selection on the validation split (never test) and early stopping.

    Every ``eval_every`` epochs and after the last one: ``task.validate()``, the task's
    ``selection_metric`` compared with the best so far; a better score saves ``best.pt``,
    ``patience`` evaluations in a row without one stop the run.
    """

    def __init__(self, eval_every: int, patience: int):
        self.eval_every, self.patience = eval_every, patience

    def on_epoch_end(self, trainer, epoch, entry):
        """Validate when due, keep the best model, count evaluations without a gain."""
        if epoch % self.eval_every and epoch != trainer.epochs:
            return
        task, st = trainer.task, trainer.state
        metric = task.selection_metric
        task.model.eval()
        valid = task.validate()
        entry["valid"] = valid
        score = valid[metric]
        if score > st.best_score:
            st.best_score, st.best_epoch, st.bad_evals = score, epoch, 0
            trainer.save_best()
            flag = " (best)"
        else:
            st.bad_evals += 1
            flag = f" (no gain {st.bad_evals}/{self.patience})"
        trainer.log(f"epoch {epoch}: loss {trainer.last_loss:.4f}, valid {metric} {score:.4f}{flag}, "
                    f"{entry['seconds']:.1f}s/epoch")
        if st.bad_evals >= self.patience:
            st.stopped_early = True
            trainer.log(f"early stop: no valid gain in {self.patience} evaluations; best epoch {st.best_epoch}")
