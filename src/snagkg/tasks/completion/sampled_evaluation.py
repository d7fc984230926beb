"""Sampled filtered ranking: the true answer against ``K`` random candidates per query.

For big graphs, ranking every test query against every entity (:mod:`snagkg.evaluation`)
costs ``queries x entities`` distances; ranking it against ``K`` candidates drawn at random
costs ``queries x K``. As PyKEEN's ``SampledRankBasedEvaluator``, the candidates are
*filtered*: a known true answer (train, valid or test: the :class:`~snagkg.evaluation.FilterIndex`)
and the true entity itself are never drawn. Sampled ranks are optimistic estimates of the full
ones (a rank among a subset of the filtered candidates is never worse); the results say so
with ``"sampled": K``.

How candidates are drawn, per query and direction: ``K`` distinct entities uniformly without
replacement from the query's filtered pool (all entities less the excluded ones). The pool is
never built: positions ``j`` in ``[0, pool size)`` are drawn and mapped to entity ids through
the sorted excluded ids (one batched ``searchsorted``). Positions are drawn *by resampling*:
small pools (at most ``4 K``) by ``K`` smallest random keys, big pools by uniform draws whose
repeats are redrawn until the ``K`` positions are distinct (each redraw collides with
probability below 1/4, so a few vectorised rounds). Known answers are therefore excluded by
construction, not masked. A pool smaller than ``K`` is taken whole, so ``K`` at least the
number of entities gives the full filtered ranks (exactly, when both score eagerly).

Determinism: triples are drawn in fixed blocks (their size depends on ``K`` only), each with a
``torch.Generator`` seeded from ``seed``, the direction and the block number; the draws are made
on the CPU. The same seed and ``K`` give the same candidates, and so the same metrics, whatever
the memory available or the scoring chunk (and the same candidates on any device).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from tqdm import tqdm

from snagkg.evaluation.ranking import check_ties, tie_aware_rank
from snagkg.runtime import hardware
from snagkg.runtime.compilation import CompiledFunction

#: pools of at most this many times K are drawn by random keys, bigger ones by redrawing repeats
DENSE_FACTOR = 4
#: random values a sampling block draws at most (its number of triples depends on K only)
BLOCK_DRAWS = 1 << 22
#: bytes per (query, candidate, coordinate) of the scoring: the gathered rows and the distance's temporaries
BYTES_PER_PAIR_COORD = 12
#: compile the fused candidate distance above this many (query, candidate, complex coordinate) triples
COMPILE_MIN_WORK = 200_000_000
#: CPU: gathered candidate rows per scoring chunk at most (they stay in cache between the distance's passes)
CPU_ROWS_BYTES = 4 << 20


def block_size(candidates: int) -> int:
    """Triples per sampling block for ``candidates`` per query (1 to 1024)."""
    return int(max(1, min(1024, BLOCK_DRAWS // max(1, DENSE_FACTOR * candidates))))


def block_seed(seed: int, predict_tail: bool, block: int) -> int:
    """The generator seed of one sampling block: a mix of ``seed``, the direction and the block number."""
    return (int(seed) * 0x9E3779B97F4A7C15 + 2 * int(block) + int(predict_tail) + 1) % (1 << 63)


def excluded_entities(filters, anchor: torch.Tensor, rel: torch.Tensor, true: torch.Tensor, predict_tail: bool,
                      num_entities: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ids a query may not draw, as ``(row, entity)`` pairs sorted by row then entity (no repeats):
    the known answers of ``filters`` and the true entity ``true[row]``."""
    rows, ents = filters.lookup(anchor, rel, predict_tail)
    rows = torch.cat([rows, torch.arange(len(true))])
    ents = torch.cat([ents, true.long()])
    key = torch.unique(rows * num_entities + ents)
    return key // num_entities, key % num_entities


