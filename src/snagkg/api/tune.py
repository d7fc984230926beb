"""Hyper-parameter search on Optuna (extra ``[tune]``): ``snagkg tune SPEC.yaml --trials N --output DIR``.

A SPEC names the base run (``preset`` and/or ``config``, ``dataset``, ``base`` overrides) and the
search ``space``: dotted config keys, each a float or int range (``log: true`` for a log scale,
``step`` optional) or categorical ``choices``::

    preset: synthetic
    dataset: synthetic
    base: {train: {epochs: 20, eval_every: 2}}
    space:
      train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      encoder.hidden: {choices: [64, 128, 256]}
      noise.ratio: {low: 0.0, high: 0.5}
      train.negatives: {low: 8, high: 64, step: 8}
    sampler: {seed: 0, startup_trials: 5}            # TPE (optional)
    pruner: {type: median, startup_trials: 2, warmup_epochs: 0}   # or {type: none}

Each trial is an ordinary run folder ``DIR/trial-NNN`` trained with TPE-sampled values; its score
is the task's selection metric on the **validation** split (the best model's ``results.valid``;
test is never looked at). A training callback (:class:`Pruning`) reports the validation metric at
every validation, and a trial the median pruner drops stops cleanly after that epoch (its run
folder is complete). The study lives in ``DIR/study.db`` (SQLite), so a killed search resumes:
``--trials N`` is the total wanted, a trial killed mid-way is run again from the start with the
same values. After every trial ``DIR/best.yaml`` (the best configuration as a preset file:
``snagkg train --preset DIR/best.yaml --dataset ...``), ``DIR/trials.csv`` and, with matplotlib,
``DIR/tune.png`` (trial values and parameter importances) are rewritten
(:mod:`snagkg.api.tune_summary`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from snagkg.api.run import _absolute_dataset, task_class, train
from snagkg.api.tune_summary import (
    STUDY_FILE,
    STUDY_NAME,
    TuneSummary,
    _fmt,
    _optuna,
    summarize_tune,
)
from snagkg.config import schema as C
from snagkg.config.yamlio import flatten, read_spec
from snagkg.runtime.errors import PathLike, SnagError
from snagkg.runtime.io import RunLock, write_text
from snagkg.training.callbacks import TrainingCallback
from snagkg.training.trackers import TrackerSpec

SPEC_FILE = "tune.yaml"


@dataclass(frozen=True)
class SearchParam:
    """One dimension of the search space: a float or int range, or categorical choices."""

    key: str
    kind: str                                   # "float", "int" or "categorical"
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: Tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value (Optuna's ``suggest_*``)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def bounds(self) -> List[Any]:
        """The values the config must accept (the range's ends, or every choice)."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def to_dict(self) -> Dict[str, Any]:
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        out = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        return {**out, "step": self.step} if self.step is not None else out


@dataclass(frozen=True)
class TuneSpec:
    """A search as its SPEC file states it (see the module docstring)."""

    dataset: str
    space: Dict[str, SearchParam]
    preset: Optional[str] = None
    config: Optional[str] = None
    base: Dict[str, Any] = field(default_factory=dict)          # dotted overrides every trial starts from
    sampler_seed: int = 0
    sampler_startup: int = 5
    pruner: str = "median"
    pruner_startup: int = 2
    pruner_warmup: int = 0
    source: str = SPEC_FILE
    lines: Dict[Tuple[str, ...], int] = field(default_factory=dict, compare=False, repr=False)

    def config_of(self, params: Dict[str, Any]) -> C.RunConfig:
        """The resolved run config of a trial with ``params`` (dataset made absolute)."""
        overrides = {**self.base, **params, "dataset": self.dataset}
        overrides = {k: (",".join(map(str, v)) if k == "modalities" and isinstance(v, list) else v)
                     for k, v in overrides.items()}
        return _absolute_dataset(C.resolve(preset=self.preset, config_file=self.config, overrides=overrides))

    def identity(self) -> str:
        """What a resumed search must match (JSON): the base run and the space."""
        return json.dumps({"dataset": self.dataset, "preset": self.preset, "config": self.config,
                           "base": self.base, "space": {k: p.to_dict() for k, p in self.space.items()},
                           "pruner": [self.pruner, self.pruner_startup, self.pruner_warmup]},
                          sort_keys=True, default=str)


def _number(value: Any) -> Any:
    """A YAML value as a number where it is one (PyYAML reads ``1e-4`` as a string)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _param(key: str, value: Any, src: str, line: Optional[int]) -> SearchParam:
    """One ``space`` entry, checked."""
    if isinstance(value, list):
        value = {"choices": value}
    if not isinstance(value, dict):
        raise SnagError(f"space {key}: give {{low, high}} (a range) or {{choices: [...]}}", src, line)
    known = {"type", "low", "high", "log", "step", "choices"}
    for k in value:
        if k not in known:
            raise SnagError(f"space {key}: unknown option {k!r} (known: {', '.join(sorted(known))})", src, line)
    kind = value.get("type")
    if "choices" in value or kind == "categorical":
        choices = value.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SnagError(f"space {key}: choices must be a non-empty list", src, line)
        for c in choices:
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise SnagError(f"space {key}: a choice must be a number, a string, true/false or null, got {c!r}",
                                src, line)
        if len(set(map(repr, choices))) != len(choices):
            raise SnagError(f"space {key}: choices must be distinct", src, line)
        return SearchParam(key, "categorical", choices=tuple(choices))
    low, high, step = _number(value.get("low")), _number(value.get("high")), _number(value.get("step"))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise SnagError(f"space {key}: low and high must be numbers", src, line)
    if kind not in (None, "float", "int"):
        raise SnagError(f"space {key}: type must be float, int or categorical, got {kind!r}", src, line)
    if kind is None:
        kind = "int" if _is_int(low) and _is_int(high) and (step is None or _is_int(step)) else "float"
    if kind == "int" and not (_is_int(low) and _is_int(high) and (step is None or _is_int(step))):
        raise SnagError(f"space {key}: an int range needs whole low, high and step", src, line)
    if not low < high:
        raise SnagError(f"space {key}: low ({low}) must be below high ({high})", src, line)
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise SnagError(f"space {key}: log must be true or false", src, line)
    if log and low <= 0:
        raise SnagError(f"space {key}: a log range needs low > 0", src, line)
    if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0 or log):
        raise SnagError(f"space {key}: step must be a positive number (and not with log)", src, line)
    if kind == "float":
        low, high = float(low), float(high)
    return SearchParam(key, kind, low=low, high=high, log=log, step=step)


def load_tune_spec(path: PathLike) -> TuneSpec:
    """Read and check a tune SPEC (YAML); every mistake is an error naming the file and line."""
    data, lines, src, line = read_spec(path, ("preset", "config", "dataset", "base", "space", "sampler", "pruner"))
    base = data.get("base") or {}
    space_data = data.get("space")
    if not isinstance(space_data, dict) or not space_data:
        raise SnagError("space must map dotted config keys (train.lr) to ranges or choices", src, line("space"))
    space = {str(k): _param(str(k), v, src, line("space", str(k))) for k, v in space_data.items()}
    sampler = data.get("sampler") or {}
    pruner = data.get("pruner") or {}
    for name, section, keys in (("sampler", sampler, {"seed", "startup_trials"}),
                                ("pruner", pruner, {"type", "startup_trials", "warmup_epochs"})):
        if not isinstance(section, dict):
            raise SnagError(f"{name} must be a mapping", src, line(name))
        for k, v in section.items():
            if k not in keys:
                raise SnagError(f"{name}: unknown option {k!r} (known: {', '.join(sorted(keys))})", src,
                                line(name, k))
            if k != "type" and (not _is_int(v) or v < 0):
                raise SnagError(f"{name}.{k} must be a whole number >= 0", src, line(name, k))
    if pruner.get("type", "median") not in ("median", "none"):
        raise SnagError("pruner.type must be median or none", src, line("pruner", "type"))
    flat_base = flatten(base)
    for key in space:
        if key in flat_base:
            raise SnagError(f"space {key} is also set in base: keep it in one place", src, line("space", key))
    spec = TuneSpec(
        dataset=data["dataset"], space=space, preset=data.get("preset"), config=data.get("config"), base=flat_base,
        sampler_seed=int(sampler.get("seed", 0)), sampler_startup=int(sampler.get("startup_trials", 5)),
        pruner=str(pruner.get("type", "median")), pruner_startup=int(pruner.get("startup_trials", 2)),
        pruner_warmup=int(pruner.get("warmup_epochs", 0)), source=src, lines=lines,
    )
    try:
        spec.config_of({})
    except SnagError as exc:
        raise SnagError(f"the base run: {_plain(exc)}", src, line("base") or line("preset")) from None
    for key, p in space.items():  # every end of every range must make a valid config
        for v in p.bounds():
            try:
                spec.config_of({key: v})
            except SnagError as exc:
                raise SnagError(f"space {key} = {v!r}: {_plain(exc)}", src, line("space", key)) from None
    return spec


def _plain(exc: SnagError) -> str:
    """A config error's message without the ``--flag:`` it names for the command line."""
    msg = exc.message
    if msg.startswith("--") and ": " in msg:
        msg = msg.split(": ", 1)[1]
    if exc.path not in (None, C.COMMAND_LINE):  # the preset or config file that refused it
        msg = f"{msg} ({exc.path}{'' if exc.line is None else f':{exc.line}'})"
    return msg


class Pruning(TrainingCallback):
    """Report the validation ``metric`` to an Optuna ``trial`` at every validation; when the pruner
    says so, stop the run cleanly after that epoch (``trainer.state.stopped_early``)."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned_at = 0

    def on_epoch_end(self, trainer: Any, epoch: int, entry: Dict[str, Any]) -> None:
        """Report the epoch's validation metric (if it validated) and stop a trial the pruner drops."""
        valid = entry.get("valid")
        if not valid or self.metric not in valid:
            return
        self.trial.report(float(valid[self.metric]), epoch)
        if self.trial.should_prune() and not trainer.state.stopped_early and epoch < trainer.epochs:
            trainer.state.stopped_early = True
            self.pruned_at = epoch
            trainer.log(f"pruned: valid {self.metric} {valid[self.metric]:.4f} at epoch {epoch} is below the "
                        f"median of the earlier trials")


def _open_study(spec: TuneSpec, out: Path, optuna: Any) -> Any:
    """Create or load the search's SQLite study; a search of another SPEC in ``out`` is an error."""
    storage = f"sqlite:///{(out / STUDY_FILE).resolve()}"
    pruner = (optuna.pruners.NopPruner() if spec.pruner == "none" else
              optuna.pruners.MedianPruner(n_startup_trials=spec.pruner_startup, n_warmup_steps=spec.pruner_warmup))
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=pruner)
    saved = study.user_attrs.get("spec")
    if saved is None:
        study.set_user_attr("spec", spec.identity())
    elif saved != spec.identity():
        raise SnagError("this folder holds a search of another SPEC (a different base run or space); "
                        "use a new --output", out)
    # a fresh sampler seed per session: a resumed search does not draw the first trials' values again
    study.sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed + len(study.trials),
                                               n_startup_trials=spec.sampler_startup)
    return study


