"""Entity alignment as a training task for :class:`snagkg.training.Trainer`.

* Gold links are split by a seeded shuffle: ``alignment.train_ratio`` of them
  (layout default DBP15K 30%, OpenEA 20%) for training, the rest for test; a
  validation slice (``alignment.valid_ratio`` of the training share) is held
  out of training and used for model selection (``hits@1`` on it), never test.
* Learning rate: AdamW, linear warm-up over ``alignment.warmup`` of the run,
  then cosine decay (:class:`snagkg.callbacks.WarmupCosine`), set before each step
  from the position in the run (so a resumed run follows the same schedule).
* Iterative learning (``alignment.iterative``, the :class:`IterativeLearning`
  callback): from epoch ``iterative_start`` on, every ``propose_every`` epochs the
  mutual nearest neighbours among entities not in any seed link are proposed;
  proposals that stay mutual across consecutive proposals are added to the
  training links every ``add_every`` epochs. The added links are a model buffer,
  saved in every checkpoint.
* Evaluation: clean ``global_weighted`` vectors, L2-normalised; for each left
  entity of the split its partner is ranked among the right entities of the
  split with CSLS (``alignment.csls_k``; NICDM with ``alignment.hubness: nicdm``);
  both directions are reported (see :mod:`snagkg.alignment.metrics` for the keys).
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from snagkg.config.schema import RunConfig
from snagkg.core.registry import TASKS
from snagkg.data.datasets.alignment_pair import (
    DEFAULT_TRAIN_RATIO,
    AlignmentPair,
    load_alignment_dataset,
    split_links,
)
from snagkg.features.alignment import build_tables, resolve_modalities
from snagkg.runtime.devices import select_device
from snagkg.runtime.errors import SnagError
from snagkg.runtime.hardware import fused_optimizer
from snagkg.tasks.alignment.gat import union_edges
from snagkg.tasks.alignment.model import AlignmentModel
from snagkg.training.callbacks import ScheduleByPosition, TrainingCallback, WarmupCosine
from snagkg.training.graph_task import GraphTask

__all__ = ["AlignmentTask", "load_alignment_dataset"]


class IterativeLearning(TrainingCallback):
    """Iterative learning at the start of every epoch (see :meth:`AlignmentTask.iterate`)."""

    def __init__(self, task: "AlignmentTask"):
        self.task = task

    def on_epoch_start(self, trainer, epoch, generator):
        """Propose and add links before the epoch's batches are drawn."""
        self.task.iterate(epoch)


