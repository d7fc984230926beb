"""Tasks over one dataset graph: what every such task takes from its graph."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from snagkg.data.datasets.graph import Graph
from snagkg.data.datasets.named import check_id_tables, write_id_tables
from snagkg.training.trainer import Task


class GraphTask(Task):
    """A :class:`Task` whose data is one :class:`~snagkg.data.datasets.graph.Graph`, ``self.graph`` (a
    completion knowledge graph, an alignment pair): entity names, degrees, the loader's notes and the
    id tables every later command reloads come from it."""

    graph: Graph

    def entity_names(self) -> List[str]:
        """The graph's entity names (an alignment pair: both KGs' URIs), by id."""
        return list(self.graph.entities)

    def entity_degrees(self) -> np.ndarray:
        """Training triples per entity (as head or tail): ``Graph.degrees``."""
        return self.graph.degrees()

    def notes(self) -> List[str]:
        """The loader's notes (dropped triples, split shares, ...)."""
        return list(self.graph.notes)

    def save_ids(self, folder: Path) -> None:
        """``entities.tsv`` and ``relations.tsv``: the ids every later command reloads."""
        write_id_tables(self.graph, folder)

    def check_ids(self, folder: Path) -> None:
        """The reloaded dataset must give the names the run was trained with, id for id."""
        check_id_tables(self.graph, folder)
