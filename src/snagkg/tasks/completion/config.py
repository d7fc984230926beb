"""The ``completion`` config section and its rules, registered with :func:`snagkg.config.register_task`."""
from __future__ import annotations

from dataclasses import dataclass

from snagkg.config.schema import ConfigValueError, RunConfig, Section, register_task
from snagkg.core.registry import SCORERS

FUSION_SCOPES = ("auto", "batch", "table")
FEATURE_STORAGES = ("auto", "memory", "mmap")
ENTITY_UPDATES = ("auto", "dense", "sparse")
NEGATIVE_SCHEMES = ("per_triple", "shared")


@dataclass(frozen=True)
class CompletionConfig(Section):
    """Multi-modal knowledge graph completion (SPEC section 4; ``snagkg.completion``)."""
    scorer: str = "rotate"          # a name in snagkg.registry.SCORERS
    margin: float = 12.0            # gamma
    adversarial_temperature: float = 2.0   # alpha
    filter_negatives: bool = True
    # learning rate of the trainable structure embedding table, relative to train.lr
    embedding_lr_scale: float = 1.0
    # learning rate of the encoder (projections, fusion layers, readout), relative to train.lr
    encoder_lr_scale: float = 1.0
    # learning rate of the scorer's relation parameters (RotatE: phases stored in
    # [-range, range], range = (margin + 2) / k, so one unit of step turns a relation by
    # pi / range radians), relative to train.lr
    relation_lr_scale: float = 1.0
    # add the (noised) structure embedding row to the fused vector: RotatE's free entity vector
    # plus the encoder's fusion of every modality (SNAG's fusion as a plug-in to RotatE, SPEC
    # section 6); needs the fusion encoder and the structure modality
    structure_residual: bool = False
    # with structure_residual: multiply the fused vector by a learned scalar gate that starts
    # at 0 (ReZero), so training starts from plain RotatE and the encoder's share grows only
    # as far as the loss asks for it
    residual_gate: bool = False
    # which entities a training step fuses: "table" every entity (the whole-table path), "batch"
    # only those the batch touches (positives and negatives; exact, as the fusion is per entity),
    # "auto" the batch when it touches at most half of the graph
    fusion_scope: str = "auto"
    # where an OpenKE folder's feature tables live: "memory" (read whole), "mmap" (read on demand
    # from numpy memory maps, statistics in one streamed pass; training then fuses the batch only)
    # or "auto" (mmap when the tables together exceed 1 GiB)
    feature_storage: str = "auto"
    # how the entity table is updated: "dense" (Adam over every row, every step), "sparse" (sparse
    # gradients of the rows a batch touches, lazy Adam over those rows only: torch.optim.SparseAdam)
    # or "auto" (sparse from SPARSE_FROM entities up, where the batch path fuses)
    entity_updates: str = "auto"
    # how training negatives are drawn: "per_triple" (train.negatives entities for each positive) or
    # "shared" (PyTorch-BigGraph: one draw of train.negatives entities per chunk of shared_chunk
    # positives, used by each of them on its Bernoulli side, filtered per pair as per_triple), so a
    # batch touches about 2B + (B / shared_chunk) K entities instead of 2B + B K
    negatives_scheme: str = "per_triple"
    # positives per shared draw with negatives_scheme: shared (64: with batch 1024 and 32 negatives the
    # draws add 512 entities to the positives' 2048; chunk 16 was 1.1-1.7x slower an epoch on 2k-15k
    # entities, chunk 256 at most 1.2x faster with 4x fewer distinct negatives: bench_negatives.py)
    shared_chunk: int = 64

    def check(self) -> None:
        """Learning-rate scales and margin positive, temperature not negative, a known scorer."""
        for name in ("embedding_lr_scale", "encoder_lr_scale", "relation_lr_scale"):
            if not getattr(self, name) > 0:
                raise ConfigValueError(f"completion.{name} must be positive, got {getattr(self, name)}",
                                       f"completion.{name}")
        if self.residual_gate and not self.structure_residual:
            raise ConfigValueError("completion.residual_gate (--residual-gate) gates the fused vector added to the "
                                   "structure row: it needs completion.structure_residual (--structure-residual)",
                                   "completion.residual_gate")
        if not self.margin > 0:
            raise ConfigValueError(f"completion.margin must be positive, got {self.margin}", "completion.margin")
        if self.adversarial_temperature < 0:
            raise ConfigValueError("completion.adversarial_temperature must not be negative",
                                   "completion.adversarial_temperature")
        if self.fusion_scope not in FUSION_SCOPES:
            raise ConfigValueError(f"completion.fusion_scope must be one of {', '.join(FUSION_SCOPES)}, "
                                   f"got {self.fusion_scope!r}", "completion.fusion_scope")
        for name, allowed in (("feature_storage", FEATURE_STORAGES), ("entity_updates", ENTITY_UPDATES)):
            if getattr(self, name) not in allowed:
                raise ConfigValueError(f"completion.{name} must be one of {', '.join(allowed)}, "
                                       f"got {getattr(self, name)!r}", f"completion.{name}")
        if self.negatives_scheme not in NEGATIVE_SCHEMES:
            raise ConfigValueError(f"completion.negatives_scheme must be one of {', '.join(NEGATIVE_SCHEMES)}, "
                                   f"got {self.negatives_scheme!r}", "completion.negatives_scheme")
        if self.shared_chunk < 1:
            raise ConfigValueError(f"completion.shared_chunk must be at least 1, got {self.shared_chunk}",
                                   "completion.shared_chunk")
        if self.fusion_scope == "table" and (self.entity_updates == "sparse" or self.feature_storage == "mmap"):
            raise ConfigValueError("completion.fusion_scope table fuses every entity each step: it needs dense "
                                   "entity updates and tables in memory (--entity-updates dense "
                                   "--feature-storage memory)", "completion.fusion_scope")
        if self.scorer not in SCORERS:
            raise ConfigValueError(f"completion.scorer {self.scorer!r} is not one of {', '.join(SCORERS.names())}",
                                   "completion.scorer")


def check_run(cfg: RunConfig) -> None:
    """Rules across sections: ``structure_residual`` needs the fusion encoder."""
    if cfg.completion.structure_residual and not cfg.encoder.fusion:
        raise ConfigValueError("completion.structure_residual adds the structure row to the fused vector: "
                               "it needs the fusion encoder (drop --no-fusion or --structure-residual)",
                               "completion.structure_residual", "encoder.fusion")


register_task("completion", CompletionConfig, check_run)
