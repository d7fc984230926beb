"""Experiment trackers: a run's config, every epoch's losses and validation metrics, and the final
metrics, logged to a CSV file, TensorBoard or MLflow (PyKEEN's result trackers, as training callbacks).

    snagkg train --dataset synthetic --output runs/demo --tracker csv,tensorboard,mlflow
    snagkg.train(cfg, "runs/demo", tracker="mlflow")      # or tracker=[MLflowTracker(experiment="x")]

A :class:`Tracker` is a :class:`~snagkg.training.callbacks.TrainingCallback` called after the run's
other callbacks (so ``entry["valid"]`` holds the epoch's validation metrics when it validated);
:func:`snagkg.api.run.train` also calls :meth:`Tracker.start` once the run folder is written,
:meth:`Tracker.finish` with the results, and :meth:`Tracker.abort` when the run fails.

* ``csv``: ``metrics.csv`` in the run folder, one row per value: ``type,step,key,value`` (``param``
  rows: the flattened config; ``metric`` rows: ``loss``, ``epoch_seconds`` and ``valid/<metric>`` at
  the epoch, then ``final/valid/<metric>``, ``final/test/<metric>``, ``final/best_epoch``...);
* ``tensorboard`` (extra ``[tensorboard]``): event files in ``<run>/tensorboard`` (``tensorboard
  --logdir runs``), the same scalars, and the config as a text;
* ``mlflow`` (extra ``[mlflow]``): one MLflow run per run folder (resumed with it: ``mlflow.json``
  keeps its id) with the config as parameters, the same metrics (``hits@k`` named ``hits_at_k``, as
  MLflow refuses ``@``) and the run folder as artifacts
  under ``run/``. The store: ``$MLFLOW_TRACKING_URI`` when set, else a local SQLite store
  ``./mlruns/mlflow.db`` with its artifacts in ``./mlruns/artifacts`` (``mlflow ui
  --backend-store-uri sqlite:///mlruns/mlflow.db`` shows it).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from snagkg.core.registry import Registry
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import write_json, write_text
from snagkg.training.callbacks import TrainingCallback

#: tracker classes by name (``--tracker NAME``)
TRACKERS: "Registry[type]" = Registry("tracker")
CSV_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
MLFLOW_FILE = "mlflow.json"
MLFLOW_DEFAULT_DIR = "mlruns"


def flatten_config(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A nested config dict as dotted keys (``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``)."""
    out: Dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, name + "."))
        else:
            out[name] = value
    return out


def _numbers(metrics: Dict[str, Any], prefix: str, skip: Sequence[str] = ("count", "sampled")) -> Dict[str, float]:
    """The finite numbers of ``metrics`` under ``prefix`` (not flags, strings, query counts or timings)."""
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
            and k not in skip and not k.endswith("seconds")}


def epoch_metrics(entry: Dict[str, Any]) -> Dict[str, float]:
    """What a tracker logs of one epoch's log entry: ``loss``, ``epoch_seconds`` and ``valid/<metric>``."""
    out = {"loss": float(entry["loss"]), "epoch_seconds": float(entry.get("seconds", 0.0))}
    out.update(_numbers(entry.get("valid") or {}, "valid/"))
    return out


def final_metrics(results: Dict[str, Any]) -> Dict[str, float]:
    """What a tracker logs of a finished run's results: ``final/valid/<m>``, ``final/test/<m>`` and
    ``final/best_epoch``, ``final/epochs_run``, ``final/train_seconds``."""
    out = {**_numbers(results.get("valid") or {}, "final/valid/"), **_numbers(results.get("test") or {}, "final/test/")}
    out.update(_numbers({k: results[k] for k in ("best_epoch", "epochs_run") if k in results}, "final/"))
    if isinstance(results.get("train_seconds"), (int, float)):
        out["final/train_seconds"] = float(results["train_seconds"])
    return out


