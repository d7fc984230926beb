"""Synthetic multi-modal graphs of any size, streamed to disk in the OpenKE layout.

The latent model is the one of :mod:`.synthetic` (entities on a torus: coarse
lattice cells are the clusters, plus one fine phase; a relation is a lattice
shift plus a fine rotation; a triple links ``h`` to one of the ``nearest``
members of the target cluster closest in fine phase to ``z_h + theta_r``;
``image`` and ``text`` are noisy linear views of ``(cos z, sin z)``), but the
work is close to linear in the sizes: the entities are sorted once by
``(cluster, fine phase)`` and each triple's candidates are found by a binary
search on the circular fine phase inside its target cluster. The numbers
differ from :func:`.synthetic.generate` (which stays as it is).

Exactly ``triples`` distinct triples are written (duplicates removed globally,
no self loops), shuffled, then split. Text files and feature tables are
written chunk by chunk into a hidden sibling folder that is renamed into place
at the end, so a killed run never leaves a half dataset. The files do not
depend on ``chunk``: the same seed and sizes give byte-identical files.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from snagkg.data.datasets.synthetic import SyntheticConfig
from snagkg.runtime.errors import SnagError
from snagkg.runtime.file_sets import swap_in_folder

_LATENT = SyntheticConfig()  # coarse_dims, lattice, nearest and the noise levels of the small generator
TWO_PI = 2 * np.pi


@dataclass(frozen=True)
class StreamOptions:
    """Sizes, widths, split and seed of :func:`write_synthetic` (``chunk``: rows per step)."""
    entities: int
    triples: int
    relations: int = 16
    image_dim: int = 64
    text_dim: int = 32
    missing: float = 0.2
    split: Tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    chunk: int = 1 << 18

    def check(self) -> None:
        """Raise a one-line :class:`SnagError` for any value that cannot give a valid dataset."""
        if self.entities < 2:
            raise SnagError(f"synthetic: --entities must be at least 2, got {self.entities}")
        if self.triples < 1:
            raise SnagError(f"synthetic: --triples must be at least 1, got {self.triples}")
        if self.relations < 1:
            raise SnagError(f"synthetic: --relations must be at least 1, got {self.relations}")
        for flag, dim in (("--image-dim", self.image_dim), ("--text-dim", self.text_dim)):
            if dim < 0:
                raise SnagError(f"synthetic: {flag} must be 0 (no such table) or more, got {dim}")
        if not 0 <= self.missing < 1:
            raise SnagError(f"synthetic: --missing must be in [0, 1), got {self.missing}")
        if self.chunk < 1:
            raise SnagError(f"synthetic: chunk must be at least 1, got {self.chunk}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6:
            raise SnagError(f"synthetic: --split must be 3 non-negative fractions summing to 1, got "
                            f"{','.join(str(f) for f in self.split)}")
        if self.entities ** 2 * self.relations >= 2 ** 62:
            raise SnagError(f"synthetic: {self.entities} entities and {self.relations} relations are too many")
        possible = self.entities * self.relations * _LATENT.nearest
        if self.triples > possible // 2:
            raise SnagError(f"synthetic: at most {possible // 2} triples for {self.entities} entities and "
                            f"{self.relations} relations, got --triples {self.triples}")
        for name, size in zip(("train", "valid", "test"), self.split_sizes()):
            if size < 1:
                raise SnagError(f"synthetic: --triples {self.triples} with --split "
                                f"{','.join(str(f) for f in self.split)} leaves the {name} split empty")

    def split_sizes(self) -> Tuple[int, int, int]:
        """Number of train, valid and test triples."""
        n_valid = int(math.floor(self.triples * self.split[1] + 1e-9))
        n_test = int(math.floor(self.triples * self.split[2] + 1e-9))
        return self.triples - n_valid - n_test, n_valid, n_test


class _Latent:
    """Hidden positions of the entities and rotations of the relations, sorted for searching."""

    def __init__(self, o: StreamOptions, rng: np.random.Generator):
        c = _LATENT
        self.n, self.nr, self.lattice = o.entities, o.relations, c.lattice
        self.cells = rng.integers(0, c.lattice, size=(o.entities, c.coarse_dims))
        self.fine = rng.uniform(0, TWO_PI, size=o.entities)
        self.shift = rng.integers(0, c.lattice, size=(o.relations, c.coarse_dims))
        self.theta = rng.uniform(0, TWO_PI, size=o.relations)
        self.powers = c.lattice ** np.arange(c.coarse_dims)
        cluster = self.cells @ self.powers
        self.order = np.lexsort((self.fine, cluster))  # by cluster, then fine phase
        self.sorted_key = cluster[self.order] * 8.0 + self.fine[self.order]  # fine < 2 pi < 8
        clusters = np.arange(c.lattice ** c.coarse_dims)
        self.starts = np.searchsorted(cluster[self.order], clusters)
        self.counts = np.searchsorted(cluster[self.order], clusters, side="right") - self.starts

    def tails(self, h: np.ndarray, r: np.ndarray, pick: np.ndarray) -> np.ndarray:
        """The ``pick``-th nearest member of each target cluster (``-1`` where there is none)."""
        target = ((self.cells[h] + self.shift[r]) % self.lattice) @ self.powers
        phase = (self.fine[h] + self.theta[r]) % TWO_PI
        start, count = self.starts[target], self.counts[target]
        pos = np.searchsorted(self.sorted_key, target * 8.0 + phase) - start  # in 0..count
        width = 2 * (_LATENT.nearest + 1)  # the nearest + 1 (one may be h itself) on each side
        plain = np.arange(width)[None, :]
        wide = (count >= width)[:, None]
        local = np.where(wide, (pos[:, None] + plain - width // 2) % np.maximum(count, 1)[:, None], plain)
        ok = wide | (plain < count[:, None])
        cand = self.order[np.minimum(start[:, None] + np.where(ok, local, 0), self.n - 1)]
        dist = np.abs(np.sin((phase[:, None] - self.fine[cand]) / 2))
        dist[~ok | (cand == h[:, None])] = np.inf
        rows = np.arange(len(h))
        col = np.argsort(dist, axis=1, kind="stable")[rows, pick]
        return np.where(np.isfinite(dist[rows, col]), cand[rows, col], -1)

    def basis(self) -> np.ndarray:
        """``[n, 2 * (coarse_dims + 1)]`` ``(cos z, sin z)`` of every entity (as in :mod:`.synthetic`)."""
        z = np.concatenate([self.cells * (TWO_PI / self.lattice), self.fine[:, None]], axis=1)
        return np.concatenate([np.cos(z), np.sin(z)], axis=1)


def _draw_triples(o: StreamOptions, lat: _Latent, rng: np.random.Generator, bar) -> np.ndarray:
    """``[triples, 3]`` distinct ``(h, r, t)`` rows: the first distinct ones drawn, then shuffled."""
    n, nr, want = o.entities, o.relations, o.triples
    possible = n * nr * _LATENT.nearest
    draw = int(-possible * math.log1p(-want / possible) * 1.02) + 64  # expected draws for `want` distinct
    keys = np.empty(0, dtype=np.int64)
    found, stalled = 0, 0
    for _ in range(64):
        bar.total += draw
        h = rng.integers(0, n, size=draw)
        r = rng.integers(0, nr, size=draw)
        pick = rng.integers(0, _LATENT.nearest, size=draw)
        t = np.empty(draw, dtype=np.int64)
        for s in range(0, draw, o.chunk):
            sl = slice(s, s + o.chunk)
            t[sl] = lat.tails(h[sl], r[sl], pick[sl])
            bar.update(len(t[sl]))
        keep = t >= 0
        keys = np.concatenate([keys, ((h[keep] * nr + r[keep]) * n + t[keep])])
        del h, r, pick, t, keep
        _, first = np.unique(keys, return_index=True)
        gained, found = len(first) - found, len(first)
        if found >= want:
            break
        stalled = stalled + 1 if gained == 0 else 0
        if stalled >= 3:
            break
        draw = min(int((want - found) * draw / max(gained, 1) * 1.1) + 64, 8 * want + (1 << 16))
    if found < want:
        raise SnagError(f"synthetic: only {found} distinct triples are possible here, --triples {want} asked; "
                        f"use fewer triples or more entities")
    kept = keys[np.sort(first)[:want]]
    kept = kept[rng.permutation(want)]
    hr, t = np.divmod(kept, n)
    h, r = np.divmod(hr, nr)
    return np.stack([h, r, t], axis=1)


def _ascii(fields: Sequence[Union[bytes, np.ndarray]]) -> bytes:
    """Rows of text made of constant byte strings and non-negative integer columns (vectorised)."""
    n = next(len(f) for f in fields if not isinstance(f, bytes))
    blocks: List[np.ndarray] = []
    masks: List[np.ndarray] = []
    for f in fields:
        if isinstance(f, bytes):
            blocks.append(np.broadcast_to(np.frombuffer(f, dtype=np.uint8), (n, len(f))))
            masks.append(np.ones((n, len(f)), dtype=bool))
            continue
        v = np.asarray(f, dtype=np.int64)[:, None]
        width = len(str(int(v.max()))) if n else 1
        powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
        blocks.append((v // powers % 10 + 48).astype(np.uint8))
        masks.append((v >= powers) | (powers == 1))  # no leading zeros, but "0" itself
    return np.concatenate(blocks, axis=1)[np.concatenate(masks, axis=1)].tobytes()


def _write_rows(path: Path, count: int, fields, chunk: int, bar) -> None:
    """A count line, then ``count`` rows built by ``fields(slice)`` (see :func:`_ascii`) chunk by chunk."""
    with open(path, "wb") as fh:
        fh.write(f"{count}\n".encode())
        for s in range(0, count, chunk):
            sl = slice(s, min(s + chunk, count))
            fh.write(_ascii(fields(sl)))
            bar.update(sl.stop - sl.start)


def _write_table(folder: Path, name: str, o: StreamOptions, dim: int, noise: float, basis: np.ndarray,
                 rng: np.random.Generator, bar) -> float:
    """``<name>.npy`` (float32, missing rows NaN) and ``<name>.missing.txt``; returns the missing fraction."""
    n, k = basis.shape
    w = rng.standard_normal((k, dim)) / np.sqrt(k)
    gram = basis.T @ basis  # the std of basis @ w, without the [n, dim] table
    mean = float((basis.mean(axis=0) @ w).mean())
    std = math.sqrt(max(float(np.einsum("ij,ik,kj->", w, gram, w)) / (n * dim) - mean ** 2, 0.0))
    missing = rng.random(n) < o.missing
    if missing.all():
        missing[0] = False  # the loader needs one real row
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (n, dim)}
    with open(folder / f"{name}.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for s in range(0, n, o.chunk):
            sl = slice(s, s + o.chunk)
            values = basis[sl] @ w + noise * std * rng.standard_normal((len(basis[sl]), dim))
            values = values.astype(np.float32)
            values[missing[sl]] = np.nan
            fh.write(values.tobytes())
            bar.update(len(values))
    if missing.any():  # like write_openke: no list when nothing is missing
        _write_rows_plain(folder / f"{name}.missing.txt", np.flatnonzero(missing), o.chunk)
    return float(missing.mean())


def _write_rows_plain(path: Path, ids: np.ndarray, chunk: int) -> None:
    """One id per line, no count line."""
    with open(path, "wb") as fh:
        for s in range(0, len(ids), chunk):
            fh.write(_ascii([ids[s:s + chunk], b"\n"]))


def _write_all(tmp: Path, o: StreamOptions, lat: _Latent, triples: np.ndarray, streams, bar) -> Dict:
    """Every file of the dataset into ``tmp``; returns the modalities' widths and missing fractions."""
    n, nr = o.entities, o.relations
    bar.set_description("synthetic: writing")
    ids = np.arange(max(n, nr), dtype=np.int64)
    _write_rows(tmp / "entity2id.txt", n, lambda sl: [b"entity_", ids[sl], b"\t", ids[sl], b"\n"], o.chunk, bar)
    _write_rows(tmp / "relation2id.txt", nr, lambda sl: [b"relation_", ids[sl], b"\t", ids[sl], b"\n"],
                o.chunk, bar)
    sizes = o.split_sizes()
    n_train, n_valid = sizes[0], sizes[1]
    parts = {"valid": triples[:n_valid], "test": triples[n_valid:n_valid + sizes[2]],
             "train": triples[n_valid + sizes[2]:]}
    assert len(parts["train"]) == n_train
    for split in ("train", "valid", "test"):
        arr = parts[split]
        _write_rows(tmp / f"{split}2id.txt", len(arr),
                    lambda sl, a=arr: [a[sl, 0], b" ", a[sl, 2], b" ", a[sl, 1], b"\n"], o.chunk, bar)
    modalities = {}
    basis = lat.basis()
    (tmp / "features").mkdir()
    for (name, dim, noise), rng in zip((("image", o.image_dim, _LATENT.image_noise),
                                        ("text", o.text_dim, _LATENT.text_noise)), streams):
        if dim:
            frac = _write_table(tmp / "features", name, o, dim, noise, basis, rng, bar)
            modalities[name] = {"dim": dim, "missing": round(frac, 4)}
    return modalities


