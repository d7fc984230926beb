"""Alignment scoring: CSLS, ranking metrics, mutual nearest neighbours, one-to-one matching.

Every function takes L2-normalised entity vectors of the two sides and works
on row chunks, so only ``[chunk, candidates]`` similarity blocks exist at a
time.

CSLS (cross-domain similarity local scaling, k neighbours)::

    csls(x_i, y_j) = 2 cos(x_i, y_j) - r_y(x_i) - r_x(y_j)

with ``r_y(x_i)`` the mean cosine of ``x_i`` to its ``k`` nearest ``y`` and
``r_x(y_j)`` the mean cosine of ``y_j`` to its ``k`` nearest ``x``. ``k = 0``
is plain cosine (times 2). ``hubness="nicdm"`` scores ``-|x_i - y_j|^2 / (mu_y(x_i)
mu_x(y_j))`` instead, ``mu`` the mean distance to the ``k`` nearest of the other side
(see :mod:`snagkg.tasks.alignment.retrieval`); every function below takes ``hubness``.

Metric keys: ``lr_hits@1``, ``lr_hits@10``, ``lr_mrr``, ``lr_mr`` rank each left
entity's gold partner among the right candidates (left-to-right), and are also
reported without the prefix (the headline direction, used for model selection);
``rl_*`` rank each right entity's partner among the left candidates
(right-to-left).

Candidate retrieval (``index``; :mod:`snagkg.tasks.alignment.retrieval`): the
``r`` terms come from a k-NN search per side through the index. With an exact
index (``exact``: torch, ``flat``: Faiss) every query is then ranked by an
exhaustive chunked count (for exact search the cheapest way to a full rank), so
both give identical ranks. An approximate index (``ivf``, ``hnsw``) retrieves the
``depth`` best CSLS candidates of each query; a query whose gold partner is among
them (and whose last candidate is clearly below it) is ranked there, the others
are counted exhaustively (``exhaustive`` in the returned info), so only the
index's recall (candidates above the partner that it misses) makes ranks differ.

Ties: two candidates are tied when their *canonical* scores are equal (float64
from the float32 vectors in one fixed summation order, see the retrieval module),
so every index sees the same ties; a tied candidate counts half (``realistic``)
or not at all (``optimistic``), by the shared core (:mod:`snagkg.evaluation.ranking`),
as in link prediction. Matching and candidate lists order equal scores by the
lower candidate position.
"""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from snagkg.evaluation.ranking import check_ties, summarize, tie_aware_rank
from snagkg.tasks.alignment.retrieval import (
    APPROXIMATE,
    MU_FLOOR,
    CSLSRetriever,
    Searcher,
    canonical_score,
    check_hubness,
    context64,
    count_better,
    rows_per_chunk,
    score_margin,
    screen_scores,
)

CHUNK = 2048
#: the hits@k reported for alignment
ALIGNMENT_KS = (1, 10)
#: candidates retrieved per query by a Faiss index before the exhaustive count takes over
DEPTH = 32
#: a matching round below this many candidate pairs searches exactly (no index to build)
SMALL_ROUND = 1 << 22


def _neighbourhood(q: torch.Tensor, c: torch.Tensor, k: int, chunk: int, hubness: str = "csls") -> torch.Tensor:
    """Mean cosine (NICDM: mean distance) of every row of ``q`` to its ``k`` nearest rows of ``c``."""
    k = min(k, c.shape[0])
    out = torch.empty(q.shape[0], dtype=q.dtype, device=q.device)
    chunk = rows_per_chunk(chunk, c.shape[0])
    for s in range(0, q.shape[0], chunk):
        top = (q[s:s + chunk] @ c.t()).topk(k, dim=1).values
        if hubness == "nicdm":
            top = (2.0 - 2.0 * top).clamp(min=0.0).sqrt()
        out[s:s + chunk] = top.mean(dim=1)
    return out.clamp(min=MU_FLOOR) if hubness == "nicdm" else out


def csls_context(x: torch.Tensor, y: torch.Tensor, k: int, chunk: int = CHUNK,
                 hubness: str = "csls") -> Tuple[torch.Tensor, torch.Tensor]:
    """Context of both sides, in the vectors' dtype: CSLS ``(r_y(x), r_x(y))`` (zeros when ``k == 0``),
    NICDM ``(mu_y(x), mu_x(y))`` (ones when ``k == 0``)."""
    if k <= 0:
        fill = 1.0 if check_hubness(hubness) == "nicdm" else 0.0
        return x.new_full((x.shape[0],), fill), y.new_full((y.shape[0],), fill)
    return _neighbourhood(x, y, k, chunk, check_hubness(hubness)), _neighbourhood(y, x, k, chunk, hubness)


