"""Sampled GAT neighbourhoods for mini-batch alignment training (``alignment.batching: sampled``).

GraphSAGE / PyG ``NeighborLoader`` style: from the distinct entities of a batch (the *seeds*),
hop ``h`` draws, without replacement, at most ``fanout[h - 1]`` neighbours of each entity first
reached at hop ``h - 1`` (all of them when it has no more). The GAT then runs over the sampled
subgraph only: layer ``i`` of ``L`` updates the entities within ``L - 1 - i`` hops of the seeds,
each from its sampled neighbours and itself (the self-loop is always kept), so the last layer
gives the seeds' structure vectors. With every fan-out at least the largest degree the sampled
neighbourhood is the whole ``L``-hop neighbourhood and the seeds' vectors are the whole-graph
GAT's.

Everything is vectorised over a CSR adjacency (no Python loop over entities) and drawn from the
trainer's ``torch.Generator`` on the CPU, so the same seed gives the same neighbourhoods and a
resumed run draws what the uninterrupted one drew.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from snagkg.tasks.alignment.gat import EdgeIndex


@dataclass
class SampledBlock:
    """A sampled neighbourhood: ``nodes`` (global ids, the seeds first, then each hop's new entities),
    ``counts`` (how many of ``nodes`` lie within 0, 1, ... hops), ``layers`` (one :class:`EdgeIndex`
    in local ids per GAT layer, input side first) and ``neighbours`` (each hop's sampled edges
    ``[2, E_h]``: local ``dst`` (the entity sampled from), local ``src`` (its sampled neighbour))."""

    nodes: torch.Tensor
    counts: List[int]
    layers: List[EdgeIndex]
    neighbours: List[torch.Tensor]

    @property
    def num_seeds(self) -> int:
        """How many of the first ``nodes`` are the seeds (whose vectors the GAT gives)."""
        return self.counts[0]

    def to(self, device) -> "SampledBlock":
        """The block with every tensor on ``device`` (in place); returns ``self``."""
        self.nodes = self.nodes.to(device)
        for edges in self.layers:
            edges.to(device)
        return self


class NeighbourSampler:
    """Fixed-fan-out neighbour sampling over the union graph ``edges`` (an :class:`EdgeIndex` whose
    edges run both ways; its self-loops are dropped here and added back for every updated entity).

    ``fanout``: neighbours drawn per entity at each hop, hop 1 (the seeds' neighbours) first; one
    value per GAT layer.
    """

    def __init__(self, edges: EdgeIndex, fanout: Sequence[int]):
        src, dst = edges.src.cpu(), edges.dst.cpu()
        keep = src != dst
        src, dst = src[keep], dst[keep]  # still sorted by (dst, src)
        self.n = int(edges.n)
        self.crow = torch.zeros(self.n + 1, dtype=torch.long)
        self.crow[1:] = torch.cumsum(torch.bincount(dst, minlength=self.n), 0)
        self.col = src.contiguous()
        self.fanout = [int(f) for f in fanout]

    @property
    def max_degree(self) -> int:
        """The largest number of neighbours of one entity (self excluded)."""
        return int((self.crow[1:] - self.crow[:-1]).max()) if self.n else 0

    def neighbours(self, frontier: torch.Tensor, fanout: int,
                   generator: Optional[torch.Generator] = None) -> "tuple[torch.Tensor, torch.Tensor]":
        """At most ``fanout`` distinct neighbours of each entity of ``frontier`` (global ids), uniformly
        without replacement: ``(position in frontier, neighbour id)`` of every sampled edge, by position.

        One random key is drawn per incident edge and each entity keeps its ``fanout`` smallest keys
        (all of its edges when it has no more), as one stable sort over the frontier's edges.
        """
        start = self.crow.index_select(0, frontier)
        deg = self.crow.index_select(0, frontier + 1) - start
        total = int(deg.sum())
        if total == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty
        seg = torch.repeat_interleave(torch.arange(len(frontier)), deg)
        first = torch.cumsum(deg, 0) - deg                      # each segment's first edge, in the flat list
        pos = start.index_select(0, seg) + torch.arange(total) - first.index_select(0, seg)
        if bool((deg > fanout).any()):
            keys = torch.rand(total, generator=generator)
            order = torch.argsort(keys)
            order = order.index_select(0, torch.sort(seg.index_select(0, order), stable=True).indices)
            rank = torch.arange(total) - first.index_select(0, seg)  # seg.index_select(order) == seg: sorted
            pos = pos.index_select(0, order)
            keep = rank < fanout
            seg, pos = seg[keep], pos[keep]
        return seg, self.col.index_select(0, pos)

    def sample(self, seeds: torch.Tensor, generator: Optional[torch.Generator] = None) -> SampledBlock:
        """The sampled neighbourhood of the distinct entities ``seeds`` (global ids, kept in their order)."""
        seeds = seeds.detach().cpu().long()
        nodes = [seeds]
        counts = [len(seeds)]
        frontier = seeds
        hops = []   # per hop: (global dst, global src) of the sampled edges
        for fanout in self.fanout:
            at, nbr = self.neighbours(frontier, fanout, generator)
            hops.append((frontier.index_select(0, at), nbr))
            seen = torch.cat(nodes)
            new = torch.unique(nbr[~torch.isin(nbr, seen)])   # sorted: the same order for the same draw
            nodes.append(new)
            counts.append(counts[-1] + len(new))
            frontier = new
        all_nodes = torch.cat(nodes)
        ordered, perm = torch.sort(all_nodes)

        def local(ids: torch.Tensor) -> torch.Tensor:
            return perm.index_select(0, torch.searchsorted(ordered, ids))

        neighbours = [torch.stack([local(d), local(s)]) for d, s in hops]
        n_sub = counts[-1]
        layers = []
        depth = len(self.fanout)
        for i in range(depth):
            updated = counts[depth - 1 - i]     # layer i updates the entities within depth - 1 - i hops
            loops = torch.arange(updated)
            dst = torch.cat([loops] + [e[0] for e in neighbours[:depth - i]])
            src = torch.cat([loops] + [e[1] for e in neighbours[:depth - i]])
            layers.append(EdgeIndex(src, dst, n_sub))
        return SampledBlock(all_nodes, counts, layers, neighbours)
