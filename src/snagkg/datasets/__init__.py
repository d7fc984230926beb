"""Dataset readers: OpenKE (completion), DBP15K / OpenEA (alignment), synthetic."""
from __future__ import annotations

from pathlib import Path

from ..errors import SnagError
from .graph import KnowledgeGraph
from .openke import is_openke, read_openke, write_openke
from .synthetic import SyntheticConfig, generate

__all__ = ["KnowledgeGraph", "load_completion_dataset", "read_openke", "write_openke", "generate", "SyntheticConfig"]


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
