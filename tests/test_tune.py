"""``snagkg tune`` (Optuna): the SPEC's checks, pruning through a training callback, a killed search
that resumes to the total asked, the best configuration as a preset file that ``snagkg train
--preset PATH`` trains, and ``--preset`` taking a YAML file."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from snagkg.cli.main import build_parser, main
from snagkg.config import schema as C
from snagkg.runtime.errors import SnagError

optuna = pytest.importorskip("optuna")

from snagkg.api.tune import Pruning, load_tune_spec, run_tune  # noqa: E402  (after the importorskip)

SPEC = """\
dataset: {dataset}
base:
  encoder: {{hidden: 32, heads: 2}}
  train: {{epochs: {epochs}, batch_size: 256, eval_every: 1, patience: 5}}
space:
  train.lr: {{low: 1e-3, high: 3e-2, log: true}}
  noise.ratio: {{low: 0.0, high: 0.5}}
  train.negatives: {{choices: [4, 8]}}
sampler: {{seed: 0, startup_trials: 2}}
pruner: {{startup_trials: 1}}
"""


@pytest.fixture
def small_graph(tmp_path):
    from conftest import make_openke
    return make_openke(tmp_path / "ds", num_entities=120, num_relations=4)


def _spec(tmp_path: Path, dataset: Path, epochs: int = 3, text: str = SPEC) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text.format(dataset=dataset, epochs=epochs))
    return path


def test_spec_reads_ranges_and_choices(tmp_path, small_graph):
    spec = load_tune_spec(_spec(tmp_path, small_graph))
    lr, ratio, neg = spec.space["train.lr"], spec.space["noise.ratio"], spec.space["train.negatives"]
    assert (lr.kind, lr.low, lr.high, lr.log) == ("float", 1e-3, 3e-2, True)  # "1e-3" (a YAML string) read as a number
    assert (ratio.kind, ratio.log) == ("float", False)
    assert (neg.kind, neg.choices) == ("categorical", (4, 8))
    cfg = spec.config_of({"train.lr": 0.01, "noise.ratio": 0.25, "train.negatives": 4})
    assert (cfg.train.lr, cfg.noise.ratio, cfg.train.negatives, cfg.train.epochs) == (0.01, 0.25, 4, 3)
    assert cfg.dataset == str(small_graph.resolve())


@pytest.mark.parametrize("space,message", [
    ("  train.lrr: {low: 0.001, high: 0.01}", "space train.lrr = 0.001: unknown config key 'train.lrr'"),
    ("  train.lr: {low: 0.01, high: 0.001}", "low (0.01) must be below high"),
    ("  train.lr: {low: 0.0, high: 0.1, log: true}", "a log range needs low > 0"),
    ("  train.epochs: {low: 1, high: 2.5, type: int}", "an int range needs whole"),
    ("  noise.ratio: {low: 0.0, high: 1.5}", "noise.ratio must be in [0, 1]"),
    ("  encoder.readout: {choices: []}", "choices must be a non-empty list"),
    ("  train.lr: {lo: 0.1}", "unknown option 'lo'"),
])
def test_spec_mistakes_name_the_line(tmp_path, small_graph, space, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"dataset: {small_graph}\nspace:\n{space}\n")
    with pytest.raises(SnagError) as exc:
        load_tune_spec(path)
    assert message in str(exc.value) and f"{path}:3:" in str(exc.value)


def test_pruning_reports_every_validation_and_stops_the_run_cleanly():
    class Trial:
        def __init__(self):
            self.reports = []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) >= 2

    trial = Trial()
    state = SimpleNamespace(stopped_early=False)
    trainer = SimpleNamespace(state=state, epochs=10, log=lambda s: None)
    cb = Pruning(trial, "mrr")
    cb.on_epoch_end(trainer, 1, {"loss": 1.0, "valid": {"mrr": 0.1}})
    cb.on_epoch_end(trainer, 2, {"loss": 0.9})  # no validation this epoch: nothing reported
    assert trial.reports == [(1, 0.1)] and not state.stopped_early
    cb.on_epoch_end(trainer, 3, {"loss": 0.8, "valid": {"mrr": 0.2}})
    assert trial.reports == [(1, 0.1), (3, 0.2)] and state.stopped_early and cb.pruned_at == 3


def test_a_search_writes_trials_and_a_best_preset_that_trains(tmp_path, small_graph):
    out = tmp_path / "tune"
    summary = run_tune(load_tune_spec(_spec(tmp_path, small_graph, epochs=2)), out, trials=1, echo=lambda s: None)
    assert [r["state"] for r in summary.rows] == ["complete"] and summary.best == 0
    assert (out / "trial-000" / "results.json").is_file() and (out / "study.db").is_file()
    with open(out / "trials.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["state"] == "complete" and float(row["value"]) == pytest.approx(summary.rows[0]["value"])
    best = C.resolve(preset=str(out / "best.yaml"), overrides={"dataset": str(small_graph)})
    trial_cfg = C.load_run_config(out / "trial-000" / "config.yaml")
    assert best.train == trial_cfg.train and best.noise == trial_cfg.noise and best.encoder == trial_cfg.encoder
    assert best.preset == str(out / "best.yaml")
    parsed = build_parser().parse_args(["tune", "spec.yaml", "--trials", "4", "--output", "d"])
    assert (parsed.trials, parsed.output) == (4, "d")


def test_preset_takes_a_yaml_file(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("train: {lr: 0.0042, epochs: 7}\nencoder: {hidden: 64}\n")
    cfg = C.resolve(preset=str(path))
    assert (cfg.train.lr, cfg.train.epochs, cfg.encoder.hidden, cfg.preset) == (0.0042, 7, 64, str(path))
    assert C.resolve(preset="synthetic").preset == "synthetic"  # names still name the built-in presets
    with pytest.raises(SnagError, match="preset file not found"):
        C.resolve(preset=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: -1}\n")
    code = main(["train", "--preset", str(bad), "--dataset", "synthetic", "--output", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {bad}:1: train.lr must be positive")


def _finished(out: Path) -> list:
    study = optuna.load_study(study_name="snagkg-tune", storage=f"sqlite:///{out / 'study.db'}")
    states = optuna.trial.TrialState
    return [t for t in study.get_trials() if t.state in (states.COMPLETE, states.PRUNED)]


@pytest.mark.slow
def test_cli_search_killed_after_the_second_trial_resumes_to_four(tmp_path, small_graph):
    spec = _spec(tmp_path, small_graph, epochs=3)
    out = tmp_path / "tune"
    cmd = [sys.executable, "-m", "snagkg", "tune", str(spec), "--trials", "4", "--output", str(out), "--no-progress"]
    log = tmp_path / "log.txt"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and "trial 2: train.lr" not in log.read_text():  # the 3rd trial has begun
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = len(_finished(out))  # 2, or 3 where the third trial finished before the kill landed (a fast machine)
    assert 2 <= done < 4

    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert f"resuming the search: {done} of 4 trials done" in p.stderr
    assert len(_finished(out)) == 4
    table = p.stdout.splitlines()
    assert table[0].startswith("| trial | state | valid mrr | train.lr | noise.ratio | train.negatives")
    assert sum("complete" in line or "pruned" in line for line in table) == 4
    for name in ("best.yaml", "trials.csv", "tune.png", "tune.yaml"):
        assert (out / name).is_file(), name
    for t in _finished(out):
        assert (out / t.user_attrs["folder"] / "results.json").is_file()

    run = tmp_path / "best-run"
    p = subprocess.run([sys.executable, "-m", "snagkg", "train", "--preset", str(out / "best.yaml"), "--dataset",
                        str(small_graph), "--output", str(run), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    best = max((t for t in _finished(out) if t.value is not None and t.state.name == "COMPLETE"),
               key=lambda t: t.value)
    assert C.load_run_config(run / "config.yaml").train == C.load_run_config(
        out / best.user_attrs["folder"] / "config.yaml").train
