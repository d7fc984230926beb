"""Filtered link-prediction ranking (SPEC section 4).

Every test triple is ranked twice - the true tail among all entities for
``(h, r, ?)`` and the true head for ``(?, r, t)`` - after removing the other
known true triples (train, valid and test). All entity vectors are fused once,
queries are scored in chunks against the whole table, and filters come from a
precomputed CSR index: no Python loop over triples or entities.

Memory: each chunk of queries keeps its ``[chunk, N]`` distances (and, eagerly, their
``[chunk, block, k]`` temporaries, the entities taken in blocks) within
:func:`snagkg.runtime.hardware.ranking_budget`, so a million entities rank in bounded memory; the
progress bar (tqdm, stderr) counts queries against their total and shows an ETA.
``candidates=K`` ranks against ``K`` sampled filtered candidates instead
(:mod:`snagkg.sampled`; the metrics then carry ``"sampled": K``).

Ties are resolved by the shared core (:mod:`snagkg.ranking`): ``realistic`` (default)
or ``optimistic``. Metric keys: ``mrr``, ``mr``, ``hits@1/3/10`` average both directions;
``tail_*`` rank the true tail of ``(h, r, ?)``, ``head_*`` the true head of ``(?, r, t)``.
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

import torch
from tqdm import tqdm

from snagkg.evaluation.ranking import check_ties, summarize, tie_aware_rank
from snagkg.runtime import compilation, hardware
from snagkg.tasks.completion import rotate
from snagkg.tasks.completion.sampled_evaluation import sampled_ranks

METRIC_KEYS = ("mrr", "mr", "hits@1", "hits@3", "hits@10")


class FilterIndex:
    """Known answers per ``(anchor, relation)`` for both prediction directions, as CSR arrays."""

    def __init__(self, known: torch.Tensor, num_entities: int, num_relations: int):
        self.n_ent, self.n_rel = num_entities, num_relations
        known = known.long()
        self.tail = self._build(known[:, 0], known[:, 1], known[:, 2])  # (h, r) -> t
        self.head = self._build(known[:, 2], known[:, 1], known[:, 0])  # (t, r) -> h

    def _build(self, anchor: torch.Tensor, rel: torch.Tensor, answer: torch.Tensor):
        # sorted and de-duplicated: each known answer appears once per (anchor, relation)
        pair = torch.unique((anchor * self.n_rel + rel) * self.n_ent + answer)
        key, answer = pair // self.n_ent, pair % self.n_ent
        ukeys, counts = torch.unique_consecutive(key, return_counts=True)
        offsets = torch.zeros(len(ukeys) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(counts, 0)
        return ukeys, offsets, answer

    def lookup(self, anchor: torch.Tensor, rel: torch.Tensor, predict_tail: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(row, entity)`` pairs: for query ``row``, ``entity`` is a known answer."""
        ukeys, offsets, answers = self.tail if predict_tail else self.head
        key = anchor.long() * self.n_rel + rel.long()
        pos = torch.searchsorted(ukeys, key).clamp(max=len(ukeys) - 1)
        found = ukeys[pos] == key
        start = offsets[pos]
        count = torch.where(found, offsets[pos + 1] - start, torch.zeros_like(start))
        rows = torch.repeat_interleave(torch.arange(len(key)), count)
        if rows.numel() == 0:
            return rows, rows
        first = torch.cumsum(count, 0) - count
        within = torch.arange(rows.numel()) - first[rows]
        return rows, answers[start[rows] + within]


