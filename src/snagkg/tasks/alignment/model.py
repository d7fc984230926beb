"""The SNAG alignment model (SPEC section 5): the shared entity representation, compared by CSLS.

``AlignmentModel = MultiModalEntityRepresentation (structure: a 2-layer GAT over the union
graph) + interaction (cosine with CSLS) + loss (ICL with uncertainty weights)``. The structure
table is noised with ``noise.structure_scale`` times rho and eps (SPEC section 2).

The iterative-learning state (links added so far, proposals pending) lives in two buffers, so
it is saved with every checkpoint and restored on resume.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from snagkg.core.checkpoints import rename_legacy_keys
from snagkg.core.encoder import Fused
from snagkg.core.interaction import LOSSES, Interaction
from snagkg.core.representation import MultiModalEntityRepresentation
from snagkg.tasks.alignment import loss as _losses  # noqa: F401  (registers the alignment losses)
from snagkg.tasks.alignment.config import AlignmentConfig
from snagkg.tasks.alignment.gat import EdgeIndex, GATStructure
from snagkg.tasks.alignment.metrics import (
    alignment_metrics,
    candidates,
    csls_block,
    csls_context,
    mutual_nearest,
    one_to_one,
    rank_alignment,
)
from snagkg.tasks.alignment.retrieval import check_hubness, resolve_index
from snagkg.tasks.alignment.sampling import NeighbourSampler

DYNAMIC_BUFFERS = ("added_links", "pending_links")
#: ``alignment.batching: auto`` samples GAT neighbourhoods from this many entities (both graphs together):
#: on synthetic pairs (dbp15k-cpu, 1 thread) an epoch cost the same either way at 2k and 5k a side, and
#: sampled was 1.16x faster at 10k, 1.45x at 15k, 1.55x at 50k (BENCHMARKS.md, "Alignment at scale")
SAMPLED_FROM = 20_000
#: :meth:`AlignmentModel.entity_vectors` fuses this many entities at a time (the encoder's activations of
#: a million entities at once do not fit in 24 GB; every DBP15K split is one chunk)
ENCODE_CHUNK = 1 << 17
#: parameter names of checkpoints written before the shared representation existed
LEGACY_KEYS = (("entity", "entities.structure.weight"), ("gat.", "entities.structure.gat."),
               ("encoder.", "entities.encoder."), ("uncertainty.", "loss.uncertainty."))


class CSLSInteraction(Interaction):
    """Cosine similarity of L2-normalised vectors with cross-domain similarity local scaling (``k``
    neighbours; ``k = 0``: plain cosine, times 2): ``csls(x, y) = 2 cos(x, y) - r_y(x) - r_x(y)``;
    with ``hubness="nicdm"`` the NICDM score ``-|x - y|^2 / (mu_y(x) mu_x(y))`` instead (``mu``: mean
    distance to the ``k`` nearest of the other side; :mod:`snagkg.tasks.alignment.retrieval`).

    The alignment task ranks (:meth:`metrics`) and matches (:meth:`one_to_one`) through it, so
    ``alignment.csls_k`` and ``alignment.hubness`` are read once, here."""

    name = "csls"

    def __init__(self, k: int = 3, index: str = "auto", cells: int = 0, probe: int = 0, seed: int = 0,
                 hubness: str = "csls"):
        """``index``, ``cells``, ``probe``: the candidate retrieval (``alignment.index``, ``index_cells``,
        ``index_probe``; :mod:`snagkg.tasks.alignment.retrieval`); ``hubness``: csls or nicdm."""
        super().__init__()
        self.k = int(k)
        self.index, self.cells, self.probe, self.seed = index, int(cells), int(probe), int(seed)
        self.hubness = check_hubness(hubness)

    def retrieval(self, index: Optional[str] = None, hubness: Optional[str] = None) -> Dict[str, Any]:
        """Keyword arguments of the ranking and retrieval functions: the resolved ``index`` (the configured
        one unless given; a one-line error for a Faiss index without Faiss), its options and the
        ``hubness`` reduction (the configured one unless given)."""
        return {"index": resolve_index(index or self.index), "nlist": self.cells, "probe": self.probe,
                "seed": self.seed, "hubness": check_hubness(hubness or self.hubness)}

    def score(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``[n, m]`` scores of every row of ``x`` against every row of ``y`` (both sides' context from
        these same rows)."""
        rx, ry = csls_context(x, y, self.k, hubness=self.hubness)
        return csls_block(x, y, rx, ry, self.hubness)

    def metrics(self, x: torch.Tensor, y: torch.Tensor, ties: str = "realistic", limit: int = 0,
                index: Optional[str] = None) -> Dict[str, Any]:
        """Ranking metrics of gold pairs ``(x[i], y[i])``, both directions (:func:`alignment_metrics`)."""
        return alignment_metrics(x, y, k=self.k, ties=ties, limit=limit, **self.retrieval(index))

    def ranks(self, x: torch.Tensor, y: torch.Tensor, ties: str = "realistic", index: Optional[str] = None,
              right_to_left: bool = True) -> torch.Tensor:
        """CSLS ranks of gold pairs ``(x[i], y[i])``: left-to-right, then right-to-left (without
        ``right_to_left``: left-to-right only, the queries of the headline metrics)."""
        return torch.cat(rank_alignment(x, y, k=self.k, ties=ties, right_to_left=right_to_left,
                                        **self.retrieval(index)))

    def one_to_one(self, x: torch.Tensor, y: torch.Tensor, topk: int = 10, index: Optional[str] = None,
                   hubness: Optional[str] = None):
        """One-to-one matching of the rows of ``x`` and ``y`` by CSLS (or ``hubness``; :func:`one_to_one`)."""
        return one_to_one(x, y, k=self.k, topk=topk, **self.retrieval(index, hubness))

    def candidates(self, x: torch.Tensor, y: torch.Tensor, topk: int, index: Optional[str] = None,
                   hubness: Optional[str] = None):
        """The ``topk`` best CSLS (or ``hubness``) candidates among ``y`` of every row of ``x``
        (:func:`candidates`)."""
        return candidates(x, y, k=self.k, topk=topk, **self.retrieval(index, hubness))

    def mutual_nearest(self, x: torch.Tensor, y: torch.Tensor, index: Optional[str] = None):
        """Mutual nearest neighbours (cosine) of the rows of ``x`` and ``y`` (:func:`mutual_nearest`)."""
        options = self.retrieval(index)
        del options["hubness"]  # plain cosine
        return mutual_nearest(x, y, **options)