class AlignmentTask(GraphTask):
    """Alignment of the two KGs of an :class:`AlignmentPair` with the config ``cfg`` (selection:
    valid ``hits@1``, left to right)."""

    name = "alignment"
    selection_metric = "hits@1"
    summary_metrics = ("hits@1", "hits@10", "mrr")
    default_preset = "dbp15k"  # the alignment defaults (SPEC section 5)

    def __init__(self, pair: AlignmentPair, cfg: RunConfig, device: Optional[torch.device] = None):
        self.pair = self.graph = pair
        self.cfg = cfg
        self.device = device or select_device(cfg.device)
        al = cfg.alignment
        ratio = al.train_ratio or DEFAULT_TRAIN_RATIO[pair.layout]
        if len(pair.links) < 3:
            raise SnagError("an alignment dataset needs at least 3 gold links (train, valid, test)")
        self.train_links, self.valid_links, self.test_links = split_links(pair.links, ratio, al.valid_ratio, cfg.seed)
        if len(self.valid_links) == 0:
            raise SnagError("alignment.valid_ratio is 0: a validation slice of the training links is needed for "
                            "model selection")
        if len(self.test_links) == 0:  # pragma: no cover - split_links keeps at least one
            raise SnagError("no test links left after the split")
        self.modalities = resolve_modalities(pair, cfg.modalities)
        self.tables = build_tables(pair, self.modalities, al.top_relations, al.top_attributes, al.char_vocab,
                                   seed=cfg.seed)
        edges = union_edges(pair.triples, pair.num_entities)
        torch.manual_seed(cfg.seed)  # parameter initialisation
        self.model = AlignmentModel(pair.num_entities, edges, self.tables, self.modalities, al, cfg.encoder,
                                    cfg.noise, cfg.precision).to(self.device)
        self.seed_links = torch.from_numpy(self.train_links).long()
        known = np.concatenate([self.train_links, self.valid_links]).reshape(-1)
        self._known = np.zeros(pair.num_entities, dtype=bool)
        self._known[known] = True

    @classmethod
    def build(cls, cfg: RunConfig) -> "AlignmentTask":
        """Read ``cfg.dataset`` (DBP15K or OpenEA folder) and build the alignment task."""
        return cls(load_alignment_dataset(cfg.dataset, seed=cfg.seed), cfg)

    # -- training ------------------------------------------------------------
    def make_optimizer(self):
        """AdamW with the warm-up + cosine schedule over ``train.epochs``."""
        t = self.cfg.train
        opt = fused_optimizer(torch.optim.AdamW, self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        return opt, WarmupCosine(opt, t.epochs, self.cfg.alignment.warmup)

    def callbacks(self, scheduler: WarmupCosine) -> List[TrainingCallback]:
        """The learning-rate schedule, then iterative learning."""
        return [ScheduleByPosition(scheduler), IterativeLearning(self)]

    def training_links(self) -> torch.Tensor:
        """The seed training links plus the links added by iterative learning ``[L, 2]``."""
        return torch.cat([self.seed_links, self.model.added_links.cpu()])

    def batches(self, generator: torch.Generator) -> List[torch.Tensor]:
        """The training links, shuffled, in batches of ``train.batch_size``."""
        links = self.training_links()
        perm = torch.randperm(len(links), generator=generator)
        return list(links[perm].split(self.cfg.train.batch_size))

    def step(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The loss of one batch of links ``[B, 2]`` (sampled GAT neighbourhoods drawn from ``generator``)."""
        return self.model.link_loss(batch.to(self.device), generator)

    # -- iterative learning ------------------------------------------------------
    def iterative_start(self) -> int:
        """The first epoch after which proposals are made (``alignment.iterative_start``, or half the run)."""
        al = self.cfg.alignment
        return al.iterative_start or max(1, self.cfg.train.epochs // 2)

    def unaligned(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Entities of each side in no seed link (train or valid) and in no added link."""
        free = ~self._known.copy()
        added = self.model.added_links.cpu().numpy().reshape(-1)
        free[added] = False
        side = self.pair.side()
        left = np.flatnonzero(free & (side == 0))
        right = np.flatnonzero(free & (side == 1))
        return torch.from_numpy(left), torch.from_numpy(right)

    @torch.no_grad()
    def propose(self) -> torch.Tensor:
        """Mutual nearest neighbours ``[P, 2]`` among the unaligned entities (clean vectors)."""
        left, right = self.unaligned()
        if len(left) == 0 or len(right) == 0:
            return torch.zeros(0, 2, dtype=torch.long)
        vecs = self.model.entity_vectors(torch.cat([left, right]).to(self.device))
        i, j = self.model.interaction.mutual_nearest(vecs[:len(left)], vecs[len(left):])
        return torch.stack([left[i], right[j]], dim=1)

    def iterate(self, epoch: int) -> None:
        """Iterative learning at the start of ``epoch`` (uses the model after ``epoch - 1``)."""
        al = self.cfg.alignment
        done = epoch - 1
        start = self.iterative_start()
        if not al.iterative or done < start or done == 0:
            return
        since = done - start
        model = self.model
        if since % al.propose_every == 0:
            new = self.propose().to(model.pending_links.device)
            pending = model.pending_links
            if len(pending):
                n = self.pair.num_entities
                keep = torch.isin(pending[:, 0] * n + pending[:, 1], new[:, 0] * n + new[:, 1])
                model.pending_links = pending[keep]
            else:
                model.pending_links = new
        if since > 0 and since % al.add_every == 0 and len(model.pending_links):
            model.added_links = torch.cat([model.added_links, model.pending_links])
            model.pending_links = model.pending_links[:0]

    # -- evaluation ----------------------------------------------------------------
    def split_links(self, split: str) -> np.ndarray:
        """The gold links ``[L, 2]`` of ``split`` (train, valid or test)."""
        if split == "valid":
            return self.valid_links
        if split == "test":
            return self.test_links
        if split == "train":
            return self.train_links
        raise SnagError(f"split must be 'valid' or 'test', got {split!r}")

    def pair_vectors(self, links: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        """Clean, normalised vectors of the links' left and right entities."""
        idx = torch.from_numpy(np.concatenate([links[:, 0], links[:, 1]])).long().to(self.device)
        vecs = self.model.entity_vectors(idx)
        return vecs[:len(links)], vecs[len(links):]

    def evaluate(self, split: str, ties: Optional[str] = None, limit: int = 0,
                 progress: bool = False, candidates: int = 0) -> Dict[str, Any]:
        """CSLS ranking metrics of ``split``'s links, both directions (the first ``limit`` queries), through
        the model's :class:`CSLSInteraction`; every right entity of the split is a candidate."""
        if candidates:
            raise SnagError(f"--candidates applies to completion only, not {self.name}")
        links = self.split_links(split)
        x, y = self.pair_vectors(links)
        return self.model.interaction.metrics(x, y, ties=ties or self.cfg.ties, limit=limit)

    def query_ranks(self, split: str, ties: Optional[str] = None) -> np.ndarray:
        """The CSLS rank of every link of ``split``, left to right: the queries the headline metrics
        average (the right-to-left ranks make the ``rl_`` metrics only)."""
        x, y = self.pair_vectors(self.split_links(split))
        return self.model.interaction.ranks(x, y, ties=ties or self.cfg.ties, right_to_left=False).cpu().numpy()

    def validate(self) -> Dict[str, Any]:
        """Validation metrics, rounded, with the number of links added so far."""
        m = self.evaluate("valid")
        out: Dict[str, Any] = {k: round(v, 6) if isinstance(v, float) else v for k, v in m.items()}
        out["added_links"] = int(len(self.model.added_links))
        return out

    def scope(self, split: str = "test", all_unaligned: bool = False
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(left ids, right ids, left vectors, right vectors)``: the split's link entities, or with
        ``all_unaligned`` every entity in no training or validation link (ids in order)."""
        if all_unaligned:
            free = ~self._known
            side = self.pair.side()
            left = torch.from_numpy(np.flatnonzero(free & (side == 0)))
            right = torch.from_numpy(np.flatnonzero(free & (side == 1)))
            vecs = self.model.entity_vectors(torch.cat([left, right]).to(self.device))
            return left, right, vecs[:len(left)], vecs[len(left):]
        links = self.split_links(split)
        x, y = self.pair_vectors(links)
        return torch.from_numpy(links[:, 0]).long(), torch.from_numpy(links[:, 1]).long(), x, y

    @torch.no_grad()
    def align(self, split: str = "test", all_unaligned: bool = False, topk: int = 10,
              index: Optional[str] = None, hubness: Optional[str] = None) -> Dict[str, Any]:
        """One-to-one alignment between the split's entities (or all unaligned entities), ``topk``
        candidates per entity and greedy round, through ``index`` and by the ``hubness`` score (the
        run's ``alignment.index`` and ``alignment.hubness`` unless given).

        Returns ``pairs`` as ``(kg1 index, kg2 index, score)`` rows and, where
        gold links are known for the aligned entities, how many are correct.
        """
        left, right, x, y = self.scope(split, all_unaligned)
        i, j, s = self.model.interaction.one_to_one(x, y, topk=topk, index=index, hubness=hubness)
        a, b = left[i], right[j]
        gold = {int(p): int(q) for p, q in self.split_links(split).tolist()}
        judged = [(int(p), int(q)) for p, q in zip(a.tolist(), b.tolist()) if int(p) in gold]
        correct = sum(1 for p, q in judged if gold[p] == q)
        return {"left": a, "right": b, "scores": s, "judged": len(judged), "correct": correct}

    @torch.no_grad()
    def candidates(self, topk: int, split: str = "test", all_unaligned: bool = False,
                   index: Optional[str] = None, hubness: Optional[str] = None) -> Dict[str, Any]:
        """The ``topk`` best CSLS (or ``hubness``) candidates (right entities of the scope) of every left
        entity of the scope (see :meth:`align`): ``left``, ``right`` ``[n, topk]`` ids (``-1``: none found by an
        approximate index) and canonical ``scores``, best first, equal scores by the earlier candidate;
        with ``hits@1`` and ``hits@topk`` of the gold partners known for the left entities."""
        left, right, x, y = self.scope(split, all_unaligned)
        scores, cols = self.model.interaction.candidates(x, y, topk, index=index, hubness=hubness)
        ids = torch.where(cols >= 0, right[cols.clamp(min=0)], torch.full_like(cols, -1))
        gold = {int(p): int(q) for p, q in self.split_links(split).tolist()}
        rows = [(r, gold[int(p)]) for r, p in enumerate(left.tolist()) if int(p) in gold]
        top1 = sum(1 for r, q in rows if int(ids[r, 0]) == q)
        anywhere = sum(1 for r, q in rows if q in set(ids[r].tolist()))
        return {"left": left, "right": ids, "scores": scores, "judged": len(rows), "hits@1": top1,
                "hits@topk": anywhere}

    # -- using a trained model -------------------------------------------------------

    @torch.no_grad()
    def entity_vectors(self) -> torch.Tensor:
        """Every entity's clean, L2-normalised vector (what CSLS compares)."""
        return self.model.entity_vectors()

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """An alignment run predicts no triples: a one-line error that points to ``snagkg align``."""
        raise SnagError("`snagkg predict` needs a completion run; this is an alignment run "
                        "(use `snagkg align RUN --export pairs.tsv`)")

    def score_triples(self, *args: Any, **kwargs: Any) -> Any:
        """An alignment run scores no triples: the error of :meth:`predict`."""
        return self.predict()

    # -- bookkeeping -----------------------------------------------------------------

    def fingerprint(self) -> Dict[str, Any]:
        """Dataset size, the links' digest and the model's shape (checked on load)."""
        h = hashlib.sha1()
        for arr in (self.train_links, self.valid_links, self.test_links):
            h.update(np.ascontiguousarray(arr).tobytes())
        return {
            "task": "alignment",
            "entities": self.pair.num_entities,
            "links_sha1": h.hexdigest()[:16],
            "modalities": ",".join(f"{m}:{self.model.entities.dim(m)}" for m in self.modalities),
            "hidden": self.cfg.encoder.hidden,
            "structure_dim": self.cfg.alignment.structure_dim,
        }

    def dataset_info(self) -> Dict[str, Any]:
        """The pair's summary with the split sizes, modalities used and their tables."""
        info = self.pair.summary()
        info["split"] = {"train": int(len(self.train_links)), "valid": int(len(self.valid_links)),
                         "test": int(len(self.test_links))}
        info["used_modalities"] = list(self.modalities)
        info["modality_tables"] = {m: {"dim": t.dim, "missing": round(t.missing_fraction, 4)}
                                   for m, t in self.tables.items()}
        info["notes"] = list(self.pair.notes)
        return info


TASKS.register(AlignmentTask.name)(AlignmentTask)

