"""Experiment trackers (csv, tensorboard, mlflow) and users' own training callbacks on ``snagkg.train``:
what a tracker logged is read back through the library's own reader (the CSV file, TensorBoard's
event reader, the MLflow client) and holds every epoch's loss and the final metrics."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

import snagkg
from snagkg.cli.main import main
from snagkg.runtime.errors import SnagError
from snagkg.training.callbacks import TrainingCallback
from snagkg.training.trackers import CSVTracker, make_trackers, mlflow_key


class Seen(TrainingCallback):
    """A user's callback: records every epoch it is called for and what the entry held."""

    def __init__(self):
        self.starts, self.ends = [], []

    def on_epoch_start(self, trainer, epoch, generator):
        self.starts.append(epoch)

    def on_epoch_end(self, trainer, epoch, entry):
        self.ends.append((epoch, entry["loss"], dict(entry.get("valid") or {})))


def _cfg(dataset: Path, fast_config: Path, epochs: int = 3):
    return snagkg.resolve_config(config_file=str(fast_config), overrides={"dataset": str(dataset),
                                                                          "train.epochs": epochs})


def test_user_callback_sees_every_epoch_and_csv_tracker_logs_them(tiny_dataset, fast_config, tmp_path):
    seen = Seen()
    out = tmp_path / "run"
    results = snagkg.train(_cfg(tiny_dataset, fast_config), out, callbacks=[seen], tracker="csv", echo=lambda s: None)
    assert seen.starts == [1, 2, 3]
    assert [e for e, _, _ in seen.ends] == [1, 2, 3]
    assert all("mrr" in valid for _, _, valid in seen.ends)  # called after Validation: it sees the epoch's metrics
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [loss for _, loss, _ in seen.ends] == [h["loss"] for h in history]

    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    params = {r["key"]: r["value"] for r in rows if r["type"] == "param"}
    assert params["train.epochs"] == "3" and params["dataset"] == str(tiny_dataset.resolve())
    metric = {(int(r["step"]), r["key"]): float(r["value"]) for r in rows if r["type"] == "metric"}
    for h in history:
        assert metric[(h["epoch"], "loss")] == pytest.approx(h["loss"])
        assert metric[(h["epoch"], "valid/mrr")] == pytest.approx(h["valid"]["mrr"])
    assert metric[(3, "final/test/mrr")] == pytest.approx(results.test["mrr"])
    assert metric[(3, "final/valid/hits@10")] == pytest.approx(results.valid["hits@10"])
    assert metric[(3, "final/best_epoch")] == results.best_epoch
    assert not any(k.endswith(("/count", "seconds")) and k != "epoch_seconds" and not k.startswith("final/train")
                   for _, k in metric)


def test_tensorboard_tracker_read_back_with_the_event_reader(tiny_dataset, fast_config, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    results = snagkg.train(_cfg(tiny_dataset, fast_config, epochs=2), out, tracker="tensorboard", echo=lambda s: None)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"loss", "valid/mrr", "final/test/mrr", "final/valid/mrr"} <= set(scalars)
    assert [(e.step, round(e.value, 5)) for e in acc.Scalars("loss")] == [(h["epoch"], round(h["loss"], 5))
                                                                         for h in history]
    assert [e.step for e in acc.Scalars("valid/mrr")] == [1, 2]
    (final,) = acc.Scalars("final/test/mrr")
    assert final.value == pytest.approx(results.test["mrr"], abs=1e-6) and final.step == 2
    assert "config" in " ".join(acc.Tags()["tensors"])  # the config, as a text summary


def test_tracker_names_and_missing_libraries_are_one_line_errors(monkeypatch):
    assert [t.name for t in make_trackers("csv")] == ["csv"]
    assert make_trackers(None) == []
    tracker = CSVTracker()
    assert make_trackers(["csv", tracker])[1] is tracker
    with pytest.raises(SnagError, match="unknown tracker 'tensorbord'.*did you mean 'tensorboard'"):
        make_trackers("csv,tensorbord")
    with pytest.raises(SnagError, match="named twice"):
        make_trackers("csv,csv")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(SnagError, match=r"pip install 'snagkg\[tensorboard\]'"):
        make_trackers("tensorboard")
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(SnagError, match=r"pip install 'snagkg\[mlflow\]'"):
        make_trackers("csv,mlflow")
    assert mlflow_key("final/test/hits@10") == "final/test/hits_at_10"


def test_cli_tracker_error_comes_before_any_training(tmp_path, capsys):
    code = main(["train", "--dataset", "synthetic", "--output", str(tmp_path / "r"), "--tracker", "wandb"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: unknown tracker 'wandb'")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_mlflow_tracker_read_back_with_the_mlflow_client(tiny_dataset, fast_config, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the default store: ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "run"
    results = snagkg.train(_cfg(tiny_dataset, fast_config, epochs=2), out, tracker="csv,mlflow", echo=lambda s: None)
    saved = json.loads((out / "mlflow.json").read_text())
    assert saved["tracking_uri"] == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=saved["tracking_uri"])
    run = client.get_run(saved["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["train.epochs"] == "2" and run.data.params["encoder.hidden"] == "32"
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = client.get_metric_history(saved["run_id"], "loss")
    assert [(m.step, round(m.value, 5)) for m in losses] == [(h["epoch"], round(h["loss"], 5)) for h in history]
    assert [m.step for m in client.get_metric_history(saved["run_id"], "valid/mrr")] == [1, 2]
    assert run.data.metrics["final/test/mrr"] == pytest.approx(results.test["mrr"])
    assert run.data.metrics["final/valid/hits_at_10"] == pytest.approx(results.valid["hits@10"])
    artifacts = {a.path for a in client.list_artifacts(saved["run_id"], "run")}
    assert {"run/results.json", "run/best.pt", "run/config.yaml", "run/metrics.csv"} <= artifacts
    assert Path(run.info.artifact_uri.replace("file://", "")).is_relative_to(tmp_path / "mlruns")
