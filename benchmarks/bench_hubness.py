"""Hubness reduction beside CSLS on a trained alignment run: test H@1, H@10, MRR of each method.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hubness.py RUN [RUN ...] [--json out.json]

For each run (``snagkg.load_run``) the test links' clean, L2-normalised left and right vectors
(``task.pair_vectors``, what ``snagkg evaluate`` ranks) are compared through the exact
``n x n`` similarity matrix ``S`` (float64 products of the float32 vectors summed coordinate by
coordinate, the canonical order of ``snagkg.tasks.alignment.retrieval.pair_dots``), and every
left entity's gold partner is ranked among all right entities of the split (left to right, the
headline; right to left beside it) under each method's score. Distances are Euclidean,
``d = sqrt(2 - 2 S)`` on unit vectors (the ``kiez`` / scikit-hubness default).

* ``cosine``: ``S`` (CSLS with ``k = 0``).
* ``csls``: ``2 S_ij - r_y(x_i) - r_x(y_j)``, ``r`` the mean similarity to the ``k`` nearest of the
  other side (Lample et al. 2018), the project's score.
* ``nicdm``: ``d_ij / sqrt(mu_i mu_j)``, ``mu`` the mean distance to the ``k`` nearest of the other
  side (Jegou et al. 2010), ascending.
* ``ls``: local scaling, ``1 - exp(-d_ij^2 / (sigma_i sigma_j))``, ``sigma`` the distance to the
  ``k``-th nearest of the other side (Zelnik-Manor and Perona 2005), ascending.
* ``dsl``: DisSimLocal, ``|x_i - y_j|^2 - |x_i - c_i|^2 - |y_j - c_j|^2``, ``c`` the centroid of the
  ``k`` nearest of the other side (Hara et al. 2016), ascending.
* ``mp-gauss``: mutual proximity with independent Gaussians (Schnitzer et al. 2012):
  ``P(D_i > d_ij) P(D_j > d_ij)`` with ``D_i`` ~ N(mean, std) of ``x_i``'s distances to all right
  entities and ``D_j`` of ``y_j``'s to all left entities, descending (in logs, ``log_ndtr``).
* ``mp-emp``: the same with the empirical distributions: (how many right entities are farther from
  ``x_i`` than ``y_j``) times (how many left entities are farther from ``y_j`` than ``x_i``).

Ties as the project ranks them (:mod:`snagkg.evaluation.ranking`, the run's ``ties``: a tied
candidate counts half under ``realistic``). ``csls`` at the run's ``alignment.csls_k`` is checked
against ``task.query_ranks("test")`` (the production path) unless ``--no-check``. Each method's
H@1 (and MRR) minus that of CSLS at the run's ``csls_k`` comes with a paired bootstrap 95%
interval over the test links (``snagkg.evaluation.statistics.paired_difference``, 2,000
resamples, seed 0). ``N1 max`` / ``N1 = 0``: the most left entities any right entity is the
top-1 candidate of, and the share of right entities that are nobody's top-1 (hubs and anti-hubs).
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Callable, Dict, List, Tuple

import common

#: the smallest neighbourhood distance divided by (duplicate vectors have distance 0)
TINY = 1e-12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="trained alignment run folders")
    ap.add_argument("--csls-k", default="1,3,5,10", help="CSLS neighbourhoods to measure")
    ap.add_argument("--hub-k", default="1,3,5,10", help="neighbourhoods of nicdm, ls and dsl")
    ap.add_argument("--methods", default="cosine,csls,nicdm,ls,dsl,mp-gauss,mp-emp", help="methods to measure")
    ap.add_argument("--base-k", type=int, default=-1, help="CSLS k of the baseline (default: the run's csls_k)")
    ap.add_argument("--split", default="test", choices=("test", "valid"), help="whose links are ranked")
    ap.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-check", action="store_true", help="skip the check against task.query_ranks")
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args()

    common.set_threads(args.threads)
    import snagkg

    common.log(common.environment())
    report = []
    for run in args.runs:
        t0 = time.perf_counter()
        task = snagkg.load_run(run, device="cpu")
        k0 = int(task.cfg.alignment.csls_k)
        ties = task.cfg.ties
        base_k = k0 if args.base_k < 0 else args.base_k
        x, y = task.pair_vectors(task.split_links(args.split))
        x, y = x.detach().float().cpu(), y.detach().float().cpu()
        common.log(f"{run}: {x.shape[0]} {args.split} links, width {x.shape[1]}, csls_k {k0}, ties {ties} "
                   f"({time.perf_counter() - t0:.0f} s to load)")
        rows, extra = measure(x, y, k0, ties, [int(k) for k in args.csls_k.split(",")],
                              [int(k) for k in args.hub_k.split(",")], args.samples, args.seed, base_k,
                              args.methods.split(","))
        if not args.no_check:
            extra["check"] = check(task, rows, k0, ties, args.split)
        print(f"\n{run} ({args.split}, {x.shape[0]} links; differences against csls k={base_k}, "
              f"95% paired bootstrap over links)\n")
        print(common.table([display(r) for r in rows],
                           ["method", "k", "H@1", "H@10", "MRR", "RL H@1", "RL MRR", "dH@1", "dH@1 95%", "dMRR",
                            "dMRR 95%", "N1 max", "N1 = 0", "s"]))
        for r in rows:
            r.pop("_ranks", None)
        report.append({"run": str(run), "links": int(x.shape[0]), "split": args.split, "csls_k": k0,
                       "base_k": base_k, "ties": ties, "rows": rows, **extra})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": common.environment(), "runs": report}, f, indent=1)


def display(row: Dict[str, object]) -> Dict[str, object]:
    """``row`` with fixed decimals (percent: 2, MRR: 4) for the printed table."""
    out = dict(row)
    for key in ("H@1", "H@10", "RL H@1", "dH@1"):
        out[key] = f"{row[key]:.2f}"
    for key in ("MRR", "RL MRR", "dMRR"):
        out[key] = f"{row[key]:.4f}"
    return out


def check(task, rows: List[Dict[str, object]], k0: int, ties: str, split: str) -> Dict[str, object]:
    """Compare this script's CSLS ranks at the run's ``csls_k`` with the production path's."""
    import numpy as np
    t0 = time.perf_counter()
    prod = np.asarray(task.query_ranks(split, ties=ties), dtype=np.float64)
    mine = next(r for r in rows if r["method"] == "csls" and r["k"] == k0)["_ranks"]
    diff = int((prod != mine).sum())
    common.log(f"check: {diff} of {len(prod)} ranks differ from task.query_ranks "
               f"({time.perf_counter() - t0:.0f} s)")
    return {"ranks_differing_from_production": diff}


