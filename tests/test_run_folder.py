"""The run folder: atomic writes (a failing write keeps the previous file), the run-folder lock,
refusing to write into a folder that is not empty, ``--overwrite``, and an output folder that cannot be written."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import snagkg.runtime.io as sio
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import RunLock, atomic_write, save_numpy, save_torch, write_json, write_text

from _helpers import assert_one_error, half_then, run_cli_subprocess, run_main, snapshot, temp_files


# --------------------------------------------------------------------------- atomic writes

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
        atomic_write(path, half_then(exc))
    assert path.read_text() == "OLD\n"
    assert temp_files(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and fragment in msg


def test_exception_inside_writer_propagates_and_cleans_up(tmp_path):
    path = tmp_path / "x.bin"
    write_text(path, "OLD")
    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(path, half_then(RuntimeError("boom")))
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
