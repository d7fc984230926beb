"""Robustness to missing modalities: GMNM-trained models against the same models trained without noise.

Trains ``2 x len(seeds)`` completion runs on the built-in synthetic MMKG (preset ``synthetic``:
structure + image + text), one with the preset's Gaussian modality noise and one with
``noise.ratio 0`` per seed, same budget, then sweeps each run with ``snagkg.robustness`` (drop
mode, the test split) and prints a Markdown table: the mean and the min-max of the test MRR per
drop level, and the mean MRR lost against level 0, for both.

    python benchmarks/robustness_study.py --out runs/robustness_study --seeds 1,2,3 --epochs 10

``--variants gmnm --train-only`` and ``--variants no-noise --train-only`` (with ``--threads 1``) train
the two halves side by side; the command above then finds them finished and only sweeps. Finished runs (``results.json`` present) are skipped; a run with a checkpoint but no results is
resumed, so the command can be rerun after an interruption. Everything measured is also written
to ``<out>/study.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import snagkg
from snagkg.runtime.io import write_json

VARIANTS = {"gmnm": {}, "no-noise": {"noise.ratio": 0.0}}


def train_runs(out: Path, seeds: List[int], epochs: int, device: str,
               variants=tuple(VARIANTS)) -> Dict[str, Dict[int, Path]]:
    """Train (or skip, or resume) every variant and seed; returns the run folders."""
    runs: Dict[str, Dict[int, Path]] = {v: {} for v in variants}
    for seed in seeds:
        for variant in variants:
            extra = VARIANTS[variant]
            folder = out / f"{variant}-s{seed}"
            runs[variant][seed] = folder
            if (folder / "results.json").exists():
                print(f"{folder.name}: finished, skipped", file=sys.stderr)
                continue
            overrides = {"dataset": "synthetic", "seed": seed, "device": device, "train.epochs": epochs, **extra}
            cfg = snagkg.resolve_config(preset="synthetic", overrides=overrides)
            resume = (folder / "checkpoint.pt").exists()
            t0 = time.perf_counter()
            res = snagkg.train(cfg, folder, resume=resume, progress=False, echo=lambda s: None)
            print(f"{folder.name}: test mrr {res.test['mrr']:.4f}, best epoch {res.best_epoch}, "
                  f"{time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return runs


def spread(values: List[float]) -> str:
    """``mean (min-max)`` with four decimals."""
    return f"{statistics.mean(values):.4f} ({min(values):.4f}–{max(values):.4f})"


def markdown(modality: str, levels: List[float], sweeps: Dict[str, List[dict]]) -> str:
    """The Markdown table of one modality's sweep over both variants."""
    head = ("| share dropped | GMNM test MRR, mean (min–max) | no noise test MRR, mean (min–max) "
            "| GMNM MRR lost | no noise MRR lost |")
    lines = [f"`--modality {modality}`, drop mode:", "", head, "| --- | --- | --- | --- | --- |"]
    for i, level in enumerate(levels):
        cells = [f"{level:g}"]
        for v in VARIANTS:
            cells.append(spread([s["metrics"][i]["mrr"] for s in sweeps[v]]))
        for v in VARIANTS:
            cells.append(spread([s["mrr_lost"][i] for s in sweeps[v]]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables_from_json(path: Path) -> str:
    """The Markdown tables of a finished (or partly finished) study, from its ``study.json``."""
    from snagkg.api.robustness import parse_levels

    study = json.loads(Path(path).read_text())
    levels = parse_levels(study["levels"])
    return "\n\n".join(markdown(m, levels, sweeps) for m, sweeps in study["sweeps"].items())


def main(argv=None) -> int:
    """Train the runs, sweep them, print the Markdown tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/robustness_study", help="folder of the runs and study.json")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=40, help="training epochs of every run (the preset: 40)")
    p.add_argument("--modalities", default="all,image,text", help="the sweeps: --modality values, comma-separated")
    p.add_argument("--levels", default="0,0.2,0.4,0.6,0.8,1.0")
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", default="gmnm,no-noise", help="train only these (with --train-only)")
    p.add_argument("--train-only", action="store_true", help="train the runs, do not sweep")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    p.add_argument("--table-only", action="store_true", help="print the tables of <out>/study.json; run nothing")
    a = p.parse_args(argv)
    if a.table_only:
        print(tables_from_json(Path(a.out) / "study.json"))
        return 0
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    seeds = [int(s) for s in a.seeds.split(",")]
    variants = [v for v in a.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r} (known: {', '.join(VARIANTS)})")
    runs = train_runs(out, seeds, a.epochs, a.device, variants)
    if a.train_only:
        return 0
    if set(variants) != set(VARIANTS):
        p.error("the sweep needs both variants: drop --variants or add --train-only")
    study = {"seeds": seeds, "epochs": a.epochs, "levels": a.levels, "runs": {}, "sweeps": {}}
    for v in VARIANTS:
        for seed, folder in runs[v].items():
            res = json.loads((folder / "results.json").read_text())
            study["runs"][folder.name] = {"test": res["test"], "best_epoch": res["best_epoch"],
                                          "epochs_run": res["epochs_run"], "train_seconds": res["train_seconds"]}
    tables = []
    for modality in a.modalities.split(","):
        sweeps: Dict[str, List[dict]] = {v: [] for v in VARIANTS}
        for v in VARIANTS:
            for seed, folder in runs[v].items():
                t0 = time.perf_counter()
                r = snagkg.robustness(folder, modality=modality, levels=a.levels, mode="drop", split="test",
                                      seed=seed, device=a.device, write=False)
                sweeps[v].append(r.to_dict())
                print(f"{folder.name} --modality {modality}: mrr "
                      + " ".join(f"{m['mrr']:.4f}" for m in r.metrics) + f" ({time.perf_counter() - t0:.0f}s)",
                      file=sys.stderr)
        levels = sweeps["gmnm"][0]["levels"]
        study["sweeps"][modality] = {v: [{"run": s["run"], "metrics": [{"mrr": m["mrr"], "hits@1": m["hits@1"],
                                                                        "hits@10": m["hits@10"]} for m in s["metrics"]],
                                          "mrr_lost": s["mrr_lost"], "missing": s["missing"]} for s in sweeps[v]]
                                     for v in VARIANTS}
        write_json(out / "study.json", study)
        tables.append(markdown(modality, levels, sweeps))
        print(tables[-1] + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