def canonical_sims(x, y):
    """``S[i, j] = x_i . y_j`` in float64, summed coordinate by coordinate (the project's canonical order)."""
    import torch
    xd, yd = x.double(), y.double()
    s = torch.zeros(x.shape[0], y.shape[0], dtype=torch.float64)
    for j in range(x.shape[1]):
        s.addcmul_(xd[:, j, None], yd[None, :, j])
    return s


def mean_desc(values):
    """The float64 mean of each row of ``values`` (sorted descending), summed in order."""
    import torch
    total = torch.zeros(values.shape[0], dtype=torch.float64)
    for j in range(values.shape[1]):
        total += values[:, j]
    return total / values.shape[1]


def ranks(m, ties: str) -> Tuple[object, object]:
    """Left-to-right and right-to-left tie-aware ranks of the diagonal of score matrix ``m`` (higher better)."""
    import torch

    from snagkg.evaluation.ranking import tie_aware_rank
    g = m.diagonal().clone()
    n = m.shape[0]
    b_lr, e_lr = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    b_rl, e_rl = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    step = 1024
    for s in range(0, n, step):
        block = m[s:s + step]
        gb = g[s:s + step, None]
        b_lr[s:s + step] = (block > gb).sum(1)
        e_lr[s:s + step] = (block == gb).sum(1) - 1
        b_rl += (block > g[None, :]).sum(0)
        e_rl += (block == g[None, :]).sum(0)
    e_rl -= 1
    return tie_aware_rank(b_lr, e_lr, ties), tie_aware_rank(b_rl, e_rl, ties)


