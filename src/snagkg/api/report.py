"""``snagkg report``: one self-contained HTML page about one or more finished runs.

    snagkg report runs/a runs/b --output report.html

Per run: the resolved config (``config.yaml``), the training curves (loss and the
validation selection metric, ``metrics.jsonl``), the final metrics (``results.json``),
robustness curves when the folder holds ``robustness.json``, and the distribution of
the per-entity modality weights of the best model. Several runs also get a
side-by-side metrics table, overlaid training curves and the settings that differ.
Plots are embedded as PNG data URIs: the page needs no network to open.

Needs the ``report`` extra (``pip install 'snagkg[report]'``: jinja2 and matplotlib).
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from snagkg.api.report_plots import curves, robustness_plot, weight_groups, weight_stats, weights_plot
from snagkg.api.report_plots import is_number as _number
from snagkg.api.run import load_run, model_digest
from snagkg.config.schema import RunConfig
from snagkg.config.yamlio import read_yaml
from snagkg.core.registry import TASKS
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import write_text
from snagkg.runtime.version import __version__

PathLike = Union[str, "os.PathLike[str]"]
INSTALL_HINT = "pip install 'snagkg[report]'"
ROBUSTNESS_KEYS = ("mrr", "hits@1", "hits@3", "hits@10")
DIRECTIONS = {"tail": "(tail)", "head": "(head)", "lr": "(left to right)", "rl": "(right to left)"}


@dataclass
class RunData:
    """What the report shows of one run folder (read by :func:`read_run`)."""

    path: Path
    name: str
    task: str
    config: Dict[str, Any]
    results: Dict[str, Any]
    history: List[Dict[str, Any]]
    robustness: Optional[Dict[str, Any]] = None
    notes: List[str] = field(default_factory=list)
    weights: Optional[Dict[str, List[float]]] = None  # modality -> per-entity weights
    missing: Optional[Dict[str, List[bool]]] = None  # feature modality -> per-entity "filled as missing"

    @property
    def selection(self) -> str:
        """The validation metric that selected the best model."""
        return _task_class(self.task).selection_metric


def _task_class(name: str) -> Any:
    """The registered task class ``name`` (the config's default task for a task not registered here)."""
    return TASKS.get(name if name in TASKS else RunConfig.task)


def _summary_keys(name: str) -> Sequence[str]:
    cls = _task_class(name)
    return cls.summary_metrics or (cls.selection_metric,)


def _deps():
    """jinja2 and matplotlib, or a one-line error naming the extra to install."""
    try:
        import jinja2  # deferred: optional extra [report]
        import matplotlib  # noqa: F401  # deferred: optional extra [report]
        from matplotlib.figure import Figure  # deferred: optional extra [plot]/[report]
    except ImportError as exc:
        raise SnagError(f"report needs jinja2 and matplotlib ({exc.name or exc} is missing): {INSTALL_HINT}") from None
    return jinja2, Figure


def _read_json(path: Path, missing: str = "not found") -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnagError(missing, path) from None
    except UnicodeDecodeError:
        raise SnagError("not valid UTF-8", path) from None
    except ValueError as exc:
        raise SnagError(f"not valid JSON: {getattr(exc, 'msg', exc)}", path, getattr(exc, "lineno", None)) from None
    except OSError as exc:
        raise SnagError(f"cannot read: {exc.strerror or exc}", path) from None


def _read_history(path: Path) -> List[Dict[str, Any]]:
    """The epochs of ``metrics.jsonl``; a malformed line is an error naming its line."""
    if not path.is_file():
        return []
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SnagError(f"cannot read: {exc}", path) from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise SnagError(f"not valid JSON: {exc.msg}", path, i) from None
        if not isinstance(row, dict) or not _number(row.get("epoch")):
            raise SnagError("expected a JSON object with a number 'epoch'", path, i)
        if row.get("valid") is not None and not isinstance(row["valid"], dict):
            raise SnagError("'valid' must be an object of metrics", path, i)
        rows.append(row)
    return rows


def _read_robustness(path: Path, notes: List[str]) -> Optional[Dict[str, Any]]:
    """``robustness.json`` if present and well formed (levels, one metrics object per level); else a note."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        levels, metrics = data["levels"], data["metrics"]
        ok = (isinstance(levels, list) and isinstance(metrics, list) and len(levels) == len(metrics) > 0
              and all(_number(x) for x in levels) and all(isinstance(m, dict) for m in metrics))
        if not ok:
            raise ValueError("'levels' and 'metrics' must be lists of the same length (numbers; objects)")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        notes.append(f"robustness.json skipped: {what}")
        return None
    saved = data.get("model_sha256")
    if saved is not None and saved != model_digest(path.parent):
        notes.append("robustness.json skipped: it was computed from another model than this run's best.pt "
                     "(the run was trained again since); rerun snagkg robustness")
        return None
    keys = [k for k in ROBUSTNESS_KEYS if all(_number(m.get(k)) for m in metrics)]
    if not keys:
        notes.append("robustness.json skipped: no metric (mrr, hits@k) present at every level")
        return None
    lost = data.get("mrr_lost")  # as `snagkg robustness` prints it: the clean MRR minus the level's
    if not (isinstance(lost, list) and len(lost) == len(levels) and all(_number(x) for x in lost)):
        clean = metrics[levels.index(0)] if 0 in levels else data.get("clean")
        lost = ([clean["mrr"] - m["mrr"] for m in metrics]
                if "mrr" in keys and isinstance(clean, dict) and _number(clean.get("mrr")) else None)
    mods = data.get("modalities", data.get("modality"))
    mods = ", ".join(map(str, mods)) if isinstance(mods, list) else mods
    what = ", ".join(f"{k} {v}" for k, v in (("modality", mods), ("mode", data.get("mode")), ("split", data.get("split")))
                     if isinstance(v, (str, int, float)) and not isinstance(v, bool))
    return {"levels": levels, "metrics": metrics, "keys": keys, "title": what or "robustness", "lost": lost}


def read_run(folder: PathLike) -> RunData:
    """Read a run folder: ``config.yaml`` and ``results.json`` are required, the rest optional."""

    folder = Path(folder)
    if not folder.is_dir():
        raise SnagError("not a run folder (no such folder)", folder)
    if not (folder / "config.yaml").is_file() and not (folder / "results.json").is_file():
        raise SnagError("not a run folder (no config.yaml or results.json)", folder)
    results = _read_json(folder / "results.json", "results.json not found (is the run finished?)")
    if not isinstance(results, dict) or not isinstance(results.get("valid"), dict):
        raise SnagError("expected a JSON object with 'valid' metrics (a snagkg results.json)", folder / "results.json")
    config, _ = read_yaml(folder / "config.yaml")
    if not isinstance(config, dict):
        raise SnagError("expected a YAML mapping", folder / "config.yaml")
    notes: List[str] = []
    run = RunData(path=folder, name=folder.resolve().name, task=str(config.get("task", RunConfig.task)),
                  config=config, results=results, history=_read_history(folder / "metrics.jsonl"), notes=notes)
    if not run.history:
        notes.append("metrics.jsonl missing or empty: no training curves")
    run.robustness = _read_robustness(folder / "robustness.json", notes)
    return run


def modality_weights(run: RunData, device: str = "cpu", chunk: int = 8192) -> None:
    """Fill ``run.weights`` from the run's best model; a failure (dataset moved, ...) becomes a note."""


    try:
        entities = load_run(run.path, device=device).model.entities
        n = entities.num_entities
        with torch.no_grad():
            w = torch.cat([entities.modality_weights(torch.arange(s, min(s + chunk, n), device=device)).cpu()
                           for s in range(0, n, chunk)])
        run.weights = {m: w[:, j].tolist() for j, m in enumerate(entities.modalities)}
        run.missing = {m: entities.missing(m).cpu().bool().tolist() for m in entities.modalities if m != "structure"}
    except Exception as exc:  # the report still shows everything else
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        run.notes.append(f"modality weights not shown: the model could not be loaded ({msg})")


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def fmt(value: Any, key: str = "") -> str:
    """A metric or setting as shown in the tables (floats to 4 decimals, MR to 1)."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if key.endswith("seconds"):
        return f"{value:.2f}"
    return f"{value:.1f}" if key == "mr" or key.endswith("_mr") else f"{value:.4f}"


def _setting(value: Any) -> str:
    """A config value as YAML writes it (true, null, 0.002)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _metric_table(results: Dict[str, Any]) -> Dict[str, Any]:
    """One row per split and direction (both, tail/head or lr/rl), one column per metric."""
    keys: List[str] = []
    rows: Dict[tuple, Dict[str, Any]] = {}
    for split in ("valid", "test"):
        m = results.get(split)
        for k, v in (m.items() if isinstance(m, dict) else ()):
            if k in ("seconds", "count", "candidates") or not _number(v):
                continue
            prefix, _, base = k.partition("_")
            direction, base = (prefix, base) if base and prefix in DIRECTIONS else ("", k)
            keys += [] if base in keys else [base]
            rows.setdefault((split, direction), {})[base] = v
    # compilation time is noise when nothing was compiled (CPU runs): dropped when it is 0 throughout
    keys = [k for k in keys if not (k.endswith("compile_seconds") and not any(m.get(k) for m in rows.values()))]
    return {"keys": keys, "rows": [(f"{s} {DIRECTIONS.get(d, '')}".strip(), [fmt(m.get(k), k) for k in keys])
                                   for (s, d), m in rows.items()]}


def _robustness_rows(rob: Dict[str, Any]) -> List[tuple]:
    """``(level, metric cells, MRR lost cell or None)`` per level of a robustness section."""
    lost = rob.get("lost") or [None] * len(rob["levels"])
    return [(fmt(lv), [fmt(m.get(k), k) for k in rob["keys"]], None if x is None else fmt(x))
            for lv, m, x in zip(rob["levels"], rob["metrics"], lost)]


def _weights_section(Figure, run: RunData) -> Dict[str, Any]:
    """The modality-weight plot and tables: over all entities, and by present / missing."""
    assert run.weights is not None
    groups = weight_groups(run.weights, run.missing)
    split = [g for g in groups if g[1] != "all"]
    return {"image": weights_plot(Figure, groups),
            "stats": weight_stats([(m, "all", np.asarray(w, dtype=np.float64)) for m, w in run.weights.items()]),
            "groups": weight_stats(split), "entities": len(next(iter(run.weights.values())))}


def _summary(runs: Sequence[RunData]) -> Dict[str, Any]:
    """The side-by-side table: one row per run and split."""
    keys: List[str] = []
    for r in runs:
        keys += [k for k in _summary_keys(r.task) if k not in keys]
    facts = ("best_epoch", "epochs_run", "train_seconds", "parameters")
    rows = []
    for r in runs:
        for split in ("valid", "test"):
            m = r.results.get(split)
            if isinstance(m, dict):
                rows.append({"run": r.name, "task": r.task, "split": split,
                             "values": [fmt(m.get(k), k) for k in keys],
                             "facts": [fmt(r.results.get(f), f) for f in facts]})
    return {"keys": keys, "facts": facts, "rows": rows}


def _config_diff(runs: Sequence[RunData]) -> List[Dict[str, Any]]:
    flat = [_flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f})
    return [{"key": k, "values": [_setting(f.get(k, "-")) for f in flat]}
            for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]