def _finished(trial: Any, optuna: Any) -> bool:
    """Whether a trial counts towards ``--trials``: complete, pruned, or failed (not killed)."""
    states = optuna.trial.TrialState
    return trial.state in (states.COMPLETE, states.PRUNED) or (
        trial.state == states.FAIL and not trial.user_attrs.get("killed"))


def _requeue_killed(study: Any, optuna: Any, echo: Callable[[str], None]) -> None:
    """Trials left running by a killed search (we hold the folder's lock): failed, and queued again."""
    states = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "killed", True)
        study._storage.set_trial_state_values(t._trial_id, states.FAIL)
        study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
        echo(f"trial {t.number} was killed mid-way: queued again with the same values")


def run_tune(spec: TuneSpec, output: PathLike, trials: int, echo: Callable[[str], None] = print,
             progress: Optional[bool] = False, tracker: TrackerSpec = None,
             device: Optional[str] = None) -> TuneSummary:
    """Run the search until the study in ``output`` holds ``trials`` finished trials; returns the summary.

    Every trial is ``output/trial-NNN`` (:func:`snagkg.api.run.train`, with :class:`Pruning`);
    ``tracker`` is passed to each trial's training; ``device`` overrides the SPEC's.
    """
    if trials < 1:
        raise SnagError(f"--trials must be at least 1, got {trials}")
    optuna = _optuna()
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise SnagError("output path exists and is not a folder", out)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out)
    lock.acquire()
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search echoes its own lines
    try:
        study = _open_study(spec, out, optuna)
        if Path(spec.source).is_file():  # the SPEC this search ran, for the record
            write_text(out / SPEC_FILE, f"# copied from {Path(spec.source).resolve()}\n"
                       + Path(spec.source).read_text(encoding="utf-8"))
        _requeue_killed(study, optuna, echo)
        metric = task_class(spec.config_of({}).task).selection_metric
        study.set_user_attr("metric", metric)
        done = sum(_finished(t, optuna) for t in study.get_trials(deepcopy=False))
        if done:
            echo(f"resuming the search: {done} of {trials} trials done")
        while done < trials:
            _run_trial(study, spec, out, metric, optuna, echo, progress, tracker, device)
            done += 1
            summarize_tune(out, study=study)
        return summarize_tune(out, study=study)
    finally:
        optuna.logging.set_verbosity(level)
        lock.release()


