"""Sparse entity-table updates: only the rows a batch touches are read, changed and stored.

On a big graph a training step touches a few thousand of the entity table's rows, but a dense
gradient and Adam read and write every row every step: the step's cost follows the graph. With
``completion.entity_updates: sparse`` the structure rows are gathered with a sparse gradient
(``torch.nn.functional.embedding(..., sparse=True)``) and the entity table is updated by
``torch.optim.SparseAdam`` (lazy Adam: the moments of a row change only when the row is in a
batch), while every other parameter keeps the dense fused Adam. ``auto`` chooses sparse updates
from :data:`SPARSE_FROM` entities up (measured: BENCHMARKS.md, "Large graphs").
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List

import torch

from snagkg.runtime.errors import SnagError

#: ``entity_updates: auto`` uses sparse updates for graphs of at least this many entities
SPARSE_FROM = 200_000


def resolve_entity_updates(choice: str, num_entities: int, weight_decay: float, fusion_scope: str) -> bool:
    """Whether the entity table gets sparse updates (``choice``: ``auto``, ``dense`` or ``sparse``)."""
    if choice == "sparse":
        if weight_decay > 0:
            raise SnagError("--entity-updates sparse does not apply weight decay (torch.optim.SparseAdam); "
                            "use --weight-decay 0 or --entity-updates dense")
        return True
    if choice == "dense":
        return False
    return num_entities >= SPARSE_FROM and weight_decay == 0 and fusion_scope != "table"


class SplitOptimizer:
    """Several optimisers stepped as one (the trainer's optimiser): ``SparseAdam`` for the
    sparse-gradient entity table, a dense (fused) Adam for the rest. ``state_dict`` holds each
    one's state under its index."""

    def __init__(self, optimizers: List[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> List[Dict[str, Any]]:
        """Every optimiser's parameter groups, in order."""
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every gradient."""
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        """One step of every optimiser."""
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> Dict[str, Any]:
        """``{"split": [state_dict, ...]}``."""
        return {"split": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Load what :meth:`state_dict` wrote (a checkpoint of a dense-update run is refused)."""
        parts = state.get("split") if isinstance(state, dict) else None
        if not isinstance(parts, list) or len(parts) != len(self.optimizers):
            raise ValueError("the checkpoint's optimiser state is not a sparse-update run's")
        for o, s in zip(self.optimizers, parts):
            o.load_state_dict(s)


def split_optimizer(groups: List[Dict[str, Any]], table: torch.nn.Parameter, dense_factory) -> SplitOptimizer:
    """``SparseAdam`` over ``table`` (its group's learning rate) and ``dense_factory(other groups)``."""
    table_groups = [g for g in groups if any(p is table for p in g["params"])]
    lr = table_groups[0]["lr"] if table_groups else groups[0]["lr"]
    rest = []
    for g in groups:
        params = [p for p in g["params"] if p is not table]
        if params:
            rest.append({**g, "params": params})
    return SplitOptimizer([torch.optim.SparseAdam([table], lr=lr), dense_factory(rest)])


@torch.no_grad()
def clip_gradients(parameters: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` that also takes sparse gradients (coalesced first, so each
    row counts once); returns the total norm before clipping. Without a sparse gradient it is
    ``clip_grad_norm_`` itself."""
    params = [p for p in parameters if p.grad is not None]
    if not any(p.grad.is_sparse for p in params):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    parts = [p.grad._values() if p.grad.is_sparse else p.grad for p in params]
    total = torch.stack([g.norm() for g in parts]).norm()
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in parts:
        g.mul_(scale)
    return total
