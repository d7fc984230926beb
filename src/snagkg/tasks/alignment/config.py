"""The ``alignment`` config section and its rules, registered with :func:`snagkg.config.register_task`."""
from __future__ import annotations

from dataclasses import dataclass

from snagkg.config.schema import ConfigValueError, Section, register_task

#: candidate retrieval (:mod:`snagkg.tasks.alignment.retrieval`): auto, the exact torch path, Faiss flat, ivf or hnsw
INDEXES = ("auto", "exact", "flat", "ivf", "hnsw")


@dataclass(frozen=True)
class AlignmentConfig(Section):
    """Multi-modal entity alignment (SPEC section 5; ``snagkg.alignment``)."""
    train_ratio: float = 0.0        # share of the gold links used for training; 0: layout default (DBP15K 0.3, OpenEA 0.2)
    valid_ratio: float = 0.1        # share of the training links held out for model selection (never test)
    structure_dim: int = 300        # width of the structure embedding and of the GAT
    gat_layers: int = 2
    gat_heads: int = 2
    gat_dropout: float = 0.0
    temperature: float = 0.1        # tau of the in-batch contrastive loss
    csls_k: int = 3                 # CSLS neighbourhood (0: plain cosine)
    index: str = "auto"             # candidate retrieval: auto (flat with faiss, else exact), exact, flat, ivf, hnsw
    index_cells: int = 0            # ivf: k-means cells (0: 4 sqrt(n))
    index_probe: int = 0            # ivf: cells searched (0: cells / 4, at least 32); hnsw: efSearch (0: 256)
    top_relations: int = 1000       # relation bag width
    top_attributes: int = 1000      # attribute bag width
    char_vocab: int = 2000          # most frequent name character bigrams kept
    warmup: float = 0.15            # share of the run spent warming the learning rate up (cosine after)
    iterative: bool = True          # iterative learning: add stable mutual nearest neighbours as links
    iterative_start: int = 0        # warm stage in epochs before proposals start (0: half of train.epochs)
    propose_every: int = 5          # propose mutual nearest neighbours every N epochs
    add_every: int = 50             # add the proposals that stayed mutual every N epochs

    def check(self) -> None:
        """Ratios in [0, 1), temperature, widths and periods positive, counts not negative."""
        for name in ("train_ratio", "valid_ratio", "warmup", "gat_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigValueError(f"alignment.{name} must be in [0, 1), got {getattr(self, name)}",
                                       f"alignment.{name}")
        if not self.temperature > 0:
            raise ConfigValueError(f"alignment.temperature must be positive, got {self.temperature}",
                                   "alignment.temperature")
        for name in ("structure_dim", "gat_heads", "top_relations", "top_attributes", "char_vocab",
                     "propose_every", "add_every"):
            if getattr(self, name) <= 0:
                raise ConfigValueError(f"alignment.{name} must be positive, got {getattr(self, name)}",
                                       f"alignment.{name}")
        if self.index not in INDEXES:
            raise ConfigValueError(f"alignment.index must be one of {', '.join(INDEXES)}, got {self.index!r}",
                                   "alignment.index")
        for name in ("gat_layers", "csls_k", "iterative_start", "index_cells", "index_probe"):
            if getattr(self, name) < 0:
                raise ConfigValueError(f"alignment.{name} must not be negative, got {getattr(self, name)}",
                                       f"alignment.{name}")


register_task("alignment", AlignmentConfig)