def measure(x, y, k0: int, ties: str, csls_ks: List[int], hub_ks: List[int], samples: int,
            seed: int, base_k: int, methods: List[str]) -> Tuple[List[Dict[str, object]], Dict[str, object]]:
    import numpy as np
    import torch

    from snagkg.evaluation.ranking import summarize
    from snagkg.evaluation.statistics import paired_difference

    t0 = time.perf_counter()
    S = canonical_sims(x, y)
    D2 = (2.0 - 2.0 * S).clamp_(min=0.0)
    D = D2.sqrt()
    n = S.shape[0]
    common.log(f"similarities: {time.perf_counter() - t0:.1f} s")

    def nearest_sims(k: int):
        """Top-``k`` similarities (descending) and ids of each row (right side) and column (left side)."""
        row = S.topk(k, dim=1)
        col = S.t().topk(k, dim=1)
        return row, col

    def csls(k: int):
        if k == 0:
            return S
        row, col = nearest_sims(k)
        return 2.0 * S - mean_desc(row.values)[:, None] - mean_desc(col.values)[None, :]

    def nicdm(k: int):
        row, col = nearest_sims(k)
        mu_x = mean_desc((2.0 - 2.0 * row.values).clamp(min=0).sqrt()).clamp(min=TINY)
        mu_y = mean_desc((2.0 - 2.0 * col.values).clamp(min=0).sqrt()).clamp(min=TINY)
        return -(D / (mu_x[:, None] * mu_y[None, :]).sqrt())

    def local_scaling(k: int):
        row, col = nearest_sims(k)
        sig_x = (2.0 - 2.0 * row.values[:, -1]).clamp(min=0).sqrt().clamp(min=TINY)
        sig_y = (2.0 - 2.0 * col.values[:, -1]).clamp(min=0).sqrt().clamp(min=TINY)
        return -(D2 / (sig_x[:, None] * sig_y[None, :]))  # 1 - exp(-t) is monotone in t: no underflow ties

    def dsl(k: int):
        row, col = nearest_sims(k)
        xd, yd = x.double(), y.double()
        c_x = yd[row.indices].mean(dim=1)  # centroid of each left entity's k nearest right entities
        c_y = xd[col.indices].mean(dim=1)
        off_x = ((xd - c_x) ** 2).sum(dim=1)
        off_y = ((yd - c_y) ** 2).sum(dim=1)
        return -(D2 - off_x[:, None] - off_y[None, :])

    def mp_gauss(_k: int):
        mu_r, sd_r = D.mean(dim=1), D.std(dim=1)
        mu_c, sd_c = D.mean(dim=0), D.std(dim=0)
        return (torch.special.log_ndtr((mu_r[:, None] - D) / sd_r[:, None])
                + torch.special.log_ndtr((mu_c[None, :] - D) / sd_c[None, :]))

    def mp_emp(_k: int):
        # farther_row[i, j]: right entities l with S[i, l] < S[i, j]; farther_col[i, j]: left l with S[l, j] < S[i, j]
        out = torch.empty_like(S)
        step = 1024
        for s in range(0, n, step):
            block = S[s:s + step]
            srt = block.sort(dim=1).values
            out[s:s + step] = torch.searchsorted(srt, block, right=False).double().log()
        St = S.t().contiguous()
        for s in range(0, n, step):
            block = St[s:s + step]
            srt = block.sort(dim=1).values
            out[:, s:s + step] += torch.searchsorted(srt, block, right=False).double().log().t()
        del St
        return out

    plan: List[Tuple[str, int, Callable]] = [("cosine", 0, csls)]
    plan += [("csls", k, csls) for k in sorted(set(csls_ks) | {k0, base_k}) if k > 0]
    plan += [(name, k, fn) for name, fn in (("nicdm", nicdm), ("ls", local_scaling), ("dsl", dsl)) for k in hub_ks]
    plan += [("mp-gauss", 0, mp_gauss), ("mp-emp", 0, mp_emp)]
    plan = [p for p in plan if p[0] in methods or (p[0] == "csls" and p[1] in (k0, base_k))]

    measured = []
    for name, k, fn in plan:
        t1 = time.perf_counter()
        m = fn(k)
        if torch.isnan(m).any():
            raise SystemExit(f"{name} k={k}: NaN scores")
        lr, rl = ranks(m, ties)
        top1 = m.argmax(dim=1)
        n1 = torch.bincount(top1, minlength=n)
        seconds = time.perf_counter() - t1
        del m
        lr_m, rl_m = summarize(lr, ks=(1, 10)), summarize(rl, ks=(1, 10))
        measured.append({"method": name, "k": k, "lr": lr.numpy(), "rl": rl.numpy(), "lr_m": lr_m, "rl_m": rl_m,
                         "n1_max": int(n1.max()), "n1_zero": float((n1 == 0).double().mean()), "s": seconds})
        common.log(f"{name} k={k}: H@1 {100 * lr_m['hits@1']:.2f}, MRR {lr_m['mrr']:.4f} ({seconds:.1f} s)")

    base = next(r for r in measured if r["method"] == "csls" and r["k"] == base_k)
    base_h1 = (base["lr"] <= 1).astype(np.float64)
    base_rr = 1.0 / base["lr"]
    rows = []
    for r in measured:
        h1 = (r["lr"] <= 1).astype(np.float64)
        d1 = paired_difference(f"{r['method']}-{r['k']}", f"csls-{base_k}", [0], [h1], [base_h1], samples, seed=seed)
        dm = paired_difference(f"{r['method']}-{r['k']}", f"csls-{base_k}", [0], [1.0 / r["lr"]], [base_rr], samples,
                               seed=seed)
        rows.append({
            "method": r["method"], "k": r["k"] if r["k"] or r["method"] == "cosine" else "-",
            "H@1": round(100 * r["lr_m"]["hits@1"], 2), "H@10": round(100 * r["lr_m"]["hits@10"], 2),
            "MRR": round(r["lr_m"]["mrr"], 4), "RL H@1": round(100 * r["rl_m"]["hits@1"], 2),
            "RL MRR": round(r["rl_m"]["mrr"], 4),
            "dH@1": round(100 * d1.mean, 2), "dH@1 95%": f"[{100 * d1.low:+.2f}, {100 * d1.high:+.2f}]",
            "dMRR": round(dm.mean, 4), "dMRR 95%": f"[{dm.low:+.4f}, {dm.high:+.4f}]",
            "resolved": d1.resolved, "N1 max": r["n1_max"], "N1 = 0": round(r["n1_zero"], 3),
            "s": round(r["s"], 1), "_ranks": r["lr"],
        })
    return rows, {"seconds": round(time.perf_counter() - t0, 1)}


if __name__ == "__main__":
    main()
