"""Helpers for the tests of run folders, checkpoints, bad input and untrusted files.

A tiny hand-written OpenKE folder (12 entities, 3 relations) whose every
line number is known, so a test can break one line and check that the error
names exactly that file and line; plus CLI runners, error assertions, a writer that fails
half-way and copies of the run folders written before the redesign (tests/data/legacy_runs).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from snagkg.cli.main import main

N_ENT, N_REL = 12, 3

# A YAML config that makes one epoch on the tiny folder take milliseconds.
TINY_CONFIG = (
    "encoder: {hidden: 8, heads: 2}\n"
    "train: {epochs: 2, batch_size: 64, lr: 0.01, negatives: 4, eval_every: 1}\n"
)


def tiny_triples() -> Dict[str, List[Tuple[int, int, int]]]:
    """``(head, tail, relation)`` rows in OpenKE order; train mentions every entity."""
    train = [(i, (i + 1) % N_ENT, i % N_REL) for i in range(N_ENT)]
    train += [(i, (i + 3) % N_ENT, (i + 1) % N_REL) for i in range(N_ENT)]
    valid = [(i, (i + 5) % N_ENT, i % N_REL) for i in range(3)]
    test = [(i, (i + 7) % N_ENT, (i + 2) % N_REL) for i in range(3, 6)]
    return {"train": train, "valid": valid, "test": test}


def triple_file(rows: Sequence[Tuple[int, int, int]]) -> str:
    return f"{len(rows)}\n" + "".join(f"{h} {t} {r}\n" for h, t, r in rows)


def write_tiny_openke(folder: Path, features: bool = True, unseen_test_entity: bool = False,
                      shift_train: int = 0) -> Path:
    """Write the tiny dataset.

    Line ``k + 2`` of ``entity2id.txt`` is entity ``k`` (line 1 is the count);
    line ``j + 2`` of a split file is its ``j``-th triple. ``features`` adds
    ``features/image.npy`` (12 x 4 float32) with entity 2 listed in
    ``image.missing.txt``. ``unseen_test_entity`` adds entity 12, used only
    by one test triple. ``shift_train`` relabels the train triples (same
    sizes, different graph).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = N_ENT + (1 if unseen_test_entity else 0)
    (folder / "entity2id.txt").write_text(f"{n}\n" + "".join(f"e{i}\t{i}\n" for i in range(n)))
    (folder / "relation2id.txt").write_text(f"{N_REL}\n" + "".join(f"r{i}\t{i}\n" for i in range(N_REL)))
    splits = tiny_triples()
    if shift_train:
        splits["train"] = [((h + shift_train) % N_ENT, (t + 2 * shift_train) % N_ENT, r) for h, t, r in splits["train"]]
    if unseen_test_entity:
        splits["test"] = splits["test"] + [(N_ENT, 0, 0)]
    for name, rows in splits.items():
        (folder / f"{name}2id.txt").write_text(triple_file(rows))
    if features:
        feats = folder / "features"
        feats.mkdir(exist_ok=True)
        values = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
        values[2] = np.nan
        np.save(feats / "image.npy", values)
        (feats / "image.missing.txt").write_text("2\n")
    return folder


def replace_line(path: Path, line: int, text: str) -> None:
    """Replace 1-based ``line`` of a text file (``text`` without its newline)."""
    lines = Path(path).read_text().split("\n")
    lines[line - 1] = text
    Path(path).write_text("\n".join(lines))


def insert_line(path: Path, line: int, text: str) -> None:
    lines = Path(path).read_text().split("\n")
    lines.insert(line - 1, text)
    Path(path).write_text("\n".join(lines))


