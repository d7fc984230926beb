"""The summary of a ``snagkg tune`` search (:mod:`snagkg.api.tune`): the trials table, ``trials.csv``,
the best configuration as a preset file ``best.yaml`` and the plots ``tune.png``.

    summary = summarize_tune("runs/tune-demo")      # TuneSummary: rows, best trial; files rewritten
    print(summary.table())
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from snagkg.config import schema as C
from snagkg.runtime.errors import PathLike, SnagError
from snagkg.runtime.io import write_bytes, write_text

STUDY_FILE = "study.db"
STUDY_NAME = "snagkg-tune"
BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.csv"
PLOT_FILE = "tune.png"
INSTALL_HINT = "pip install 'snagkg[tune]'"
#: what the best preset leaves out: where and how a run is trained, not what
NOT_IN_PRESET = ("dataset", "preset", "device")


def _optuna() -> Any:
    """The optuna module, or a one-line error naming the extra."""
    try:
        import optuna  # deferred: optional extra [tune]
    except ImportError:
        raise SnagError(f"snagkg tune needs optuna: {INSTALL_HINT}") from None
    return optuna


@dataclass
class TuneSummary:
    """The trials of a search (rows of plain values) and what was written."""

    metric: str
    params: List[str]
    rows: List[Dict[str, Any]]
    best: Optional[int] = None              # the best complete trial's number
    written: List[Path] = field(default_factory=list)

    def table(self) -> str:
        """The trials as a Markdown table (the best marked ``*``)."""
        head = ["trial", "state", f"valid {self.metric}", *self.params, "best epoch", "epochs", "seconds"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            value = "" if r["value"] is None else f"{r['value']:.4f}"
            mark = "*" if r["number"] == self.best else ""
            cells = [f"{r['number']}{mark}", r["state"], value, *(_fmt(r["params"].get(p)) for p in self.params),
                     _fmt(r.get("best_epoch")), _fmt(r.get("epochs_run")), _fmt(r.get("train_seconds"))]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)



def summarize_tune(output: PathLike, study: Any = None) -> TuneSummary:
    """The trials of the search in ``output``; writes ``trials.csv``, ``best.yaml`` (when a trial is
    complete) and ``tune.png`` (with matplotlib)."""
    optuna = _optuna()
    out = Path(output)
    if study is None:
        if not (out / STUDY_FILE).is_file():
            raise SnagError(f"no search here ({STUDY_FILE} not found)", out)
        study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{(out / STUDY_FILE).resolve()}")
    states = optuna.trial.TrialState
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != states.WAITING]
    params: List[str] = []
    for t in trials:
        params.extend(k for k in t.params if k not in params)
    rows = []
    for t in trials:
        value = t.value if t.state == states.COMPLETE else t.user_attrs.get("valid")
        rows.append({"number": t.number, "state": t.state.name.lower() + (" (killed)" if t.user_attrs.get("killed")
                                                                          else ""),
                     "value": value, "params": dict(t.params),
                     **{k: t.user_attrs.get(k) for k in ("best_epoch", "epochs_run", "train_seconds", "folder",
                                                         "error")}})
    complete = [t for t in trials if t.state == states.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    metric = str(study.user_attrs.get("metric", "score"))
    summary = TuneSummary(metric=metric, params=params, rows=rows, best=None if best is None else best.number)
    summary.written.append(_write_csv(out / TRIALS_FILE, summary))
    if best is not None:
        summary.written.append(write_best_preset(out, best.user_attrs.get("folder", ""), best.number, best.value,
                                                 metric, len(trials)))
    plot = _plot(out / PLOT_FILE, study, trials, metric, optuna)
    if plot is not None:
        summary.written.append(plot)
    return summary


def _write_csv(path: Path, summary: TuneSummary) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", "state", "value", *summary.params, "best_epoch", "epochs_run", "train_seconds",
                     "folder", "error"])
    for r in summary.rows:
        writer.writerow([r["number"], r["state"], "" if r["value"] is None else r["value"],
                         *(r["params"].get(p, "") for p in summary.params),
                         *("" if r.get(k) is None else r[k] for k in ("best_epoch", "epochs_run", "train_seconds",
                                                                      "folder", "error"))])
    write_text(path, buf.getvalue())
    return path


def write_best_preset(out: Path, folder: str, number: int, value: float, metric: str, trials: int) -> Path:
    """Write the best trial's resolved config (less dataset, preset and device) as ``best.yaml``: a
    preset file ``snagkg train --preset`` reads."""
    cfg = C.load_run_config(out / folder / "config.yaml")
    data = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_PRESET}
    header = (f"# snagkg tune: the best of {trials} trials, trial {number} ({folder}): valid {metric} {value:.4f}\n"
              f"# train it: snagkg train --preset {out / BEST_FILE} --dataset DATASET --output RUN "
              f"(--epochs N for a longer budget)\n")
    path = out / BEST_FILE
    write_text(path, header + yaml.safe_dump(data, sort_keys=False))
    return path


def _plot(path: Path, study: Any, trials: List[Any], metric: str, optuna: Any) -> Optional[Path]:
    """``tune.png``: each trial's validation score (pruned: its last reported value) with the best so far,
    and the parameter importances (fANOVA); ``None`` without matplotlib or a scored trial."""
    try:
        from matplotlib.figure import Figure  # deferred: optional extra [plot]/[report]
    except ImportError:
        return None
    states = optuna.trial.TrialState
    points = []
    for t in trials:
        if t.state == states.COMPLETE:
            points.append((t.number, t.value, "complete"))
        elif t.state == states.PRUNED and t.intermediate_values:
            points.append((t.number, t.intermediate_values[max(t.intermediate_values)], "pruned"))
    if not points:
        return None
    importances: Dict[str, float] = {}
    if sum(t.state == states.COMPLETE for t in trials) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study)
        except Exception:  # too few distinct values to fit: no importances yet
            importances = {}
    fig = Figure(figsize=(10, 3.8))
    ax = fig.add_subplot(1, 2, 1)
    for kind, marker, color in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:gray")):
        xs = [p[0] for p in points if p[2] == kind]
        ys = [p[1] for p in points if p[2] == kind]
        if xs:
            ax.scatter(xs, ys, marker=marker, color=color, label=kind)
    best, steps = -math.inf, []
    for n, v, kind in points:
        if kind == "complete":
            best = max(best, v)
        steps.append((n, best))
    steps = [(n, b) for n, b in steps if b > -math.inf]
    if steps:
        ax.step([s[0] for s in steps], [s[1] for s in steps], where="post", color="tab:orange", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"valid {metric}")
    ax.set_title("trial values")
    ax.legend(loc="lower right", fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    if importances:
        names = list(importances)[::-1]
        ax2.barh(names, [importances[n] for n in names], color="tab:green")
        ax2.set_xlabel("importance (fANOVA)")
    else:
        ax2.text(0.5, 0.5, "importances need 2+ complete trials", ha="center", va="center")
        ax2.set_axis_off()
    ax2.set_title("parameter importances")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes(path, buf.getvalue())
    return path