def _run_trial(study: Any, spec: TuneSpec, out: Path, metric: str, optuna: Any, echo: Callable[[str], None],
               progress: Optional[bool], tracker: TrackerSpec, device: Optional[str]) -> None:
    """Ask for a trial, train it, tell the study its validation score (or pruned/failed)."""
    states = optuna.trial.TrialState
    trial = study.ask()
    params = {key: p.suggest(trial) for key, p in spec.space.items()}
    folder = out / f"trial-{trial.number:03d}"
    trial.set_user_attr("folder", folder.name)
    shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    echo(f"trial {trial.number}: {shown}")
    try:
        cfg = spec.config_of(params)
        if device:
            cfg = replace(cfg, device=device)
    except SnagError as exc:  # a combination the config refuses (e.g. hidden not divisible by heads)
        trial.set_user_attr("error", exc.message)
        study.tell(trial, state=states.FAIL)
        echo(f"trial {trial.number} failed: {exc.message}")
        return
    pruning = Pruning(trial, metric)
    try:
        results = train(cfg, folder, overwrite=folder.exists(), progress=progress,
                        echo=lambda s: echo(f"  trial {trial.number}: {s}"), callbacks=[pruning], tracker=tracker)
    except SnagError as exc:
        if not exc.message.startswith("training diverged"):
            raise  # bad input every trial would meet: stop the search (resume after fixing it)
        trial.set_user_attr("error", exc.message)
        study.tell(trial, state=states.FAIL)
        echo(f"trial {trial.number} failed: {exc.message}")
        return
    except BaseException:
        _mark_killed(study, trial, params, states)
        raise
    for key in ("best_epoch", "epochs_run", "train_seconds"):
        trial.set_user_attr(key, getattr(results, key))
    value = float(results.valid[metric])
    trial.set_user_attr("valid", value)
    if pruning.pruned_at:
        study.tell(trial, state=states.PRUNED)
        echo(f"trial {trial.number} pruned at epoch {pruning.pruned_at}")
    else:
        study.tell(trial, value)
        best = study.best_trial
        echo(f"trial {trial.number}: valid {metric} {value:.4f} (best: trial {best.number}, {best.value:.4f})")


def _mark_killed(study: Any, trial: Any, params: Dict[str, Any], states: Any) -> None:
    """An interrupted trial: failed and queued again, so a resumed search runs it again."""
    try:
        trial.set_user_attr("killed", True)
        study.tell(trial, state=states.FAIL)
        study.enqueue_trial(dict(params), user_attrs={"retry_of": trial.number})
    except Exception:  # the interruption is what the caller reports
        pass
