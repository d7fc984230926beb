"""One multi-modal entity representation for both tasks (SPEC sections 1-3).

:class:`MultiModalEntityRepresentation` turns entity ids into fused entity vectors::

    structure source  ->  Gauss modality noise (GMNM)  ->  per-modality projection
    frozen tables     ->  Gauss modality noise (GMNM)  ->      -> fusion Transformer -> readout

* The *structure source* is a trainable table (:class:`EmbeddingStructure`, completion) or that
  table passed through a graph attention network (:class:`snagkg.alignment.gat.GATStructure`, alignment). The noise
  is applied to the table before the GAT, with its statistics recomputed from the current table.
* The frozen modality tables (image, text, relation, attribute, name, char, ...) were filled
  where missing at load time (SPEC section 1) and are kept as buffers.
* The noise (SPEC section 2) is applied in exactly one place: :meth:`MultiModalEntityRepresentation.inputs`.
  It acts only in training mode, with the draw made by :meth:`~MultiModalEntityRepresentation.refresh_noise`
  (once per epoch or once per step: :class:`snagkg.callbacks.NoiseRefresh`).
* The encoder (:mod:`snagkg.encoder`) knows nothing of where its inputs come from; with
  ``encoder.fusion: false`` it is :class:`~snagkg.encoder.NoFusion` (the structure table is the vector).

The representation is task-agnostic: the completion model (:mod:`snagkg.completion.model`) and
the alignment model (:mod:`snagkg.alignment.model`) each hold one, next to their interaction
and loss, as PyKEEN's ``ERModel`` holds its entity representations.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from snagkg.core.encoder import Fused, ModalityEncoder, NoFusion
from snagkg.core.noise import NoisedTables, modality_noises
from snagkg.runtime import precision as precisions


class EmbeddingStructure(nn.Module):
    """The structure modality as a trainable table ``weight [N, d]`` (MKGC, SPEC section 1)."""

    #: each entity's structure vector depends on its own row only, so a subset can be fused alone
    row_wise = True

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    @property
    def dim(self) -> int:
        """Width of the structure vectors handed to the encoder."""
        return int(self.weight.shape[1])

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        """The structure vectors of every entity from the (noised) ``table``: the table itself."""
        return table


def build_encoder(dims: Dict[str, int], enc: Any) -> nn.Module:
    """The fusion encoder for ``dims`` (modality -> input width) from an ``EncoderConfig``;
    :class:`~snagkg.encoder.NoFusion` when ``enc.fusion`` is false."""
    if not enc.fusion:
        return NoFusion(dims)
    return ModalityEncoder(dims, hidden=enc.hidden, projection_layers=enc.projection_layers, heads=enc.heads,
                           layers=enc.layers, dropout=enc.dropout, ffn=enc.ffn, tanh=enc.tanh, readout=enc.readout,
                           projection_activation=enc.projection_activation)


class MultiModalEntityRepresentation(nn.Module):
    """Structure source + frozen modality tables -> GMNM -> encoder -> fused entity vectors.

    ``structure``: the structure source (kept even when ``"structure"`` is not among
    ``modalities``, so that a model's parameters do not depend on the modalities chosen);
    ``tables``: frozen tables by modality name, each with ``values [N, D]``, ``mean``, ``std``
    and ``missing [N]`` (a :class:`snagkg.tables.FeatureTable`); ``modalities``: the token order;
    ``encoder``: an ``EncoderConfig``; ``noise``: a ``NoiseConfig`` (ratio rho, mask eps, and the
    structure table's scale of both); ``precision``: ``fp32`` or ``bf16`` (the encoder's products
    under autocast).
    """

    def __init__(self, structure: Optional[EmbeddingStructure], tables: Mapping[str, Any], modalities: Sequence[str],
                 encoder: Any, noise: Any, precision: str = "fp32"):
        super().__init__()
        self.modalities: List[str] = list(modalities)
        if "structure" in self.modalities and structure is None:
            raise ValueError("the structure modality needs a structure source")
        self.structure = structure
        self.precision = precision
        self._noised = NoisedTables()
        #: frozen tables kept on disk (:class:`snagkg.mapped.MappedFeatureTable`), by modality
        self._mapped: Dict[str, Any] = {}
        #: gather the structure rows of a batch with a sparse gradient (:mod:`snagkg.sparse`); the
        #: structure noise then uses the table's statistics of the current draw
        self.sparse_rows = False
        self._structure_stats: Optional[tuple] = None
        dims: Dict[str, int] = {}
        for m in self.modalities:
            if m == "structure":
                dims[m] = structure.dim  # type: ignore[union-attr]
                continue
            t = tables[m]
            if getattr(t, "mapped", False):
                self._mapped[m] = t
            else:
                self.register_buffer(f"feat_{m}", torch.as_tensor(t.values), persistent=False)
            self.register_buffer(f"mean_{m}", torch.as_tensor(t.mean), persistent=False)
            self.register_buffer(f"std_{m}", torch.as_tensor(t.std), persistent=False)
            self.register_buffer(f"missing_{m}", torch.as_tensor(t.missing), persistent=False)
            dims[m] = int(t.values.shape[1])
        self.encoder = build_encoder(dims, encoder)
        self.noise = modality_noises(self.modalities, noise.ratio, noise.mask, noise.structure_scale)

    # -- tables ---------------------------------------------------------------
    @property
    def num_entities(self) -> int:
        """Number of entity rows."""
        m = self.modalities[0]
        return self._mapped[m].shape[0] if m in self._mapped else int(self.table(m).shape[0])

    @property
    def mapped(self) -> bool:
        """Whether some frozen table is read on demand from disk (then only batches are fused in
        training, and :meth:`inputs` of every entity reads those tables whole)."""
        return bool(self._mapped)

    @property
    def device(self) -> torch.device:
        """Where the representation's parameters and buffers live."""
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")

    def dim(self, m: str) -> int:
        """Input width of modality ``m``."""
        if m == "structure":
            return self.structure.dim  # type: ignore[union-attr]
        return self._mapped[m].dim if m in self._mapped else int(self.table(m).shape[1])

    @property
    def width(self) -> int:
        """Width of the fused entity vector (the readout's width)."""
        return int(self.encoder.width)

    def table(self, m: str) -> torch.Tensor:
        """The clean table of modality ``m``: the trainable structure table, or a frozen feature table
        (a memory-mapped one is read whole: see :meth:`rows`)."""
        if m in self._mapped:
            return self.rows(m, torch.arange(self.num_entities))
        return self.structure.weight if m == "structure" else getattr(self, f"feat_{m}")  # type: ignore[union-attr]

    def rows(self, m: str, indices: torch.Tensor) -> torch.Tensor:
        """Clean rows ``indices`` of the frozen table ``m`` (for a memory-mapped table, only those are read)."""
        if m in self._mapped:
            idx = indices.detach().cpu().numpy()
            return torch.from_numpy(self._mapped[m].rows(idx)).to(self.device)
        return self.table(m).index_select(0, indices)

    def missing(self, m: str) -> torch.Tensor:
        """``[N]`` boolean: entities filled as missing modality ``m`` at load time (never for structure)."""
        if m == "structure":
            return torch.zeros(self.num_entities, dtype=torch.bool, device=self.device)
        return getattr(self, f"missing_{m}")

    @contextmanager
    def overridden_rows(self, m: str, rows: torch.Tensor, values: torch.Tensor,
                        mark_missing: bool = False) -> Iterator[None]:
        """Within the ``with`` block, rows ``rows`` of modality ``m``'s table hold ``values``
        (and, with ``mark_missing``, are marked missing); the table, the missing mask and the
        noised-table cache are put back on exit (used by :mod:`snagkg.robustness`).

        The buffers (or the structure table) are changed in place under ``torch.no_grad()``;
        nothing on disk is touched. ``mark_missing`` has no effect for ``structure``. A memory-mapped
        table is first read into memory (once; the map itself is read-only).
        """
        if m in self._mapped:
            t = self._mapped.pop(m)
            self.register_buffer(f"feat_{m}", torch.from_numpy(t.rows(np.arange(t.shape[0]))).to(self.device),
                                 persistent=False)
        table = self.table(m)
        rows = torch.as_tensor(rows, dtype=torch.long, device=table.device)
        saved = table.index_select(0, rows).clone()
        flag = m != "structure" and mark_missing
        saved_missing = self.missing(m).index_select(0, rows).clone() if flag else None
        with torch.no_grad():
            table.index_copy_(0, rows, values.to(device=table.device, dtype=table.dtype))
            if flag:
                self.missing(m).index_fill_(0, rows, True)
        self._noised.clear()
        try:
            yield
        finally:
            with torch.no_grad():
                table.index_copy_(0, rows, saved)
                if saved_missing is not None:
                    self.missing(m).index_copy_(0, rows, saved_missing)
            self._noised.clear()

    # -- the noise ------------------------------------------------------------
    def refresh_noise(self, generator: Optional[torch.Generator] = None) -> None:
        """Draw which rows of every modality are noised, and their ``z`` (SPEC section 2)."""
        for m in self.modalities:
            self.noise[m].refresh(self.num_entities, self.dim(m), generator)
        self._noised.clear()
        self._structure_stats = None

    def _structure_statistics(self):
        """``mu, sigma`` of the structure table, computed once per noise draw (``sparse_rows``: a step
        then never reads the whole table; between draws the table moves by a few steps only)."""
        if self._structure_stats is None:
            with torch.no_grad():
                var, mean = torch.var_mean(self.structure.weight.detach(), dim=0, correction=0)  # type: ignore[union-attr]
            self._structure_stats = (mean, var.sqrt())
        return self._structure_stats

    def inputs(self, dtype: Optional[torch.dtype] = None, indices: Optional[torch.Tensor] = None,
               sample: Any = None) -> Dict[str, torch.Tensor]:
        """Every modality's table for the encoder (only the rows ``indices`` when given), with GMNM
        applied in training mode.

        This is the one place the noise is applied. The structure table is noised with
        ``mu, sigma`` recomputed from the current table, then passed through the structure
        source (the GAT for alignment). The frozen tables are the same from one step to the
        next until the noise is drawn again, so each is blended, and cast to ``dtype`` when
        given, once per draw and reused. In eval mode every table is clean. With ``indices``
        (a row-wise structure source only) the structure rows are gathered first and only they
        are blended: the same rows as the whole table would give, at the cost of the batch.

        ``sample``, for a structure source that mixes entities (the alignment GAT), is a sampled
        neighbourhood of the distinct entities ``indices`` (its ``nodes``, ``indices`` first): only its
        rows of the structure table are gathered and blended (with the table's statistics of the
        current draw, as with ``sparse_rows``), and the structure source gives ``indices``' vectors
        from them (:mod:`snagkg.tasks.alignment.sampling`).
        """
        if indices is not None and sample is None and self.structure is not None and not self.structure.row_wise:
            raise ValueError("this structure source mixes entities (a GAT): fuse the whole table")
        out = {}
        for m in self.modalities:
            x = self.table(m) if m not in self._mapped else None
            if m == "structure":
                if sample is not None:  # a sampled neighbourhood of indices: its rows, then the structure source
                    stats = self._structure_statistics() if self.noise[m].active else (None, None)
                    out[m] = self.structure(self.noise[m].gather(x, sample.nodes, *stats), sample)  # type: ignore[misc]
                elif indices is None:
                    out[m] = self.structure(self.noise[m](x))  # type: ignore[misc]
                elif self.sparse_rows:  # a sparse gradient: only these rows of the table are updated
                    rows = nn.functional.embedding(indices, x, sparse=True)
                    if self.noise[m].active:
                        mean, std = self._structure_statistics()
                        rows = self.noise[m].gather_rows(rows, indices, x.shape[0], mean, std)
                    out[m] = self.structure(rows)  # type: ignore[misc]
                else:
                    out[m] = self.structure(self.noise[m].gather(x, indices))  # type: ignore[misc]
                continue
            mean, std = getattr(self, f"mean_{m}"), getattr(self, f"std_{m}")
            if m in self._mapped:  # read only the rows asked for, and noise them alone
                idx = torch.arange(self.num_entities, device=mean.device) if indices is None else indices
                y = self.noise[m].gather_rows(self.rows(m, idx), idx, self.num_entities, mean, std)
                out[m] = y if dtype is None else y.to(dtype)
                continue
            y = self._noised.get(m, self.noise[m], x, mean, std, dtype)
            out[m] = y if indices is None else y.index_select(0, indices)
        return out

    def _apply(self, fn, *args, **kwargs):
        self._noised.clear()  # cached noised tables belong to the old device/dtype
        self._structure_stats = None
        return super()._apply(fn, *args, **kwargs)

    # -- fusion ---------------------------------------------------------------
    def autocast(self):
        """The context of the representation's precision (autocast to bf16, or nothing for fp32)."""
        return precisions.autocast(self.device, self.precision)

    def encode(self, inputs: Dict[str, torch.Tensor], indices: Optional[torch.Tensor] = None) -> Fused:
        """Fuse the rows ``indices`` (all when ``None``) of ``inputs`` (from :meth:`inputs`)."""
        with self.autocast():
            return self.encoder(inputs, indices)

    def encode_vectors(self, inputs: Dict[str, torch.Tensor], indices: Optional[torch.Tensor] = None,
                       scale: float = 1.0) -> torch.Tensor:
        """``encode(inputs, indices).vector * scale`` through the encoder's readout-only path."""
        with self.autocast():
            return self.encoder.vectors(inputs, indices, scale=scale)

    @property
    def row_wise(self) -> bool:
        """Whether each entity's inputs depend on its own rows only (no structure source that mixes
        entities, such as a GAT), so that a subset of the entities can be fused from its rows alone."""
        return self.structure is None or bool(self.structure.row_wise)

    def entity_inputs(self, indices: Optional[torch.Tensor] = None,
                      dtype: Optional[torch.dtype] = None) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        """The encoder inputs of the entities ``indices`` (all when ``None``) and the index the encoder
        still has to apply: when :attr:`row_wise`, only the rows of ``indices`` are gathered, noised
        (and cast to ``dtype``), ``(rows, None)``; otherwise every row passes the structure source
        (the GAT), ``(all rows, indices)``."""
        if indices is None or self.row_wise:
            return self.inputs(dtype, indices), None
        return self.inputs(dtype), indices

    def forward(self, indices: Optional[torch.Tensor] = None) -> Fused:
        """Everything the encoder computes for the distinct entities ``indices`` (all when ``None``),
        from their rows alone when :attr:`row_wise` (the cost follows ``len(indices)``, not the graph)."""
        inputs, index = self.entity_inputs(indices)
        return self.encode(inputs, index)

    def readout(self, indices: Optional[torch.Tensor] = None,
                scale: float = 1.0) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The fused vectors ``[n, width]`` of the distinct entities ``indices`` (all when ``None``) times
        ``scale``, through the encoder's readout-only path in the representation's precision (from
        their rows alone when :attr:`row_wise`), and the encoder inputs of those entities, row for row."""
        inputs, index = self.entity_inputs(indices, self.cast_dtype)
        v = self.encode_vectors(inputs, index, scale)
        return v, (inputs if index is None else {m: x.index_select(0, index) for m, x in inputs.items()})

    @property
    def cast_dtype(self) -> Optional[torch.dtype]:
        """The dtype the frozen tables are cast to once per noise draw (``None`` in fp32)."""
        return precisions.PRECISIONS[self.precision]

    @torch.no_grad()
    def modality_weights(self, indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-entity modality confidence ``[n, M]`` on clean inputs (SPEC section 3), columns in
        ``self.modalities`` order; each row sums to one."""
        was = self.training
        self.eval()
        try:
            return self.forward(indices).weights.float()
        finally:
            self.train(was)
