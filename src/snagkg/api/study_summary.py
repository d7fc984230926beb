"""The summary of a study folder: each variant's metrics over seeds, the paired differences the SPEC
names (with bootstrap intervals over test queries and the seed-level range), MRR against the noise
intensity, and the robustness sweeps (MRR per level, the lost-MRR ratio of two variants).

Figures are percent (MRR x 100) in the tables and fractions in ``summary.json``.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from snagkg.api.study import RANKS_FILE, SPEC_FILE, StudySpec, checked_ranks, load_spec, robustness_file
from snagkg.config.yamlio import flatten
from snagkg.evaluation.statistics import Difference, Spread, paired_difference
from snagkg.runtime.errors import PathLike, SnagError
from snagkg.runtime.io import write_json, write_text

METRICS = (("mrr", "MRR"), ("hits@1", "H@1"), ("hits@10", "H@10"))


@dataclass(frozen=True)
class VariantSummary:
    name: str
    seeds: List[int]                   # seeds whose run is finished
    metrics: Dict[str, Spread]         # test metric -> spread over seeds
    at_cap: int                        # runs whose best validation epoch was the last one trained


@dataclass(frozen=True)
class SweepSummary:
    variant: str
    pattern: str
    modality: str
    levels: List[float]
    mrr: List[Spread]                  # per level, over seeds
    lost: Spread                       # mean MRR lost over the levels above 0, over seeds


@dataclass(frozen=True)
class StudySummary:
    folder: str
    variants: List[VariantSummary]
    differences: List[Difference]
    unfinished: List[str]
    intensity: Optional[Tuple[str, List[Tuple[float, str, Spread]]]]
    sweeps: List[SweepSummary]
    lost_ratio: List[Tuple[str, str, Spread]]   # (pattern, modality, ratio variant 1 / variant 2 over seeds)
    ratio_of: Optional[Tuple[str, str]] = None  # the two variants of lost_ratio (the sweep's first two)

    def to_dict(self) -> Dict[str, Any]:
        return {"folder": self.folder, "variants": [asdict(v) for v in self.variants],
                "differences": [d.to_dict() for d in self.differences], "unfinished": self.unfinished,
                "intensity": None if self.intensity is None else
                {"key": self.intensity[0], "points": [{"x": x, "variant": v, "mrr": asdict(s)}
                                                      for x, v, s in self.intensity[1]]},
                "robustness": [asdict(s) for s in self.sweeps],
                "lost_ratio": [{"pattern": p, "modality": m, **asdict(s)} for p, m, s in self.lost_ratio],
                "ratio_of": None if self.ratio_of is None else list(self.ratio_of)}

    def markdown(self) -> str:
        out = ["| variant | seeds | " + " | ".join(f"{label} mean ± sd" for _, label in METRICS) + " | best at cap |",
               "|---|---|" + "---|" * len(METRICS) + "---|"]
        for v in self.variants:
            cells = [f"{100 * v.metrics[k].mean:.2f} ± {100 * v.metrics[k].std:.2f}" if k in v.metrics else "-"
                     for k, _ in METRICS]
            out.append(f"| {v.name} | {','.join(map(str, v.seeds)) or '-'} | " + " | ".join(cells)
                       + f" | {v.at_cap} of {len(v.seeds)} |")
        if self.differences:
            out += ["", "| difference (MRR) | mean | 95% interval (queries) | seed range | resolved |",
                    "|---|---|---|---|---|"]
            for d in self.differences:
                out.append(f"| {d.a} - {d.b} | {100 * d.mean:+.2f} | [{100 * d.low:+.2f}, {100 * d.high:+.2f}] | "
                           f"{100 * d.seed_low:+.2f} to {100 * d.seed_high:+.2f} | "
                           f"{'yes' if d.resolved else 'no: not shown'} |")
        if self.intensity:
            out += ["", f"| {self.intensity[0]} | variant | MRR mean ± sd |", "|---|---|---|"]
            out += [f"| {x:g} | {v} | {100 * s.mean:.2f} ± {100 * s.std:.2f} |" for x, v, s in self.intensity[1]]
        if self.sweeps:
            levels = self.sweeps[0].levels
            out += ["", "| variant | pattern | modality | " + " | ".join(f"{lv:g}" for lv in levels)
                    + " | mean MRR lost (levels > 0) |", "|---|---|---|" + "---|" * (len(levels) + 1)]
            for s in self.sweeps:
                out.append(f"| {s.variant} | {s.pattern} | {s.modality} | "
                           + " | ".join(f"{100 * m.mean:.2f}" for m in s.mrr) + f" | {100 * s.lost.mean:.2f} |")
        if self.lost_ratio and self.ratio_of:
            a, b = self.ratio_of
            out += ["", f"MRR lost by {a} as a share of that lost by {b} (mean over levels > 0; 1: no difference):"]
            out += [f"- {p}, {m}: {r.mean:.3f} (seeds {r.low:.3f} to {r.high:.3f})" for p, m, r in self.lost_ratio]
        if self.unfinished:
            out += ["", f"unfinished runs ({len(self.unfinished)}): {', '.join(self.unfinished)}"]
        return "\n".join(out) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["kind", "name", "seeds", "metric", "mean", "std", "low", "high", "resolved"])
        for v in self.variants:
            for k, _ in METRICS:
                if k in v.metrics:
                    s = v.metrics[k]
                    w.writerow(["variant", v.name, " ".join(map(str, v.seeds)), k, s.mean, s.std, s.low, s.high, ""])
        for d in self.differences:
            w.writerow(["difference", f"{d.a} - {d.b}", " ".join(map(str, d.seeds)), "mrr", d.mean, "",
                        d.low, d.high, d.resolved])
        return buf.getvalue()


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SnagError(f"cannot read: {exc}", path) from None


def _sweeps(spec: StudySpec, folder: Path) -> Tuple[List[SweepSummary], List[Tuple[str, str, Spread]]]:
    sweep = spec.robustness
    if sweep is None:
        return [], []
    out, ratios = [], []
    for pattern in sweep.patterns:
        for modality in sweep.modalities:
            lost_by_variant: Dict[str, Dict[int, float]] = {}
            for variant in sweep.variants:
                curves, lost = [], {}
                for seed in spec.seeds:
                    p = robustness_file(spec.run_folder(folder, variant, seed), pattern, modality)
                    if p.is_file():
                        r = _read(p)
                        mrr = [float(m["mrr"]) for m in r["metrics"]]
                        curves.append(mrr)
                        lost[seed] = float(np.mean([float(x) for lv, x in zip(r["levels"], r["mrr_lost"]) if lv > 0]))
                if curves:
                    arr = np.asarray(curves)
                    out.append(SweepSummary(variant, pattern, modality, list(sweep.levels),
                                            [Spread.of(arr[:, i]) for i in range(arr.shape[1])],
                                            Spread.of(list(lost.values()))))
                lost_by_variant[variant] = lost
            if len(sweep.variants) >= 2:
                a, b = lost_by_variant[sweep.variants[0]], lost_by_variant[sweep.variants[1]]
                both = [s for s in spec.seeds if s in a and s in b and b[s] > 0]
                if both:
                    ratios.append((pattern, modality, Spread.of([a[s] / b[s] for s in both])))
    return out, ratios


def summarize_study(folder: PathLike, samples: int = 2000) -> StudySummary:
    """Summarise the study in ``folder`` (its ``study.yaml`` says what it holds)."""
    folder = Path(folder)
    if not (folder / SPEC_FILE).is_file():
        raise SnagError(f"not a study folder (no {SPEC_FILE}; run `snagkg study SPEC.yaml --output DIR` first)", folder)
    spec = load_spec(folder / SPEC_FILE)
    variants, unfinished, tests = [], [], {}
    ranks: Dict[Tuple[str, int], np.ndarray] = {}
    for name in spec.variants:
        rows, seeds, at_cap = [], [], 0
        for seed in spec.seeds:
            run = spec.run_folder(folder, name, seed)
            if not ((run / "results.json").is_file() and (run / RANKS_FILE).is_file()):
                unfinished.append(f"{name}/seed-{seed}")
                continue
            res = _read(run / "results.json")
            ranks[(name, seed)] = checked_ranks(run, float(res["test"]["mrr"]))
            rows.append(res["test"])
            seeds.append(seed)
            at_cap += int(res.get("best_epoch") == res.get("epochs_run"))
        tests[name] = seeds
        metrics = {k: Spread.of([float(r[k]) for r in rows]) for k, _ in METRICS if rows}
        variants.append(VariantSummary(name, seeds, metrics, at_cap))
    diffs = []
    for a, b in spec.compare:
        seeds = [s for s in spec.seeds if s in tests[a] and s in tests[b]]
        if seeds:
            diffs.append(paired_difference(a, b, seeds, [ranks[(a, s)] ** -1.0 for s in seeds],
                                           [ranks[(b, s)] ** -1.0 for s in seeds], samples=samples))
    intensity = None
    if spec.intensity:
        key, names = spec.intensity
        by_name = {v.name: v for v in variants}
        points = []
        for name in names:
            x = flatten(spec.config_of(name, spec.seeds[0]).to_dict()).get(key)
            if by_name[name].metrics:
                points.append((float(x), name, by_name[name].metrics["mrr"]))
        intensity = (key, sorted(points))
    sweeps, ratios = _sweeps(spec, folder)
    ratio_of = tuple(spec.robustness.variants[:2]) if ratios else None
    return StudySummary(str(folder), variants, diffs, unfinished, intensity, sweeps, ratios, ratio_of)


def write_summary(summary: StudySummary, folder: PathLike) -> List[Path]:
    """``summary.md``, ``summary.csv`` and ``summary.json`` in the study folder (each atomically)."""
    folder = Path(folder)
    write_text(folder / "summary.md", summary.markdown())
    write_text(folder / "summary.csv", summary.csv())
    write_json(folder / "summary.json", summary.to_dict())
    return [folder / "summary.md", folder / "summary.csv", folder / "summary.json"]
