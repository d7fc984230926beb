"""Studies: a grid of runs (a base preset and dataset, named variants as config overrides, a list of
seeds), trained a few at a time, resumable, and summarised over seeds with paired intervals.

::

    spec = snagkg.api.study.load_spec("benchmarks/studies/mkg-w.yaml")
    run_study(spec, "runs/study-mkg-w", jobs=2)          # each run: runs/study-mkg-w/<variant>/seed-<n>
    summary = summarize_study("runs/study-mkg-w")        # StudySummary: means, spreads, differences

Each run is an ordinary run folder (``snagkg evaluate``, ``predict``, ``report`` work on it) plus
``ranks.test.npy``, the filtered rank of every test query its headline MRR averages (completion:
tails then heads; alignment: left to right) under its best model, which the paired differences
read. A study is resumable: a finished run (results and ranks that reproduce its test MRR) is
kept, a checkpointed one resumes, one killed before its first checkpoint starts again. A run whose
saved config differs from what the SPEC now asks is an error (a changed SPEC never mixes with old
runs silently).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from snagkg.api.robustness import robustness, select_modalities
from snagkg.api.run import _absolute_dataset, load_run, train
from snagkg.config import schema as C
from snagkg.config.yamlio import flatten, read_spec
from snagkg.runtime.errors import PathLike, SnagError
from snagkg.runtime.io import save_numpy, write_json, write_text
from snagkg.training.trainer import CHECKPOINT

SPEC_FILE = "study.yaml"
RANKS_FILE = "ranks.test.npy"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
PATTERNS = ("uniform", "long-tail", "corrupt")
#: how config errors name a SPEC's overrides before they are placed at the SPEC's line
OVERRIDES = "study overrides"


@dataclass(frozen=True)
class RobustnessSweep:
    """Robustness sweeps run on each seed's run of ``variants`` after training (test split)."""

    variants: Tuple[str, ...]
    modalities: Tuple[str, ...] = ("all",)
    patterns: Tuple[str, ...] = ("uniform",)
    levels: Tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class StudySpec:
    """A study as its SPEC file states it (see the module docstring)."""

    dataset: str
    seeds: Tuple[int, ...]
    variants: Dict[str, Dict[str, Any]]
    preset: Optional[str] = None
    config: Optional[str] = None
    base: Dict[str, Any] = field(default_factory=dict)          # overrides every variant starts from
    compare: Tuple[Tuple[str, str], ...] = ()
    intensity: Optional[Tuple[str, Tuple[str, ...]]] = None     # (dotted config key, variants)
    robustness: Optional[RobustnessSweep] = None
    source: str = SPEC_FILE
    lines: Dict[Tuple[str, ...], int] = field(default_factory=dict, compare=False, repr=False)

    def run_folder(self, output: PathLike, variant: str, seed: int) -> Path:
        return Path(output) / variant / f"seed-{seed}"

    def config_of(self, variant: str, seed: int) -> C.RunConfig:
        """The resolved run config of ``variant`` at ``seed`` (dataset made absolute)."""
        try:
            return self._resolve({**flatten(self.base), **flatten(self.variants[variant])}, seed)
        except SnagError as exc:
            if _elsewhere(exc):  # a config or preset file's own mistake keeps its file and line
                raise
            raise SnagError(f"variant {variant!r}: {exc.message}", self.source,
                            self.lines.get(("variants", variant))) from None

    def _resolve(self, merged: Dict[str, Any], seed: int) -> C.RunConfig:
        overrides = {k: (",".join(map(str, v)) if k == "modalities" and isinstance(v, list) else v)
                     for k, v in merged.items()}
        overrides.update({"dataset": self.dataset, "seed": seed})
        return _absolute_dataset(C.resolve(preset=self.preset, config_file=self.config, overrides=overrides,
                                           overrides_source=OVERRIDES))


def _elsewhere(exc: SnagError) -> bool:
    """Whether ``exc`` names a file of its own (a config or preset file), not the SPEC's overrides."""
    return exc.path is not None and exc.path != OVERRIDES


