"""Crash safety: atomic writes, full disk, the run-folder lock, refusing to
overwrite a run, and an exact resume after ``kill -9``."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import snagkg.runtime.io as sio
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import RunLock, atomic_write, save_numpy, save_torch, write_json, write_text

from _fixtures_reliability import (assert_one_error, error_lines, run_cli_subprocess, run_main,
                                   snapshot, subprocess_env, temp_files)


# --------------------------------------------------------------------------- atomic writes

def _half_then(exc: BaseException):
    def write(fh):
        fh.write(b"NEW-PARTIAL-" * 1000)
        raise exc
    return write


@pytest.mark.parametrize("exc,fragment", [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device; the previous version is intact"),
    (OSError(errno.EACCES, "Permission denied"), "cannot write here"),
    (OSError(errno.EROFS, "Read-only file system"), "cannot write here"),
    (OSError(errno.EIO, "Input/output error"), "cannot write"),
])
def test_failing_write_keeps_previous_file_and_no_temp(tmp_path, exc, fragment):
    path = tmp_path / "out.json"
    write_text(path, "OLD\n")
    with pytest.raises(SnagError) as info:
        atomic_write(path, _half_then(exc))
    assert path.read_text() == "OLD\n"
    assert temp_files(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and fragment in msg


def test_exception_inside_writer_propagates_and_cleans_up(tmp_path):
    path = tmp_path / "x.bin"
    write_text(path, "OLD")
    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(path, _half_then(RuntimeError("boom")))
    assert path.read_text() == "OLD" and temp_files(tmp_path) == []


def test_failing_rename_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_torch(path, {"epoch": 1})

    def bad_replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sio.os, "replace", bad_replace)
    with pytest.raises(SnagError, match="no space left"):
        save_torch(path, {"epoch": 2, "big": torch.zeros(1000)})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert temp_files(tmp_path) == []


def test_full_disk_inside_torch_save_is_a_snag_error(tmp_path, monkeypatch):
    """The disk fills up while a checkpoint is written: one SnagError (not torch's RuntimeError), old file kept."""
    path = tmp_path / "checkpoint.pt"
    save_torch(path, {"epoch": 1})
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fh):
            self.fh, self.written = fh, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 64:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(sio.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(SnagError, match="no space left"):
        save_torch(path, {"epoch": 2, "weights": torch.zeros(10_000)})
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1 and temp_files(tmp_path) == []


def test_every_writer_goes_through_atomic_write(tmp_path, monkeypatch):
    seen = []
    real = sio.atomic_write
    monkeypatch.setattr(sio, "atomic_write", lambda p, w: (seen.append(Path(p).name), real(p, w)))
    write_text(tmp_path / "a.txt", "a")
    write_json(tmp_path / "b.json", {"b": 1})
    save_numpy(tmp_path / "c.npy", np.zeros(3, np.float32))
    save_torch(tmp_path / "d.pt", {"d": 1})
    sio.append_line(tmp_path / "a.txt", "more")
    assert seen == ["a.txt", "b.json", "c.npy", "d.pt", "a.txt"]
    assert (tmp_path / "a.txt").read_text() == "a\nmore\n"


def test_written_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def _no_space_on_second_checkpoint(monkeypatch):
    """Make the 2nd write of checkpoint.pt fail half-way with ENOSPC."""
    real = sio.atomic_write
    calls = {"n": 0}

    def atomic(path, write):
        if Path(path).name == "checkpoint.pt":
            calls["n"] += 1
            if calls["n"] == 2:
                return real(path, _half_then(OSError(errno.ENOSPC, "No space left on device")))
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


def test_unwritable_output_is_one_line_error(tiny, cfg_file, tmp_path, capsys, monkeypatch):
    """A folder we may not write to (simulated: tests run as root) fails cleanly before any file appears."""
    out = tmp_path / "run"

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(sio.tempfile, "mkstemp", denied)
    code, _, err = run_main(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--no-progress"],
                            capsys)
    monkeypatch.undo()
    assert code == 2
    assert_one_error(err, out / "config.yaml", None, "cannot write here")
    assert not out.exists()  # the folder this run created is removed again


def test_stale_temp_files_are_removed_on_resume(tiny, cfg_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--no-progress"], capsys)[0] == 0
    stale = out / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    code, _, err = run_main(["train", "--output", out, "--resume", "--epochs", "3", "--no-progress"], capsys)
    assert code == 0, err
    assert not stale.exists()


# --------------------------------------------------------------------------- output folder and lock

def test_non_empty_output_folder_is_refused(tiny, cfg_file, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    code, _, err = run_main(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--no-progress"],
                            capsys)
    assert code == 2
    msg = assert_one_error(err, out, None, "already exists and is not empty")
    assert "--resume" in msg and "--overwrite" in msg
    assert snapshot(out) == before


def test_demo_never_deletes_a_folder_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "important"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, _, err = run_main(["demo", "--output", out], capsys)
    assert code == 2
    assert_one_error(err, out, None, "not from a snagkg run (thesis.tex)")
    assert (out / "thesis.tex").read_text() == "years of work"


def test_overwrite_replaces_a_finished_run(tiny, cfg_file, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--no-progress"]
    assert run_main(args, capsys)[0] == 0
    code, _, err = run_main(args, capsys)
    assert code == 2 and "already exists" in assert_one_error(err, out)
    code, _, err = run_main(args + ["--overwrite", "--epochs", "1"], capsys)
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 1


def test_lock_is_exclusive_and_released(tmp_path):
    folder = tmp_path / "run"
    with RunLock(folder):
        assert (folder / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(SnagError, match="another snagkg process"):
            RunLock(folder).acquire()
    assert not (folder / ".lock").exists()
    RunLock(folder).acquire().release()  # free again


def test_stale_lock_file_does_not_block(tiny, cfg_file, tmp_path, capsys):
    """A .lock left behind by a killed process is not held by anyone: training proceeds."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("99999\n")
    code, _, err = run_main(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--no-progress"],
                            capsys)
    assert code == 0, err


def test_second_process_training_into_the_same_folder_is_refused(tiny, cfg_file, tmp_path, capsys):
    out = tmp_path / "run"
    lock = RunLock(out).acquire()  # "the first process" (this one) holds the folder
    try:
        p = run_cli_subprocess(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--no-progress"])
        assert p.returncode == 2, p.stderr
        assert_one_error(p.stderr, out, None, "another snagkg process is training into this folder")
        assert sorted(x.name for x in out.iterdir()) == [".lock"]  # nothing written by the refused process
        p = run_cli_subprocess(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--no-progress",
                                "--overwrite"])
        assert p.returncode == 2 and "another snagkg process" in p.stderr
    finally:
        lock.release()
    code, _, err = run_main(["train", "--dataset", tiny, "--output", out, "--config", cfg_file, "--no-progress"],
                            capsys)
    assert code == 0, err


# --------------------------------------------------------------------------- kill -9 and resume

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
