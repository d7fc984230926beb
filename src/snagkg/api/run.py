"""The Python API: train a run into a folder, evaluate a finished run.

    import snagkg
    cfg = snagkg.resolve_config(preset="synthetic", overrides={"train.epochs": 20})
    results = snagkg.train(cfg, "runs/demo")
    print(results.test["mrr"])
    metrics = snagkg.evaluate("runs/demo", split="test")
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, Union

import torch

import snagkg.tasks  # noqa: F401  (the task registry: every task registers itself)
from snagkg.api.results import Results
from snagkg.config import auto
from snagkg.config import schema as config_mod
from snagkg.config.schema import RunConfig
from snagkg.core.registry import TASKS
from snagkg.runtime import precision as precisions
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import RunLock, write_json, write_text
from snagkg.training import distributed
from snagkg.training.callbacks import NoiseRefresh, TrainingCallback, Validation
from snagkg.training.trackers import TrackerSpec, make_trackers
from snagkg.training.trainer import (
    BEST,
    CHECKPOINT,
    Task,
    Trainer,
    check_fingerprint,
    load_checkpoint,
)

log = logging.getLogger("snagkg")
PathLike = Union[str, "os.PathLike[str]"]
RUN_FILES = ("config.yaml", CHECKPOINT, BEST, "metrics.jsonl", "results.json", "dataset.json", "entities.tsv",
             "relations.tsv")
#: what later commands derive from a run's model into its folder (robustness, a study's ranks and
#: summaries, a report): a new run in the folder (--overwrite) removes them with the run files
DERIVED_FILES = ("robustness.json", "robustness.csv", "robustness.png", "robustness.*.json", "ranks.*.npy",
                 "summary.md", "summary.csv", "summary.json", "report.html")
EXPORT_SUFFIXES = (".npz", ".parquet", ".tsv")


def model_digest(folder: PathLike) -> Optional[str]:
    """The SHA-256 of a run's ``best.pt`` (``None`` if there is none): files derived from the model
    record it, and readers refuse a derived file whose model has changed since."""
    path = Path(folder) / BEST
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_export(path: Path) -> bool:
    """Whether ``path`` is a ``snagkg export`` file (its format's marker), not a file of the user's."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - (1 << 16)))
            tail = fh.read()
    except OSError:
        return False
    if path.suffix == ".tsv":
        return head.startswith(b"kind\tid\tname\t")
    marker = "snagkg-export"  # in the meta entry (.npz: stored last, as UTF-32) or the parquet footer
    return marker.encode() in tail or marker.encode("utf-32-le") in tail


def _clear_old_run(folder: Path) -> None:
    """Remove what an earlier run left in ``folder``: its checkpoint first (so a kill part-way never
    leaves a resumable old run under another config), then its files and everything derived from them
    (robustness, ranks, summaries, a report, exports). Files of the user's are kept."""
    for name in (CHECKPOINT, *RUN_FILES):
        (folder / name).unlink(missing_ok=True)
    for pattern in DERIVED_FILES:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)
    for path in folder.iterdir():
        if path.suffix in EXPORT_SUFFIXES and path.name not in RUN_FILES and path.is_file() and _is_export(path):
            path.unlink(missing_ok=True)


def _absolute_dataset(cfg: RunConfig) -> RunConfig:
    if cfg.dataset != "synthetic":
        return replace(cfg, dataset=str(Path(cfg.dataset).expanduser().resolve()))
    return cfg


def task_class(name: str) -> Type[Task]:
    """The :class:`Task` class registered as ``name`` (a one-line error naming the closest if none)."""
    try:
        return TASKS.get(name)
    except KeyError as exc:
        raise SnagError(str(exc.args[0])) from None


def build_task(cfg: RunConfig, device: Optional[str] = None) -> Task:
    """Read the dataset and build the task object for ``cfg`` (nothing is written)."""
    if device:
        cfg = replace(cfg, device=device)
    return task_class(cfg.task).build(cfg)


def graph_defaults(cfg: RunConfig, task: Task) -> Tuple[RunConfig, Task, Optional[Dict[str, Any]]]:
    """``cfg`` and ``task`` with the defaults of :mod:`snagkg.config.auto` for ``task``'s graph, and what
    was chosen (``{"stats", "values", "line"}``; ``None`` when no rule applies: a preset or config
    file, a saved run's config, a task without one). ``task`` is rebuilt on the data already read
    when a value changes."""
    if cfg.explicit is None:
        return cfg, task, None
    stats = task.graph_stats()
    if stats is None:
        return replace(cfg, explicit=None), task, None
    new, chosen = auto.apply_graph_defaults(cfg, stats)
    if config_mod.dump(new) != config_mod.dump(cfg):
        task = task.rebuild(new)
    return new, task, {"stats": auto.stats_dict(stats), "values": {k: list(v) if isinstance(v, tuple) else v
                                                                     for k, v in chosen.items()},
                       "line": auto.describe(stats, chosen) if chosen else None}


