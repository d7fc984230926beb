"""``snagkg weights RUN``: which modality each entity trusted (SPEC section 3).

The weights are the per-entity softmax of the attention mass each modality token receives, on
clean inputs (``task.model.modality_weights()``); each row sums to one. Every feature modality
also gets a ``missing_<m>`` flag: the entity had no such feature and was filled at load time.

::

    table = snagkg.weights.modality_weights(snagkg.load_run("runs/demo"))
    print(table.summary_text())          # mean and quartiles per modality, by present / missing
    table.write_csv("weights.csv")       # one row per entity
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from snagkg.data.name_index import NameIndex
from snagkg.runtime.errors import PathLike
from snagkg.runtime.io import write_text
from snagkg.runtime.text_table import format_table


@dataclass
class WeightTable:
    """Per-entity modality weights: ``ids [n]``, ``names [n]``, ``modalities [M]``, ``weights [n, M]``
    (rows sum to one) and ``missing`` (feature modality -> bool ``[n]``)."""

    ids: np.ndarray
    names: List[str]
    modalities: List[str]
    weights: np.ndarray
    missing: Dict[str, np.ndarray]

    def to_rows(self) -> List[Dict[str, Any]]:
        """One dict per entity: ``id``, ``name``, one weight per modality, ``missing_<m>`` per feature."""
        out = []
        for i, e in enumerate(self.ids):
            row: Dict[str, Any] = {"id": int(e), "name": self.names[i]}
            row.update({m: float(self.weights[i, j]) for j, m in enumerate(self.modalities)})
            row.update({f"missing_{m}": bool(v[i]) for m, v in self.missing.items()})
            out.append(row)
        return out

    def to_csv(self) -> str:
        """The rows as CSV text (weights with 6 decimals, missing flags as 0/1)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "name", *self.modalities, *(f"missing_{m}" for m in self.missing)])
        for i, e in enumerate(self.ids):
            w.writerow([int(e), self.names[i], *(f"{x:.6f}" for x in self.weights[i]),
                        *(int(v[i]) for v in self.missing.values())])
        return buf.getvalue()

    def write_csv(self, path: PathLike) -> None:
        """Write :meth:`to_csv` to ``path`` atomically."""
        write_text(path, self.to_csv())

    def summary(self) -> List[Dict[str, Any]]:
        """Per modality and group (``all``; for a feature modality also ``present`` and ``missing``):
        entity count, mean and quartiles of the weight."""
        out = []
        for j, m in enumerate(self.modalities):
            col = self.weights[:, j]
            groups = [("all", np.ones(len(col), dtype=bool))]
            if m in self.missing:
                groups += [("present", ~self.missing[m]), ("missing", self.missing[m])]
            for group, mask in groups:
                vals = col[mask]
                row: Dict[str, Any] = {"modality": m, "entities": group, "count": int(mask.sum())}
                if len(vals):
                    q = np.quantile(vals, [0.25, 0.5, 0.75])
                    row.update(mean=float(vals.mean()), q25=float(q[0]), median=float(q[1]), q75=float(q[2]))
                else:
                    row.update(mean=None, q25=None, median=None, q75=None)
                out.append(row)
        return out

    def summary_text(self) -> str:
        """:meth:`summary` as an aligned table."""
        head = ["modality", "entities", "count", "mean", "q25", "median", "q75"]
        return format_table(head, [[str(r["modality"]), str(r["entities"]), str(r["count"])]
                                   + ["-" if r[k] is None else f"{r[k]:.4f}" for k in head[3:]]
                                   for r in self.summary()])

    def __str__(self) -> str:
        head = ["name", *self.modalities, *(f"missing_{m}" for m in self.missing)]
        return format_table(head, [[self.names[i], *(f"{x:.4f}" for x in self.weights[i]),
                                    *("yes" if v[i] else "no" for v in self.missing.values())]
                                   for i in range(len(self.ids))])


def modality_weights(task: Any, entities: Optional[Sequence[str]] = None) -> WeightTable:
    """The :class:`WeightTable` of a loaded task (completion or alignment): all entities, or those
    named in ``entities`` (found like ``snagkg predict`` names; an unknown name is an error)."""
    names = list(task.entity_names())
    reps = task.model.entities
    if entities:
        index = NameIndex(names, "entity")
        ids = np.array([index.find(e) for e in entities], dtype=np.int64)
        sel: Optional[torch.Tensor] = torch.from_numpy(ids).to(reps.table(reps.modalities[0]).device)
    else:
        ids, sel = np.arange(len(names), dtype=np.int64), None
    w = task.model.modality_weights(sel).float().cpu().numpy()
    missing = {m: reps.missing(m).cpu().numpy().astype(bool)[ids] for m in reps.modalities if m != "structure"}
    return WeightTable(ids, [names[i] for i in ids], list(reps.modalities), w, missing)