class Tracker(TrainingCallback):
    """Base of the experiment trackers: logs the config at :meth:`start`, each epoch's metrics at
    ``on_epoch_end`` and the final metrics at :meth:`finish`. A subclass implements :meth:`open`,
    :meth:`log_params`, :meth:`log_metrics` and :meth:`close` (and may log artifacts in :meth:`close`)."""

    #: the name ``--tracker`` takes
    name = ""

    def __init__(self) -> None:
        self.folder: Optional[Path] = None
        self.last_step = 0

    # -- what the run calls -------------------------------------------------------
    def start(self, folder: Path, config: Dict[str, Any], resumed_after: int = 0) -> None:
        """Open the tracker for run ``folder`` (``resumed_after``: epochs already done) and log ``config``."""
        self.folder, self.last_step = Path(folder), resumed_after
        self.open(self.folder, resumed_after)
        self.log_params(flatten_config(config))

    def on_epoch_end(self, trainer: Any, epoch: int, entry: Dict[str, Any]) -> None:
        """Log the epoch's loss, time and validation metrics at step ``epoch``."""
        if self.folder is None:  # a Trainer used without snagkg.train: open on the trainer's folder
            self.start(trainer.folder, trainer.task.cfg.to_dict(), epoch - 1)
        self.last_step = epoch
        self.log_metrics(epoch_metrics(entry), epoch)

    def finish(self, results: Dict[str, Any]) -> None:
        """Log the final metrics (step: the epochs run) and close."""
        if self.folder is None:
            return
        self.log_metrics(final_metrics(results), int(results.get("epochs_run", self.last_step)))
        self.close("FINISHED")
        self.folder = None

    def abort(self, interrupted: bool = False) -> None:
        """Close after a failed (or, ``interrupted``, a killed) run; never raises."""
        if self.folder is None:
            return
        try:
            self.close("KILLED" if interrupted else "FAILED")
        except Exception:  # the run's own error is the one to report
            pass
        self.folder = None

    # -- what a tracker implements ------------------------------------------------
    def open(self, folder: Path, resumed_after: int) -> None:
        """Start logging for run ``folder``."""

    def log_params(self, params: Dict[str, Any]) -> None:
        """Log the flattened config."""

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step``."""

    def close(self, status: str) -> None:
        """Stop logging; ``status``: ``FINISHED``, ``FAILED`` or ``KILLED``."""


@TRACKERS.register("csv")
class CSVTracker(Tracker):
    """``metrics.csv`` in the run folder: ``type,step,key,value`` rows (rewritten atomically at each log;
    a resumed run keeps the rows of the epochs it does not replay)."""

    name = "csv"

    def __init__(self, filename: str = CSV_FILE) -> None:
        super().__init__()
        self.filename = filename
        self.rows: List[List[Any]] = []

    def open(self, folder: Path, resumed_after: int) -> None:
        self.rows = []
        path = folder / self.filename
        if resumed_after and path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                for row in list(csv.reader(fh))[1:]:
                    if len(row) == 4 and row[0] == "metric" and row[1] and int(row[1]) <= resumed_after \
                            and not row[2].startswith("final/"):
                        self.rows.append(row)

    def log_params(self, params: Dict[str, Any]) -> None:
        params_rows = [["param", "", k, json.dumps(v) if isinstance(v, (list, dict)) else v] for k, v in params.items()]
        self.rows = params_rows + [r for r in self.rows if r[0] != "param"]
        self._write()

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        self.rows.extend(["metric", step, k, v] for k, v in metrics.items())
        self._write()

    def _write(self) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["type", "step", "key", "value"])
        writer.writerows(self.rows)
        write_text(self.folder / self.filename, buf.getvalue())


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    """TensorBoard event files in ``<run>/tensorboard`` (extra ``[tensorboard]``)."""

    name = "tensorboard"

    def __init__(self, subfolder: str = TENSORBOARD_DIR) -> None:
        super().__init__()
        try:
            from torch.utils.tensorboard import (  # deferred: optional extra [tensorboard]
                SummaryWriter,  # deferred: optional extra [tensorboard]
            )
        except ImportError:
            raise SnagError("--tracker tensorboard needs the tensorboard package: "
                            "pip install 'snagkg[tensorboard]'") from None
        self._writer_class = SummaryWriter
        self.subfolder = subfolder
        self.writer: Any = None

    def open(self, folder: Path, resumed_after: int) -> None:
        log_dir = folder / self.subfolder
        if not resumed_after and log_dir.is_dir():  # a new run in this folder: not the old run's curves
            shutil.rmtree(log_dir, ignore_errors=True)
        self.writer = self._writer_class(log_dir=str(log_dir), purge_step=resumed_after + 1 if resumed_after else None)

    def log_params(self, params: Dict[str, Any]) -> None:
        table = "| key | value |\n| --- | --- |\n" + "".join(f"| {k} | {v} |\n" for k, v in params.items())
        self.writer.add_text("config", table, global_step=self.last_step)

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self, status: str) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@TRACKERS.register("mlflow")
class MLflowTracker(Tracker):
    """One MLflow run per run folder (extra ``[mlflow]``): the config as parameters, the metrics, and
    the run folder as artifacts (``run/``) when it finishes.

    ``tracking_uri``: default ``$MLFLOW_TRACKING_URI``, else the local SQLite store
    ``./mlruns/mlflow.db`` (artifacts in ``./mlruns/artifacts``); ``experiment``: the MLflow
    experiment's name; ``artifacts``: whether to log the run folder.
    """

    name = "mlflow"

    def __init__(self, tracking_uri: Optional[str] = None, experiment: str = "snagkg", artifacts: bool = True,
                 run_name: Optional[str] = None) -> None:
        super().__init__()
        try:
            from mlflow.tracking import (  # deferred: optional extra [mlflow]
                MlflowClient,  # deferred: optional extra [mlflow]
            )
        except ImportError:
            raise SnagError("--tracker mlflow needs the mlflow package: pip install 'snagkg[mlflow]'") from None
        self._client_class = MlflowClient
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        self.experiment, self.artifacts, self.run_name = experiment, artifacts, run_name
        self.client: Any = None
        self.run_id: Optional[str] = None

    def _store(self) -> "tuple[str, Optional[str]]":
        """The tracking URI and, for the default local store, the artifact location of a new experiment."""
        if self.tracking_uri:
            return self.tracking_uri, None
        root = Path(MLFLOW_DEFAULT_DIR).resolve()
        root.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()

    def open(self, folder: Path, resumed_after: int) -> None:
        uri, artifact_location = self._store()
        self.client = client = self._client_class(tracking_uri=uri)
        saved_path = folder / MLFLOW_FILE
        if resumed_after and saved_path.is_file():  # continue the MLflow run of this run folder
            try:
                saved = json.loads(saved_path.read_text(encoding="utf-8"))
                if saved.get("tracking_uri") == uri:
                    client.update_run(saved["run_id"], status="RUNNING")
                    self.run_id = saved["run_id"]
                    return
            except Exception:  # an unreadable file or a deleted MLflow run: start a new one
                pass
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            exp_id = client.create_experiment(self.experiment, artifact_location=artifact_location)
        else:
            exp_id = exp.experiment_id
        run = client.create_run(exp_id, run_name=self.run_name or folder.name,
                                tags={"snagkg.folder": str(folder.resolve())})
        self.run_id = run.info.run_id
        write_json(saved_path, {"tracking_uri": uri, "experiment_id": exp_id, "run_id": self.run_id})

    def log_params(self, params: Dict[str, Any]) -> None:
        from mlflow.entities import Param  # deferred: optional extra [mlflow]
        old = self.client.get_run(self.run_id).data.params
        new = [Param(k, str(v)) for k, v in params.items() if old.get(k) != str(v)]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=new[i:i + 100])

    def log_metrics(self, metrics: Dict[str, float], step: int) -> None:
        from mlflow.entities import Metric  # deferred: optional extra [mlflow]
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(mlflow_key(k), v, now, step) for k, v in metrics.items()])

    def close(self, status: str) -> None:
        if self.client is None or self.run_id is None:
            return
        if status == "FINISHED" and self.artifacts and self.folder is not None:
            for path in _artifact_paths(self.folder):
                if path.is_dir():
                    self.client.log_artifacts(self.run_id, str(path), f"run/{path.name}")
                else:
                    self.client.log_artifact(self.run_id, str(path), "run")
        self.client.set_terminated(self.run_id, status=status)


def mlflow_key(key: str) -> str:
    """A metric name as MLflow takes it: ``@`` (which MLflow refuses) as ``_at_`` (``valid/hits_at_10``)."""
    return key.replace("@", "_at_")


def _artifact_paths(folder: Path) -> List[Path]:
    """The run folder's files and folders, without the lock and temporary files."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and not p.name.endswith(".tmp"))


TrackerSpec = Union[None, str, Tracker, Iterable[Union[str, Tracker]]]


def make_trackers(spec: TrackerSpec) -> List[Tracker]:
    """The trackers of ``spec``: ``None``, a name, comma-separated names (``"csv,mlflow"``), a
    :class:`Tracker`, or a list of names and trackers. An unknown name, or a tracker whose library
    is not installed, is a one-line error (naming the extra to install)."""
    if spec is None:
        return []
    items: Sequence[Union[str, Tracker]]
    if isinstance(spec, (str, Tracker)):
        items = [spec]
    else:
        items = list(spec)
    out: List[Tracker] = []
    named: List[str] = []
    for item in items:
        if isinstance(item, Tracker):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise SnagError(f"a tracker is a name ({', '.join(TRACKERS.names())}) or a Tracker, got {item!r}")
        for name in (n.strip() for n in item.split(",")):
            if not name:
                continue
            try:
                cls = TRACKERS.get(name)
            except KeyError as exc:
                raise SnagError(str(exc.args[0])) from None
            if name in named:
                raise SnagError(f"tracker {name!r} is named twice")
            named.append(name)
            out.append(cls())
    return out
