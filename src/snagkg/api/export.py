"""``snagkg export RUN --output vectors.npz|vectors.tsv|vectors.parquet``: a trained run's vectors.

What is written (:func:`collect`):

* the fused entity vectors (completion: ``task.entity_vectors()``, the vectors RotatE scores;
  alignment: the clean, L2-normalised ``task.model.entity_vectors()``), with entity ids and names;
* the per-entity modality weights (SPEC section 3; rows sum to one), with the modality names,
  and which entities were filled as missing each feature modality;
* completion only: the relations' names and parameters (RotatE: the phases in radians,
  ``interaction.phases``), the scorer's name and margin.

Layouts, chosen by the suffix:

* ``.npz``: one array per key of :func:`collect` (strings as unicode arrays; read with
  ``np.load(path)``, no pickle), plus ``meta`` (a JSON string);
* ``.tsv``: a header, one row per entity (``kind=entity``), then one per relation
  (``kind=relation``): ``kind id name weight_<m>... missing_<m>... x0 x1 ...``; the ``x``
  columns hold the vector (entities) or the phases (relations; the rest of the row is empty);
  floats with 9 significant digits, which give back float32 values exactly;
* ``.parquet`` (needs ``pip install 'snagkg[parquet]'``): the same rows, the vector as one
  ``list<float>`` column, the meta JSON in the schema metadata.

:func:`load_export` reads any of the three back into the arrays of :func:`collect`.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from snagkg.api.run import load_run, model_digest
from snagkg.runtime.errors import PathLike, SnagError
from snagkg.runtime.io import atomic_write, write_text
from snagkg.training.trainer import Task

FORMATS = {".npz": "npz", ".tsv": "tsv", ".parquet": "parquet"}
INSTALL_HINT = "pip install 'snagkg[parquet]'"


@torch.no_grad()
def collect(task: Task) -> Dict[str, Any]:
    """The arrays an export holds, from a loaded task (completion or alignment).

    Keys: ``entity_ids`` int64 [N], ``entity_names`` str [N], ``entity_vectors`` float32 [N, d],
    ``modalities`` str [M], ``modality_weights`` float32 [N, M], ``feature_modalities`` str [F],
    ``missing`` bool [N, F]; completion also ``relation_ids`` int64 [R], ``relation_names`` str [R],
    ``relation_phases`` float32 [R, k]; and ``meta`` (a dict).
    """
    reps = task.model.entities
    vecs = task.entity_vectors()
    names = task.entity_names()
    mods = list(reps.modalities)
    feats = [m for m in mods if m != "structure"]
    out: Dict[str, Any] = {
        "entity_ids": np.arange(len(names), dtype=np.int64),
        "entity_names": np.array(names, dtype=str),
        "entity_vectors": vecs.float().cpu().numpy(),
        "modalities": np.array(mods, dtype=str),
        "modality_weights": task.model.modality_weights().float().cpu().numpy(),
        "feature_modalities": np.array(feats, dtype=str),
        "missing": (np.stack([reps.missing(m).cpu().numpy().astype(bool) for m in feats], axis=1)
                    if feats else np.zeros((len(names), 0), dtype=bool)),
    }
    meta: Dict[str, Any] = {"format": "snagkg-export", "version": 1, "task": task.cfg.task,
                            "entities": len(names), "width": int(out["entity_vectors"].shape[1])}
    arrays, extra = task.export_arrays()  # completion: the relations' names and parameters, the scorer
    out.update(arrays)
    meta.update(extra)
    out["meta"] = meta
    return out


# -- writers ---------------------------------------------------------------------------------------
def _fmt(values: np.ndarray) -> List[str]:
    return [f"{float(v):.9g}" for v in values]


def _check_name(name: str) -> str:
    if "\t" in name or "\n" in name or "\r" in name:
        raise SnagError(f"name {name!r} holds a tab or a line break; export it as .npz or .parquet")
    return name


def _tsv(data: Dict[str, Any]) -> str:
    mods, feats = list(data["modalities"]), list(data["feature_modalities"])
    width = data["entity_vectors"].shape[1]
    header = (["kind", "id", "name"] + [f"weight_{m}" for m in mods] + [f"missing_{m}" for m in feats]
              + [f"x{i}" for i in range(width)])
    lines = ["\t".join(header)]
    w, miss, vecs = data["modality_weights"], data["missing"], data["entity_vectors"]
    for i, name in enumerate(data["entity_names"]):
        lines.append("\t".join(["entity", str(i), _check_name(str(name))] + _fmt(w[i])
                               + ["1" if x else "0" for x in miss[i]] + _fmt(vecs[i])))
    if "relation_names" in data:
        phases = data["relation_phases"]
        blank = [""] * (len(mods) + len(feats))
        pad = [""] * (width - phases.shape[1])
        for i, name in enumerate(data["relation_names"]):
            lines.append("\t".join(["relation", str(i), _check_name(str(name))] + blank + _fmt(phases[i]) + pad))
    return "\n".join(lines) + "\n"


def _npz(data: Dict[str, Any]) -> bytes:
    arrays = {k: v for k, v in data.items() if k != "meta"}
    arrays["meta"] = np.array(json.dumps(data["meta"]))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _pyarrow() -> Any:
    try:
        import pyarrow as pa  # deferred: optional extra [parquet]
        import pyarrow.parquet as pq  # deferred: optional extra [parquet]
    except ImportError:
        raise SnagError(f"Parquet export needs pyarrow: {INSTALL_HINT}") from None
    return pa, pq


def _parquet(data: Dict[str, Any]) -> bytes:
    pa, pq = _pyarrow()
    mods, feats = list(data["modalities"]), list(data["feature_modalities"])
    n = len(data["entity_names"])
    rel = list(data.get("relation_names", []))
    nr = len(rel)
    cols: Dict[str, Any] = {
        "kind": pa.array(["entity"] * n + ["relation"] * nr),
        "id": pa.array(np.concatenate([data["entity_ids"], data.get("relation_ids", np.zeros(0, np.int64))])),
        "name": pa.array([str(x) for x in data["entity_names"]] + [str(x) for x in rel]),
    }
    for j, m in enumerate(mods):
        cols[f"weight_{m}"] = pa.array(list(data["modality_weights"][:, j]) + [None] * nr, type=pa.float32())
    for j, m in enumerate(feats):
        cols[f"missing_{m}"] = pa.array([bool(x) for x in data["missing"][:, j]] + [None] * nr, type=pa.bool_())
    rows = [v for v in data["entity_vectors"]] + [v for v in data.get("relation_phases", [])]
    cols["vector"] = pa.array([np.asarray(v, dtype=np.float32) for v in rows], type=pa.list_(pa.float32()))
    table = pa.table(cols).replace_schema_metadata({"snagkg": json.dumps(data["meta"])})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


def format_of(path: PathLike) -> str:
    """``npz``, ``tsv`` or ``parquet`` from the suffix of ``path`` (another suffix: an error)."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise SnagError(f"unknown export format {Path(path).suffix or '(no suffix)'!r}; "
                        f"use {', '.join(FORMATS)}", path)
    return fmt


