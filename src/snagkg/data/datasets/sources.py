"""Which reader a completion dataset path needs, and the reading options a run stores.

:func:`load_completion_dataset` (in :mod:`snagkg.datasets`) sends everything
but ``synthetic`` and OpenKE folders here:

* a file ``*.tsv``, ``*.tab``, ``*.csv``, ``*.txt`` (labelled triples,
  :mod:`.labelled`) or ``*.nt``, ``*.ttl``, ``*.nq`` (RDF, :mod:`.rdf`), each
  optionally ``.gz``: one graph, split with ``--split`` (default 0.8,0.1,0.1);
* a folder with ``train``, ``valid`` and ``test`` files of those kinds
  (``train.tsv``, ``valid.nt.gz``, ...): the splits as given.

``features/`` beside the file (or inside the folder) holds modality tables in
id order, as for OpenKE.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from snagkg.data.datasets.graph import KnowledgeGraph
from snagkg.data.datasets.labelled import (
    TEXT_SUFFIXES,
    base_suffix,
    parse_columns,
    header_note,
    read_labelled,
)
from snagkg.data.datasets.named import SPLITS, build_graph, parse_split
from snagkg.data.datasets.rdf import RDF_SUFFIXES, read_rdf_files
from snagkg.runtime.errors import SnagError

SUFFIXES = TEXT_SUFFIXES + RDF_SUFFIXES
SUFFIX_TEXT = ", ".join(SUFFIXES) + " (optionally .gz)"


def is_triples_file(path: Path) -> bool:
    """Whether ``path`` has a suffix this module reads (``.tsv``, ``.nt.gz``, ...)."""
    return base_suffix(path) in SUFFIXES


def split_files(folder: Path) -> Dict[str, Path]:
    """``train``/``valid``/``test`` -> file in ``folder`` (empty if the folder has no ``train.*``)."""
    found: Dict[str, Path] = {}
    for part in SPLITS:
        matches = sorted(p for p in folder.glob(f"{part}.*") if p.is_file() and is_triples_file(p)
                         and p.name.split(".")[0] == part and len(p.suffixes) <= 2)
        if len(matches) > 1:
            raise SnagError(f"several {part} files ({', '.join(p.name for p in matches)}); keep one", folder)
        if matches:
            found[part] = matches[0]
    if found and set(found) != set(SPLITS):
        missing = [p for p in SPLITS if p not in found]
        raise SnagError(f"the folder has {', '.join(p.name for p in found.values())} but no "
                        f"{' or '.join(missing)} file ({SUFFIX_TEXT})", folder)
    return found


def _read(path: Path, columns) -> tuple:
    """``(name triples, literals, info)`` of one file of any accepted kind."""
    suffix = base_suffix(path)
    if suffix in RDF_SUFFIXES:
        if columns is not None:
            raise SnagError("--columns applies to TSV/CSV triples, not to RDF", path)
        triples, literals = read_rdf_files({"all": path})
        return triples["all"], literals, {"format": suffix[1:]}
    rows, how = read_labelled(path, columns)
    return rows, [], {"format": suffix[1:], **how}


def read_source(spec, split: Optional[str] = None, columns: Optional[str] = None, seed: int = 0,
                feature_seed: int = 0, features: bool = True) -> KnowledgeGraph:
    """Read a labelled or RDF file or folder (see the module docstring) into a :class:`KnowledgeGraph`
    (``features``: with the tables of its ``features/`` folder)."""
    path = Path(spec)
    if columns is not None:
        parse_columns(columns)  # a bad spec is an error before any file is read
    if split is not None:
        parse_split(split)
    if path.is_dir():
        files = split_files(path)
        if not files:
            raise SnagError(f"not an OpenKE dataset folder (entity2id.txt is missing) and no train/valid/test "
                            f"triples files ({SUFFIX_TEXT})", path / "entity2id.txt")
        if split is not None:
            raise SnagError("--split applies to a single triples file; this folder already has train, valid "
                            "and test files", path)
        triples: Dict[str, List] = {}
        literals: List = []
        formats: Dict[str, Dict[str, Any]] = {}
        rdf = {part: f for part, f in files.items() if base_suffix(f) in RDF_SUFFIXES}
        if rdf:  # read together: blank nodes are numbered across the files
            if columns is not None:
                raise SnagError("--columns applies to TSV/CSV triples, not to RDF", next(iter(rdf.values())))
            rdf_triples, literals = read_rdf_files(rdf)
            triples.update(rdf_triples)
            formats.update({part: {"format": base_suffix(f)[1:]} for part, f in rdf.items()})
        for part, f in files.items():
            if part not in rdf:
                triples[part], _, formats[part] = _read(f, columns)
        triples = {part: triples[part] for part in SPLITS}
        info = {"source": {"files": {p: f.name for p, f in files.items()}, **_merge(formats)}}
        kg = build_graph(path.name, triples, path, features_dir=path / "features" if features else None,
                         feature_seed=feature_seed,
                         literals=literals, info=info)
        kg.notes.extend(n for n in (header_note(files[p], formats[p]) for p in SPLITS) if n)
        return kg
    if not path.exists():
        raise SnagError("dataset not found (use 'synthetic', an OpenKE folder, a triples file or a folder of "
                        "train/valid/test files)", path)
    if not is_triples_file(path):
        raise SnagError(f"dataset path is not a folder and not a triples file ({SUFFIX_TEXT})", path)
    rows, literals, how = _read(path, columns)
    name = path.name.split(".")[0] or path.name
    kg = build_graph(name, {"all": rows}, path, split=split, seed=seed,
                     features_dir=path.parent / "features" if features else None,
                     feature_seed=feature_seed, literals=literals, info={"source": {"file": path.name, **how}})
    note = header_note(path, how)
    if note:
        kg.notes.append(note)
    return kg


def _merge(formats: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """One value per key when every split file agrees, else the per-split values."""
    out: Dict[str, Any] = {}
    keys = sorted({k for v in formats.values() for k in v})
    for k in keys:
        values = {p: v.get(k) for p, v in formats.items()}
        distinct = {repr(x) for x in values.values()}
        out[k] = next(iter(values.values())) if len(distinct) == 1 else values
    return out
