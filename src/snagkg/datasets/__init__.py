"""Dataset readers: OpenKE (completion), DBP15K / OpenEA (alignment), synthetic.

* :mod:`.graph`: :class:`Graph`, the interface both dataset kinds share, and
  :class:`KnowledgeGraph` (completion);
* :mod:`.openke`: the OpenKE layout (DB15K, MKG-W, MKG-Y);
* :mod:`.alignment_pair`: :class:`AlignmentPair` and the DBP15K / OpenEA
  readers, :func:`load_alignment_dataset`, :func:`split_links`;
* :mod:`.synthetic`: the synthetic completion graph; :mod:`.synthetic_pair`:
  the synthetic alignment pair writer;
* :mod:`.names`: readable names for entity URIs.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import SnagError
from .alignment_pair import AlignmentPair, load_alignment_dataset, split_links
from .graph import Graph, KnowledgeGraph
from .openke import is_openke, read_openke, write_openke
from .synthetic import SyntheticConfig, generate
from .synthetic_pair import write_synthetic_pair

__all__ = ["Graph", "KnowledgeGraph", "AlignmentPair", "load_completion_dataset", "load_alignment_dataset",
           "split_links", "read_openke", "write_openke", "generate", "SyntheticConfig", "write_synthetic_pair"]


def load_completion_dataset(spec: str, seed: int = 0) -> KnowledgeGraph:
    """``"synthetic"`` or the path of an OpenKE-layout folder."""
    if spec == "synthetic":
        return generate(SyntheticConfig(), seed=0)  # fixed data: run seeds compare on the same graph
    path = Path(spec)
    if not path.exists():
        raise SnagError("dataset folder not found (use 'synthetic' or a folder in the OpenKE layout)", path)
    if not path.is_dir():
        raise SnagError("dataset path is not a folder (use 'synthetic' or a folder in the OpenKE layout)", path)
    if not is_openke(path):
        raise SnagError("not an OpenKE dataset folder: entity2id.txt is missing", path / "entity2id.txt")
    return read_openke(path, seed=seed)
