"""Statistics over seeds and queries: means and spreads of a variant's metrics, and the difference of
two variants with a paired bootstrap interval.

A difference is *paired*: both variants were trained with the same seeds and ranked on the same test
queries, in the same order, so the per-query reciprocal ranks of one seed's two runs line up. The
interval resamples the pooled (seed, query) differences with replacement; the seed-level range (the
smallest and largest per-seed MRR difference) is reported beside it, since the bootstrap over queries
does not see how much another seed would move the figure.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (``ddof=1``; 0 for one value), minimum and maximum of values."""

    mean: float
    std: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            raise ValueError("no values")
        std = float(v.std(ddof=1)) if v.size > 1 else 0.0
        return cls(float(v.mean()), std, float(v.min()), float(v.max()), int(v.size))


@dataclass(frozen=True)
class Difference:
    """``a - b`` of two variants' MRR over paired seeds and queries (fractions, not percent)."""

    a: str
    b: str
    seeds: List[int]
    mean: float            # mean over every (seed, query) of rr_a - rr_b = mean over seeds of MRR_a - MRR_b
    low: float             # the bootstrap interval (``CONFIDENCE``)
    high: float
    seed_low: float        # the smallest and largest per-seed MRR difference
    seed_high: float
    queries: int           # per seed

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0.0 or self.high < 0.0

    def to_dict(self) -> Dict[str, object]:
        return {**asdict(self), "resolved": self.resolved}


def paired_difference(a: str, b: str, seeds: Sequence[int], rr_a: Sequence[np.ndarray], rr_b: Sequence[np.ndarray],
                      samples: int = BOOTSTRAP_SAMPLES, confidence: float = CONFIDENCE,
                      seed: int = 0) -> Difference:
    """The difference ``a - b`` of reciprocal ranks ``rr_a[i]``, ``rr_b[i]`` (one array per seed, the same
    queries in the same order), with a percentile bootstrap interval over the pooled (seed, query)
    differences (``samples`` resamples drawn with ``seed``)."""
    if len(rr_a) != len(rr_b) or len(rr_a) != len(seeds) or not seeds:
        raise ValueError("one reciprocal-rank array per seed and variant is needed")
    per_seed = []
    for x, y in zip(rr_a, rr_b):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"paired runs must rank the same queries: {x.shape} against {y.shape}")
        per_seed.append(x - y)
    pooled = np.concatenate(per_seed)
    n = pooled.size
    rng = np.random.default_rng(seed)
    means = np.empty(samples, dtype=np.float64)
    block = max(1, 4_000_000 // max(n, 1))
    for s in range(0, samples, block):
        k = min(block, samples - s)
        idx = rng.integers(0, n, size=(k, n))
        means[s:s + k] = pooled[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    seed_means = [float(d.mean()) for d in per_seed]
    return Difference(a, b, [int(s) for s in seeds], float(pooled.mean()), float(low), float(high),
                      min(seed_means), max(seed_means), int(per_seed[0].size))
