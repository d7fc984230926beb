"""The plots of ``snagkg report`` (:mod:`snagkg.api.report`), as PNG data URIs.

* :func:`curves`: training loss per epoch and the validation selection metric per evaluation, the
  best epoch (whose model is kept) marked by a dashed line and a star;
* :func:`robustness_plot`: metrics against the share of entities perturbed;
* :func:`weights_plot`: box plots of the per-entity modality weights, split into the entities that
  have a modality and those filled as missing it (:func:`weight_groups`, as ``snagkg weights``
  groups them), outliers drawn as points.

``Figure`` is matplotlib's, passed in by the caller (the optional extra ``snagkg[report]``).
"""
from __future__ import annotations

import base64
import io
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np


def is_number(x: Any) -> bool:
    """Whether ``x`` is a finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes (no timestamp or software tag: the same bytes every time)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, metadata={"Software": None})
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    """PNG bytes as a data URI (a page that needs no network)."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def png(fig) -> str:
    """A matplotlib figure as a PNG data URI (no timestamp or software tag: the same bytes every time)."""
    return data_uri(png_bytes(fig))


def curves(Figure, runs: Sequence[Any]) -> Optional[str]:
    """Loss per epoch and the validation selection metric per evaluation, one line per run."""
    runs = [r for r in runs if r.history]
    if not runs:
        return None
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    loss_ax, val_ax = fig.subplots(1, 2)
    for i, r in enumerate(runs):
        label = r.name if len(runs) > 1 else None
        color = f"C{i % 10}"
        pts = [(h["epoch"], h["loss"]) for h in r.history if is_number(h.get("loss"))]
        if pts:
            loss_ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=label, color=color)
        val = [(h["epoch"], h["valid"][r.selection]) for h in r.history
               if isinstance(h.get("valid"), dict) and is_number(h["valid"].get(r.selection))]
        if val:
            val_ax.plot(*zip(*val), marker="o", label=f"{r.name} ({r.selection})" if label else None, color=color)
        best = r.results.get("best_epoch")
        if is_number(best):  # the epoch whose model was kept: a dashed line on both plots, a star on its value
            for ax in (loss_ax, val_ax):
                ax.axvline(best, color=color, linestyle="--", linewidth=1, alpha=0.7,
                           label=None if len(runs) > 1 or ax is loss_ax else f"best epoch {best}")
            at = [v for e, v in val if e == best]
            if at:
                val_ax.plot([best], at, marker="*", markersize=13, color=color, linestyle="none")
    loss_ax.set(title="training loss", xlabel="epoch", ylabel="loss")
    from matplotlib.ticker import (  # deferred: optional extra [report]
        MaxNLocator,  # deferred: optional extra [plot]/[report]
    )
    metrics = sorted({r.selection for r in runs})
    val_ax.set(title=f"validation {' / '.join(metrics)}", xlabel="epoch", ylabel=" / ".join(metrics))
    for ax in (loss_ax, val_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(runs) > 1:
        for ax in (loss_ax, val_ax):
            ax.legend(fontsize="small")
    elif val_ax.get_legend_handles_labels()[0]:
        val_ax.legend(fontsize="small")
    return png(fig)


def robustness_plot(Figure, rob: Dict[str, Any]) -> str:
    fig = Figure(figsize=(5.5, 3.4), layout="constrained")
    ax = fig.subplots()
    for k in rob["keys"]:
        ax.plot(rob["levels"], [m[k] for m in rob["metrics"]], marker="o", label=k)
    ax.set(title=rob["title"], xlabel="level (share of entities)", ylabel="metric")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return png(fig)


def weight_groups(weights: Dict[str, List[float]],
                  missing: Optional[Dict[str, List[bool]]]) -> List[tuple]:
    """``(modality, group, weights)`` as ``snagkg weights`` groups them: ``all`` for a modality every
    entity has (structure), ``present`` and ``missing`` for a feature modality some entities lack."""
    out = []
    for m, w in weights.items():
        a = np.asarray(w, dtype=np.float64)
        miss = np.asarray((missing or {}).get(m, ()), dtype=bool)
        if miss.shape == a.shape and miss.any() and not miss.all():
            out += [(m, "present", a[~miss]), (m, "missing", a[miss])]
        else:
            out.append((m, "all", a))
    return out


def weights_plot(Figure, groups: List[tuple]) -> str:
    fig = Figure(figsize=(max(4.0, 1.1 * len(groups) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    ax.boxplot([g[2] for g in groups], showfliers=True,  # outliers drawn as points beyond the whiskers
               flierprops={"marker": ".", "markersize": 3, "alpha": 0.4})
    ax.set_xticks(range(1, len(groups) + 1), [m if g == "all" else f"{m}\n{g}" for m, g, _ in groups])
    ax.set(title="per-entity modality weight (entities with / missing each modality)",
           ylabel="weight (rows sum to 1)")
    ax.grid(alpha=0.3, axis="y")
    return png(fig)


def weight_stats(groups: List[tuple]) -> List[Dict[str, str]]:
    return [{"modality": m, "entities": g, "count": f"{len(a):,}",
             **{k: f"{v:.4f}" for k, v in (("mean", a.mean()), ("median", np.median(a)), ("min", a.min()),
                                            ("max", a.max()))}}
            for m, g, a in groups]
