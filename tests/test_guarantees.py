"""What snagkg guarantees (README, "What snagkg guarantees"): nothing lost, nothing stale.

* a run killed at any moment (``kill -9``) completes with ``--resume``, with the metrics of an
  uninterrupted run, even when the kill came before the first checkpoint (or before config.yaml);
* ``--overwrite`` removes everything the old run derived (robustness, ranks, summaries, exports),
  and ``snagkg report`` skips a robustness.json computed from another model;
* a feature table and its missing list land as one pair (old or new, never one of each), and the
  leftovers of a killed write are removed by the next run of the same command;
* a checkpoint with NaN/inf weights is refused at load, naming the tensor;
* every refusal is one line, even where torch would warn;
* header rows in labelled files and the messages a user reads.

The ``slow`` tests kill real ``snagkg`` processes with SIGKILL at random moments.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from _helpers import (TINY_CONFIG, assert_one_error, run_cli_subprocess, run_main, subprocess_env,
                      write_tiny_openke)

N = 12  # entities of the tiny dataset


def _train(ds: Path, out: Path, cfg: Path, *extra: str):
    return ["train", "--dataset", ds, "--output", out, "--config", cfg, "--no-progress", "--device", "cpu", *extra]


@pytest.fixture
def setup(tmp_path):
    ds = write_tiny_openke(tmp_path / "ds")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_CONFIG)
    return ds, cfg


def _metrics(stdout: str):
    data = json.loads(stdout.strip().splitlines()[-1])
    return data["valid"], data["test"], data["best_epoch"]


def _strip_seconds(metrics):
    return {k: v for k, v in metrics.items() if "seconds" not in k}


# --------------------------------------------------------------------------- 1. resume before the first checkpoint

@pytest.mark.parametrize("left", ["config-only", "lock-only"])
def test_resume_after_a_kill_before_the_first_checkpoint(setup, tmp_path, capsys, left):
    ds, cfg = setup
    ref = tmp_path / "ref"
    code, stdout, err = run_main(_train(ds, ref, cfg), capsys)
    assert code == 0, err
    want = _metrics(stdout)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("12345\n")  # what a kill leaves: the lock file (its flock died with the process)
    if left == "config-only":  # killed after config.yaml, dataset.json and the ids, before checkpoint.pt
        for name in ("config.yaml", "dataset.json", "entities.tsv", "relations.tsv"):
            shutil.copy(ref / name, run / name)
        (run / ".metrics.jsonl.4242.abc.tmp").write_text("half")
    code, stdout, err = run_main(_train(ds, run, cfg, "--resume"), capsys)
    assert code == 0, err
    got = _metrics(stdout)
    assert (_strip_seconds(got[0]), _strip_seconds(got[1]), got[2]) == \
        (_strip_seconds(want[0]), _strip_seconds(want[1]), want[2])
    assert not list(run.glob(".*.tmp"))


def test_resume_without_config_or_checkpoint_and_without_dataset_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    code, _, err = run_main(["train", "--output", run, "--resume", "--no-progress"], capsys)
    assert code == 2
    assert_one_error(err, run, None, "nothing to resume")


# --------------------------------------------------------------------------- 2. --overwrite leaves nothing stale

def test_overwrite_removes_what_the_old_run_derived(setup, tmp_path, capsys):
    ds, cfg = setup
    run = tmp_path / "run"
    assert run_main(_train(ds, run, cfg), capsys)[0] == 0
    assert run_main(["export", run, "--output", run / "vectors.npz"], capsys)[0] == 0
    assert run_main(["export", run, "--output", run / "vectors.tsv"], capsys)[0] == 0
    derived = ["robustness.json", "robustness.csv", "robustness.png", "robustness.uniform.image.json",
               "ranks.test.npy", "summary.md", "summary.csv", "summary.json"]
    for name in derived:
        (run / name).write_text("{}")
    (run / "my_notes.txt").write_text("mine")  # not snagkg's: kept
    (run / "mine.tsv").write_text("a\tb\n")
    code, _, err = run_main(_train(ds, run, cfg, "--overwrite"), capsys)
    assert code == 0, err
    left = sorted(p.name for p in run.iterdir())
    for name in derived + ["vectors.npz", "vectors.tsv"]:
        assert name not in left, f"{name} of the old run survived --overwrite"
    assert "my_notes.txt" in left and "mine.tsv" in left


def test_report_skips_robustness_of_another_model(setup, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    ds, cfg = setup
    run, other = tmp_path / "run", tmp_path / "other"
    assert run_main(_train(ds, run, cfg), capsys)[0] == 0
    assert run_main(_train(ds, other, cfg, "--seed", "7"), capsys)[0] == 0
    code, _, err = run_main(["robustness", run, "--modality", "image", "--drop", "0,1", "--no-progress"], capsys)
    assert code == 0, err
    assert "model_sha256" in json.loads((run / "robustness.json").read_text())
    shutil.copy(other / "best.pt", run / "best.pt")  # the model changed since (same config: it loads)
    code, _, err = run_main(["report", run, "--output", tmp_path / "r.html", "--no-weights", "--no-progress"], capsys)
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert "computed from another model" in html + err


# --------------------------------------------------------------------------- 3. feature pairs land whole

def _import(ds: Path, src: Path):
    return ["features", "import", "--dataset", ds, "--modality", "image", "--from", src, "--overwrite"]


def _source(tmp_path: Path, nan_row: int) -> Path:
    values = np.random.default_rng(nan_row).standard_normal((N, 4)).astype(np.float32)
    values[nan_row] = np.nan
    path = tmp_path / f"src{nan_row}.npy"
    np.save(path, values)
    return path


KILL_AT_SECOND_RENAME = """
import os, signal, sys
from snagkg.cli.main import main
real, pair = os.replace, []
def replace(src, dst):
    if str(dst).endswith((".npy", ".missing.txt")):
        pair.append(dst)
        if len(pair) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 between the two renames of the pair
    return real(src, dst)