def _seq(value: Any, what: str, path: str, line: Optional[int]) -> list:
    if not isinstance(value, list) or not value:
        raise SnagError(f"{what} must be a non-empty list", path, line)
    return value


def _names(value: Any, what: str, path: str, line: Optional[int]) -> Tuple[str, ...]:
    items = _seq(value, what, path, line)
    if not all(isinstance(v, str) and v for v in items):
        raise SnagError(f"{what} must be a list of names", path, line)
    return tuple(items)


def _known_keys(mapping: Dict[str, Any], known: Tuple[str, ...], what: str, src: str,
                line: Callable[..., Optional[int]]) -> None:
    for key in mapping:
        if key not in known:
            raise SnagError(f"{what}: unknown key {key!r} (known: {', '.join(known)})", src, line(what, str(key)))


def _check_against(spec: StudySpec, line: Callable[..., Optional[int]]) -> None:
    """What needs the resolved configs: the preset and base alone, each variant, the intensity key
    and the swept modalities (before any run trains: a mistake found after hours of training is
    found too late)."""
    src = spec.source
    try:
        base = spec._resolve(flatten(spec.base), spec.seeds[0])
    except SnagError as exc:
        if _elsewhere(exc):
            raise
        where = "base" if spec.base and line("base") else ("preset" if spec.preset else "config")
        raise SnagError(exc.message, src, line(where)) from None
    configs = {v: spec.config_of(v, spec.seeds[0]) for v in spec.variants}
    if spec.intensity is not None:
        key = spec.intensity[0]
        if key not in flatten(base.to_dict()):
            raise SnagError(f"intensity x {key!r} is not a config key (a dotted key such as noise.ratio)", src,
                            line("intensity", "x"))
    sweep = spec.robustness
    if sweep is not None:
        for v in sweep.variants:
            mods = configs[v].modalities
            if mods is None:  # every table of the dataset: checked once the data is read, after training
                continue
            for entry in sweep.modalities:  # what the sweep after training will select
                try:
                    select_modalities(mods, entry)
                except SnagError as exc:
                    raise SnagError(f"variant {v!r}: robustness {exc.message}", src,
                                    line("robustness", "modalities")) from None


def load_spec(path: PathLike) -> StudySpec:
    """Read and check a study SPEC (YAML); every mistake is an error naming the file and line."""
    data, lines, src, line = read_spec(path, ("preset", "config", "base", "dataset", "seeds", "variants", "compare",
                                              "intensity", "robustness"))
    seeds = _seq(data.get("seeds"), "seeds", src, line("seeds"))
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) != len(seeds):
        raise SnagError("seeds must be distinct whole numbers", src, line("seeds"))
    variants = data.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise SnagError("variants must map names to config overrides", src, line("variants"))
    for name, over in variants.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise SnagError(f"variant name {name!r} must be letters, digits, '.', '_' or '-'", src,
                            line("variants", str(name)))
        if over is not None and not isinstance(over, dict):
            raise SnagError(f"variant {name!r} must be a mapping of config overrides", src, line("variants", name))
    variants = {k: dict(v or {}) for k, v in variants.items()}

    def names(value: Any, what: str, *key: str) -> Tuple[str, ...]:
        items = _seq(value, what, src, line(*key))
        for v in items:
            if v not in variants:
                raise SnagError(f"{what}: {v!r} is not a variant", src, line(*key))
        return tuple(items)

    compare = []
    for pair in data.get("compare") or []:
        if not isinstance(pair, list) or len(pair) != 2:
            raise SnagError("compare holds pairs [a, b] of variant names", src, line("compare"))
        pair = names(pair, "compare", "compare")
        if pair[0] == pair[1]:
            raise SnagError(f"compare: {pair[0]!r} is compared with itself", src, line("compare"))
        compare.append(pair)
    intensity = None
    if data.get("intensity") is not None:
        inten = data["intensity"]
        if not isinstance(inten, dict) or not isinstance(inten.get("x"), str):
            raise SnagError("intensity needs x (a dotted config key) and variants", src, line("intensity"))
        _known_keys(inten, ("x", "variants"), "intensity", src, line)
        intensity = (inten["x"], names(inten.get("variants"), "intensity variants", "intensity", "variants"))
    sweep = None
    if data.get("robustness") is not None:
        rob = data["robustness"]
        if not isinstance(rob, dict):
            raise SnagError("robustness must be a mapping", src, line("robustness"))
        _known_keys(rob, ("variants", "modalities", "patterns", "levels"), "robustness", src, line)
        patterns = _names(rob.get("patterns", ["uniform"]), "robustness patterns", src, line("robustness", "patterns"))
        for p in patterns:
            if p not in PATTERNS:
                raise SnagError(f"robustness pattern {p!r} is not one of {', '.join(PATTERNS)}", src,
                                line("robustness", "patterns"))
        levels = tuple(_seq(rob.get("levels", list(RobustnessSweep.levels)), "robustness levels", src,
                            line("robustness", "levels")))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels):
            raise SnagError("robustness levels must be numbers in [0, 1]", src, line("robustness", "levels"))
        levels = tuple(float(v) for v in levels)
        if 0.0 not in levels or any(not 0.0 <= v <= 1.0 for v in levels):
            raise SnagError("robustness levels must lie in [0, 1] and include 0", src, line("robustness", "levels"))
        sweep = RobustnessSweep(names(rob.get("variants"), "robustness variants", "robustness", "variants"),
                                _names(rob.get("modalities", ["all"]), "robustness modalities", src,
                                       line("robustness", "modalities")), patterns, levels)
    spec = StudySpec(dataset=data["dataset"], seeds=tuple(seeds), variants=variants, preset=data.get("preset"),
                     config=data.get("config"), base=dict(data.get("base") or {}), compare=tuple(compare), intensity=intensity, robustness=sweep,
                     source=src, lines=dict(lines))
    _check_against(spec, line)  # every variant resolves (names the variant and line of a bad override)
    return spec


