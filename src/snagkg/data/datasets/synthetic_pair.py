"""A small synthetic alignment pair for tests and demos.

One random graph is copied into two knowledge graphs: the copy has its
entities relabelled (a random permutation), its relations renamed, a few of
its edges dropped and a few name characters changed. The gold links are the
copy relation. With ``permute_ids`` the dataset ids of all entities are a
random permutation (no id arithmetic links the two sides); without it they
follow the DBP15K habit (link ``i`` is ``i <-> n + i``).
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import List

import numpy as np

from snagkg.runtime.io import write_text


def _names(rng: np.random.Generator, n: int) -> List[str]:
    letters = np.array(list(string.ascii_lowercase))
    out, seen = [], set()
    while len(out) < n:
        words = ["".join(rng.choice(letters, size=int(rng.integers(4, 8)))) for _ in range(2)]
        name = "_".join(w.capitalize() for w in words)
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _perturb(rng: np.random.Generator, name: str, rate: float) -> str:
    chars = list(name)
    for i, c in enumerate(chars):
        if c != "_" and rng.random() < rate:
            chars[i] = chr(ord("a") + int(rng.integers(0, 26)))
    return "".join(chars)


def write_synthetic_pair(folder, entities: int = 200, relations: int = 8, degree: float = 4.0, drop: float = 0.05,
                         name_noise: float = 0.1, seed: int = 0, permute_ids: bool = True,
                         layout: str = "dbp15k") -> Path:
    """Write a synthetic pair in the DBP15K (``layout='dbp15k'``) or OpenEA layout; returns the folder."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    n = entities
    # a graph with skewed degrees: endpoints drawn with weights ~ Zipf
    weight = 1.0 / np.arange(1, n + 1) ** 0.7
    weight = rng.permutation(weight / weight.sum())
    m = int(degree * n)
    h = rng.choice(n, size=m, p=weight)
    t = rng.choice(n, size=m, p=weight)
    r = rng.integers(0, relations, size=m)
    keep = h != t
    base = np.unique(np.stack([h[keep], r[keep], t[keep]], axis=1), axis=0)
    names = _names(rng, n)
    copy = rng.permutation(n)                  # entity e of KG1 is entity copy[e] of KG2
    kg2_names = [""] * n
    for e in range(n):
        kg2_names[copy[e]] = _perturb(rng, names[e], name_noise)
    t1 = base[rng.random(len(base)) >= drop]
    t2 = base[rng.random(len(base)) >= drop].copy()
    t2[:, 0], t2[:, 2] = copy[t2[:, 0]], copy[t2[:, 2]]
    if permute_ids:
        ids = rng.permutation(2 * n)
        id1, id2 = ids[:n], ids[n:]
        rel_ids = rng.permutation(2 * relations)
    else:
        id1, id2 = np.arange(n), n + np.arange(n)
        rel_ids = np.arange(2 * relations)
    links = [(int(id1[e]), int(id2[copy[e]])) for e in range(n)]
    uri1 = [f"http://kg1.example.org/resource/{names[e]}" for e in range(n)]
    uri2 = [f"http://kg2.example.org/resource/{kg2_names[e]}" for e in range(n)]
    order1, order2 = (rng.permutation(n), rng.permutation(n)) if permute_ids else (np.arange(n), np.arange(n))
    link_order = rng.permutation(n) if permute_ids else np.arange(n)
    if layout == "dbp15k":
        write_text(folder / "ent_ids_1", "".join(f"{id1[e]}\t{uri1[e]}\n" for e in order1))
        write_text(folder / "ent_ids_2", "".join(f"{id2[e]}\t{uri2[e]}\n" for e in order2))
        write_text(folder / "triples_1", "".join(f"{id1[a]}\t{rel_ids[b]}\t{id1[c]}\n" for a, b, c in t1.tolist()))
        write_text(folder / "triples_2", "".join(
            f"{id2[a]}\t{rel_ids[relations + b]}\t{id2[c]}\n" for a, b, c in t2.tolist()))
        write_text(folder / "ill_ent_ids", "".join(f"{links[i][0]}\t{links[i][1]}\n" for i in link_order))
    elif layout == "openea":
        write_text(folder / "rel_triples_1", "".join(
            f"{uri1[a]}\thttp://kg1.example.org/rel/r{b}\t{uri1[c]}\n" for a, b, c in t1.tolist()))
        write_text(folder / "rel_triples_2", "".join(
            f"{uri2[a]}\thttp://kg2.example.org/rel/p{b}\t{uri2[c]}\n" for a, b, c in t2.tolist()))
        write_text(folder / "attr_triples_1", "".join(
            f"{uri1[e]}\thttp://kg1.example.org/attr/a{e % 5}\t\"{e}\"\n" for e in range(n)))
        write_text(folder / "attr_triples_2", "".join(
            f"{uri2[copy[e]]}\thttp://kg2.example.org/attr/b{e % 5}\t\"{e}\"\n" for e in range(n)))
        write_text(folder / "ent_links", "".join(f"{uri1[e]}\t{uri2[copy[e]]}\n" for e in link_order))
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return folder
