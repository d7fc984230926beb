"""Robustness of a trained run to missing or corrupted modalities at test time.

``snagkg robustness RUN --modality image --drop 0,0.2,0.4,0.6,0.8,1.0`` evaluates the run's best
model once per level. At each level a seeded random share of the entities' rows of the chosen
modalities is changed in memory, then the split is ranked again (completion: filtered MRR and
Hits@k; alignment: CSLS Hits@1 and MRR):

* ``--mode drop``: the rows are treated exactly as missing at load time (SPEC section 1, the rule of
  :func:`snagkg.tables.make_table`): refilled with a seeded draw from ``N(mu, sigma)``, the
  per-dimension mean and std of the modality's real rows the model was built with, and marked
  missing. Rows already missing at load time keep their fill.
* ``--mode corrupt``: Gaussian noise scaled by the modality's std is added, ``x + sigma * z``.

Which rows go first is the ``--pattern``:

* ``uniform`` (default): a seeded random order of the entities.
* ``long-tail``: the least-connected entities first (fewest training triples, ties in a seeded random
  order), the usual real pattern, where obscure entities lack images and descriptions.
* ``corrupt``: a seeded random order, each row replaced by a draw from ``N(mu, sigma)`` but NOT marked
  missing: the model sees noisy values it cannot tell from real ones (noisy, not absent).

The rows of a level include those of every lower level (one seeded permutation per modality), and
the same ``z`` is used at every level. The tables are put back after each level and no saved file
is changed. Results go to ``robustness.json``, ``robustness.csv`` and (with matplotlib)
``robustness.png`` in the run folder.
"""
from __future__ import annotations

import csv
import io
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from snagkg.api.run import load_run, model_digest
from snagkg.data.tables import modality_seed
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import write_bytes, write_json, write_text
from snagkg.runtime.text_table import format_table

DEFAULT_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MODES = ("drop", "corrupt")
PATTERNS = ("uniform", "long-tail", "corrupt")
PLOT_NOTE = "the plot robustness.png needs matplotlib: pip install 'snagkg[plot]'"


