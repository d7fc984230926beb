"""Shared pieces of the ``snagkg features`` commands: entity names, output paths, summaries.

(Devices: :func:`snagkg.devices.device_name`.)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional

from snagkg.data.datasets.alignment_pair import (
    detect_layout,
    load_alignment_dataset,
    unified_names,
)
from snagkg.data.datasets.openke import RESERVED_MODALITIES
from snagkg.data.datasets.sources import SUFFIX_TEXT, is_triples_file, read_source, split_files
from snagkg.data.lines import read_name_ids
from snagkg.runtime.errors import SnagError

__all__ = ["RESERVED_MODALITIES", "FeatureSummary", "FeatureTarget", "check_modality_name", "dataset_folder",
           "output_path", "read_entity_names", "read_triples_graph"]
_MODALITY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class FeatureTarget:
    """A dataset the ``features`` commands write tables for, in any form ``snagkg train --dataset`` takes.

    ``path``: an OpenKE folder, an entity-alignment folder (DBP15K / OpenEA), a labelled or RDF
    triples file, or a folder of train/valid/test triples files (``kind`` says which, once
    :func:`dataset_folder` has checked it). ``columns``: a labelled file's ``--columns``, as
    given to ``train``. ``overwrite``: whether an existing table may be replaced.
    """

    path: Path
    columns: Optional[str] = None
    overwrite: bool = False
    kind: str = ""

    @property
    def root(self) -> Path:
        """The folder that holds ``features/`` (and a default ``literals.tsv``): the dataset folder, or
        the folder of a triples file, where the dataset loader looks for them."""
        return self.path if self.path.is_dir() else self.path.parent

    @property
    def features_dir(self) -> Path:
        """Where the loader reads this dataset's tables (``features/`` in :attr:`root`)."""
        return self.root / "features"


def dataset_folder(dataset, alignment: bool = False) -> FeatureTarget:
    """Check ``dataset`` (a path or a :class:`FeatureTarget`) is a dataset ``train`` reads: an OpenKE
    folder, a triples file or a folder of split files (``alignment``: or a DBP15K / OpenEA folder)."""
    target = dataset if isinstance(dataset, FeatureTarget) else FeatureTarget(Path(dataset))
    path = Path(target.path)
    if not path.exists():
        raise SnagError("dataset not found (an OpenKE folder, a triples file or a folder of train/valid/test "
                        "files)", path)
    if (path / "entity2id.txt").exists():
        kind = "openke"
    elif is_triples_file(path) or (path.is_dir() and split_files(path)):
        kind = "triples"
    elif not path.is_dir():
        raise SnagError(f"dataset path is not a folder and not a triples file ({SUFFIX_TEXT})", path)
    elif alignment:
        try:
            detect_layout(path)
        except SnagError:
            raise SnagError("neither an OpenKE dataset folder (entity2id.txt is missing), a folder of "
                            "train/valid/test triples files, nor an entity-alignment folder (DBP15K or OpenEA "
                            "layout)", path) from None
        kind = "alignment"
    else:
        raise SnagError(f"not an OpenKE dataset folder (entity2id.txt is missing) and no train/valid/test "
                        f"triples files ({SUFFIX_TEXT})", path / "entity2id.txt")
    if target.columns is not None and kind != "triples":
        raise SnagError("--columns applies to a labelled triples file (TSV/CSV), not to this dataset", path)
    return replace(target, path=path, kind=kind)


def read_triples_graph(target: FeatureTarget, split: Optional[str] = None, seed: int = 0):
    """The graph of a ``triples`` target as ``train`` reads it (``split``/``seed``: ``--split`` and
    ``--split-seed``), without its feature tables."""
    return read_source(target.path, split=split, columns=target.columns, seed=seed, features=False)


def read_entity_names(folder) -> List[str]:
    """Entity names indexed by feature-table row: ``entity2id.txt`` (ids must be 0..N-1), the
    entities of a triples file or folder in the order ``train`` numbers them, or for an
    entity-alignment folder (DBP15K or OpenEA layout, no ``entity2id.txt``) the URIs of both
    graphs in the unified id space its ``features/`` tables use."""
    target = folder if isinstance(folder, FeatureTarget) and folder.kind else dataset_folder(folder, alignment=True)
    if target.kind == "triples":
        return list(read_triples_graph(target).entities)
    path = target.path / "entity2id.txt"
    if target.kind == "alignment":
        return unified_names(load_alignment_dataset(str(target.path), features=False))
    names, ids = read_name_ids(path, with_count=True)
    out: List[str] = [""] * len(names)
    for name, ident in zip(names, ids.tolist()):
        if ident >= len(names):
            raise SnagError(f"id {ident} is out of range: ids must be 0..{len(names) - 1}", path)
        out[ident] = name
    return out


def check_modality_name(name: str) -> str:
    """``name`` if it can be a loaded modality's name (``--modality``), else a one-line :class:`SnagError`."""
    if not name:
        raise SnagError("--modality: the modality name is empty")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise SnagError(f"--modality: {name!r} contains a path separator; give a plain name such as 'image' "
                        "(use --output to choose where the file goes)")
    if name in RESERVED_MODALITIES:
        raise SnagError(f"--modality: {name!r} is a reserved modality name (learned by the model, not loaded)")
    if not _MODALITY.fullmatch(name):
        raise SnagError(f"--modality: {name!r} is not a valid modality name "
                        "(letters, digits, '_' and '-' only, not starting with '-')")
    return name


def output_path(target: FeatureTarget, modality: str, output: Optional[str]) -> Path:
    """``--output`` or the dataset's ``features/<modality>.npy``; the file stem is the modality name. An
    existing table is an error unless ``target.overwrite``."""
    out = _output_path(target.features_dir, modality, output)
    if out.exists() and not target.overwrite:
        raise SnagError(f"{out.name} already exists; pass --overwrite to replace it", out)
    return out


def _output_path(features_dir: Path, modality: str, output: Optional[str]) -> Path:
    if output is None:
        return features_dir / f"{modality}.npy"
    out = Path(output)
    if out.suffix != ".npy":
        raise SnagError("--output must end in .npy (its stem is the modality name the loader uses)", out)
    if out.is_dir():
        raise SnagError("--output is a folder; give a file path ending in .npy", out)
    if out.stem in RESERVED_MODALITIES:
        raise SnagError(f"{out.stem!r} is a reserved modality name (learned by the model, not loaded)", out)
    if out.stem.startswith("."):
        raise SnagError("--output file name starts with '.', which the loader skips", out)
    return out


@dataclass
class FeatureSummary:
    """What a ``snagkg features`` command wrote: counts, width, path; :meth:`line` is its stderr summary."""

    modality: str
    path: Path
    entities: int
    matched: int
    width: int
    note: str = ""

    @property
    def missing(self) -> int:
        """Number of entities without features."""
        return self.entities - self.matched

    def line(self) -> str:
        """The one-line summary printed to stderr."""
        miss = self.path.with_name(f"{self.path.stem}.missing.txt").name
        extra = f"; {self.note}" if self.note else ""
        return (f"{self.modality}: {self.matched} of {self.entities} entities have features, {self.missing} missing "
                f"(width {self.width}) -> {self.path}" + (f" (+ {miss})" if self.missing else "") + extra)
