"""Synthetic entity-alignment pairs of any size, streamed to disk in the DBP15K layout.

One latent graph of ``n`` entities is drawn and copied into two knowledge
graphs (``snagkg synthetic --pair``):

* **Degrees** are heavy-tailed: every entity has a Pareto weight (shape
  :data:`PARETO_SHAPE`, capped at ``sqrt(n)`` times the median) and both ends of
  every latent triple are drawn in proportion to it, so a few hubs have
  thousands of triples and many entities have one or none, as in DBpedia.
  Relations follow a Zipf law over ``relations`` types.
* **The two graphs** each keep every latent triple with probability
  ``1 - drop`` (independently). KG1 entity ``e`` has id ``e``; its partner in KG2
  has id ``n + perm[e]`` (a seeded permutation), and KG2 relation ids are
  offset by ``relations``. Every entity has a gold link (``ill_ent_ids``).
* **Names**: a URI per entity made of 2 to 4 syllables plus a per-graph base-36
  id; the KG2 name is the KG1 name with ``name_noise`` of its letters changed
  (so the ``char`` modality is informative but not exact); the suffixes differ
  between the graphs.
* **Modality tables** ``features/image.npy`` and ``features/text.npy`` (float32,
  one row per id of the unified id space, ``image_dim`` / ``text_dim`` wide; 0:
  none): noisy linear views (per graph) of a latent vector per entity, with
  ``missing`` of each graph's rows missing (NaN, listed in
  ``<name>.missing.txt``).

Memory is bounded by a few ``O(n)`` arrays (weights, the permutation, the
latent vectors: about 100 bytes per entity) plus one block of rows; text and
tables are written block by block into a hidden sibling folder renamed into
place at the end. The same arguments and seed give byte-identical files (the
blocks are a fixed size, not an option).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict

import numpy as np

from snagkg.data.datasets.synthetic_stream import _prepare, staged_folder
from snagkg.runtime.errors import SnagError

BLOCK = 1 << 16            # rows per generation block (fixed: the bytes do not depend on it)
PARETO_SHAPE = 1.3         # tail of the entity weights (degree distribution)
ZIPF_RELATIONS = 1.1       # exponent of the relation frequencies
LATENT_DIM = 16
SYLLABLES = [a + b for a in "bcdfghjklmnprstvz" for b in "aeiou"] + ["an", "el", "or", "is", "un"]


def _names(rng: np.random.Generator, count: int) -> np.ndarray:
    """``[count, 4]`` syllable indices (``-1``: no syllable; 2 to 4 per name)."""
    syl = rng.integers(0, len(SYLLABLES), size=(count, 4))
    length = rng.integers(2, 5, size=count)
    syl[np.arange(4)[None, :] >= length[:, None]] = -1
    return syl


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, r = divmod(value, 36)
        out = digits[r] + out
        if value == 0:
            return out


_SYL_BYTES = np.frombuffer("".join(SYLLABLES).encode("ascii"), dtype=np.uint8).reshape(-1, 2)


def _spell(syl: np.ndarray, rng=None, rate: float = 0.0):
    """The names of syllable rows ``syl`` ``[m, 4]``, capitalised; with ``rng``, ``rate`` of the letters
    changed to random ones first."""
    chars = np.where((syl >= 0)[:, :, None], _SYL_BYTES[np.maximum(syl, 0)], 0).reshape(len(syl), -1)
    chars = chars.astype(np.uint8)
    if rng is not None:
        hit = (rng.random(chars.shape) < rate) & (chars > 0)
        chars[hit] = rng.integers(97, 123, size=int(hit.sum()), dtype=np.uint8)
    chars[:, 0] -= 32  # capital first letter (never padding: at least 2 syllables)
    width = chars.shape[1]
    flat = chars.tobytes()
    return [flat[i * width:(i + 1) * width].rstrip(b"\0").decode("ascii") for i in range(len(chars))]


def _check(n: int, relations: int, degree: float, drop: float, name_noise: float, missing: float,
           image_dim: int, text_dim: int) -> None:
    if n < 3:
        raise SnagError(f"synthetic --pair: --entities must be at least 3, got {n}")
    if n > 1 << 31:
        raise SnagError(f"synthetic --pair: --entities must be at most {1 << 31}, got {n}")
    if relations < 1:
        raise SnagError(f"synthetic --pair: --relations must be at least 1, got {relations}")
    if not degree > 0:
        raise SnagError(f"synthetic --pair: --degree must be positive, got {degree}")
    for flag, value in (("--drop", drop), ("--name-noise", name_noise), ("--missing", missing)):
        if not 0 <= value < 1:
            raise SnagError(f"synthetic --pair: {flag} must be in [0, 1), got {value}")
    for flag, dim in (("--image-dim", image_dim), ("--text-dim", text_dim)):
        if dim < 0:
            raise SnagError(f"synthetic --pair: {flag} must be 0 (no such table) or more, got {dim}")


def _rng(ss: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """A generator for block ``key`` of stream ``ss`` (independent of every other block and stream)."""
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + key))


def _write_entities(tmp: Path, n: int, perm: np.ndarray, inv: np.ndarray, name_noise: float,
                    ss: np.random.SeedSequence) -> None:
    """``ent_ids_1``, ``ent_ids_2`` (ids in order), ``ill_ent_ids`` (KG1 id order)."""
    syl = np.concatenate([_names(_rng(ss, 1, b), min(n, s + BLOCK) - s)
                          for b, s in enumerate(range(0, n, BLOCK))]).astype(np.int16)
    with open(tmp / "ent_ids_1", "wb") as f1, open(tmp / "ill_ent_ids", "wb") as fl:
        for s in range(0, n, BLOCK):
            e = np.arange(s, min(n, s + BLOCK))
            f1.write("".join(f"{i}\thttp://kg1.example.org/resource/{nm}_{_base36(i)}\n"
                             for i, nm in zip(e.tolist(), _spell(syl[e]))).encode("ascii"))
            fl.write("".join(f"{i}\t{n + j}\n" for i, j in zip(e.tolist(), perm[e].tolist())).encode("ascii"))
    with open(tmp / "ent_ids_2", "wb") as f2:
        for b, s in enumerate(range(0, n, BLOCK)):
            j = np.arange(s, min(n, s + BLOCK))  # KG2 position j is latent entity inv[j]
            noisy = _spell(syl[inv[j]], _rng(ss, 2, b), name_noise)
            f2.write("".join(f"{n + p}\thttp://kg2.example.org/resource/{nm}_{_base36(p * 7 + 3)}\n"
                             for p, nm in zip(j.tolist(), noisy)).encode("ascii"))


def _write_triples(tmp: Path, n: int, relations: int, degree: float, drop: float, perm: np.ndarray,
                   ss: np.random.SeedSequence) -> Dict[str, int]:
    """``triples_1``, ``triples_2``: latent triples drawn block by block, each kept per graph."""
    w_ss, draw_ss = ss.spawn(2)
    rng = np.random.default_rng(w_ss)
    weight = rng.pareto(PARETO_SHAPE, size=n) + 1.0
    weight = np.minimum(weight, np.median(weight) * np.sqrt(n))
    cum = np.cumsum(weight)
    del weight
    rel_w = 1.0 / np.arange(1, relations + 1) ** ZIPF_RELATIONS
    rel_cum = np.cumsum(rel_w / rel_w.sum())
    rel_perm = rng.permutation(relations)
    total = int(round(degree * n))
    counts = {"triples_1": 0, "triples_2": 0}
    with open(tmp / "triples_1", "wb") as f1, open(tmp / "triples_2", "wb") as f2:
        for b, s in enumerate(range(0, total, BLOCK)):
            m = min(total, s + BLOCK) - s
            r_ = _rng(draw_ss, 3, b)
            h = np.searchsorted(cum, r_.random(m) * cum[-1], side="right").clip(max=n - 1)
            t = np.searchsorted(cum, r_.random(m) * cum[-1], side="right").clip(max=n - 1)
            r = rel_perm[np.searchsorted(rel_cum, r_.random(m), side="right").clip(max=relations - 1)]
            keep1 = (r_.random(m) >= drop) & (h != t)
            keep2 = (r_.random(m) >= drop) & (h != t)
            f1.write("".join(f"{a}\t{c}\t{d}\n" for a, c, d in
                             zip(h[keep1].tolist(), r[keep1].tolist(), t[keep1].tolist())).encode("ascii"))
            f2.write("".join(f"{a}\t{c}\t{d}\n" for a, c, d in
                             zip((n + perm[h[keep2]]).tolist(), (relations + r[keep2]).tolist(),
                                 (n + perm[t[keep2]]).tolist())).encode("ascii"))
            counts["triples_1"] += int(keep1.sum())
            counts["triples_2"] += int(keep2.sum())
    return counts


def _write_table(folder: Path, name: str, n: int, dim: int, latent: np.ndarray, inv: np.ndarray,
                 missing: float, ss: np.random.SeedSequence) -> float:
    """``<name>.npy`` (``2n`` rows, float32, missing rows NaN) and ``<name>.missing.txt``."""
    rng = np.random.default_rng(ss)
    maps = rng.standard_normal((2, LATENT_DIM, dim)).astype(np.float32) / np.sqrt(LATENT_DIM)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (2 * n, dim)}
    gone = 0
    with open(folder / f"{name}.npy", "wb") as fh, open(folder / f"{name}.missing.txt", "wb") as fm:
        np.lib.format.write_array_header_1_0(fh, header)
        for side in (0, 1):
            for b, s in enumerate(range(0, n, BLOCK)):
                rows = np.arange(s, min(n, s + BLOCK))
                src = rows if side == 0 else inv[rows]
                r_ = _rng(ss, 4, side, b)
                values = latent[src] @ maps[side] + 0.3 * r_.standard_normal((len(rows), dim)).astype(np.float32)
                lost = r_.random(len(rows)) < missing
                if side == 0 and b == 0:
                    lost[0] = False  # the loader needs one real row
                values[lost] = np.nan
                fh.write(values.astype(np.float32).tobytes())
                ids = rows[lost] + side * n
                fm.write("".join(f"{i}\n" for i in ids.tolist()).encode("ascii"))
                gone += int(lost.sum())
    return gone / (2 * n)


def write_synthetic_pair_stream(folder, entities: int, relations: int = 64, degree: float = 4.0,
                                drop: float = 0.1, name_noise: float = 0.15, image_dim: int = 64,
                                text_dim: int = 32, missing: float = 0.2, seed: int = 0,
                                overwrite: bool = False) -> Dict[str, object]:
    """Write a synthetic alignment pair (``entities`` a side, DBP15K layout) into ``folder``; returns a
    JSON-ready summary. Bad values raise a one-line :class:`SnagError` before anything is written."""
    n = int(entities)
    _check(n, int(relations), float(degree), float(drop), float(name_noise), float(missing), int(image_dim),
           int(text_dim))
    folder = Path(folder)
    _prepare(folder, overwrite)
    began = time.time()
    perm_ss, name_ss, triple_ss, latent_ss, image_ss, text_ss = np.random.SeedSequence([int(seed), 36]).spawn(6)
    perm = np.random.default_rng(perm_ss).permutation(n)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(n)
    with staged_folder(folder, overwrite) as tmp:
        _write_entities(tmp, n, perm, inv, float(name_noise), name_ss)
        counts = _write_triples(tmp, n, int(relations), float(degree), float(drop), perm, triple_ss)
        modalities = {}
        if image_dim or text_dim:
            (tmp / "features").mkdir()
            latent = np.random.default_rng(latent_ss).standard_normal((n, LATENT_DIM)).astype(np.float32)
            for name, dim, ss in (("image", int(image_dim), image_ss), ("text", int(text_dim), text_ss)):
                if dim:
                    frac = _write_table(tmp / "features", name, n, dim, latent, inv, float(missing), ss)
                    modalities[name] = {"dim": dim, "missing": round(frac, 4)}
            del latent
    return {"output": str(folder), "layout": "dbp15k", "entities": [n, n], "links": n,
            "relations": [int(relations), int(relations)], "triples": [counts["triples_1"], counts["triples_2"]],
            "modalities": modalities, "seed": int(seed), "seconds": round(time.time() - began, 2)}
