"""Dataset readers: OpenKE (completion), DBP15K / OpenEA (alignment), synthetic.

* :mod:`.graph`: :class:`Graph`, the interface both dataset kinds share, and
  :class:`KnowledgeGraph` (completion);
* :mod:`.openke`: the OpenKE layout (DB15K, MKG-W, MKG-Y);
* :mod:`.alignment_pair`: :class:`AlignmentPair` and the DBP15K / OpenEA
  readers, :func:`load_alignment_dataset`, :func:`split_links`;
* :mod:`.synthetic`: the synthetic completion graph; :mod:`.synthetic_pair`:
  the synthetic alignment pair writer;
* :mod:`.labelled` (TSV/CSV name triples), :mod:`.rdf` (N-Triples, Turtle,
  N-Quads), :mod:`.named` (ids, split, valid hold-out) and :mod:`.sources`
  (which reader a path needs): graphs given by names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from snagkg.data.datasets.alignment_pair import (
    AlignmentPair,
    load_alignment_dataset,
    split_links,
)
from snagkg.data.datasets.graph import Graph, KnowledgeGraph
from snagkg.data.datasets.named import apply_valid_from_train, check_splits
from snagkg.data.datasets.openke import is_openke, read_openke, write_openke
from snagkg.data.datasets.sources import read_source
from snagkg.data.datasets.synthetic import SyntheticConfig, generate
from snagkg.data.datasets.synthetic_pair import write_synthetic_pair
from snagkg.runtime.errors import SnagError

__all__ = ["Graph", "KnowledgeGraph", "AlignmentPair", "load_completion_dataset", "load_alignment_dataset",
           "split_links", "read_openke", "write_openke", "generate", "SyntheticConfig", "write_synthetic_pair",
           "read_source"]


def load_completion_dataset(spec: str, seed: int = 0, split: Optional[str] = None, columns: Optional[str] = None,
                            valid_from_train: float = 0.0, split_seed: int = 0,
                            feature_storage: str = "memory") -> KnowledgeGraph:
    """``"synthetic"``, an OpenKE-layout folder, or labelled/RDF triples (a file, or a folder of
    train/valid/test files: :mod:`.sources`).

    ``split`` (``"0.8,0.1,0.1"``) and ``columns`` (``"h,t,r"``) apply to a single triples file;
    ``valid_from_train`` > 0 replaces the valid split by that share of train (every kind of
    dataset); ``split_seed`` seeds both. ``seed`` seeds the fill of missing feature rows;
    ``feature_storage`` (an OpenKE folder's tables): ``memory``, ``mmap`` or ``auto``.
    """
    if spec == "synthetic" or (Path(spec).is_dir() and is_openke(Path(spec))):
        for option, value in (("--split", split), ("--columns", columns)):
            if value is not None:
                raise SnagError(f"{option} applies to a triples file (TSV, CSV or RDF), not to "
                                f"{'the synthetic graph' if spec == 'synthetic' else 'an OpenKE folder'}",
                                None if spec == "synthetic" else spec)
        if spec == "synthetic":
            kg = generate(SyntheticConfig(), seed=0)  # fixed data: run seeds compare on the same graph
        else:
            kg = read_openke(Path(spec), seed=seed, storage=feature_storage)
    else:
        kg = read_source(spec, split=split, columns=columns, seed=split_seed, feature_seed=seed)
    if valid_from_train:
        apply_valid_from_train(kg, valid_from_train, seed=split_seed)
    if spec != "synthetic":
        check_splits(kg, spec)
    return kg