def _filtered_counts(dist_t: torch.Tensor, true_d: torch.Tensor, true: torch.Tensor, filt_rows: torch.Tensor,
                     filt_cols: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Filtered counts of better and of equal candidates from the transposed distances ``dist_t [N, B]`` (the compiled kernel's own layout: the
    counts are column sums, read once row by row) and the true answers' distances ``true_d [1, B]``."""
    # int32 counts (exact below 2**31 entities) vectorise twice as wide as int64
    better = (dist_t < true_d).sum(dim=0, dtype=torch.int32)
    equal = (dist_t == true_d).sum(dim=0, dtype=torch.int32) - 1  # the true entity is equal to itself
    # known answers other than the true one are taken back out of the counts (integer sums: exact)
    fd, td = dist_t[filt_cols, filt_rows], true_d[0, filt_rows]
    other = filt_cols != true[filt_rows]
    better = better - torch.zeros_like(better).index_add(0, filt_rows, ((fd < td) & other).to(better.dtype))
    equal = equal - torch.zeros_like(equal).index_add(0, filt_rows, ((fd == td) & other).to(equal.dtype))
    return better, equal


_counts = compilation.CompiledFunction(_filtered_counts, "filtered_counts", pure=True, dynamic=True)


def counts_from_distances(dist: torch.Tensor, true: torch.Tensor,
                          filt_rows: torch.Tensor, filt_cols: torch.Tensor,
                          compiled: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Filtered counts of strictly better and of equal other candidates (lower distance is better).

    Candidates are counted over the whole row in one pass; the known answers
    ``(filt_rows, filt_cols)`` other than the true one (unique pairs) are then
    taken back out of the counts, so the ``[B, N]`` distances are never copied
    or written to. One fused kernel when ``compiled``.
    """
    dist_t = dist.t()
    true_d = dist_t.gather(0, true.unsqueeze(0))  # [1, B]; given to the kernel, its counting loop vectorises
    # a part of one query (or one known answer) is counted eagerly: it is one column, and torch specialises
    # the dynamic kernel for size 1 (one more compilation for little work); once (profile_ranking.py, chunk
    # 256, AMD EPYC, torch 2.13) inductor failed to generate a size-1 variant (not reproduced in isolation)
    compiled = compiled and dist.shape[0] > 1 and filt_rows.numel() > 1
    return _counts(dist_t, true_d, true, filt_rows, filt_cols, compiled=compiled)


def bounded_pairwise(scorer, q: torch.Tensor, table: torch.Tensor, compiled: bool, budget: int) -> torch.Tensor:
    """``scorer.pairwise(q, table)``: ``[B, N]`` distances. The compiled kernel writes only those; the
    eager one takes the entities in blocks whose ``[B, block, k]`` temporaries fit in ``budget`` bytes
    (also when compilation failed after the chunk was sized for it)."""
    n_ent, width = table.shape
    if compiled and rotate.pairwise_available():
        return scorer.pairwise(q, table, True)
    block = max(1, budget // max(1, q.shape[0] * 12 * max(1, width // 2)))
    if block >= n_ent:
        return scorer.pairwise(q, table, False)
    return torch.cat([scorer.pairwise(q, table[s:s + block], False) for s in range(0, n_ent, block)], dim=1)


@torch.no_grad()
def rank_triples(entity_vectors: torch.Tensor, scorer, triples: torch.Tensor, filters: FilterIndex,
                 ties: str = "realistic", chunk: Optional[int] = None,
                 progress: bool = False) -> torch.Tensor:
    """Filtered ranks of the true tail then the true head of each triple: ``[2 * n]``."""
    check_ties(ties)
    device = entity_vectors.device
    n_ent, width = entity_vectors.shape
    compiled = rotate.use_compiled(n_ent, width, queries=2 * len(triples))
    budget = hardware.ranking_budget(device)
    chunk = chunk or hardware.chunk_size(n_ent, width, compiled, budget_bytes=budget, device=device)
    triples = triples.long()
    out = []
    bar = None
    if progress:
        bar = tqdm(total=2 * len(triples), desc="ranking", unit="q", leave=False, mininterval=0.5)
    n_rel = filters.n_rel
    for predict_tail in (True, False):
        anchor_col, true_col = (0, 2) if predict_tail else (2, 0)
        anchors, rels, trues = triples[:, anchor_col], triples[:, 1], triples[:, true_col]
        # Triples that share (anchor, relation) share their query: each distinct query is scored once
        # (DB15K's test split: 14,303 distinct queries for 19,804 rankings).
        keys, inv = torch.unique(anchors * n_rel + rels, return_inverse=True)
        order = torch.argsort(inv, stable=True)
        bounds = torch.searchsorted(inv[order], torch.arange(0, len(keys) + chunk, chunk)).tolist()
        ranks = torch.empty(len(triples), dtype=torch.float64)
        for i, start in enumerate(range(0, len(keys), chunk)):
            u_anchor, u_rel = (keys[start:start + chunk] // n_rel).to(device), (keys[start:start + chunk] % n_rel).to(device)
            q = scorer.query_rows(entity_vectors, u_anchor, u_rel, predict_tail, compiled)
            dist_t = bounded_pairwise(scorer, q, entity_vectors, compiled, budget).t()  # [N, queries]
            sel = order[bounds[i]:bounds[i + 1]]  # the triples asking these queries, grouped by query
            cols = inv[sel] - start
            # The first triple of each query is ranked on the distances as they are (its column is the
            # query's own); only the other triples of a query (several true answers) get a copy of their
            # column, so the [N, queries] table is never copied whole.
            first = torch.ones(len(sel), dtype=torch.bool)
            first[1:] = cols[1:] != cols[:-1]
            parts = [(sel[first], dist_t)]
            if not first.all():
                parts.append((sel[~first], dist_t.index_select(1, cols[~first].to(device))))
            for part, dist_part in parts:
                rows, fcols = filters.lookup(anchors[part], rels[part], predict_tail)
                better, equal = counts_from_distances(dist_part.t(), trues[part].to(device), rows.to(device),
                                                      fcols.to(device), compiled)
                ranks[part] = tie_aware_rank(better, equal, ties).cpu()
            if bar is not None:
                bar.update(len(sel))
        out.append(ranks)
    if bar is not None:
        bar.close()
    return torch.cat(out).cpu()


def evaluate_ranking(entity_vectors: torch.Tensor, scorer, triples: torch.Tensor, filters: FilterIndex,
                     ties: str = "realistic", chunk: Optional[int] = None, progress: bool = False,
                     candidates: int = 0, seed: int = 0) -> Dict[str, float]:
    """Metrics (``mrr``, ``mr``, ``hits@1/3/10``; ``tail_*`` and ``head_*`` per direction) plus
    ``count``, ranking ``seconds`` and ``compile_seconds`` (the kernels' compilation or cache load
    in this call, not counted in ``seconds``).

    ``candidates=0``: full filtered ranking against every entity. ``candidates=K > 0``: against ``K``
    filtered candidates sampled per query with ``seed`` (:func:`snagkg.sampled.sampled_ranks`), and
    the metrics carry ``"sampled": K``."""
    if candidates < 0:
        raise ValueError(f"candidates must not be negative, got {candidates}")
    t0, c0 = time.perf_counter(), compilation.compile_seconds()
    if candidates:
        ranks = sampled_ranks(entity_vectors, scorer, triples, filters, candidates, ties, seed=seed, chunk=chunk,
                              progress=progress)
    else:
        ranks = rank_triples(entity_vectors, scorer, triples, filters, ties, chunk, progress)
    n = len(triples)
    metrics: Dict[str, float] = summarize(ranks)
    metrics.update(summarize(ranks[:n], prefix="tail_"))
    metrics.update(summarize(ranks[n:], prefix="head_"))
    metrics["count"] = int(len(triples))
    if candidates:
        metrics["sampled"] = int(candidates)
    compile_seconds = compilation.compile_seconds() - c0
    metrics["seconds"] = round(time.perf_counter() - t0 - compile_seconds, 4)
    metrics["compile_seconds"] = round(compile_seconds, 4)
    return metrics
