"""Candidate retrieval for alignment: k nearest neighbours by inner product, exact or through Faiss.

Indexes (``alignment.index``, ``snagkg align --index``):

* ``exact``: chunked ``torch`` matrix products and ``topk`` (no extra needed; only
  ``[rows, n]`` blocks exist at a time, ``rows`` = ``chunk`` or fewer: see :func:`rows_per_chunk`).
* ``flat``: Faiss ``IndexFlatIP`` (exact), queried in chunks.
* ``ivf``: Faiss ``IndexIVFFlat`` (approximate: ``nlist`` k-means cells, default
  ``4 sqrt(n)``; ``nprobe`` cells searched, default a quarter of them and at least
  32), trained on a seeded sample.
* ``hnsw``: Faiss ``IndexHNSWFlat`` (approximate: 32 links per node, ``efSearch``
  default 256).
* ``auto`` (the default): ``flat`` when Faiss is installed (``pip install 'snagkg[faiss]'``),
  else ``exact``.

CSLS through an index. With ``r_y(x)`` / ``r_x(y)`` the mean similarity of a vector
to its ``k`` nearest neighbours on the other side (one k-NN search per side),
``csls(x, y) = 2 x.y - r_y(x) - r_x(y) = [2x, -1] . [y, r_x(y)] - r_y(x)``: for a
fixed query the CSLS order is the inner-product order of the *augmented* vectors
``[y, r_x(y)]``, so the best CSLS candidates are one more k-NN search (no
``n x m`` matrix is formed).

Hubness reduction (``alignment.hubness``, over ``alignment.csls_k`` neighbours ``k``): the score
above is ``csls`` (the default); ``nicdm`` is ``-|x - y|^2 / (mu_x(y) mu_y(x))`` with ``mu`` the
mean Euclidean distance of a vector to its ``k`` nearest neighbours on the other side (the
non-iterative contextual dissimilarity measure, squared and negated: the same order as NICDM's
``|x - y| / sqrt(mu mu)``). On unit vectors ``-|x - y|^2 = 2 x.y - 2``, so for a fixed query it
ranks as ``[x, 1] . [2y, -2] / mu_x(y)``: one k-NN search over ``[2y / mu, -2 / mu]``, through
any index, like CSLS. With ``k = 0`` both are plain cosine. Both sides' terms (``r`` or ``mu``)
are called the *context* below.

Canonical scores and ties. The indexes compute float32 similarities with
different summation orders, so the same pair can differ in the last bits
between them. Every score that decides a rank, a tie or an export is therefore
recomputed canonically from the candidate ids: products of the float32 vectors
in float64 (exact), summed in float64 in one fixed order (:func:`pair_dots`),
``r`` the float64 mean of the ``k`` canonical neighbour similarities sorted
descending. Two candidates are tied when their canonical scores are equal, which
is the same on every index. Float32 scores only *screen* candidates: a float32
score farther than :func:`margin` from the reference is decided by it (its error
is below the margin); the rest are recomputed canonically.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from snagkg.runtime.errors import SnagError
from snagkg.tasks.alignment.config import HUBNESS, INDEXES

FAISS_INDEXES = ("flat", "ivf", "hnsw")
APPROXIMATE = ("ivf", "hnsw")
CHUNK = 2048
#: the most score entries a block of queries against every candidate holds at once (float32: 256 MiB)
SCORE_BUDGET = 1 << 26
INSTALL_HINT = "pip install 'snagkg[faiss]' (faiss-cpu)"
#: the smallest NICDM neighbourhood distance ``mu`` (a vector whose ``k`` nearest are its duplicates has 0)
MU_FLOOR = 1e-6


def load_faiss():
    """The ``faiss`` module, or ``None`` when it is not installed."""
    try:
        import faiss  # deferred: optional extra [faiss]
    except ImportError:
        return None
    return faiss


def resolve_index(name: str) -> str:
    """The index that ``name`` means here (``auto``: ``flat`` with Faiss, else ``exact``); a one-line
    :class:`SnagError` for an unknown name or a Faiss index without Faiss installed."""
    if name not in INDEXES:
        raise SnagError(f"alignment index must be one of {', '.join(INDEXES)}, got {name!r}")
    have = load_faiss() is not None
    if name == "auto":
        return "flat" if have else "exact"
    if name in FAISS_INDEXES and not have:
        raise SnagError(f"alignment index {name!r} needs Faiss, which is not installed: {INSTALL_HINT}")
    return name


def check_hubness(hubness: str) -> str:
    """``hubness``, or a one-line :class:`SnagError` when it is not one of :data:`HUBNESS`."""
    if hubness not in HUBNESS:
        raise SnagError(f"alignment hubness must be one of {', '.join(HUBNESS)}, got {hubness!r}")
    return hubness


def margin(dim: int) -> float:
    """Screening margin of float32 CSLS scores of unit vectors of width ``dim`` (well above their
    rounding error, ``2 dim 2^-24`` per dot product, plus the ``r`` terms)."""
    return 8.0 * (dim + 16) * 2.0 ** -24 + 1e-6


def score_margin(dim: int, cq: torch.Tensor, cc: torch.Tensor, hubness: str = "csls") -> torch.Tensor:
    """Per-query margin (float64 ``[q]``) of float32 scores, from an index or a screen, of queries with
    context ``cq`` against candidates with context ``cc``: :func:`margin` for CSLS; for NICDM scaled by
    the largest ``1 / (mu_q mu_c)`` of the query (twice, for the rounding of the scaled terms)."""
    cq = cq.double().cpu()
    if hubness == "nicdm" and len(cc):
        return 2.0 * margin(dim) / (cq * float(cc.double().min()))
    return torch.full_like(cq, margin(dim))


def pair_dots(a: torch.Tensor, b: torch.Tensor, ai: Optional[torch.Tensor] = None,
              bi: Optional[torch.Tensor] = None, block: int = 16384) -> torch.Tensor:
    """Canonical float64 dot products of the rows ``a[ai[p]]`` and ``b[bi[p]]`` (all rows in order when
    ``ai`` / ``bi`` are not given): float32 products are exact in float64, summed in one fixed order
    (coordinate by coordinate), whatever index found the pair; ``block`` pairs at a time."""
    a, b = a.detach().cpu(), b.detach().cpu()
    count = len(ai) if ai is not None else a.shape[0]
    out = torch.empty(count, dtype=torch.float64)
    for s in range(0, count, block):
        ra = a[ai[s:s + block]] if ai is not None else a[s:s + block]
        rb = b[bi[s:s + block]] if bi is not None else b[s:s + block]
        at = ra.to(torch.float64).t().contiguous()  # [d, block]: one contiguous row per coordinate
        bt = rb.to(torch.float64).t().contiguous()
        acc = torch.zeros(at.shape[1], dtype=torch.float64)
        for j in range(at.shape[0]):  # one coordinate at a time: the order never depends on shapes or threads
            acc.addcmul_(at[j], bt[j])
        out[s:s + block] = acc
    return out


def rows_per_chunk(chunk: int, candidates: int) -> int:
    """Queries scored at once against ``candidates`` rows: ``chunk``, or fewer so that a block holds at
    most :data:`SCORE_BUDGET` scores (2,048 x 700,000 float32 alone is 5.7 GB); at least 1."""
    return max(1, min(int(chunk), SCORE_BUDGET // max(1, int(candidates))))


class Searcher:
    """k nearest rows of ``base`` (``[n, d]`` float32) by inner product, through index ``kind``
    (``exact``, ``flat``, ``ivf`` or ``hnsw``; see the module)."""

    def __init__(self, base: torch.Tensor, kind: str = "exact", nlist: int = 0, probe: int = 0,
                 seed: int = 0, chunk: int = CHUNK):
        if kind not in ("exact",) + FAISS_INDEXES:
            raise SnagError(f"alignment index must be one of exact, flat, ivf, hnsw, got {kind!r}")
        self.base = base.detach().float().contiguous()
        self.kind, self.chunk = kind, int(chunk)
        self.n, self.dim = self.base.shape
        self.index = None
        if kind != "exact" and self.n:
            self.index = self._build(nlist, probe, seed)

    def _build(self, nlist: int, probe: int, seed: int):
        faiss = load_faiss()
        if faiss is None:
            raise SnagError(f"alignment index {self.kind!r} needs Faiss, which is not installed: {INSTALL_HINT}")
        data = np.ascontiguousarray(self.base.cpu().numpy(), dtype=np.float32)
        d = self.dim
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.kind == "ivf":
            cells = nlist or int(4 * math.sqrt(self.n))
            cells = max(1, min(cells, self.n // 39 or 1))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = int(seed)
            sample = data
            if self.n > 256 * cells:
                sample = data[np.sort(np.random.default_rng(seed).choice(self.n, 256 * cells, replace=False))]
            index.train(sample)
            index.nprobe = max(1, min(probe or max(32, cells // 4), cells))
            index.__dict__["_quantizer"] = quantizer  # keep the quantizer alive with the index
        else:
            index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = max(probe or 256, 1)
        index.add(data)
        return index

    @torch.no_grad()
    def search(self, queries: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(similarities [q, k] float32, ids [q, k] long)``, best first; ``k`` is capped at ``n``; an
        approximate index may return fewer hits (id ``-1``, similarity ``-inf``)."""
        k = min(int(k), self.n)
        q = queries.shape[0]
        sims = torch.full((q, k), float("-inf"), dtype=torch.float32)
        ids = torch.full((q, k), -1, dtype=torch.long)
        if k == 0 or q == 0:
            return sims, ids
        queries = queries.detach().float()
        step = rows_per_chunk(self.chunk, self.n) if self.index is None else self.chunk
        for s in range(0, q, step):
            block = queries[s:s + step]
            if self.index is None:
                v, i = (block @ self.base.t()).topk(k, dim=1)
                sims[s:s + len(block)], ids[s:s + len(block)] = v.cpu(), i.cpu()
            else:
                v, i = self.index.search(np.ascontiguousarray(block.cpu().numpy(), dtype=np.float32), k)
                sims[s:s + len(block)] = torch.from_numpy(v)
                ids[s:s + len(block)] = torch.from_numpy(i).long()
        sims[ids < 0] = float("-inf")
        return sims, ids


