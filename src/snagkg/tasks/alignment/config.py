"""The ``alignment`` config section and its rules, registered with :func:`snagkg.config.register_task`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from snagkg.config.schema import ConfigValueError, Section, register_task

#: candidate retrieval (:mod:`snagkg.tasks.alignment.retrieval`): auto, the exact torch path, Faiss flat, ivf or hnsw
INDEXES = ("auto", "exact", "flat", "ivf", "hnsw")
#: hubness reduction of the alignment score (:mod:`snagkg.tasks.alignment.retrieval`): CSLS or NICDM
HUBNESS = ("csls", "nicdm")
#: what a training step runs the GAT over: auto, both whole graphs, or the batch's sampled neighbourhoods
BATCHINGS = ("auto", "whole", "sampled")


def _fanout(value: Any) -> Any:
    """``alignment.gat_fanout`` as a tuple of ints when it reads as one (an int, a list of ints, or
    ``"10,10"`` from the command line); anything else as given, for :meth:`AlignmentConfig.check`."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if parts and all(p.lstrip("-").isdigit() for p in parts):
            return tuple(int(p) for p in parts)
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    return value


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
    csls_k: int = 3                 # neighbourhood k of the hubness reduction (0: plain cosine)
    hubness: str = "csls"           # csls (2 cos - r - r) or nicdm (-|x - y|^2 / (mu mu)), both over csls_k neighbours
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
    # what a training step runs the GAT over: "whole" (both whole graphs, every step), "sampled"
    # (only the batch's entities and their sampled neighbourhoods, gat_fanout per hop) or "auto"
    # (sampled from SAMPLED_FROM entities in both graphs together: tasks/alignment/model.py)
    batching: str = "auto"
    # with sampled batching: neighbours drawn per entity and hop, hop 1 (the batch's entities) first;
    # one value per GAT layer, or one for every layer (YAML [10] or 10, [15, 10]; --gat-fanout 15,10)
    gat_fanout: Tuple[int, ...] = (10,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gat_fanout", _fanout(self.gat_fanout))

    def fanout(self) -> Tuple[int, ...]:
        """``gat_fanout`` with one value per GAT layer (a single value repeated)."""
        f = tuple(self.gat_fanout)
        return f * self.gat_layers if len(f) == 1 else f[:self.gat_layers]

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
        if self.hubness not in HUBNESS:
            raise ConfigValueError(f"alignment.hubness must be one of {', '.join(HUBNESS)}, got {self.hubness!r}",
                                   "alignment.hubness")
        if self.batching not in BATCHINGS:
            raise ConfigValueError(f"alignment.batching must be one of {', '.join(BATCHINGS)}, got {self.batching!r}",
                                   "alignment.batching")
        f = self.gat_fanout
        if not isinstance(f, tuple) or not f or not all(v >= 1 for v in f):
            raise ConfigValueError(f"alignment.gat_fanout must be positive integers (one per GAT layer, or one for "
                                   f"all), got {f!r}", "alignment.gat_fanout")
        if len(f) != 1 and len(f) != self.gat_layers and self.gat_layers > 0:
            raise ConfigValueError(f"alignment.gat_fanout has {len(f)} values for {self.gat_layers} GAT layers "
                                   f"(alignment.gat_layers): give one per layer, or one for all",
                                   "alignment.gat_fanout", "alignment.gat_layers")
        for name in ("gat_layers", "csls_k", "iterative_start", "index_cells", "index_probe"):
            if getattr(self, name) < 0:
                raise ConfigValueError(f"alignment.{name} must not be negative, got {getattr(self, name)}",
                                       f"alignment.{name}")


register_task("alignment", AlignmentConfig)
