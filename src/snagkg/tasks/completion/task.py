"""Link prediction (multi-modal knowledge graph completion) as a task (SPEC section 4).

The :class:`snagkg.training.Task` contract for completion: batches of training triples, a
step that samples negatives (Bernoulli per relation, filtered) and returns the head's loss,
and filtered ranking on the validation and test splits (:mod:`snagkg.evaluation`).
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from snagkg.config.auto import GraphStats
from snagkg.config.schema import RunConfig
from snagkg.core.registry import TASKS
from snagkg.data.datasets import load_completion_dataset
from snagkg.data.datasets.graph import KnowledgeGraph
from snagkg.features.relations import split_note
from snagkg.runtime.devices import select_device
from snagkg.runtime.errors import SnagError
from snagkg.runtime.hardware import fused_optimizer
from snagkg.runtime.precision import has_native_bf16
from snagkg.tasks.completion.evaluation import (
    FilterIndex,
    evaluate_ranking,
    rank_triples,
)
from snagkg.tasks.completion.model import CompletionModel
from snagkg.tasks.completion.predict import predict, predict_queries, score_triples
from snagkg.tasks.completion.sampler import make_sampler
from snagkg.training import distributed
from snagkg.training.sparse import split_optimizer
from snagkg.training.graph_task import GraphTask


def resolve_modalities(kg: KnowledgeGraph, requested: Optional[Sequence[str]]) -> List[str]:
    """The modalities a run uses (structure first), checked against the dataset's feature tables."""
    available = ["structure"] + sorted(kg.features)
    if requested is None:
        return available
    mods = list(dict.fromkeys(requested))
    for m in mods:
        if m not in available:
            raise SnagError(f"modality {m!r} is not available for this dataset (available: {', '.join(available)}); "
                            f"add features/{m}.npy or build it with `snagkg features`")
    # structure first: it is the graph readout's token
    return sorted(mods, key=lambda m: (m != "structure", mods.index(m)))


