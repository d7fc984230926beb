"""Bernoulli negative sampling with filtering, vectorised (no Python loop over triples)."""
from __future__ import annotations

from typing import Tuple

import torch

from snagkg.tasks.completion.config import NEGATIVE_SCHEMES


class TripleIndex:
    """Membership test for a set of ``(h, r, t)`` triples via sorted int64 keys."""

    def __init__(self, triples: torch.Tensor, num_entities: int, num_relations: int):
        self.n_ent, self.n_rel = num_entities, num_relations
        self.keys = torch.unique(self.encode(triples))  # sorted

    def encode(self, triples: torch.Tensor) -> torch.Tensor:
        """One int64 key per triple ``[B, 3]`` (``(h * R + r) * N + t``)."""
        t = triples.long()
        return (t[..., 0] * self.n_rel + t[..., 1]) * self.n_ent + t[..., 2]

    def contains(self, triples: torch.Tensor) -> torch.Tensor:
        """``[B]`` booleans: which triples are in the index."""
        return self.contains_keys(self.encode(triples))

    def contains_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Membership of already encoded keys ``(h * R + r) * N + t``."""
        if self.keys.numel() == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, keys).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == keys


def bernoulli_head_probability(triples: torch.Tensor, num_relations: int) -> torch.Tensor:
    """Per relation, P(corrupt head) = tph / (tph + hpt) (Wang et al., 2014)."""
    h, r, t = triples[:, 0].long(), triples[:, 1].long(), triples[:, 2].long()
    big = int(max(int(h.max()), int(t.max()))) + 1

    def per_relation_ratio(anchor: torch.Tensor) -> torch.Tensor:
        # number of distinct (r, anchor) pairs and number of triples per relation
        pairs = torch.unique(r * big + anchor)
        distinct = torch.bincount(pairs // big, minlength=num_relations).float()
        total = torch.bincount(r, minlength=num_relations).float()
        return total / distinct.clamp(min=1)

    tph = per_relation_ratio(h)   # tails per head
    hpt = per_relation_ratio(t)   # heads per tail
    p = tph / (tph + hpt).clamp(min=1e-12)
    p[(tph + hpt) == 0] = 0.5
    return p


class BernoulliNegativeSampler:
    """``num_negatives`` corruptions per positive; each one replaces the head with
    probability ``tph / (tph + hpt)`` of its relation, else the tail.

    With ``filtered``, negatives that are known training triples are flagged
    in the returned mask (they are left out of the loss), so every used
    negative is a true negative with respect to train.
    """

    def __init__(self, train: torch.Tensor, num_entities: int, num_relations: int,
                 num_negatives: int = 32, filtered: bool = True):
        self.num_entities = num_entities
        self.num_negatives = num_negatives
        self.head_prob = bernoulli_head_probability(train, num_relations)
        self.index = TripleIndex(train, num_entities, num_relations) if filtered else None

    def _draw(self, batch: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        b, k = batch.shape[0], self.num_negatives
        corrupt_head = torch.rand(b, k, generator=generator) < self.head_prob[batch[:, 1]].unsqueeze(1)
        random_ent = torch.randint(0, self.num_entities, (b, k), generator=generator)
        return corrupt_head, random_ent

    def sample(self, batch: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return negatives ``[B, K, 3]`` and a mask ``[B, K]`` (True = usable negative)."""
        b, k = batch.shape[0], self.num_negatives
        neg = batch.unsqueeze(1).repeat(1, k, 1)
        corrupt_head, random_ent = self._draw(batch, generator)
        neg[..., 0] = torch.where(corrupt_head, random_ent, neg[..., 0])
        neg[..., 2] = torch.where(corrupt_head, neg[..., 2], random_ent)
        if self.index is None:
            mask = torch.ones(b, k, dtype=torch.bool)
        else:
            mask = ~self.index.contains(neg)
        return neg, mask

    def sample_candidates(self, batch: torch.Tensor,
                          generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`sample` as the training step uses it, without the ``[B, K, 3]`` triples.

        Same random draws; returns ``candidate [B, K]`` (the entity that differs from the
        positive: the new head where ``head_side``, else the tail), ``head_side [B, K]``
        (``neg[..., 0] != h``) and the mask.
        """
        corrupt_head, random_ent = self._draw(batch, generator)
        h, r, t = batch[:, 0:1], batch[:, 1:2], batch[:, 2:3]
        heads = torch.where(corrupt_head, random_ent, h)
        tails = torch.where(corrupt_head, t, random_ent)
        if self.index is None:
            mask = torch.ones(corrupt_head.shape, dtype=torch.bool)
        else:
            index = self.index
            mask = ~index.contains_keys((heads * index.n_rel + r) * index.n_ent + tails)
        head_side = heads != h
        return torch.where(head_side, heads, tails), head_side, mask


class SharedNegativeSampler(BernoulliNegativeSampler):
    """PyTorch-BigGraph's shared negatives: the positives of a batch are cut into chunks of ``chunk``
    (in batch order, the last one shorter) and every positive of a chunk is corrupted with the SAME
    ``num_negatives`` uniformly drawn entities.

    Each ``(positive, negative)`` pair still replaces the head or the tail by the relation's Bernoulli
    choice, and the filtered mask is computed per pair exactly as in :class:`BernoulliNegativeSampler`,
    so :meth:`sample` and :meth:`sample_candidates` return the same shapes; only the entity draw is
    shared. A batch of ``B`` positives then touches at most ``2B + ceil(B / chunk) * K`` distinct
    entities instead of ``2B + B * K``, which keeps the batch fusion path small.
    """

    def __init__(self, train: torch.Tensor, num_entities: int, num_relations: int,
                 num_negatives: int = 32, filtered: bool = True, chunk: int = 64):
        super().__init__(train, num_entities, num_relations, num_negatives, filtered)
        if chunk < 1:
            raise ValueError(f"shared negatives need a chunk of at least 1 positive, got {chunk}")
        self.chunk = int(chunk)

    def _draw(self, batch: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        b, k = batch.shape[0], self.num_negatives
        corrupt_head = torch.rand(b, k, generator=generator) < self.head_prob[batch[:, 1]].unsqueeze(1)
        chunks = -(-b // self.chunk)
        shared = torch.randint(0, self.num_entities, (chunks, k), generator=generator)
        # row i takes the draw of chunk i // chunk (a gather, no copy per chunk in Python)
        random_ent = shared[torch.arange(b) // self.chunk]
        return corrupt_head, random_ent


def make_sampler(train: torch.Tensor, num_entities: int, num_relations: int, num_negatives: int,
                 filtered: bool, scheme: str = "per_triple", chunk: int = 64) -> BernoulliNegativeSampler:
    """The training sampler of ``completion.negatives_scheme``: ``per_triple`` (K entities drawn for each
    positive: :class:`BernoulliNegativeSampler`) or ``shared`` (K per chunk of ``chunk`` positives:
    :class:`SharedNegativeSampler`)."""
    if scheme == "per_triple":
        return BernoulliNegativeSampler(train, num_entities, num_relations, num_negatives, filtered)
    if scheme == "shared":
        return SharedNegativeSampler(train, num_entities, num_relations, num_negatives, filtered, chunk)
    raise ValueError(f"unknown negatives scheme {scheme!r} (expected one of {', '.join(NEGATIVE_SCHEMES)})")