def render(runs: Sequence[RunData]) -> str:
    """The HTML page for ``runs`` (already read, weights filled or noted)."""
    jinja2, Figure = _deps()

    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        for r in runs:
            r.name = str(r.path)
    sections = []
    for i, r in enumerate(runs, 1):
        sections.append({
            "index": i, "name": r.name, "path": str(r.path), "task": r.task, "selection": r.selection,
            "dataset": r.results.get("dataset") if isinstance(r.results.get("dataset"), dict) else {},
            "facts": [(k, fmt(r.results.get(k), k)) for k in
                      ("best_epoch", "epochs_run", "stopped_early", "train_seconds", "epoch_seconds", "parameters")
                      if k in r.results],
            "metrics": _metric_table(r.results),
            "curves": curves(Figure, [r]),
            "best_epoch": fmt(r.results.get("best_epoch")) if _number(r.results.get("best_epoch")) else None,
            "robustness": r.robustness and {**r.robustness, "image": robustness_plot(Figure, r.robustness),
                                            "rows": _robustness_rows(r.robustness)},
            "weights": r.weights and _weights_section(Figure, r),
            "config": [(k, _setting(v)) for k, v in _flatten(r.config).items()],
            "notes": r.notes,
        })
    source = resources.files("snagkg.api").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source).render(
        version=__version__, runs=sections, summary=_summary(runs),
        overlay=curves(Figure, runs) if len(runs) > 1 else None,
        diff=_config_diff(runs) if len(runs) > 1 else [])


def write_report(runs: Sequence[PathLike], output: PathLike, device: str = "cpu", weights: bool = True,
                 progress: Optional[bool] = False) -> Path:
    """Write the HTML report of the run folders ``runs`` to ``output`` (atomically); returns its path.

    ``weights=False`` skips loading the models (no modality-weight plots). Bad input (not a
    run folder, no ``results.json``, malformed JSON) raises :class:`SnagError` naming the file.
    """

    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    if not runs:
        raise SnagError("report: give at least one run folder")
    _deps()
    out = Path(output)
    if out.is_dir():
        raise SnagError("output path is a folder; give a file name such as report.html", out)
    data = [read_run(r) for r in runs]
    if weights:

        bar = tqdm(data, desc="loading models", unit="run", leave=False,
                   disable=not (sys.stderr.isatty() if progress is None else progress))
        for r in bar:
            modality_weights(r, device=device)
    write_text(out, render(data))
    return out