class CompletionTask(GraphTask):
    """Completion on a :class:`KnowledgeGraph` with the config ``cfg`` (selection: valid ``mrr``)."""

    name = "completion"
    selection_metric = "mrr"
    summary_metrics = ("mrr", "hits@1", "hits@3", "hits@10")
    sampled_candidates = True
    data_parallel = True

    def __init__(self, kg: KnowledgeGraph, cfg: RunConfig, device: Optional[torch.device] = None,
                 filters: Optional[FilterIndex] = None):
        self.kg, self.cfg = kg, cfg
        self.graph = kg
        self.device = device or select_device(cfg.device)
        self.modalities = resolve_modalities(kg, cfg.modalities)
        if "relation" in self.modalities and kg.features_dir is not None:
            note = split_note(kg.features_dir / "relation.npy", cfg.valid_from_train, cfg.split_seed)
            if note and note not in kg.notes:
                kg.notes.append(note)
        torch.manual_seed(cfg.seed)  # parameter initialisation
        self.model = CompletionModel(kg.num_entities, kg.num_relations, kg.features, self.modalities, cfg.completion,
                                     cfg.encoder, cfg.noise, cfg.precision, cfg.train.weight_decay).to(self.device)
        self.train_triples = torch.from_numpy(kg.train).long()
        comp = cfg.completion  # negatives per positive (per_triple) or per chunk of positives (shared)
        self.sampler = make_sampler(self.train_triples, kg.num_entities, kg.num_relations, cfg.train.negatives,
                                    comp.filter_negatives, comp.negatives_scheme, comp.shared_chunk)
        self.filters = filters or FilterIndex(torch.from_numpy(kg.all_triples()), kg.num_entities, kg.num_relations)
        #: the fused vectors and known triples kept by :mod:`snagkg.tasks.completion.predict` (None: not yet)
        self.prediction_state: Any = None

    @classmethod
    def build(cls, cfg: RunConfig) -> "CompletionTask":
        """Read ``cfg.dataset`` (``synthetic``, OpenKE folder, labelled/RDF triples) and build the task."""
        kg = load_completion_dataset(cfg.dataset, seed=cfg.seed, split=cfg.dataset_split, columns=cfg.dataset_columns,
                                     valid_from_train=cfg.valid_from_train or 0.0, split_seed=cfg.split_seed,
                                     feature_storage=cfg.completion.feature_storage)
        return cls(kg, cfg)

    def graph_stats(self) -> GraphStats:
        """Entities, relations, train triples, the run's modalities and the device (the rule of
        :mod:`snagkg.config.auto`)."""
        kg = self.kg
        return GraphStats(entities=kg.num_entities, relations=kg.num_relations, train_triples=len(kg.train),
                          modalities=tuple(self.modalities), device=self.device.type,
                          native_bf16=has_native_bf16(self.device) is True)

    def rebuild(self, cfg: RunConfig) -> "CompletionTask":
        """The task for ``cfg`` on the graph already read (same dataset options; a new model, built
        after this task's is released: this task is not used afterwards)."""
        self.model = None  # type: ignore[assignment]  (its memory goes before the new model's is taken)
        return type(self)(self.kg, cfg, device=self.device, filters=self.filters)

    # -- training ----------------------------------------------------------
    def make_optimizer(self):
        """Adam over every parameter; separate groups when a learning-rate scale is not 1."""
        lr, comp, m = self.cfg.train.lr, self.cfg.completion, self.model
        params: Any = list(m.parameters())
        if (comp.embedding_lr_scale, comp.encoder_lr_scale, comp.relation_lr_scale) != (1.0, 1.0, 1.0):
            # groups: the entity table, the encoder (and its residual gate), the rest (the scorer's
            # relation parameters); one group when every scale is 1, so that older checkpoints resume
            table = m.entities.structure.weight
            encoder = {id(p) for p in m.entities.encoder.parameters()} | ({id(m.gate)} if m.gate is not None else set())
            params = [{"params": [table], "lr": lr * comp.embedding_lr_scale},
                      {"params": [p for p in params if id(p) in encoder], "lr": lr * comp.encoder_lr_scale},
                      {"params": [p for p in params if p is not table and id(p) not in encoder],
                       "lr": lr * comp.relation_lr_scale}]
            params = [g for g in params if g["params"]]
        wd = self.cfg.train.weight_decay
        if m.sparse:  # SparseAdam for the entity table's sparse gradients, fused Adam for the rest
            groups = params if isinstance(params[0], dict) else [{"params": params, "lr": lr}]
            return split_optimizer(groups, m.entities.structure.weight,
                                   lambda rest: fused_optimizer(torch.optim.Adam, rest, lr=lr, weight_decay=wd)), None
        opt = fused_optimizer(torch.optim.Adam, params, lr=lr, weight_decay=wd)
        return opt, None

    def batches(self, generator: torch.Generator) -> List[torch.Tensor]:
        """The training triples, shuffled, in batches of ``train.batch_size``."""
        perm = torch.randperm(len(self.train_triples), generator=generator)
        return list(self.train_triples[perm].split(self.cfg.train.batch_size))

    def step(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The loss of one batch of triples against negatives sampled with ``generator``.

        Data-parallel (:mod:`snagkg.distributed`): the negatives of the whole global ``batch`` are drawn
        on every rank (the generators stay in step), each rank keeps its rows ``rank::world`` and scales
        its loss by ``local * world / global``, so the ranks' mean gradient is the global batch's."""
        # candidate [B, K]: the entity that replaces the head (corrupt_head) or the tail
        candidate, corrupt_head, mask = self.sampler.sample_candidates(batch, generator)
        (batch, candidate, corrupt_head, mask), scale = distributed.shard_rows(batch, candidate, corrupt_head, mask)
        dev = self.device
        if len(batch) == 0:  # a last batch smaller than the world: this rank has no rows
            return torch.zeros((), device=dev, requires_grad=True)
        loss = self.model.sampled_loss(batch.to(dev), candidate.to(dev), corrupt_head.to(dev), mask.to(dev))
        return loss if scale == 1.0 else loss * scale

    # -- evaluation --------------------------------------------------------
    @torch.no_grad()
    def entity_vectors(self) -> torch.Tensor:
        """``model.entity_vectors()`` in eval mode, through the encoder's readout-only (compiled) path."""
        self.model.eval()
        return self.model.vectors()

    def evaluate(self, split: str, ties: Optional[str] = None, limit: int = 0,
                 progress: bool = False, candidates: int = 0) -> Dict[str, Any]:
        """Filtered ranking metrics on ``split`` (the first ``limit`` triples when ``limit``); against
        ``candidates`` sampled candidates per query (seeded by the run's seed) when it is positive."""
        triples = torch.from_numpy(self.kg.split(split)).long()
        if limit:
            triples = triples[:limit]
        if not candidates:  # data-parallel: each rank ranks its slice, the metrics are combined (sampled: all)
            triples = distributed.split_rows(triples)
        vecs = self.entity_vectors()
        metrics = evaluate_ranking(vecs, self.model.interaction, triples, self.filters, ties or self.cfg.ties,
                                   progress=progress, candidates=candidates, seed=self.cfg.seed)
        return metrics if candidates else distributed.combine_metrics(metrics)

    def query_ranks(self, split: str, ties: Optional[str] = None) -> np.ndarray:
        """The filtered rank of every triple of ``split``: its tail, then (after all tails) its head."""
        triples = torch.from_numpy(self.kg.split(split)).long()
        return rank_triples(self.entity_vectors(), self.model.interaction, triples, self.filters,
                            ties or self.cfg.ties).numpy()

    def final_evaluation(self, split: str, **options: Any) -> Dict[str, Any]:
        """:meth:`Task.final_evaluation`, against ``train.eval_candidates`` sampled candidates when it is set."""
        return super().final_evaluation(split, candidates=self.cfg.train.eval_candidates, **options)

    def predict(self, head: Optional[str] = None, relation: Optional[str] = None, tail: Optional[str] = None,
                top: int = 10, include_known: bool = False, targets=None):
        """Ranked tails of ``(head, relation, ?)`` or heads of ``(?, relation, tail)`` by name, among
        ``targets`` (names or ids) if given (:func:`snagkg.tasks.completion.predict.predict`; the fused
        vectors are computed once and kept)."""
        return predict(self, head=head, relation=relation, tail=tail, top=top, include_known=include_known,
                       targets=targets)

    def predict_queries(self, queries, path=None, lines=None, top: int = 10, include_known: bool = False,
                        targets=None):
        """Answers to many ``(head, relation, "?")`` / ``("?", relation, tail)`` queries
        (:func:`snagkg.tasks.completion.predict.predict_queries`)."""
        return predict_queries(self, queries, path=path, lines=lines, top=top, include_known=include_known,
                               targets=targets)

    def score_triples(self, rows, path=None, lines=None):
        """Scores of ``(head, relation, tail)`` name triples (:func:`snagkg.tasks.completion.predict.score_triples`)."""
        return score_triples(self, rows, path=path, lines=lines)

    def export_arrays(self) -> "tuple[Dict[str, Any], Dict[str, Any]]":
        """The relations' ids, names and parameters (RotatE: phases in radians), and the scorer's name and margin."""
        sc = self.model.interaction
        rels = list(self.kg.relations)
        with torch.no_grad():
            params, kind = sc.relation_parameters(torch.arange(len(rels), device=sc.relation.device))
        arrays = {"relation_ids": np.arange(len(rels), dtype=np.int64), "relation_names": np.array(rels, dtype=str),
                  "relation_phases": params.float().cpu().numpy()}
        return arrays, {"scorer": sc.name, "margin": float(sc.margin), "relations": len(rels),
                        "relation_parameters": kind}

    def validate(self) -> Dict[str, float]:
        """Validation metrics (``train.eval_limit`` triples at most; against ``train.eval_candidates`` sampled
        candidates when set), rounded for the log."""
        m = self.evaluate("valid", limit=self.cfg.train.eval_limit, candidates=self.cfg.train.eval_candidates)
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()}

    def fingerprint(self) -> Dict[str, Any]:
        """Dataset size, training triples' digest and the model's shape (checked on load)."""
        kg = self.kg
        digest = hashlib.sha1(np.ascontiguousarray(kg.train).tobytes()).hexdigest()[:16]
        return {
            "task": "completion",
            "entities": kg.num_entities,
            "relations": kg.num_relations,
            "train_sha1": digest,
            "modalities": ",".join(f"{m}:{self.model.entities.dim(m)}" for m in self.modalities),
            "hidden": self.cfg.encoder.hidden,
            "readout": self.cfg.encoder.readout,
            **({} if self.cfg.encoder.fusion else {"fusion": False}),
        }

    def dataset_info(self) -> Dict[str, Any]:
        """The dataset summary with the modalities used and the loader's notes."""
        info = self.kg.summary()
        info["used_modalities"] = list(self.modalities)
        info["notes"] = list(self.kg.notes)
        return info


TASKS.register(CompletionTask.name)(CompletionTask)