os.replace = replace
sys.exit(main(sys.argv[1:]))
"""


def test_a_kill_between_the_two_renames_leaves_one_pair(setup, tmp_path, capsys):
    """The second import is killed (SIGKILL) after its first rename: training sees one pair."""
    ds, cfg = setup
    assert run_main(_import(ds, _source(tmp_path, 2)), capsys)[0] == 0
    p = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_RENAME, *map(str, _import(ds, _source(tmp_path, 5)))],
                       capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    code, _, err = run_main(_train(ds, tmp_path / "run", cfg, "--epochs", "1"), capsys)
    assert code == 0, err  # a torn pair fails here: "row ... contains NaN" (the list names the other row)


def test_features_import_removes_what_a_killed_write_left(setup, tmp_path, capsys):
    ds, _ = setup
    feats = ds / "features"
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    stale = [feats / f".image.npy.{dead}.x1.tmp", feats / f".image.missing.txt.{dead}.x2.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    assert run_main(_import(ds, _source(tmp_path, 3)), capsys)[0] == 0
    assert not [p for p in stale if p.exists()]


def test_convert_removes_what_a_killed_convert_left(tmp_path, capsys):
    src = tmp_path / "g.tsv"
    src.write_text("".join(f"e{i}\tr{i % 2}\te{(i + 1) % 9}\n" for i in range(30)))
    out = tmp_path / "out"
    dead = 2 ** 22 + 12345
    left = tmp_path / f".out.convert-{dead}.tmp"
    left.mkdir()
    (left / "train2id.txt").write_text("half")
    code, _, err = run_main(["convert", src, "--output", out, "--split", "0.8,0.1,0.1"], capsys)
    assert code == 0, err
    assert not left.exists() and (out / "train2id.txt").is_file()


# --------------------------------------------------------------------------- 4. NaN weights refused at load

def test_checkpoint_with_nan_weights_is_refused(setup, tmp_path, capsys):
    ds, cfg = setup
    run = tmp_path / "run"
    assert run_main(_train(ds, run, cfg), capsys)[0] == 0
    ckpt = torch.load(run / "best.pt", weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.numel() > 1)
    ckpt["model"][name].view(-1)[1] = float("nan")
    torch.save(ckpt, run / "best.pt")
    code, stdout, err = run_main(["evaluate", run], capsys)
    assert code == 2, stdout
    assert_one_error(err, run / "best.pt", None, f"tensor {name!r} holds NaN")


# --------------------------------------------------------------------------- 5. one line even when torch warns

class _Payload:
    def __reduce__(self):
        return (os.system, ("true",))


def test_raw_pickle_refusals_are_one_line(setup, tmp_path):
    ds, _ = setup
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(_Payload()))
    p = run_cli_subprocess(["features", "import", "--dataset", ds, "--modality", "image", "--from", evil,
                            "--overwrite"])
    assert p.returncode == 2
    assert_one_error(p.stderr, evil, None, None)
    images = tmp_path / "images"
    images.mkdir()
    p = run_cli_subprocess(["features", "image", "--dataset", ds, "--images", images, "--overwrite", "--weights", evil,
                            "--no-progress", "--device", "cpu"])
    assert p.returncode == 2
    assert_one_error(p.stderr, None, None, None)


# --------------------------------------------------------------------------- 6. header rows

def test_a_repeated_header_line_is_skipped_with_a_note(tmp_path, capsys):
    body = [f"e{i}\tr{i % 2}\te{(i + 1) % 9}\n" for i in range(30)]
    src = tmp_path / "g.tsv"  # two files joined with cat: the header again on line 17
    src.write_text("head\trelation\ttail\n" + "".join(body[:15]) + "head\trelation\ttail\n" + "".join(body[15:]))
    out = tmp_path / "out"
    code, _, err = run_main(["convert", src, "--output", out, "--split", "0.8,0.1,0.1"], capsys)
    assert code == 0, err
    assert "header line appears again on line 17" in err
    assert "head" not in (out / "entity2id.txt").read_text().split()


def test_a_header_with_a_repeated_column_name_is_an_error(tmp_path, capsys):
    src = tmp_path / "g.tsv"
    src.write_text("head\thead\ttail\n" + "".join(f"e{i}\tr0\te{i + 1}\n" for i in range(10)))
    code, _, err = run_main(["convert", src, "--output", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_error(err, src, 1, "names the head column twice")


# --------------------------------------------------------------------------- 7. messages

def test_one_literal_value_is_singular(tmp_path, capsys):
    pytest.importorskip("rdflib")
    X = "http://x.org/"
    lines = [f"<{X}e{i}> <{X}p{i % 2}> <{X}e{(i + 1) % 8}> .\n" for i in range(24)]
    lines.append(f'<{X}nobody> <{X}age> "42" .\n')
    src = tmp_path / "g.nt"
    src.write_text("".join(lines))
    code, _, err = run_main(["convert", src, "--output", tmp_path / "out"], capsys)
    assert code == 0, err
    assert "1 literal value kept as attribute data (its subject is not an entity of the graph)" in err


def test_moved_to_train_does_not_count_the_whole_train_split(tmp_path, capsys):
    src = tmp_path / "star.tsv"  # a small dense core and a star: the held-out parts come out short
    rows = [f"c{i}\tr0\tc{j}" for i in range(5) for j in range(5) if i != j]
    rows += [f"hub\tr0\tleaf{i}" for i in range(40)] + ["hub\tr0\tc0"]
    src.write_text("\n".join(rows) + "\n")
    code, _, err = run_main(["convert", src, "--output", tmp_path / "out", "--split", "0.5,0.25,0.25"], capsys)
    assert code == 0, err
    note = next(ln for ln in err.splitlines() if ln.startswith("split "))
    train = int(note.split(" into train ")[1].split()[0])
    assert f"{train} triples moved to train" not in note, note


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda_names_the_device(setup, tmp_path, capsys):
    ds, cfg = setup
    args = _train(ds, tmp_path / "run", cfg)
    args[args.index("--device") + 1] = "cuda:1"
    code, _, err = run_main(args, capsys)
    assert code == 2
    assert_one_error(err, None, None, "--device cuda:1 requested")


def test_rdf_syntax_error_says_what_was_expected(tmp_path, capsys):
    pytest.importorskip("rdflib")
    src = tmp_path / "bad.nt"
    src.write_text("<http://x/a> <http://x/p> <http://x/b> .\n<http://x/a> <http://x/p> <http://x/c>\n")
    code, _, err = run_main(["convert", src, "--output", tmp_path / "out"], capsys)
    assert code == 2
    msg = assert_one_error(err, src, 2, "expected '.'")
    assert "at ''" not in msg


# --------------------------------------------------------------------------- fault injection (SIGKILL)

def _spawn(args):
    return subprocess.Popen([sys.executable, "-m", "snagkg", *[str(a) for a in args]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())


def _kill_at(args, delay: float) -> None:
    p = _spawn(args)
    try:
        p.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()


def _timed(args):
    t0 = time.perf_counter()
    p = run_cli_subprocess(args, timeout=600)
    assert p.returncode == 0, p.stderr
    return p, time.perf_counter() - t0


@pytest.mark.slow
def test_train_killed_at_ten_random_moments_resumes_to_the_same_metrics(tmp_path):
    ds = write_tiny_openke(tmp_path / "ds")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(TINY_CONFIG.replace("epochs: 2", "epochs: 6"))
    base, seconds = _timed(_train(ds, tmp_path / "ref", cfg))
    want = _metrics(base.stdout)
    rng = random.Random(34)
    for k in range(10):
        run = tmp_path / f"run{k}"
        _kill_at(_train(ds, run, cfg), rng.uniform(0.0, seconds))  # startup included
        p = run_cli_subprocess(_train(ds, run, cfg, "--resume"), timeout=600)
        assert p.returncode == 0, f"kill {k}: {p.stderr}"
        got = _metrics(p.stdout)
        assert (_strip_seconds(got[0]), _strip_seconds(got[1]), got[2]) == \
            (_strip_seconds(want[0]), _strip_seconds(want[1]), want[2]), f"kill {k}"
        assert not list(run.glob(".*.tmp"))


def _pair(ds: Path):
    from snagkg.data.tables import load_npy, read_missing_ids, table_files
    npy, miss = table_files(ds / "features" / "image.npy")
    values = load_npy(npy)
    return np.isnan(values).all(axis=1).nonzero()[0].tolist(), (
        read_missing_ids(miss, N).nonzero()[0].tolist() if miss else [])


def _vectors(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        return z["entity_vectors"]


@pytest.mark.slow
def test_features_and_export_killed_at_random_moments_leave_old_or_new(tmp_path):
    ds = write_tiny_openke(tmp_path / "ds")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(TINY_CONFIG)
    sources = [_source(tmp_path, 3), _source(tmp_path, 8)]
    _, seconds = _timed(_import(ds, sources[0]))
    rng = random.Random(7)
    for k in range(10):
        _kill_at(_import(ds, sources[(k + 1) % 2]), rng.uniform(0.0, seconds))
        nan_rows, listed = _pair(ds)
        assert nan_rows == listed and listed in ([3], [8]), f"kill {k}: a mixed pair {nan_rows} / {listed}"
    _timed(_import(ds, sources[0]))
    assert _pair(ds) == ([3], [3]) and not list((ds / "features").glob(".*.tmp"))

    runs = [tmp_path / "a", tmp_path / "b"]
    for i, run in enumerate(runs):
        assert run_cli_subprocess(_train(ds, run, cfg, "--seed", str(i))).returncode == 0
    out = tmp_path / "vectors.npz"
    _, seconds = _timed(["export", runs[0], "--output", out])
    _timed(["export", runs[1], "--output", tmp_path / "b.npz"])
    versions = [_vectors(out), _vectors(tmp_path / "b.npz")]
    for k in range(10):
        _kill_at(["export", runs[(k + 1) % 2], "--output", out], rng.uniform(0.0, seconds))
        got = _vectors(out)  # a torn file would not load at all
        assert any(np.array_equal(got, v) for v in versions), f"kill {k}: neither the old nor the new export"
    _timed(["export", runs[0], "--output", out])
    assert not list(tmp_path.glob(".*.tmp"))