def _distinct_positions(pool: torch.Tensor, k: int, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[B, k]`` positions drawn uniformly without replacement from ``[0, pool[b])`` and a mask of the
    valid ones (all of ``[0, pool[b])`` when ``pool[b] <= k``)."""
    b = len(pool)
    pos = torch.zeros(b, k, dtype=torch.long)
    dense = pool <= DENSE_FACTOR * k
    if dense.any():  # the k smallest of pool[b] random keys: a uniform k-subset (or the whole pool)
        rows = dense.nonzero().squeeze(1)
        width = int(min(DENSE_FACTOR * k, int(pool[rows].max())))
        keys = torch.rand(len(rows), width, generator=generator)
        keys.masked_fill_(torch.arange(width).unsqueeze(0) >= pool[rows].unsqueeze(1), 2.0)
        if width < k:
            keys = torch.cat([keys, torch.full((len(rows), k - width), 2.0)], dim=1)
        pos[rows] = keys.topk(k, dim=1, largest=False, sorted=False).indices
    if not dense.all():  # uniform draws; repeats are redrawn until the k positions are distinct
        rows = (~dense).nonzero().squeeze(1)
        m = pool[rows].unsqueeze(1).double()
        draw = (torch.rand(len(rows), k, dtype=torch.float64, generator=generator) * m).long()
        active = torch.arange(len(rows))  # the rows that may still hold repeats
        while len(active):
            srt, order = draw[active].sort(dim=1, stable=True)
            repeat = torch.zeros(srt.shape, dtype=torch.bool)
            repeat[:, 1:] = srt[:, 1:] == srt[:, :-1]
            local, c = repeat.nonzero(as_tuple=True)
            if len(local) == 0:
                break
            r = active[local]
            draw[r, order[local, c]] = (torch.rand(len(r), dtype=torch.float64, generator=generator) * m[r, 0]).long()
            active = torch.unique_consecutive(r)
        pos[rows] = draw
    return pos, pos < pool.unsqueeze(1)  # a small pool's leftover slots hold positions past its end


def sample_candidates(filters, anchor: torch.Tensor, rel: torch.Tensor, true: torch.Tensor, predict_tail: bool,
                      num_entities: int, candidates: int,
                      generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[B, K]`` candidate ids per query, drawn from its filtered pool, and the mask of the valid ones
    (a pool smaller than ``K`` leaves slots unused). CPU tensors."""
    anchor, rel, true = anchor.cpu().long(), rel.cpu().long(), true.cpu().long()
    b = len(true)
    rows, ents = excluded_entities(filters, anchor, rel, true, predict_tail, num_entities)
    count = torch.bincount(rows, minlength=b)
    start = torch.cumsum(count, 0) - count
    pos, valid = _distinct_positions(num_entities - count, candidates, generator)
    # the j-th entity of the pool is j + #{excluded e_i : e_i - i <= j} (e sorted, i its index in the row);
    # rows are laid end to end, apart by more than any value, so one searchsorted serves them all
    stride = num_entities + 1
    shifted = rows * stride + (ents - (torch.arange(len(ents)) - start[rows]))
    before = torch.searchsorted(shifted, torch.arange(b).unsqueeze(1) * stride + pos, right=True)
    ids = pos + before - start.unsqueeze(1)
    return torch.where(valid, ids, torch.zeros_like(ids)), valid


def _gathered_distance(q: torch.Tensor, vectors: torch.Tensor, ids: torch.Tensor, scorer) -> torch.Tensor:
    return scorer.distance(q.unsqueeze(1), vectors[ids])


#: compiled: the gather fused into the distance loop, so the candidate rows are never materialised
_gathered = CompiledFunction(_gathered_distance, "sampled_distance", pure=True, dynamic=True)


def use_compiled(queries: int, candidates: int, width: int) -> bool:
    """Whether scoring ``queries x candidates`` pairs of ``width`` repays compiling the fused distance
    (:data:`COMPILE_MIN_WORK`; on the CPU the compiled kernel is about 9x faster than the eager one)."""
    return _gathered.available() and queries * candidates * max(1, width // 2) >= COMPILE_MIN_WORK


def candidate_distances(scorer, q: torch.Tensor, vectors: torch.Tensor, ids: torch.Tensor, budget: int,
                        compiled: bool = False) -> torch.Tensor:
    """``scorer.distance`` of each query ``q [B, d]`` to its candidates ``vectors[ids [B, K]]``: ``[B, K]``.
    Compiled: one fused kernel; eager: in blocks of candidates whose gathered rows fit in ``budget`` bytes."""
    b, k = ids.shape
    if compiled and b > 1:  # one query: torch would specialise (compile) a size-1 variant for little work
        return _gathered(q, vectors, ids, scorer, compiled=True)
    per_candidate = max(1, b * vectors.shape[1] * BYTES_PER_PAIR_COORD)
    step = max(1, budget // per_candidate)
    parts = [scorer.distance(q.unsqueeze(1), vectors[ids[:, s:s + step]]) for s in range(0, k, step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def sampled_chunk(width: int, candidates: int, budget: Optional[int] = None, device=None) -> int:
    """Queries scored at once so that their ``[chunk, K, width]`` candidate rows and temporaries stay
    within ``budget`` bytes (default: :func:`snagkg.runtime.hardware.ranking_budget` of ``device``); on the CPU
    also within :data:`CPU_ROWS_BYTES` of gathered rows, which the eager distance passes over several
    times (5,708 queries, K = 100, width 256, one thread: 1.3 s in chunks of 16 to 64, 5 s in chunks of 873)."""
    budget = hardware.ranking_budget(device) if budget is None else budget
    chunk = budget // max(1, candidates * width * BYTES_PER_PAIR_COORD)
    if device is None or torch.device(device).type == "cpu":
        chunk = min(chunk, CPU_ROWS_BYTES // max(1, candidates * width * 4))
    return int(max(1, min(4096, chunk)))


@torch.no_grad()
def sampled_ranks(entity_vectors: torch.Tensor, scorer, triples: torch.Tensor, filters, candidates: int,
                  ties: str = "realistic", seed: int = 0, generator: Optional[torch.Generator] = None,
                  chunk: Optional[int] = None, progress: bool = False) -> torch.Tensor:
    """Filtered ranks of the true tail then the true head of each triple among ``candidates`` sampled
    candidates per query: ``[2 * n]`` float64, the layout of :func:`snagkg.evaluation.rank_triples`.

    Candidates: see the module docstring (filtered, without replacement, seeded per block).
    ``generator``, when given, supplies the base seed instead of ``seed`` (one draw from it).
    Scores: ``scorer.query(entity_vectors[anchor], relation, predict_tail)`` then
    ``scorer.distance(q, candidate rows)`` (lower is better; one fused compiled kernel when
    :func:`use_compiled`), ``chunk`` queries at a time (default: :func:`sampled_chunk`,
    memory-bounded). Ties among candidates follow ``ties``.
    """
    check_ties(ties)
    if candidates < 1:
        raise ValueError(f"candidates must be positive, got {candidates}")
    if generator is not None:
        seed = int(torch.randint(0, 1 << 62, (1,), generator=generator))
    device = entity_vectors.device
    n_ent, width = entity_vectors.shape
    budget = hardware.ranking_budget(device)
    chunk = chunk or sampled_chunk(width, candidates, budget, device)
    block = block_size(candidates)
    compiled = use_compiled(2 * len(triples), candidates, width)
    triples = triples.long().cpu()
    bar = None
    if progress:
        bar = tqdm(total=2 * len(triples), desc=f"ranking (sampled {candidates})", unit="q", leave=False,
                   mininterval=0.5)
    out = []
    for predict_tail in (True, False):
        anchor_col, true_col = (0, 2) if predict_tail else (2, 0)
        ranks = torch.empty(len(triples), dtype=torch.float64)
        for bi, b0 in enumerate(range(0, len(triples), block)):
            part = triples[b0:b0 + block]
            anchor, rel, true = part[:, anchor_col], part[:, 1], part[:, true_col]
            gen = torch.Generator().manual_seed(block_seed(seed, predict_tail, bi))
            ids, valid = sample_candidates(filters, anchor, rel, true, predict_tail, n_ent, candidates, gen)
            for s in range(0, len(part), chunk):
                sl = slice(s, s + chunk)
                a, r, t = anchor[sl].to(device), rel[sl].to(device), true[sl].to(device)
                q = scorer.query(entity_vectors[a], r, predict_tail)
                # the true entity is scored with its candidates, by the same kernel: equal rows tie exactly
                cols = torch.cat([t.unsqueeze(1), ids[sl].to(device)], dim=1)
                dist = candidate_distances(scorer, q, entity_vectors, cols, budget, compiled)
                true_d, dist = dist[:, :1], dist[:, 1:]
                ok = valid[sl].to(device)
                better = ((dist < true_d) & ok).sum(dim=1)
                equal = ((dist == true_d) & ok).sum(dim=1)
                ranks[b0 + s:b0 + s + len(t)] = tie_aware_rank(better, equal, ties).cpu()
                if bar is not None:
                    bar.update(len(t))
        out.append(ranks)
    if bar is not None:
        bar.close()
    return torch.cat(out)