# -- running -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    variant: str
    seed: int
    folder: Path
    config: C.RunConfig
    sweep: Optional[RobustnessSweep]


def _differences(saved: C.RunConfig, wanted: C.RunConfig) -> List[str]:
    old, new = flatten(saved.to_dict()), flatten(wanted.to_dict())
    return [k for k in sorted(set(old) | set(new)) if k != "device" and old.get(k) != new.get(k)]


def plan(spec: StudySpec, output: PathLike) -> List[Job]:
    """Every (variant, seed) run of ``spec`` under ``output``, seeds outermost (so that a partial study
    has every variant at its first seeds); refuses a run folder whose saved config differs."""
    jobs = []
    for seed in spec.seeds:
        for variant in spec.variants:
            folder = spec.run_folder(output, variant, seed)
            cfg = spec.config_of(variant, seed)
            saved = folder / "config.yaml"
            if saved.is_file():
                diff = _differences(C.load_run_config(saved), cfg)
                if diff:
                    raise SnagError(f"this run was trained with other settings than the SPEC now asks for "
                                    f"({', '.join(diff[:4])}{', ...' if len(diff) > 4 else ''}); use a new "
                                    f"--output or remove the run", saved)
            sweep = spec.robustness if spec.robustness and variant in spec.robustness.variants else None
            jobs.append(Job(variant, seed, folder, cfg, sweep))
    return jobs


def robustness_file(folder: Path, pattern: str, modality: str) -> Path:
    return folder / f"robustness.{pattern}.{modality}.json"


#: how far the MRR of a run's saved ranks may be from its results.json test MRR (float rounding only)
RANKS_TOLERANCE = 1e-6


def checked_ranks(run: Path, test_mrr: float) -> np.ndarray:
    """The run's saved test ranks (``float64``), refused unless they reproduce its test MRR: ranks
    written by an older version, or of other queries than the headline averages, would pair the
    wrong queries."""
    path = run / RANKS_FILE
    try:
        ranks = np.load(path, allow_pickle=False).astype(np.float64)
    except (OSError, ValueError) as exc:
        raise SnagError(f"cannot read: {exc}", path) from None
    mrr = float((1.0 / ranks).mean()) if ranks.size else float("nan")
    if not abs(mrr - test_mrr) <= RANKS_TOLERANCE:
        raise SnagError(f"these {ranks.size} ranks give test MRR {mrr:.6f}, results.json {test_mrr:.6f}: "
                        f"rerun the study to rewrite them", path)
    return ranks


