"""Completion as a training task: batches, one training step, validation."""
from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..config import RunConfig
from ..datasets.graph import KnowledgeGraph
from ..devices import select_device
from ..errors import SnagError
from ..evaluation import FilterIndex, evaluate_ranking
from ..kernels import PRECISIONS, autocast, fused_optimizer
from .loss import self_adversarial_loss
from .model import CompletionModel
from .sampler import BernoulliNegativeSampler


def resolve_modalities(kg: KnowledgeGraph, requested: Optional[Sequence[str]]) -> List[str]:
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


class CompletionTask:
    selection_metric = "mrr"

    def __init__(self, kg: KnowledgeGraph, cfg: RunConfig, device: Optional[torch.device] = None):
        self.kg, self.cfg = kg, cfg
        self.device = device or select_device(cfg.device)
        self.modalities = resolve_modalities(kg, cfg.modalities)
        torch.manual_seed(cfg.seed)  # parameter initialisation
        self.model = CompletionModel(kg.num_entities, kg.num_relations, kg.features, self.modalities, cfg).to(self.device)
        self.train_triples = torch.from_numpy(kg.train).long()
        self.sampler = BernoulliNegativeSampler(self.train_triples, kg.num_entities, kg.num_relations,
                                                cfg.train.negatives, cfg.completion.filter_negatives)
        self.filters = FilterIndex(torch.from_numpy(kg.all_triples()), kg.num_entities, kg.num_relations)

    # -- training ----------------------------------------------------------
    def make_optimizer(self):
        lr, comp, m = self.cfg.train.lr, self.cfg.completion, self.model
        params: Any = list(m.parameters())
        if (comp.embedding_lr_scale, comp.encoder_lr_scale, comp.relation_lr_scale) != (1.0, 1.0, 1.0):
            # groups: the entity table, the encoder (and its residual gate), the rest (the scorer's
            # relation parameters); one group when every scale is 1, so that older checkpoints resume
            encoder = {id(p) for p in m.encoder.parameters()} | ({id(m.gate)} if m.gate is not None else set())
            params = [{"params": [m.entity], "lr": lr * comp.embedding_lr_scale},
                      {"params": [p for p in params if id(p) in encoder], "lr": lr * comp.encoder_lr_scale},
                      {"params": [p for p in params if p is not m.entity and id(p) not in encoder],
                       "lr": lr * comp.relation_lr_scale}]
            params = [g for g in params if g["params"]]
        opt = fused_optimizer(torch.optim.Adam, params, lr=lr, weight_decay=self.cfg.train.weight_decay)
        return opt, None

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        self.model.refresh_noise(generator)

    def batches(self, generator: torch.Generator) -> List[torch.Tensor]:
        perm = torch.randperm(len(self.train_triples), generator=generator)
        return list(self.train_triples[perm].split(self.cfg.train.batch_size))

    def step(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # candidate [B, K]: the entity that replaces the head (corrupt_head) or the tail
        candidate, corrupt_head, mask = self.sampler.sample_candidates(batch, generator)
        dev = self.device
        batch, candidate, corrupt_head, mask = batch.to(dev), candidate.to(dev), corrupt_head.to(dev), mask.to(dev)
        m = self.model
        vecs = self._vectors()
        scorer = m.scorer
        h, r, t = batch[:, 0], batch[:, 1], batch[:, 2]
        temperature = self.cfg.completion.adversarial_temperature
        if hasattr(scorer, "sampled_loss"):  # fused: one rotation per positive and direction
            return scorer.sampled_loss(vecs, h, r, t, candidate, corrupt_head, mask, temperature)
        # One query per positive and direction; a negative only swaps the candidate entity,
        # so the rotation is never recomputed for the [B, K] negatives.
        q_tail = scorer.query(vecs[h], r, True)    # h o r, compared with tails
        q_head = scorer.query(vecs[t], r, False)   # t o conj(r), compared with heads
        pos = scorer.margin - scorer.distance(q_tail, vecs[t])
        q = torch.where(corrupt_head.unsqueeze(-1), q_head.unsqueeze(1), q_tail.unsqueeze(1))
        negs = scorer.margin - scorer.distance(q, vecs[candidate])
        return self_adversarial_loss(pos, negs, mask, temperature)

    def _vectors(self) -> torch.Tensor:
        """Every entity fused once (``model.entity_vectors()``, computing only what the readout
        needs), in the run's precision; float32 out."""
        m = self.model
        with autocast(self.device, self.cfg.precision):
            vecs = m.vectors(PRECISIONS[self.cfg.precision])
        return vecs.float()

    # -- evaluation --------------------------------------------------------
    @torch.no_grad()
    def entity_vectors(self) -> torch.Tensor:
        """``model.entity_vectors()`` in eval mode, through the encoder's readout-only (compiled) path."""
        self.model.eval()
        return self._vectors()

    def evaluate(self, split: str, ties: Optional[str] = None, limit: int = 0,
                 progress: bool = False) -> Dict[str, float]:
        triples = torch.from_numpy(self.kg.split(split)).long()
        if limit:
            triples = triples[:limit]
        vecs = self.entity_vectors()
        return evaluate_ranking(vecs, self.model.scorer, triples, self.filters, ties or self.cfg.ties,
                                progress=progress)

    def validate(self) -> Dict[str, float]:
        m = self.evaluate("valid", limit=self.cfg.train.eval_limit)
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()}

    def fingerprint(self) -> Dict[str, Any]:
        kg = self.kg
        digest = hashlib.sha1(np.ascontiguousarray(kg.train).tobytes()).hexdigest()[:16]
        return {
            "task": "completion",
            "entities": kg.num_entities,
            "relations": kg.num_relations,
            "train_sha1": digest,
            "modalities": ",".join(f"{m}:{self.model.table(m).shape[1]}" for m in self.modalities),
            "hidden": self.cfg.encoder.hidden,
            "readout": self.cfg.encoder.readout,
            **({} if self.cfg.encoder.fusion else {"fusion": False}),
        }

    def dataset_info(self) -> Dict[str, Any]:
        info = self.kg.summary()
        info["used_modalities"] = list(self.modalities)
        info["notes"] = list(self.kg.notes)
        return info