def write_export(data: Dict[str, Any], path: PathLike) -> str:
    """Write the arrays of :func:`collect` to ``path`` atomically, in the format of its suffix."""
    out = Path(path)
    fmt = format_of(out)
    if out.is_dir():
        raise SnagError("export path is a folder", out)
    if fmt == "tsv":
        write_text(out, _tsv(data))
    else:
        payload = _npz(data) if fmt == "npz" else _parquet(data)
        atomic_write(out, lambda fh: fh.write(payload))
    return fmt


def export_run(run: PathLike, path: PathLike, device: Optional[str] = None) -> Dict[str, Any]:
    """Export run ``run`` (completion or alignment) to ``path``; returns a JSON-ready summary."""

    fmt = format_of(path)
    if fmt == "parquet":
        _pyarrow()  # fail before loading the model
    task = load_run(run, device=device)
    data = collect(task)
    data["meta"]["model_sha256"] = model_digest(run)  # the best.pt it was exported from
    write_export(data, path)
    summary = {"output": str(path), "format": fmt, **{k: v for k, v in data["meta"].items()
                                                       if k not in ("format", "version")}}
    summary["modalities"] = [str(m) for m in data["modalities"]]
    return summary


# -- reader ----------------------------------------------------------------------------------------
def load_export(path: PathLike) -> Dict[str, Any]:
    """Read an export written by :func:`export_run` (any format) into the arrays of :func:`collect`."""
    p = Path(path)
    fmt = format_of(p)
    if not p.is_file():
        raise SnagError("export file not found", p)
    if fmt == "npz":
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        data["meta"] = json.loads(str(data["meta"]))
        return data
    if fmt == "tsv":
        return _read_tsv(p)
    pa, pq = _pyarrow()
    table = pq.read_table(p)
    meta = json.loads((table.schema.metadata or {}).get(b"snagkg", b"{}"))
    cols = table.to_pydict()
    kind = np.array(cols["kind"])
    ent, rel = kind == "entity", kind == "relation"
    mods = [c[len("weight_"):] for c in cols if c.startswith("weight_")]
    feats = [c[len("missing_"):] for c in cols if c.startswith("missing_")]
    vec = cols["vector"]
    data = _assemble(np.array(cols["id"])[ent], np.array(cols["name"], dtype=str)[ent],
                     np.array([vec[i] for i in np.flatnonzero(ent)], dtype=np.float32), mods,
                     np.array([[cols[f"weight_{m}"][i] for m in mods] for i in np.flatnonzero(ent)], dtype=np.float32),
                     feats, np.array([[cols[f"missing_{m}"][i] for m in feats] for i in np.flatnonzero(ent)], dtype=bool))
    if rel.any():
        data["relation_ids"] = np.array(cols["id"])[rel]
        data["relation_names"] = np.array(cols["name"], dtype=str)[rel]
        data["relation_phases"] = np.array([vec[i] for i in np.flatnonzero(rel)], dtype=np.float32)
    data["meta"] = meta
    return data