def _ranks_current(folder: Path) -> bool:
    """Whether ``folder`` has results and saved test ranks that reproduce their test MRR."""
    if not ((folder / "results.json").is_file() and (folder / RANKS_FILE).is_file()):
        return False
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        checked_ranks(folder, float(results["test"]["mrr"]))
    except (SnagError, OSError, ValueError, KeyError, TypeError):
        return False
    return True


def job_done(job: Job) -> bool:
    """Whether ``job`` has its results, its test ranks (reproducing its test MRR) and every robustness sweep."""
    if not _ranks_current(job.folder):
        return False
    sweep = job.sweep
    return sweep is None or all(robustness_file(job.folder, p, m).is_file()
                                for p in sweep.patterns for m in sweep.modalities)


def run_job(job: Job, threads: int = 1) -> str:
    """Train (or resume, or finish) one run and write its ranks and sweeps; returns the job's label.

    Runs in a worker process: ``threads`` torch threads, its log in ``<variant>/seed-<n>.log``."""
    torch.set_num_threads(max(1, threads))
    log_path = job.folder.parent / f"{job.folder.name}.log"
    job.folder.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        def echo(text: str) -> None:
            log.write(text + "\n")
            log.flush()

        if not (job.folder / "results.json").is_file():
            resume = (job.folder / CHECKPOINT).is_file()
            train(job.config, job.folder, resume=resume, overwrite=job.folder.exists() and not resume,
                  progress=False, echo=echo)
        task = None
        if not _ranks_current(job.folder):  # missing, or written by an older version
            task = load_run(job.folder)
            save_numpy(job.folder / RANKS_FILE, task.query_ranks("test"))
        if job.sweep is not None:
            for pattern in job.sweep.patterns:
                for modality in job.sweep.modalities:
                    out = robustness_file(job.folder, pattern, modality)
                    if not out.is_file():
                        res = robustness(job.folder, modality=modality, levels=job.sweep.levels, pattern=pattern,
                                         write=False)
                        write_json(out, res.to_dict())
                        echo(f"robustness {pattern} {modality}: MRR {[round(m['mrr'], 4) for m in res.metrics]}")
    return f"{job.variant}/seed-{job.seed}"


def run_study(spec: StudySpec, output: PathLike, jobs: int = 1, threads: Optional[int] = None,
              progress: bool = False, echo: Callable[[str], None] = lambda s: None) -> List[Job]:
    """Run every unfinished job of ``spec`` under ``output``, ``jobs`` at a time in worker processes
    with ``threads`` torch threads each (default: the cores split between the jobs). Writes the SPEC
    as ``output/study.yaml``; returns the jobs (all done unless one failed, which raises)."""
    if jobs < 1:
        raise SnagError(f"--jobs must be at least 1, got {jobs}")
    output = Path(output)
    all_jobs = plan(spec, output)
    todo = [j for j in all_jobs if not job_done(j)]
    output.mkdir(parents=True, exist_ok=True)
    write_text(output / SPEC_FILE, Path(spec.source).read_text(encoding="utf-8"))
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    echo(f"study: {len(all_jobs)} runs, {len(all_jobs) - len(todo)} done, {len(todo)} to run "
         f"({jobs} at a time, {threads} thread{'s' if threads != 1 else ''} each)")
    if not todo:
        return all_jobs
    bar = tqdm(total=len(todo), desc="study", unit="run", disable=not progress)
    failed = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, j, threads): j for j in todo}
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                echo(f"done: {fut.result()}")
            except Exception as exc:  # one failed run does not stop the others; reported at the end
                failed.append(f"{job.variant}/seed-{job.seed}: {exc}")
            bar.update(1)
    bar.close()
    if failed:
        raise SnagError(f"{len(failed)} run{'s' if len(failed) != 1 else ''} failed (see their .log): "
                        + "; ".join(failed))
    return all_jobs