def parse_levels(text: Union[str, Sequence[float]]) -> List[float]:
    """The levels of ``--drop``: a comma-separated list (or a sequence) of fractions in ``[0, 1]``."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise SnagError(f"--drop must be a comma-separated list of fractions such as 0,0.5,1, got {text!r}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise SnagError(f"--drop must be a comma-separated list of fractions such as 0,0.5,1, got {text!r}") from None
    else:
        values = [float(v) for v in text]
        if not values:
            raise SnagError("no drop levels given")
    for v in values:
        if not 0.0 <= v <= 1.0:  # also refuses NaN
            raise SnagError(f"drop level {v} is outside [0, 1]")
    return values


def select_modalities(available: Sequence[str], modality: str) -> List[str]:
    """The modalities ``modality`` names among a run's ``available`` ones: one name, a comma-separated
    list, or ``all`` (every feature modality; ``structure`` only when named explicitly)."""
    names = [m.strip() for m in str(modality).split(",") if m.strip()]
    if not names:
        raise SnagError("--modality is empty")
    chosen: List[str] = []
    for name in names:
        if name == "all":
            chosen += [m for m in available if m != "structure"]
        elif name in available:
            chosen.append(name)
        else:
            raise SnagError(f"modality {name!r} is not used by this run (it uses: {', '.join(available)}; or 'all')")
    chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise SnagError(f"this run has no feature modality to drop (it uses: {', '.join(available)}); "
                        "name structure explicitly to perturb the structure table")
    return chosen


@dataclass
class RobustnessResult:
    """Metrics of one run at each level of missing (``drop``) or corrupted (``corrupt``) rows.

    ``metrics[i]`` holds the evaluation at ``levels[i]``; ``mrr_lost[i]`` is the clean MRR (level 0)
    minus the MRR at ``levels[i]``; ``missing[i]`` the share of entities marked missing, per modality.
    """

    run: str
    task: str
    modalities: List[str]
    mode: str
    split: str
    seed: int
    limit: int
    levels: List[float]
    metrics: List[Dict[str, Any]]
    mrr_lost: List[float]
    missing: List[Dict[str, float]] = field(default_factory=list)
    clean: Dict[str, Any] = field(default_factory=dict)
    pattern: str = "uniform"

    def to_dict(self) -> Dict[str, Any]:
        """The result as a plain dict (what ``robustness.json`` holds)."""
        return asdict(self)

    def table(self) -> str:
        """A small text table: level, MRR, Hits@1, Hits@10 and the MRR lost."""
        rows = [[f"{level:.2f}", f"{m['mrr']:.4f}", f"{m.get('hits@1', float('nan')):.4f}",
                 f"{m.get('hits@10', float('nan')):.4f}", f"{lost:.4f}"]
                for level, m, lost in zip(self.levels, self.metrics, self.mrr_lost)]
        return format_table(["level", "mrr", "hits@1", "hits@10", "mrr lost"], rows, align=">>>>>")

    def csv(self) -> str:
        """One CSV row per level: level, the MRR lost, the missing shares, then every metric."""
        keys = [k for k in self.metrics[0] if k != "seconds"] if self.metrics else []
        miss_keys = [f"missing_{m}" for m in self.modalities]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["level", "mode", "mrr_lost", *miss_keys, *keys])
        for i, level in enumerate(self.levels):
            miss = self.missing[i] if i < len(self.missing) else {}
            w.writerow([level, self.mode, round(self.mrr_lost[i], 6),
                        *[miss.get(m, "") for m in self.modalities], *[self.metrics[i].get(k, "") for k in keys]])
        return buf.getvalue()


def modality_draws(ent, modalities: Sequence[str], seed: int,
           degrees: Optional[np.ndarray] = None) -> Dict[str, Dict[str, torch.Tensor]]:
    """Per modality: a seeded row order (with ``degrees``: the lowest degree first, ties in the seeded
    order), ``z`` for every row, the clean table and its ``mu``, ``sigma``."""

    out = {}
    for m in modalities:
        table = ent.table(m).detach()
        gen = torch.Generator().manual_seed(modality_seed(seed, f"robustness/{m}"))
        perm = torch.randperm(table.shape[0], generator=gen)
        if degrees is not None:  # stable sort by degree keeps the seeded order among equal degrees
            perm = perm[torch.from_numpy(np.argsort(degrees[perm.numpy()], kind="stable"))]
        z = torch.randn(table.shape, generator=gen).to(table.device, torch.float32)
        if m == "structure":  # the trainable table's own statistics (there is no load-time fill)
            clean = table.float()
            mean, std = clean.mean(0), clean.std(0, unbiased=False)
        else:
            mean, std = getattr(ent, f"mean_{m}").float(), getattr(ent, f"std_{m}").float()
        out[m] = {"perm": perm, "z": z, "mean": mean, "std": std}
    return out


def perturbation(ent, m: str, draw: Dict[str, torch.Tensor], level: float, mode: str):
    """The rows of modality ``m`` to change at ``level`` and their new values (``mode``: drop or corrupt)."""
    table = ent.table(m).detach()
    n = table.shape[0]
    rows = draw["perm"][:int(round(level * n))].sort().values.to(table.device)
    if mode == "drop" and m != "structure":
        rows = rows[~ent.missing(m).index_select(0, rows)]  # rows filled at load time keep their fill
    z = draw["z"].index_select(0, rows)
    if mode == "drop":
        values = draw["mean"] + draw["std"] * z
    else:
        values = table.index_select(0, rows).float() + draw["std"] * z
    return rows, values


def _evaluate(task, split: str, limit: int) -> Dict[str, Any]:
    return dict(task.evaluate(split, limit=limit))


def robustness(run: Union[str, Path], modality: str = "all", levels: Union[str, Sequence[float]] = DEFAULT_LEVELS,
               mode: str = "drop", split: str = "test", seed: Optional[int] = None, limit: int = 0,
               device: Optional[str] = None, write: bool = True, progress: bool = False,
               echo=None, pattern: str = "uniform") -> RobustnessResult:
    """Evaluate run ``run`` with a growing share of ``modality``'s rows dropped or corrupted.

    ``modality``: a modality of the run, a comma-separated list, or ``all`` (every feature
    modality; ``structure`` only when named); ``levels``: fractions of the entities in ``[0, 1]``;
    ``mode``: ``drop`` (refill from ``N(mu, sigma)`` and mark missing) or ``corrupt`` (add
    ``sigma * z``); ``seed``: the draws' seed (default: the run's seed). With ``write``, writes
    ``robustness.json``, ``robustness.csv`` and, with matplotlib, ``robustness.png`` into the run
    folder (``echo`` gets a note when matplotlib is missing). Returns a :class:`RobustnessResult`.
    """

    if mode not in MODES:
        raise SnagError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if pattern not in PATTERNS:
        raise SnagError(f"--pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    if pattern == "corrupt" and mode != "drop":
        raise SnagError("--pattern corrupt replaces rows by N(mu, sigma) draws; it takes no --mode corrupt")
    if split not in ("valid", "test"):
        raise SnagError(f"split must be 'valid' or 'test', got {split!r}")
    if limit < 0:
        raise SnagError(f"--limit must not be negative, got {limit}")
    levels = parse_levels(levels)
    folder = Path(run)
    task = load_run(folder, device=device)
    ent = task.model.entities
    mods = select_modalities(ent.modalities, modality)
    seed = int(task.cfg.seed if seed is None else seed)
    draws = modality_draws(ent, mods, seed, task.entity_degrees() if pattern == "long-tail" else None)

    results: List[Dict[str, Any]] = []
    missing: List[Dict[str, float]] = []
    bar = None
    if progress:
        bar = tqdm(total=len(levels), desc=f"robustness ({mode})", unit="level", leave=False)
    for level in levels:
        with ExitStack() as stack:
            for m in mods:
                rows, values = perturbation(ent, m, draws[m], level, mode)
                stack.enter_context(ent.overridden_rows(m, rows, values,
                                                        mark_missing=mode == "drop" and pattern != "corrupt"))
            missing.append({m: round(float(ent.missing(m).float().mean()), 6) for m in mods})
            results.append(_evaluate(task, split, limit))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    clean = results[levels.index(0.0)] if 0.0 in levels else _evaluate(task, split, limit)
    lost = [float(clean["mrr"]) - float(m["mrr"]) for m in results]
    result = RobustnessResult(run=str(folder), task=task.cfg.task, modalities=mods, mode=mode, split=split,
                              seed=seed, limit=limit, levels=levels, metrics=results, mrr_lost=lost,
                              missing=missing, clean=clean, pattern=pattern)
    if write:
        write_outputs(result, folder, echo=echo)
    return result


def write_outputs(result: RobustnessResult, folder: Path, echo=None) -> List[Path]:
    """Write ``robustness.json``, ``robustness.csv`` and (with matplotlib) ``robustness.png`` atomically."""

    folder = Path(folder)
    # the model it measured: `snagkg report` skips the file once best.pt has changed (a new or resumed run)
    write_json(folder / "robustness.json", {**result.to_dict(), "model_sha256": model_digest(folder)})
    write_text(folder / "robustness.csv", result.csv())
    written = [folder / "robustness.json", folder / "robustness.csv"]
    png = plot_png(result)
    if png is None:
        if echo is not None:
            echo(PLOT_NOTE)
    else:
        write_bytes(folder / "robustness.png", png)
        written.append(folder / "robustness.png")
    return written


def plot_png(result: RobustnessResult) -> Optional[bytes]:
    """The PNG of MRR and Hits@1 against the level, or ``None`` without matplotlib."""
    try:
        import matplotlib  # deferred: optional extra [plot]/[report]
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # deferred: optional extra [plot]/[report]
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    ax.plot(result.levels, [m["mrr"] for m in result.metrics], "o-", label="MRR")
    if all("hits@1" in m for m in result.metrics):
        ax.plot(result.levels, [m["hits@1"] for m in result.metrics], "s--", label="Hits@1")
    what = "dropped" if result.mode == "drop" else "corrupted"
    ax.set_xlabel(f"share of entities {what}: {'+'.join(result.modalities)}")
    ax.set_ylabel(f"{result.split} metric")
    ax.set_title(f"{Path(result.run).name}: {result.task}, {result.mode}", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