def run_main(args: Sequence[str], capsys) -> Tuple[int, str, str]:
    """Run the CLI in-process; returns ``(exit code, stdout, stderr)``."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def subprocess_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_cli_subprocess(args: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snagkg", *[str(a) for a in args]], capture_output=True,
                          text=True, env=subprocess_env(), timeout=timeout)


def error_lines(err: str) -> List[str]:
    return [line for line in err.splitlines() if line.startswith("error")]


def assert_one_error(err: str, path: Optional[Path] = None, line: Optional[int] = None,
                     fragment: Optional[str] = None, only_line: bool = True) -> str:
    """stderr holds exactly one ``error: `` line (and, with ``only_line``, nothing else).

    It names ``path`` (and ``path:line:`` when ``line`` is given) and contains ``fragment``.
    """
    assert "Traceback" not in err, err
    lines = err.strip("\n").splitlines()
    if only_line:
        assert len(lines) == 1, f"expected one stderr line, got:\n{err}"
    errors = error_lines(err)
    assert len(errors) == 1, f"expected one error line, got:\n{err}"
    msg = errors[0]
    assert msg.startswith("error: "), msg
    if path is not None:
        where = f"{path}:{line}: " if line is not None else f"{path}"
        assert where in msg, f"{where!r} not in {msg!r}"
        if line is None:  # no line number claimed where there is none expected
            assert f"{path}: " in msg or msg.endswith(str(path)), msg
    if fragment is not None:
        assert fragment.lower() in msg.lower(), f"{fragment!r} not in {msg!r}"
    return msg


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), to check that nothing changed."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(folder: Path) -> List[Path]:
    return sorted(Path(folder).rglob(".*.tmp"))


def half_then(exc: BaseException):
    """A writer for ``atomic_write`` that writes part of a file, then raises ``exc``."""
    def write(fh):
        fh.write(b"NEW-PARTIAL-" * 1000)
        raise exc
    return write


LEGACY_RUNS = Path(__file__).parent / "data" / "legacy_runs"


def legacy_run(kind: str, tmp_path: Path) -> Path:
    """A copy of the ``kind`` (completion or alignment) run folder written before the redesign, its
    dataset path pointed at a copy of the vendored data."""
    run = tmp_path / kind
    shutil.copytree(LEGACY_RUNS / kind, run)
    data = tmp_path / f"{kind}_data"
    shutil.copytree(LEGACY_RUNS / f"{kind}_data", data)
    cfg = run / "config.yaml"
    lines = [f"dataset: {data}" if line.startswith("dataset:") else line for line in cfg.read_text().splitlines()]
    cfg.write_text("\n".join(lines) + "\n")
    return run


def small_completion_task(folder: Path, storage: str = "memory", updates: str = "dense", **extra):
    """A completion task on the OpenKE ``folder`` (width 16, 6 negatives, batch fusion, noise 0.5, seed 3)
    with its feature tables in ``storage`` and ``updates`` entity updates; ``extra``: more overrides."""
    import snagkg
    from snagkg.data.datasets import read_openke
    from snagkg.tasks.completion.task import CompletionTask

    o = {"dataset": str(folder), "encoder.hidden": 16, "train.negatives": 6, "encoder.dropout": 0.0,
         "noise.ratio": 0.5, "completion.fusion_scope": "batch", "seed": 3,
         "completion.feature_storage": storage, "completion.entity_updates": updates}
    o.update(extra)
    return CompletionTask(read_openke(folder, storage=storage), snagkg.resolve_config(overrides=o))


def interrupted_then_resumed(cfg, folder: Path, monkeypatch, owner: type, name: str, stop):
    """Train ``cfg`` into ``folder`` with ``owner.name`` raising KeyboardInterrupt on the call for
    which ``stop(*args)`` is true, then resume it: ``(the checkpoint left by the kill, the resumed
    run's results)``."""
    import snagkg  # deferred: the helpers module is imported by tests that never train
    import torch  # deferred: as above
    original = getattr(owner, name)

    def killing(self, *args, **kwargs):
        if stop(*args):
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, killing)
    try:
        snagkg.train(cfg, folder, progress=False, echo=lambda s: None)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError(f"{owner.__name__}.{name} never stopped the run")
    finally:
        monkeypatch.undo()
    part = torch.load(folder / "checkpoint.pt", weights_only=True)
    return part, snagkg.train(cfg, folder, resume=True, progress=False, echo=lambda s: None)