def csls_block(xq: torch.Tensor, y: torch.Tensor, rq: torch.Tensor, ry: torch.Tensor,
               hubness: str = "csls") -> torch.Tensor:
    """Scores ``[q, m]`` (CSLS, or NICDM) of queries ``xq`` against ``y`` given both sides' context."""
    return screen_scores(xq, y, rq, ry, hubness)


def _ranks(x: torch.Tensor, y: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor, count: int,
           ties: str, chunk: int, index: str = "exact", depth: int = DEPTH, hubness: str = "csls",
           **options) -> Tuple[torch.Tensor, int]:
    """Rank of ``y[i]`` for query ``x[i]``, ``i < count`` (``rx``, ``ry``: canonical float64 context),
    and how many queries were counted exhaustively."""
    if count == 0:
        return torch.zeros(0, dtype=torch.double), 0
    xq, rq = x[:count], rx[:count]
    gold = canonical_score(xq, y[:count], rq, ry[:count], hubness=hubness)
    todo = torch.arange(count)
    better = torch.zeros(count, dtype=torch.long)
    equal = torch.zeros(count, dtype=torch.long)
    if index in APPROXIMATE and depth < y.shape[0]:
        scores, ids = CSLSRetriever(y, ry, index, chunk, hubness, **options).search(xq, rq, depth, extra=0)
        target = torch.arange(count)[:, None]
        found = (ids == target).any(dim=1)
        last = torch.where(ids >= 0, scores, torch.full_like(scores, float("inf"))).min(dim=1).values
        last = torch.where((ids < 0).any(dim=1), torch.full_like(last, float("-inf")), last)
        done = found & (last < gold - score_margin(x.shape[1], rq, ry, hubness))
        better[done] = (scores[done] > gold[done, None]).sum(dim=1)
        equal[done] = (scores[done] == gold[done, None]).sum(dim=1)
        todo = (~done).nonzero().flatten()
    if len(todo):
        b, e = count_better(xq[todo], rq[todo], gold[todo], y, ry, chunk, hubness)
        better[todo], equal[todo] = b, e
    return tie_aware_rank(better, equal - 1, ties), int(len(todo))


@torch.no_grad()
def rank_alignment(x: torch.Tensor, y: torch.Tensor, k: int = 3, ties: str = "realistic", limit: int = 0,
                   chunk: int = CHUNK, index: str = "exact", depth: int = DEPTH, info: Optional[dict] = None,
                   hubness: str = "csls", right_to_left: bool = True, **options) -> Tuple[torch.Tensor, torch.Tensor]:
    """Left-to-right and right-to-left CSLS (or ``hubness``) ranks of gold pairs ``(x[i], y[i])``
    (without ``right_to_left``, the second is empty and not computed).

    Candidates are all rows of the other side; ``limit`` ranks only the first
    ``limit`` queries of each direction (the candidates stay complete). ``index``:
    ``exact`` or a Faiss index (see the module); ``info`` receives how many queries
    were counted exhaustively (``exhaustive``) and the seconds spent on the context of
    both sides (``context_seconds``: every entity's ``k`` nearest) and on the ranking
    (``rank_seconds``), and the context itself (``context``: ``(r_y(x), r_x(y))`` float64).
    """
    check_ties(ties)
    if x.shape != y.shape:
        raise ValueError("x and y must hold the two sides of the same gold pairs")
    count = x.shape[0] if not limit else min(limit, x.shape[0])
    t0 = time.perf_counter()
    rx, ry = context64(x, y, k, index, chunk, hubness, **options)
    t1 = time.perf_counter()
    lr, n_lr = _ranks(x, y, rx, ry, count, ties, chunk, index, depth, hubness, **options)
    rl, n_rl = (_ranks(y, x, ry, rx, count, ties, chunk, index, depth, hubness, **options) if right_to_left
                else (torch.zeros(0, dtype=torch.double), 0))
    if info is not None:
        info.update(exhaustive=n_lr + n_rl, context_seconds=t1 - t0, rank_seconds=time.perf_counter() - t1,
                    context=(rx, ry))
    return lr, rl


