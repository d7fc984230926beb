"""Alignment scoring: CSLS, ranking metrics, mutual nearest neighbours, one-to-one matching.

Every function takes L2-normalised entity vectors of the two sides and works
on row chunks, so only ``[chunk, candidates]`` similarity blocks exist at a
time.

CSLS (cross-domain similarity local scaling, k neighbours)::

    csls(x_i, y_j) = 2 cos(x_i, y_j) - r_y(x_i) - r_x(y_j)

with ``r_y(x_i)`` the mean cosine of ``x_i`` to its ``k`` nearest ``y`` and
``r_x(y_j)`` the mean cosine of ``y_j`` to its ``k`` nearest ``x``. ``k = 0``
is plain cosine (times 2).

Metric keys: ``lr_hits@1``, ``lr_hits@10``, ``lr_mrr``, ``lr_mr`` rank each left
entity's gold partner among the right candidates (left-to-right), and are also
reported without the prefix (the headline direction, used for model selection);
``rl_*`` rank each right entity's partner among the left candidates
(right-to-left). Ties are resolved by the shared core (:mod:`snagkg.ranking`), as
in link prediction.
"""
from __future__ import annotations

import time
from typing import Dict, Tuple

import torch

from snagkg.evaluation.ranking import check_ties, summarize, tie_aware_rank

CHUNK = 2048
#: the hits@k reported for alignment
ALIGNMENT_KS = (1, 10)


def _neighbourhood(q: torch.Tensor, c: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Mean cosine of every row of ``q`` to its ``k`` nearest rows of ``c``."""
    k = min(k, c.shape[0])
    out = torch.empty(q.shape[0], dtype=q.dtype, device=q.device)
    for s in range(0, q.shape[0], chunk):
        out[s:s + chunk] = (q[s:s + chunk] @ c.t()).topk(k, dim=1).values.mean(dim=1)
    return out


def csls_context(x: torch.Tensor, y: torch.Tensor, k: int, chunk: int = CHUNK) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(r_y(x), r_x(y))``: neighbourhood terms of both sides (zeros when ``k == 0``)."""
    if k <= 0:
        return x.new_zeros(x.shape[0]), y.new_zeros(y.shape[0])
    return _neighbourhood(x, y, k, chunk), _neighbourhood(y, x, k, chunk)


def csls_block(xq: torch.Tensor, y: torch.Tensor, rq: torch.Tensor, ry: torch.Tensor) -> torch.Tensor:
    """CSLS scores ``[q, m]`` of queries ``xq`` against ``y`` given both sides' neighbourhood terms."""
    return 2.0 * (xq @ y.t()) - rq[:, None] - ry[None, :]


def _ranks(x: torch.Tensor, y: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor, count: int,
           ties: str, chunk: int) -> torch.Tensor:
    """Rank of ``y[i]`` for query ``x[i]``, ``i < count``."""
    out = []
    for s in range(0, count, chunk):
        e = min(count, s + chunk)
        scores = csls_block(x[s:e], y, rx[s:e], ry)
        ar = torch.arange(e - s, device=x.device)
        true = scores[ar, ar + s]
        better = (scores > true[:, None]).sum(dim=1)
        equal = (scores == true[:, None]).sum(dim=1) - 1
        out.append(tie_aware_rank(better, equal, ties))
    return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.double)


@torch.no_grad()
def rank_alignment(x: torch.Tensor, y: torch.Tensor, k: int = 3, ties: str = "realistic", limit: int = 0,
                   chunk: int = CHUNK) -> Tuple[torch.Tensor, torch.Tensor]:
    """Left-to-right and right-to-left CSLS ranks of gold pairs ``(x[i], y[i])``.

    Candidates are all rows of the other side; ``limit`` ranks only the first
    ``limit`` queries of each direction (the candidates stay complete).
    """
    check_ties(ties)
    if x.shape != y.shape:
        raise ValueError("x and y must hold the two sides of the same gold pairs")
    count = x.shape[0] if not limit else min(limit, x.shape[0])
    rx, ry = csls_context(x, y, k, chunk)
    return _ranks(x, y, rx, ry, count, ties, chunk), _ranks(y, x, ry, rx, count, ties, chunk)