def _assemble(ids, names, vecs, mods, weights, feats, missing) -> Dict[str, Any]:
    n = len(names)
    return {"entity_ids": np.asarray(ids, dtype=np.int64), "entity_names": np.asarray(names, dtype=str),
            "entity_vectors": np.asarray(vecs, dtype=np.float32).reshape(n, -1),
            "modalities": np.array(mods, dtype=str), "modality_weights": weights.reshape(n, len(mods)),
            "feature_modalities": np.array(feats, dtype=str), "missing": missing.reshape(n, len(feats))}


def _read_tsv(p: Path) -> Dict[str, Any]:
    lines = p.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("kind\tid\tname"):
        raise SnagError("not a snagkg export (the header must start with kind, id, name)", p, 1)
    header = lines[0].split("\t")
    mods = [c[len("weight_"):] for c in header if c.startswith("weight_")]
    feats = [c[len("missing_"):] for c in header if c.startswith("missing_")]
    x0 = 3 + len(mods) + len(feats)
    ents: List[List[str]] = []
    rels: List[List[str]] = []
    for n, line in enumerate(lines[1:], start=2):
        f = line.split("\t")
        if len(f) != len(header) or f[0] not in ("entity", "relation"):
            raise SnagError(f"expected {len(header)} tab-separated fields starting with entity or relation", p, n)
        (ents if f[0] == "entity" else rels).append(f)
    w = np.array([[float(x) for x in f[3:3 + len(mods)]] for f in ents], dtype=np.float32)
    miss = np.array([[x == "1" for x in f[3 + len(mods):x0]] for f in ents], dtype=bool)
    vecs = np.array([[float(x) for x in f[x0:]] for f in ents], dtype=np.float32)
    data = _assemble([int(f[1]) for f in ents], [f[2] for f in ents], vecs, mods, w, feats, miss)
    if rels:
        data["relation_ids"] = np.array([int(f[1]) for f in rels], dtype=np.int64)
        data["relation_names"] = np.array([f[2] for f in rels], dtype=str)
        data["relation_phases"] = np.array([[float(x) for x in f[x0:] if x != ""] for f in rels], dtype=np.float32)
    data["meta"] = {"format": "snagkg-export", "task": "completion" if rels else None}
    return data
