"""Shared pieces of the ``snagkg features`` commands: entity names, output paths, summaries.

(Devices: :func:`snagkg.devices.device_name`.)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from snagkg.data.datasets.alignment_pair import (
    detect_layout,
    load_alignment_dataset,
    unified_names,
)
from snagkg.data.datasets.openke import RESERVED_MODALITIES
from snagkg.data.lines import read_name_ids
from snagkg.runtime.errors import SnagError

__all__ = ["RESERVED_MODALITIES", "FeatureSummary", "check_modality_name", "dataset_folder", "output_path",
           "read_entity_names"]
_MODALITY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def dataset_folder(path, alignment: bool = False) -> Path:
    """Check ``path`` is an OpenKE dataset folder (``alignment``: or a DBP15K / OpenEA one)."""
    folder = Path(path)
    if not folder.exists():
        raise SnagError("dataset folder not found", folder)
    if not folder.is_dir():
        raise SnagError("dataset path is not a folder", folder)
    if not (folder / "entity2id.txt").exists():
        if alignment:
            try:
                detect_layout(folder)
                return folder
            except SnagError:
                raise SnagError("neither an OpenKE dataset folder (entity2id.txt is missing) nor an "
                                "entity-alignment folder (DBP15K or OpenEA layout)", folder) from None
        raise SnagError("not an OpenKE dataset folder: entity2id.txt is missing", folder / "entity2id.txt")
    return folder


def read_entity_names(folder: Path) -> List[str]:
    """Entity names indexed by feature-table row: ``entity2id.txt`` (ids must be 0..N-1),
    or for an entity-alignment folder (DBP15K or OpenEA layout, no ``entity2id.txt``)
    the URIs of both graphs in the unified id space its ``features/`` tables use."""
    path = Path(folder) / "entity2id.txt"
    if not path.exists():  # an entity-alignment folder (checked by dataset_folder(..., alignment=True))
        return unified_names(load_alignment_dataset(str(folder), features=False))
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


def output_path(folder: Path, modality: str, output: Optional[str]) -> Path:
    """``--output`` or ``<dataset>/features/<modality>.npy``; the file stem is the modality name."""
    if output is None:
        return Path(folder) / "features" / f"{modality}.npy"
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
