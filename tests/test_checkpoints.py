"""Checkpoints and resuming: a full disk or a diverging run keeps the last good checkpoint, stale
temporary files go on resume, ``kill -9`` then ``--resume`` ends exactly like an uninterrupted run,
and run folders written before the redesign still load, evaluate and resume."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import snagkg
import snagkg.runtime.io as sio
from snagkg.cli.main import main
from snagkg.core.representation import MultiModalEntityRepresentation

from _helpers import assert_one_error, error_lines, half_then, legacy_run, run_main, subprocess_env, temp_files


def _no_space_on_second_checkpoint(monkeypatch):
    """Make the 2nd write of checkpoint.pt fail half-way with ENOSPC."""
    real = sio.atomic_write
    calls = {"n": 0}

    def atomic(path, write):
        if Path(path).name == "checkpoint.pt":
            calls["n"] += 1
            if calls["n"] == 2:
                return real(path, half_then(OSError(errno.ENOSPC, "No space left on device")))
        return real(path, write)

    monkeypatch.setattr(sio, "atomic_write", atomic)


def test_full_disk_during_training_is_one_line_and_keeps_previous_checkpoint(tiny, cfg_file, tmp_path, capsys,
                                                                           monkeypatch):
    out = tmp_path / "run"
    _no_space_on_second_checkpoint(monkeypatch)
    code, _, err = run_main(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--epochs", "3",
                             "--no-progress"], capsys)
    monkeypatch.undo()
    assert code == 2, err
    assert "Traceback" not in err
    errors = error_lines(err)
    assert errors == [err.strip().splitlines()[-1]] and len(errors) == 1
    assert errors[0].startswith(f"error: {out / 'checkpoint.pt'}: no space left on device")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["epoch"] == 1  # the previous checkpoint, intact
    assert temp_files(out) == [] and not (out / "results.json").exists() and not (out / ".lock").exists()
    # once there is space again the run resumes from it
    code, _, err = run_main(["train", "--output", out, "--resume", "--no-progress"], capsys)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["epochs_run"] == 3


@pytest.mark.parametrize("how", ["loss", "parameter"])
def test_divergence_is_one_line_and_keeps_the_last_good_checkpoint(tiny, cfg_file, tmp_path, capsys, monkeypatch,
                                                                  how):
    """A non-finite loss, or a parameter that became non-finite during an epoch (a finite loss
    with a nan gradient), stops training with one line before any checkpoint holds it."""
    from snagkg.training.callbacks import NoiseRefresh
    from snagkg.tasks.completion.task import CompletionTask
    out = tmp_path / "run"
    step, start, epochs = CompletionTask.step, NoiseRefresh.on_epoch_start, []

    def start_epoch(self, trainer, epoch, generator):
        epochs.append(epoch)
        return start(self, trainer, epoch, generator)

    def step_going_bad(self, batch, generator):
        loss = step(self, batch, generator)
        if epochs[-1] >= 2:
            if how == "loss":
                return loss * float("nan")
            with torch.no_grad():
                self.model.entities.structure.weight[0, 0] = float("nan")
        return loss

    monkeypatch.setattr(CompletionTask, "step", step_going_bad)
    monkeypatch.setattr(NoiseRefresh, "on_epoch_start", start_epoch)
    code, _, err = run_main(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--epochs", "4",
                             "--no-progress"], capsys)
    monkeypatch.undo()
    assert code == 2, err
    msg = assert_one_error(err, path=out, fragment="training diverged at epoch", only_line=False)
    assert "lower --lr" in msg
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["epoch"] >= 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not (out / "results.json").exists() and not (out / ".lock").exists()
    code, _, err = run_main(["train", "--output", out, "--resume", "--no-progress"], capsys)
    assert code == 0, err  # the kept checkpoint resumes
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 4


def test_stale_temp_files_are_removed_on_resume(tiny, cfg_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--no-progress"], capsys)[0] == 0
    stale = out / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    code, _, err = run_main(["train", "--output", out, "--resume", "--epochs", "3", "--no-progress"], capsys)
    assert code == 0, err
    assert not stale.exists()


def _checkpoint_epoch(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["state"]["epoch"])


def _metrics(res: dict) -> dict:
    return {split: {k: v for k, v in res[split].items() if k != "seconds"} for split in ("valid", "test")}


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    """SIGKILL mid-run, then --resume: the final valid/test metrics equal an uninterrupted run's exactly (CPU)."""
    from snagkg.data.datasets import write_openke
    from snagkg.data.datasets.synthetic import SyntheticConfig, generate

    ds = tmp_path / "syn400"
    write_openke(generate(SyntheticConfig(num_entities=400), seed=0), ds)
    cfg = tmp_path / "small.yaml"
    cfg.write_text("encoder: {hidden: 32}\ntrain: {batch_size: 2048, lr: 0.01}\n")
    base = [sys.executable, "-m", "snagkg", "train", "--dataset", str(ds), "--seed", "3", "--epochs", "6",
            "--eval-every", "2", "--no-progress", "--config", str(cfg), "--device", "cpu"]
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    env = subprocess_env()
    ref = subprocess.Popen(base + ["--output", str(ref_dir)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen(base + ["--output", str(run_dir)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    ckpt = run_dir / "checkpoint.pt"
    # generous: on a loaded 2-core machine the two runs and the rest of the suite share the cores
    killed_at, seen, deadline = None, None, time.monotonic() + 600
    try:
        while victim.poll() is None and time.monotonic() < deadline:
            try:
                st = ckpt.stat()
            except FileNotFoundError:
                st = None
            if st is not None and (st.st_ino, st.st_mtime_ns) != seen:
                seen = (st.st_ino, st.st_mtime_ns)
                if _checkpoint_epoch(ckpt) >= 2:
                    os.kill(victim.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
        assert victim.poll() is not None or time.monotonic() < deadline, "no epoch-2 checkpoint within 600 s"
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = _checkpoint_epoch(ckpt)
    assert 2 <= killed_at < 6 and not (run_dir / "results.json").exists()

    resumed = subprocess.run(base + ["--output", str(run_dir), "--resume"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {killed_at}" in resumed.stderr
    out, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err

    a = json.loads((ref_dir / "results.json").read_text())
    b = json.loads((run_dir / "results.json").read_text())
    assert _metrics(b) == _metrics(a)  # exact equality of mrr, mr, hits@k
    assert (b["best_epoch"], b["epochs_run"]) == (a["best_epoch"], a["epochs_run"]) == (a["best_epoch"], 6)
    log_a = [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in (ref_dir / "metrics.jsonl").open()]
    log_b = [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in (run_dir / "metrics.jsonl").open()]
    for e in log_a + log_b:
        e.get("valid", {}).pop("seconds", None)
    assert log_b == log_a  # every epoch's loss and every validation, too
    assert temp_files(run_dir) == [] and not (run_dir / ".lock").exists()


@pytest.mark.parametrize("kind", ["completion", pytest.param("alignment", marks=pytest.mark.slow)])
def test_run_folder_from_before_the_redesign_loads_evaluates_and_resumes(kind, tmp_path, capsys):
    run = legacy_run(kind, tmp_path)
    saved = json.loads((run / "results.json").read_text())
    old_keys = torch.load(run / "best.pt", weights_only=True)["model"]
    assert "entity" in old_keys  # the old parameter names

    task = snagkg.load_run(run, device="cpu")
    assert isinstance(task.model.entities, MultiModalEntityRepresentation)
    assert torch.equal(task.model.entities.structure.weight.detach(), old_keys["entity"])
    metrics = snagkg.evaluate(run, split="test", device="cpu")
    for key, value in saved["test"].items():
        if key != "seconds":
            assert metrics[key] == value, key

    epochs = saved["epochs_run"] + 1
    assert main(["train", "--output", str(run), "--resume", "--epochs", str(epochs), "--device", "cpu",
                 "--no-progress"]) == 0, capsys.readouterr().err
    res = json.loads((run / "results.json").read_text())
    assert res["epochs_run"] == epochs
    new_keys = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert "entities.structure.weight" in new_keys and "entity" not in new_keys