def standard_callbacks(task: Task, cfg: RunConfig, scheduler: Any = None) -> List[TrainingCallback]:
    """The callbacks of a run: the noise refresh (per epoch, or per step with ``noise.per_step``),
    the task's own callbacks, then validation with early stopping."""
    return [NoiseRefresh(task.model.entities, per_step=cfg.noise.per_step), *task.callbacks(scheduler),
            Validation(cfg.train.eval_every, cfg.train.patience)]


def _check_output(folder: Path, resume: bool, overwrite: bool) -> bool:
    """Validate the output folder before anything is written. Returns True when it already has a run."""
    if folder.exists() and not folder.is_dir():
        raise SnagError("output path exists and is not a folder", folder)
    has_content = folder.exists() and any(p.name != ".lock" for p in folder.iterdir())
    if resume:  # without a checkpoint (a kill before the first one), the run starts again at epoch 0
        return (folder / CHECKPOINT).exists()
    if has_content and not overwrite:
        raise SnagError("output folder already exists and is not empty; pass --resume to continue the run "
                        "there or --overwrite to replace it", folder)
    return False


def _remove_stale_temp_files(folder: Path) -> None:
    """Delete ``.<name>.*.tmp`` files left by a writer that was killed mid-write (call under the lock)."""
    for tmp in folder.glob(".*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass


def _take_folder(folder: Path, lock: RunLock, created: bool) -> None:
    """Create ``folder`` and take its lock (a folder created here is removed when the lock is refused)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SnagError(f"cannot create the output folder: {exc.strerror or exc}", folder) from None
    try:
        lock.acquire()
    except SnagError:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _write_run_files(folder: Path, cfg: RunConfig, task, resume: bool, overwrite: bool) -> None:
    """Clear what a killed writer or an overwritten run left, then write the config, dataset summary and ids."""
    _remove_stale_temp_files(folder)
    if not (resume and (folder / CHECKPOINT).exists()):  # a new run, or one that starts again at epoch 0
        _clear_old_run(folder)
    write_text(folder / "config.yaml", config_mod.dump(cfg))
    write_json(folder / "dataset.json", task.dataset_info())
    task.save_ids(folder)  # the ids every later command reloads (completion: entities.tsv, relations.tsv)


def train(cfg: RunConfig, output: PathLike, resume: bool = False, overwrite: bool = False,
          progress: Optional[bool] = None, echo: Callable[[str], None] = print,
          callbacks: Sequence[TrainingCallback] = (), tracker: TrackerSpec = None) -> Results:
    """Train ``cfg`` into ``output`` and return the :class:`Results` (also written as ``results.json``).

    ``callbacks``: your own :class:`~snagkg.training.callbacks.TrainingCallback` objects, called in
    order after the run's standard ones (so ``on_epoch_end`` sees the epoch's ``entry["valid"]`` when
    it validated; setting ``trainer.state.stopped_early`` ends the run cleanly after that epoch).
    ``tracker``: experiment trackers (:mod:`snagkg.training.trackers`): ``"csv"``, ``"tensorboard"``,
    ``"mlflow"``, several comma-separated, or :class:`~snagkg.training.trackers.Tracker` objects.

    Under ``torchrun`` (``WORLD_SIZE > 1``) every rank calls it: data-parallel completion training
    (:mod:`snagkg.distributed`). Rank 0 alone writes ``output``, holds its lock and echoes; the
    other ranks wait for it where they read what it wrote; every rank returns the same results.
    """
    distributed.check_task(task_class(cfg.task).data_parallel)
    device = distributed.setup(cfg.device)  # None when alone
    try:
        results = _train(cfg, output, resume, overwrite, progress, echo, None if device is None else str(device),
                         callbacks, tracker)
    except BaseException:
        distributed.teardown()
        raise
    distributed.teardown(wait=True)
    return results


def _train(cfg: RunConfig, output: PathLike, resume: bool, overwrite: bool, progress: Optional[bool],
           echo: Callable[[str], None], device: Optional[str], callbacks: Sequence[TrainingCallback] = (),
           tracker: TrackerSpec = None) -> Results:
    """:func:`train` in this process (alone, or one rank of several on ``device``)."""
    folder = Path(output)
    main = distributed.is_main()
    if not main:  # rank 0 alone reports
        echo, progress = (lambda s: None), False
    trackers = make_trackers(tracker) if main else []  # rank 0 alone tracks; a missing library fails here
    existing = distributed.on_main(lambda: _check_output(folder, resume, overwrite))
    if resume and (folder / "config.yaml").is_file():  # else: killed before its config; start from cfg
        saved = config_mod.load_run_config(folder / "config.yaml")
        if cfg.train.epochs != saved.train.epochs:  # the only thing a resume may change
            saved = replace(saved, train=replace(saved.train, epochs=cfg.train.epochs))
        cfg = replace(saved, device=cfg.device)
        distributed.check_task(task_class(cfg.task).data_parallel)
    cfg = _absolute_dataset(cfg)
    task = build_task(cfg, device=device)  # every input error is raised here, before anything is written
    cfg, task, defaults = graph_defaults(cfg, task)  # no preset: the starting values follow the graph

    created = main and not folder.exists()
    lock = RunLock(folder)
    distributed.on_main(lambda: _take_folder(folder, lock, created))
    try:
        # again, now that no one else can write here
        existing = distributed.on_main(lambda: _check_output(folder, resume, overwrite))
        t = cfg.train
        optimizer, scheduler = task.make_optimizer()
        trainer = Trainer(task, folder, epochs=t.epochs, seed=cfg.seed,
                          callbacks=[*standard_callbacks(task, cfg, scheduler), *callbacks, *trackers],
                          grad_clip=t.grad_clip,
                          checkpoint_every=t.checkpoint_every, progress=progress, log=echo,
                          optimizer=(optimizer, scheduler))
        if existing and resume:  # every rank loads rank 0's checkpoint
            trainer.resume()  # a checkpoint of another dataset/config fails here, before anything is written
        distributed.on_main(lambda: _write_run_files(folder, cfg, task, resume, overwrite))
        distributed.broadcast_parameters(task.model)
        for note in task.notes():
            echo(note)
        if defaults and defaults["line"]:
            echo(defaults["line"])
        slow = precisions.precision_warning(cfg.precision, task.device)
        if slow:
            echo(slow)
        if existing and resume:
            echo(f"resuming after epoch {trainer.state.epoch}")
        for tr in trackers:
            tr.start(folder, cfg.to_dict(), trainer.state.epoch)
        t0 = time.perf_counter()
        prior = sum(trainer.state.epoch_seconds)
        state = trainer.fit()
        train_seconds = prior + (time.perf_counter() - t0)
        distributed.barrier()  # rank 0 has written best.pt
        load_best(task, folder)
        valid = task.final_evaluation("valid")
        test = task.final_evaluation("test")
        results = Results(
            valid=valid, test=test, best_epoch=state.best_epoch, epochs_run=state.epoch,
            train_seconds=round(train_seconds, 3), epoch_seconds=round(trainer.median_epoch_seconds(), 4),
            parameters=task.model.parameter_count(), dataset=task.dataset_info(), config=cfg.to_dict(),
            stopped_early=state.stopped_early, extra={"device": str(task.device), "torch": torch.__version__,
                                                      **({"graph_defaults": defaults} if defaults else {})},
        )
        distributed.on_main(lambda: results.save(folder / "results.json"))
        for tr in trackers:
            tr.finish(results.to_dict())
        return results
    except BaseException as exc:
        for tr in trackers:
            tr.abort(interrupted=isinstance(exc, KeyboardInterrupt))
        if created and not (folder / CHECKPOINT).exists():  # nothing worth keeping (or resuming) yet
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        lock.release()


def load_best(task, folder: Path) -> int:
    """Load ``best.pt`` of ``folder`` into ``task.model``; returns its epoch."""
    path = Path(folder) / BEST
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != "snagkg-model":
        raise SnagError("not a snagkg model file", path)
    check_fingerprint(ckpt.get("fingerprint", {}), task.fingerprint(), path)
    try:
        task.model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as exc:
        raise SnagError(f"model file is incompatible with this config ({str(exc).splitlines()[0][:160]})", path) from None
    return int(ckpt.get("epoch", 0))


def load_run(run: PathLike, device: Optional[str] = None):
    """Rebuild a finished (or checkpointed) run's task with its best weights loaded."""
    folder = Path(run)
    if not folder.is_dir():
        raise SnagError("run folder not found", folder)
    cfg = config_mod.load_run_config(folder / "config.yaml")
    task = build_task(cfg, device=device)
    load_best(task, folder)
    task.check_ids(folder)  # the reloaded dataset must give the names the run was trained with, id for id
    return task