def _prepare(folder: Path, overwrite: bool) -> None:
    """Refuse an output that is a file, or a non-empty folder unless ``overwrite``."""
    if folder.exists() and not folder.is_dir():
        raise SnagError("output exists and is not a folder", folder)
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise SnagError("output folder is not empty (use --overwrite to replace it)", folder)


@contextlib.contextmanager
def staged_folder(folder: Path, overwrite: bool) -> Iterator[Path]:
    """A fresh temp folder beside ``folder`` to write a dataset into: on a clean exit it replaces
    ``folder`` whole (:func:`swap_in_folder`), on an error it goes; an OS error is one line."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale(folder)
        tmp = folder.parent / f".{folder.name}.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
            _prepare(folder, overwrite)  # nobody filled it meanwhile
            swap_in_folder(tmp, folder)  # a reader sees the old folder or the new one, never a mix
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as exc:
        raise SnagError(f"cannot write the dataset: {exc.strerror or exc}", exc.filename or folder) from None


def _clean_stale(folder: Path) -> None:
    """Remove partial folders left by killed runs (their process is gone)."""
    for old in folder.parent.glob(f".{folder.name}.partial-*"):
        try:
            os.kill(int(old.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except (ValueError, OSError):
            continue


def write_synthetic(folder, entities: int, triples: int, relations: int = 16, image_dim: int = 64,
                    text_dim: int = 32, missing: float = 0.2, split: Sequence[float] = (0.8, 0.1, 0.1),
                    seed: int = 0, chunk: int = 1 << 18, progress: bool = False,
                    overwrite: bool = False) -> Dict[str, object]:
    """Write a synthetic OpenKE-layout dataset into ``folder``; returns a JSON-ready summary.

    Bad values raise a one-line :class:`SnagError` before anything is written.
    """

    o = StreamOptions(int(entities), int(triples), int(relations), int(image_dim), int(text_dim),
                      float(missing), tuple(float(f) for f in split), int(seed), int(chunk))  # type: ignore[arg-type]
    o.check()
    folder = Path(folder)
    _prepare(folder, overwrite)
    began = time.time()
    latent_ss, triple_ss, image_ss, text_ss = np.random.SeedSequence(o.seed).spawn(4)
    bar = tqdm(total=0, desc="synthetic: drawing triples", unit="row", unit_scale=True, file=sys.stderr, disable=not progress,
               mininterval=0.5, leave=False)
    try:
        lat = _Latent(o, np.random.default_rng(latent_ss))
        rows = _draw_triples(o, lat, np.random.default_rng(triple_ss), bar)
        bar.total += o.entities * (1 + (o.image_dim > 0) + (o.text_dim > 0)) + o.relations + o.triples
        with staged_folder(folder, overwrite) as tmp:
            streams = (np.random.default_rng(image_ss), np.random.default_rng(text_ss))
            modalities = _write_all(tmp, o, lat, rows, streams, bar)
    finally:
        bar.close()
    n_train, n_valid, n_test = o.split_sizes()
    return {"output": str(folder), "entities": o.entities, "relations": o.relations, "train": n_train,
            "valid": n_valid, "test": n_test, "modalities": modalities, "seed": o.seed,
            "seconds": round(time.time() - began, 2)}