def resolve_batching(choice: str, num_entities: int) -> bool:
    """Whether training steps run the GAT over sampled neighbourhoods (``alignment.batching``: ``sampled``,
    or ``auto`` from :data:`SAMPLED_FROM` entities) rather than over both whole graphs."""
    return choice == "sampled" or (choice == "auto" and num_entities >= SAMPLED_FROM)


class AlignmentModel(nn.Module):
    """Entity representation (``entities``), ``interaction`` (CSLS), ``loss`` (ICL)."""

    def __init__(self, num_entities: int, edges: EdgeIndex, tables: Mapping[str, Any],
                 modalities: Sequence[str], al: AlignmentConfig, encoder: Any, noise: Any, precision: str = "fp32"):
        """``al``: the run's ``alignment`` section; ``encoder``, ``noise``: its shared sections (see
        :class:`MultiModalEntityRepresentation`); ``precision``: ``fp32`` or ``bf16``."""
        super().__init__()
        structure = None
        if "structure" in modalities:
            dim = al.structure_dim
            structure = GATStructure(torch.randn(num_entities, dim) / math.sqrt(dim), edges, al.gat_layers,
                                     al.gat_heads, al.gat_dropout)
        self.entities = MultiModalEntityRepresentation(structure, tables, modalities, encoder, noise, precision)
        #: whether a training step fuses only its links' entities, the GAT over their sampled neighbourhoods
        self.sampled = resolve_batching(al.batching, num_entities)
        self.sampler = NeighbourSampler(edges, al.fanout()) if self.sampled and structure is not None else None
        self.interaction = CSLSInteraction(al.csls_k, al.index, al.index_cells, al.index_probe,
                                           hubness=al.hubness)
        self.loss = LOSSES.get("icl")(len(self.entities.modalities), al.temperature)
        self.register_buffer("added_links", torch.zeros(0, 2, dtype=torch.long))
        self.register_buffer("pending_links", torch.zeros(0, 2, dtype=torch.long))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        rename_legacy_keys(state_dict, prefix, LEGACY_KEYS)
        for name in DYNAMIC_BUFFERS:  # variable-length buffers: take the saved shape
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.zeros_like(state_dict[key], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @property
    def modalities(self):
        """The representation's modalities, in token order."""
        return self.entities.modalities

    def refresh_noise(self, generator: Optional[torch.Generator] = None) -> None:
        """Draw new modality noise (see :meth:`MultiModalEntityRepresentation.refresh_noise`)."""
        self.entities.refresh_noise(generator)

    def fuse(self, index: Optional[torch.Tensor] = None) -> Fused:
        """The representation's :class:`Fused` output for ``index`` (all entities by default)."""
        return self.entities(index)

    @torch.no_grad()
    def entity_vectors(self, index: Optional[torch.Tensor] = None, chunk: int = ENCODE_CHUNK) -> torch.Tensor:
        """Clean (eval mode), L2-normalised readout vectors of ``index`` (all by default), float32.

        The structure source (the GAT) runs once over the whole graph; the encoder then fuses ``chunk``
        entities at a time, so its activations stay bounded (a graph of at most ``chunk`` entities, or
        ``index`` of at most ``chunk``, is fused in one call, as :meth:`fuse` does)."""
        was = self.training
        self.eval()
        try:
            inputs, sub = self.entities.entity_inputs(index)
            count = len(sub) if sub is not None else next(iter(inputs.values())).shape[0]
            if count <= chunk:
                return F.normalize(self.entities.encode(inputs, sub).vector.float(), dim=-1)
            out = None
            for s in range(0, count, chunk):
                if sub is not None:
                    part = self.entities.encode(inputs, sub[s:s + chunk]).vector
                else:
                    part = self.entities.encode({m: x[s:s + chunk] for m, x in inputs.items()}).vector
                part = F.normalize(part.float(), dim=-1)
                if out is None:
                    out = part.new_empty((count, part.shape[1]))
                out[s:s + len(part)] = part
            return out
        finally:
            self.train(was)

    @torch.no_grad()
    def modality_weights(self, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-entity modality confidence ``[n, M]`` (clean inputs), columns in ``self.modalities`` order."""
        return self.entities.modality_weights(index)

    def fuse_sampled(self, index: torch.Tensor, generator: Optional[torch.Generator] = None) -> Fused:
        """:meth:`fuse` of ``index`` from the distinct entities of ``index`` alone, the GAT over their
        neighbourhoods sampled with ``generator`` (:mod:`snagkg.tasks.alignment.sampling`)."""
        seeds, inverse = torch.unique(index, return_inverse=True)
        sample = None if self.sampler is None else self.sampler.sample(seeds, generator).to(seeds.device)
        return self.entities.encode(self.entities.inputs(indices=seeds, sample=sample), inverse)

    def link_loss(self, links: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """The training objective on a batch of links ``[B, 2]`` (with sampled batching, neighbourhoods drawn
        from ``generator``)."""
        index = torch.cat([links[:, 0], links[:, 1]])
        fused = self.fuse_sampled(index, generator) if self.sampled else self.fuse(index)
        with self.entities.autocast():
            return self.loss(fused, links.shape[0]).float()

    def parameter_count(self) -> int:
        """Number of trainable parameters (entity table included)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