def alignment_metrics(x: torch.Tensor, y: torch.Tensor, k: int = 3, ties: str = "realistic", limit: int = 0,
                      chunk: int = CHUNK) -> Dict[str, float]:
    """CSLS metrics of gold pairs ``(x[i], y[i])`` in both directions (see the module's keys), with
    ``count``, ``candidates`` and ranking ``seconds``."""
    t0 = time.perf_counter()
    lr, rl = rank_alignment(x, y, k, ties, limit, chunk)
    out = summarize(lr, ks=ALIGNMENT_KS)
    out.update(summarize(lr, ks=ALIGNMENT_KS, prefix="lr_"))
    out.update(summarize(rl, ks=ALIGNMENT_KS, prefix="rl_"))
    out["count"] = int(len(lr))
    out["candidates"] = int(y.shape[0])
    out["seconds"] = round(time.perf_counter() - t0, 4)
    return out


@torch.no_grad()
def _row_best(x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], chunk):
        out[s:s + chunk] = (x[s:s + chunk] @ y.t()).argmax(dim=1)
    return out


@torch.no_grad()
def mutual_nearest(x: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK) -> Tuple[torch.Tensor, torch.Tensor]:
    """Index pairs ``(i, j)`` where ``y[j]`` is the nearest (cosine) of ``x[i]`` and vice versa."""
    if x.shape[0] == 0 or y.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    best_y = _row_best(x, y, chunk)
    best_x = _row_best(y, x, chunk)
    i = torch.arange(x.shape[0], device=x.device)
    keep = best_x[best_y] == i
    return i[keep].cpu(), best_y[keep].cpu()


@torch.no_grad()
def one_to_one(x: torch.Tensor, y: torch.Tensor, k: int = 3, topk: int = 10,
               chunk: int = CHUNK) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy one-to-one matching by descending CSLS score.

    Each round lists the ``topk`` best free candidates of every free left
    entity and of every free right entity, sorts those edges by score and
    accepts an edge when both ends are still free; rounds repeat on the
    leftovers until one side is exhausted (each round accepts at least the
    best remaining edge). CSLS neighbourhoods are computed once on the full
    sets. Returns ``(left index, right index, score)`` with every index at
    most once.
    """
    n, m = x.shape[0], y.shape[0]
    rx, ry = csls_context(x, y, k, chunk)
    free_l = torch.ones(n, dtype=torch.bool)
    free_r = torch.ones(m, dtype=torch.bool)
    rows, cols, vals = [], [], []
    while free_l.any() and free_r.any():
        li = free_l.nonzero().flatten()
        rj = free_r.nonzero().flatten()
        xl, yr = x[li.to(x.device)], y[rj.to(y.device)]
        rxl, ryr = rx[li.to(x.device)], ry[rj.to(y.device)]
        t = min(topk, len(rj))
        e_rows, e_cols, e_vals = [], [], []
        for s in range(0, len(li), chunk):  # candidates of the free left entities
            sc = csls_block(xl[s:s + chunk], yr, rxl[s:s + chunk], ryr)
            v, j = sc.topk(t, dim=1)
            e_rows.append(li[s:s + chunk, None].expand(-1, t).reshape(-1))
            e_cols.append(rj[j.cpu()].reshape(-1))
            e_vals.append(v.cpu().reshape(-1))
        t2 = min(topk, len(li))
        for s in range(0, len(rj), chunk):  # candidates of the free right entities
            sc = csls_block(yr[s:s + chunk], xl, ryr[s:s + chunk], rxl)
            v, i = sc.topk(t2, dim=1)
            e_cols.append(rj[s:s + chunk, None].expand(-1, t2).reshape(-1))
            e_rows.append(li[i.cpu()].reshape(-1))
            e_vals.append(v.cpu().reshape(-1))
        er, ec, ev = torch.cat(e_rows), torch.cat(e_cols), torch.cat(e_vals)
        order = torch.argsort(ev, descending=True, stable=True)
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