def alignment_metrics(x: torch.Tensor, y: torch.Tensor, k: int = 3, ties: str = "realistic", limit: int = 0,
                      chunk: int = CHUNK, index: str = "exact", depth: int = DEPTH, hubness: str = "csls",
                      **options) -> Dict[str, float]:
    """CSLS (or ``hubness``) metrics of gold pairs ``(x[i], y[i])`` in both directions (see the module's
    keys), with ``count``, ``candidates``, ranking ``seconds`` and the ``index`` used."""
    t0 = time.perf_counter()
    info: Dict[str, Any] = {}
    lr, rl = rank_alignment(x, y, k, ties, limit, chunk, index, depth, info, hubness, **options)
    out = summarize(lr, ks=ALIGNMENT_KS)
    out.update(summarize(lr, ks=ALIGNMENT_KS, prefix="lr_"))
    out.update(summarize(rl, ks=ALIGNMENT_KS, prefix="rl_"))
    out["count"] = int(len(lr))
    out["candidates"] = int(y.shape[0])
    out["seconds"] = round(time.perf_counter() - t0, 4)
    out["index"] = index
    return out


@torch.no_grad()
def mutual_nearest(x: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK, index: str = "exact",
                   **options) -> Tuple[torch.Tensor, torch.Tensor]:
    """Index pairs ``(i, j)`` where ``y[j]`` is the nearest (cosine) of ``x[i]`` and vice versa (found
    through ``index``)."""
    if x.shape[0] == 0 or y.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    best_y = Searcher(y, index, chunk=chunk, **options).search(x, 1)[1][:, 0]
    best_x = Searcher(x, index, chunk=chunk, **options).search(y, 1)[1][:, 0]
    i = torch.arange(x.shape[0])
    ok = best_y >= 0
    keep = ok & (best_x[best_y.clamp(min=0)] == i)
    return i[keep], best_y[keep]


@torch.no_grad()
def candidates(x: torch.Tensor, y: torch.Tensor, k: int = 3, topk: int = 10, chunk: int = CHUNK,
               index: str = "exact", hubness: str = "csls", **options) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``topk`` best CSLS (or ``hubness``) candidates among the rows of ``y`` for every row of ``x``:
    ``(canonical scores [n, topk] float64, column ids [n, topk])``, best first, equal scores by the
    lower column (an approximate index may leave ids ``-1``)."""
    rx, ry = context64(x, y, k, index, chunk, hubness, **options)
    return CSLSRetriever(y, ry, index, chunk, hubness, **options).search(x, rx, topk)


@torch.no_grad()
def one_to_one(x: torch.Tensor, y: torch.Tensor, k: int = 3, topk: int = 10, chunk: int = CHUNK,
               index: str = "exact", hubness: str = "csls",
               **options) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy one-to-one matching by descending CSLS (or ``hubness``) score.

    Each round lists the ``topk`` best free candidates of every free left
    entity and of every free right entity (through ``index``), sorts those edges
    by canonical score (equal scores: lower left, then lower right index) and
    accepts an edge when both ends are still free; rounds repeat on the
    leftovers until one side is exhausted (each round accepts at least the
    best remaining edge). Neighbourhood context is computed once on the full
    sets. Returns ``(left index, right index, score)`` with every index at
    most once.
    """
    n, m = x.shape[0], y.shape[0]
    x, y = x.detach().float().cpu(), y.detach().float().cpu()
    rx, ry = context64(x, y, k, index, chunk, hubness, **options)
    free_l = np.ones(n, dtype=bool)
    free_r = np.ones(m, dtype=bool)
    rows: list = []
    cols: list = []
    vals: list = []
    while free_l.any() and free_r.any():
        li = torch.from_numpy(np.flatnonzero(free_l))
        rj = torch.from_numpy(np.flatnonzero(free_r))
        kind = index if len(li) * len(rj) > SMALL_ROUND else "exact"
        xl, yr, rxl, ryr = x[li], y[rj], rx[li], ry[rj]
        s1, j1 = CSLSRetriever(yr, ryr, kind, chunk, hubness, **options).search(xl, rxl, min(topk, len(rj)))
        s2, i2 = CSLSRetriever(xl, rxl, kind, chunk, hubness, **options).search(yr, ryr, min(topk, len(li)))
        ok1, ok2 = j1 >= 0, i2 >= 0
        er = torch.cat([li[:, None].expand_as(j1)[ok1], li[i2[ok2]]]).numpy()
        ec = torch.cat([rj[j1[ok1]], rj[:, None].expand_as(i2)[ok2]]).numpy()
        ev = torch.cat([s1[ok1], s2[ok2]]).numpy()
        order = np.lexsort((ec, er, -ev))
        accepted = 0
        for a, b, v in zip(er[order].tolist(), ec[order].tolist(), ev[order].tolist()):
            if free_l[a] and free_r[b]:
                free_l[a] = False
                free_r[b] = False
                rows.append(a)
                cols.append(b)
                vals.append(v)
                accepted += 1
        if accepted == 0:  # pragma: no cover - the best edge is always accepted
            break
    return (torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long),
            torch.tensor(vals, dtype=torch.float32))
