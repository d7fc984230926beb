"""A seeded generator of small multi-modal knowledge graphs.

Each entity has a hidden position ``z`` on a torus: ``coarse_dims`` phases on a
lattice of ``lattice`` steps (its cluster) and ``fine_dims`` free phases. Each
relation is a rotation ``theta_r``: a lattice shift of the cluster plus a free
rotation. A triple ``(h, r, t)`` links ``h`` to one of the ``nearest`` members
of the shifted cluster closest to ``z_h + theta_r`` - exactly what RotatE can
express. Structure alone can learn the clusters from the few triples each
entity has, but pins the fine position down poorly; the ``image`` and
``text`` features are noisy linear views of ``(cos z, sin z)``, so they carry
real signal about the latent structure. A configurable fraction of feature
rows is missing. On this data SNAG with all modalities should clearly beat
the same model on structure alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np

from snagkg.data.datasets.graph import KnowledgeGraph, triple_keys
from snagkg.data.tables import make_table


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes, feature widths and noise levels of :func:`generate`."""
    num_entities: int = 2000
    num_relations: int = 16
    coarse_dims: int = 3
    lattice: int = 5
    fine_dims: int = 1
    triples_per_entity: float = 12.0
    nearest: int = 3
    image_dim: int = 64
    text_dim: int = 32
    image_noise: float = 0.3
    text_noise: float = 0.5
    missing: float = 0.2
    valid_fraction: float = 0.1
    test_fraction: float = 0.1


def _features(rng: np.random.Generator, basis: np.ndarray, dim: int, noise: float) -> np.ndarray:
    w = rng.standard_normal((basis.shape[1], dim)) / np.sqrt(basis.shape[1])
    clean = basis @ w
    return (clean + noise * clean.std() * rng.standard_normal(clean.shape)).astype(np.float32)


def generate(config: SyntheticConfig = SyntheticConfig(), seed: int = 0) -> KnowledgeGraph:
    """A synthetic completion graph with ``image`` and ``text`` features (same seed, same graph)."""
    rng = np.random.default_rng(seed)
    n, nr = config.num_entities, config.num_relations
    step = 2 * np.pi / config.lattice
    cells = rng.integers(0, config.lattice, size=(n, config.coarse_dims))
    fine = rng.uniform(0, 2 * np.pi, size=(n, config.fine_dims))
    z = np.concatenate([cells * step, fine], axis=1)
    shift = rng.integers(0, config.lattice, size=(nr, config.coarse_dims))
    theta_fine = rng.uniform(0, 2 * np.pi, size=(nr, config.fine_dims))
    cluster = (cells * config.lattice ** np.arange(config.coarse_dims)).sum(1)

    m = int(round(n * config.triples_per_entity))
    heads = rng.integers(0, n, size=m)
    rels = rng.integers(0, nr, size=m)
    picks = rng.integers(0, config.nearest, size=m)
    target_cells = (cells[heads] + shift[rels]) % config.lattice
    target_cluster = (target_cells * config.lattice ** np.arange(config.coarse_dims)).sum(1)
    target_fine = fine[heads] + theta_fine[rels]
    # distance = fine-phase distance inside the target cluster, +inf elsewhere (chunked: never m x n at once)
    tails = np.empty(m, dtype=np.int64)
    for start in range(0, m, 512):
        sl = slice(start, start + 512)
        dist = np.abs(np.sin((target_fine[sl, None, :] - fine[None, :, :]) / 2)).sum(-1)
        dist[cluster[None, :] != target_cluster[sl, None]] = np.inf
        dist[np.arange(dist.shape[0]), heads[sl]] = np.inf  # no self loops
        order = np.argsort(dist, axis=1)[:, : config.nearest]
        choice = order[np.arange(order.shape[0]), picks[sl]]
        ok = np.isfinite(dist[np.arange(dist.shape[0]), choice])
        tails[sl] = np.where(ok, choice, -1)
    keep = tails >= 0
    heads, rels, tails = heads[keep], rels[keep], tails[keep]
    triples = np.stack([heads, rels, tails], axis=1).astype(np.int64)
    _, first = np.unique(triple_keys(triples, n, nr), return_index=True)
    triples = triples[np.sort(first)]
    triples = triples[rng.permutation(len(triples))]

    n_valid = int(len(triples) * config.valid_fraction)
    n_test = int(len(triples) * config.test_fraction)
    valid, test, train = triples[:n_valid], triples[n_valid:n_valid + n_test], triples[n_valid + n_test:]

    basis = np.concatenate([np.cos(z), np.sin(z)], axis=1)
    features: Dict[str, object] = {}
    for name, dim, noise in (("image", config.image_dim, config.image_noise),
                             ("text", config.text_dim, config.text_noise)):
        values = _features(rng, basis, dim, noise)
        missing = rng.random(n) < config.missing
        values[missing] = np.nan  # really absent: filled by make_table like loaded data
        features[name] = make_table(name, values, missing, seed=seed)
    return KnowledgeGraph(
        name="synthetic",
        entities=[f"entity_{i}" for i in range(n)],
        relations=[f"relation_{r}" for r in range(nr)],
        train=train, valid=valid, test=test, features=features,  # type: ignore[arg-type]
        notes=[],
    )