def evaluate(run: PathLike, split: str = "test", ties: Optional[str] = None, limit: int = 0,
             device: Optional[str] = None, progress: bool = False, candidates: int = 0) -> Dict[str, Any]:
    """Evaluate the best model of a run on ``split``; returns metrics with ranking ``seconds``.

    ``candidates=K > 0`` (completion only): rank against ``K`` sampled filtered candidates per
    query, seeded by the run's seed; the metrics carry ``"sampled": K``."""
    if split not in ("valid", "test"):
        raise SnagError(f"split must be 'valid' or 'test', got {split!r}")
    if ties is not None and ties not in ("realistic", "optimistic"):
        raise SnagError(f"ties must be 'realistic' or 'optimistic', got {ties!r}")
    if limit < 0:
        raise SnagError(f"--limit must not be negative, got {limit}")
    if candidates < 0:
        raise SnagError(f"--candidates must not be negative, got {candidates}")
    if candidates and Path(run).is_dir():  # before the run's dataset is read
        kind = config_mod.load_run_config(Path(run) / "config.yaml").task
        if not task_class(kind).sampled_candidates:
            able = " or ".join(n for n in TASKS.names() if TASKS.get(n).sampled_candidates)
            raise SnagError(f"--candidates applies to {able} only, not {kind}", run)
    task = load_run(run, device=device)
    metrics = task.evaluate(split, ties=ties, limit=limit, progress=progress,
                            **({"candidates": candidates} if candidates else {}))
    metrics["split"] = split
    metrics["ties"] = ties or task.cfg.ties
    return metrics