def neighbourhood(q: torch.Tensor, c: torch.Tensor, k: int, kind: str = "exact", chunk: int = CHUNK,
                  hubness: str = "csls", **options) -> torch.Tensor:
    """Canonical float64 mean similarity (``hubness`` csls; nicdm: mean distance ``sqrt(2 - 2 x.y)``) of
    every row of ``q`` to its ``k`` nearest rows of ``c`` (found through index ``kind``)."""
    k = min(int(k), c.shape[0])
    out = torch.zeros(q.shape[0], dtype=torch.float64)
    if k <= 0 or q.shape[0] == 0:
        return out
    _, ids = Searcher(c, kind, chunk=chunk, **options).search(q, k)
    step = max(1, chunk // max(1, k))
    for s in range(0, q.shape[0], step):
        i = ids[s:s + step]
        ok = i >= 0
        safe = i.clamp(min=0)
        rows = torch.arange(s, s + len(i)).repeat_interleave(k)
        dots = pair_dots(q, c, rows, safe.reshape(-1)).view(-1, k)
        dots = torch.where(ok, dots, torch.full_like(dots, float("-inf"))).sort(dim=1, descending=True).values
        if hubness == "nicdm":  # distances of unit vectors, nearest first
            dots = (2.0 - 2.0 * dots).clamp(min=0.0).sqrt()
        found = ok.sum(dim=1).clamp(min=1)
        total = torch.zeros(len(i), dtype=torch.float64)
        for j in range(k):  # fixed order: the neighbours sorted descending
            total += torch.where(j < found, dots[:, j], torch.zeros_like(dots[:, j]))
        out[s:s + step] = total / found
    if hubness == "nicdm":
        out.clamp_(min=MU_FLOOR)
    return out


def context64(x: torch.Tensor, y: torch.Tensor, k: int, kind: str = "exact", chunk: int = CHUNK,
              hubness: str = "csls", **options) -> Tuple[torch.Tensor, torch.Tensor]:
    """Canonical float64 context of both sides: CSLS ``(r_y(x), r_x(y))`` (zeros when ``k == 0``), NICDM
    ``(mu_y(x), mu_x(y))`` (ones when ``k == 0``)."""
    if k <= 0:
        fill = 1.0 if check_hubness(hubness) == "nicdm" else 0.0
        return (torch.full((x.shape[0],), fill, dtype=torch.float64),
                torch.full((y.shape[0],), fill, dtype=torch.float64))
    return (neighbourhood(x, y, k, kind, chunk, check_hubness(hubness), **options),
            neighbourhood(y, x, k, kind, chunk, hubness, **options))


def csls_context64(x: torch.Tensor, y: torch.Tensor, k: int, kind: str = "exact", chunk: int = CHUNK,
                   **options) -> Tuple[torch.Tensor, torch.Tensor]:
    """Canonical ``(r_y(x), r_x(y))`` in float64 (zeros when ``k == 0``): :func:`context64` of CSLS."""
    return context64(x, y, k, kind, chunk, "csls", **options)


def canonical_score(x: torch.Tensor, y: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
                    xi: Optional[torch.Tensor] = None, yi: Optional[torch.Tensor] = None,
                    hubness: str = "csls") -> torch.Tensor:
    """Canonical float64 score of the pairs ``(x[xi[p]], y[yi[p]])`` (rows in order without ``xi`` /
    ``yi``) with their context ``cx``, ``cy``: CSLS ``2 x.y - r - r``, NICDM ``(2 x.y - 2) / (mu mu)``."""
    cx, cy = cx.cpu().double(), cy.cpu().double()
    if xi is not None:
        cx = cx[xi]
    if yi is not None:
        cy = cy[yi]
    if hubness == "nicdm":
        return (2.0 * pair_dots(x, y, xi, yi) - 2.0) / (cx * cy)
    return 2.0 * pair_dots(x, y, xi, yi) - cx - cy


def canonical_csls(x: torch.Tensor, y: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor,
                   xi: Optional[torch.Tensor] = None, yi: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Canonical float64 CSLS of the pairs ``(x[xi[p]], y[yi[p]])`` (:func:`canonical_score` of CSLS)."""
    return canonical_score(x, y, rx, ry, xi, yi)


def screen_scores(xq: torch.Tensor, y: torch.Tensor, cq: torch.Tensor, cy: torch.Tensor,
                  hubness: str = "csls") -> torch.Tensor:
    """Float32 scores ``[q, m]`` of queries ``xq`` against ``y`` (contexts ``cq``, ``cy`` float32): only to
    screen candidates, see :func:`score_margin`."""
    dots = xq @ y.t()
    if hubness == "nicdm":
        return (2.0 * dots - 2.0) / cq[:, None] / cy[None, :]
    return 2.0 * dots - cq[:, None] - cy[None, :]


class CSLSRetriever:
    """Best candidates (by the ``hubness`` score, CSLS by default) among the rows of ``y`` for queries
    from ``x`` (context ``rx``, ``ry`` float64), through index ``kind`` over the augmented vectors
    ``[2y, -r_x(y)]`` (NICDM: ``[2y, -2] / mu_x(y)``), queried with ``[x, 1]``."""

    def __init__(self, y: torch.Tensor, ry: torch.Tensor, kind: str = "exact", chunk: int = CHUNK,
                 hubness: str = "csls", **options):
        self.y, self.ry = y.detach().cpu(), ry.double().cpu()  # canonical scores from the vectors as given
        self.hubness = check_hubness(hubness)
        if hubness == "nicdm":
            inv = (1.0 / self.ry).float()[:, None]
            aug = torch.cat([2.0 * self.y.float() * inv, -2.0 * inv], dim=1)  # [2y, -2] / mu; queries [x, 1]
        else:
            aug = torch.cat([2.0 * self.y.float(), -self.ry.float()[:, None]], dim=1)  # [2y, -r]; queries [x, 1]
        self.searcher = Searcher(aug, kind, chunk=chunk, **options)
        self.chunk = chunk

    def search(self, x: torch.Tensor, rx: torch.Tensor, k: int, extra: int = 4
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(canonical scores [q, k] float64, ids [q, k] long)``: the ``k`` best CSLS candidates of each
        query, by descending canonical score, ties by the lower candidate position; ``extra`` more are
        fetched by float32 score so that near ties at the cut are ordered canonically. Missing hits of
        an approximate index: id ``-1``, score ``-inf``."""
        x, rx = x.detach().cpu(), rx.double().cpu()
        want = min(int(k) + int(extra), self.y.shape[0])
        aug = torch.cat([x.float(), torch.ones(x.shape[0], 1)], dim=1)
        _, ids = self.searcher.search(aug, want)
        return self.rescore(x, rx, ids, k)

    def rescore(self, x: torch.Tensor, rx: torch.Tensor, ids: torch.Tensor, k: int
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Canonical scores of candidate ``ids`` ``[q, c]`` of queries ``x``, the ``k`` best kept (see
        :meth:`search`)."""
        q, c = ids.shape
        k = min(int(k), c)
        scores = torch.full((q, c), float("-inf"), dtype=torch.float64)
        ok = ids >= 0
        if ok.any():
            rows, cols = ok.nonzero(as_tuple=True)
            cand = ids[rows, cols]
            scores[rows, cols] = canonical_score(x, self.y, rx, self.ry, rows, cand, self.hubness)
        ids = torch.where(ok, ids, torch.full_like(ids, self.y.shape[0]))  # missing hits last
        order = np.lexsort((ids.numpy(), -scores.numpy()), axis=1)[:, :k]  # score desc, then position
        order_t = torch.from_numpy(np.ascontiguousarray(order))
        top_ids = ids.gather(1, order_t)
        top = scores.gather(1, order_t)
        top_ids[top_ids >= self.y.shape[0]] = -1
        return top, top_ids


def count_better(x: torch.Tensor, rx: torch.Tensor, gold: torch.Tensor, y: torch.Tensor, ry: torch.Tensor,
                 chunk: int = CHUNK, hubness: str = "csls") -> Tuple[torch.Tensor, torch.Tensor]:
    """Exhaustive ``(better, equal)`` counts: how many rows of ``y`` score canonically above / equal to
    ``gold[i]`` for query ``x[i]`` (chunks of ``[chunk, m]`` float32 screened by :func:`margin`, for
    NICDM times ``1 / (mu_q mu_c)``, the ambiguous entries recomputed canonically)."""
    x, y = x.detach(), y.detach()  # canonical scores from the vectors as given; float32 to screen
    x32, y32 = x.float(), y.float()
    rx32, ry32 = rx.float().to(x.device), ry.float().to(y.device)
    base = margin(x.shape[1])
    nicdm = hubness == "nicdm"
    inv_y = (1.0 / ry32) if nicdm else None
    better = torch.zeros(x.shape[0], dtype=torch.long)
    equal = torch.zeros(x.shape[0], dtype=torch.long)
    chunk = rows_per_chunk(chunk, y.shape[0])
    for s in range(0, x.shape[0], chunk):
        e = min(x.shape[0], s + chunk)
        g = gold[s:e]
        scores = screen_scores(x32[s:e], y32, rx32[s:e], ry32, hubness)
        g32 = g.float().to(scores.device)[:, None]
        eps = base
        if nicdm:  # an entry's float32 error scales with 1 / (mu_q mu_c); the gold's is its float32 rounding
            eps = base / rx32[s:e, None] * inv_y[None, :] + g32.abs() * 2.0 ** -20
        better[s:e] = (scores > g32 + eps).sum(dim=1).cpu()
        rows, cols = ((scores - g32).abs() <= eps).nonzero(as_tuple=True)
        if len(rows):
            rows, cols = rows.cpu(), cols.cpu()
            exact = canonical_score(x, y, rx, ry, rows + s, cols, hubness)
            better[s:e] += torch.bincount(rows[exact > g[rows]], minlength=e - s)
            equal[s:e] += torch.bincount(rows[exact == g[rows]], minlength=e - s)
    return better, equal
