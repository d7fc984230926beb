"""Readers for entity-alignment datasets: two knowledge graphs and gold links.

Two layouts are read, both tab-separated UTF-8:

* **DBP15K** (JAPE / GCN-Align): ``ent_ids_1``, ``ent_ids_2`` (``id<TAB>URI``,
  one id space shared by both graphs), ``triples_1``, ``triples_2``
  (``head<TAB>relation<TAB>tail`` ids), ``ill_ent_ids`` (``id_kg1<TAB>id_kg2``).
* **OpenEA**: ``rel_triples_1``, ``rel_triples_2`` (``head<TAB>relation<TAB>tail``
  URIs), optional ``attr_triples_1``, ``attr_triples_2``
  (``entity<TAB>attribute<TAB>value``) and ``ent_links`` (``uri_kg1<TAB>uri_kg2``).
  The entities of a graph are the URIs in its triple files.

Either layout may carry frozen modality features in ``features/<modality>.npy``
(with ``<modality>.missing.txt``), one row per entity of the *unified id
space*: the DBP15K ids, or for OpenEA the KG1 URIs in sorted order followed
by the KG2 URIs in sorted order.

Internally the entities of KG1 come first (``0 .. num_left - 1``), then those
of KG2; nothing downstream depends on that order or on id values beyond
telling which graph an entity belongs to. Reading is strict: every problem is
a :class:`~snagkg.errors.SnagError` naming the file and the line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

from snagkg.data.datasets.graph import Graph
from snagkg.data.feature_dir import load_feature_dir
from snagkg.data.lines import first_line, parse_int, read_lines
from snagkg.data.tables import FeatureTable
from snagkg.runtime.errors import SnagError

DBP15K_FILES = ("ent_ids_1", "ent_ids_2", "triples_1", "triples_2", "ill_ent_ids")
OPENEA_FILES = ("rel_triples_1", "rel_triples_2", "ent_links")
#: share of the gold links used for training when ``alignment.train_ratio`` is 0
DEFAULT_TRAIN_RATIO = {"dbp15k": 0.3, "openea": 0.2}
RESERVED = ("structure", "relation", "attribute", "char", "name")
#: built modalities that a ``features/<name>.npy`` replaces (``snagkg features attributes`` / ``names``)
REPLACEABLE = ("attribute", "name")


@dataclass
class AlignmentPair(Graph):
    """An alignment dataset: two graphs in one internal index space plus the gold links."""

    name: str
    layout: str
    entities: List[str]          # URI per internal index (KG1 first, then KG2)
    source_ids: np.ndarray       # dataset id per internal index (the unified id space)
    num_left: int                # number of KG1 entities
    triples: np.ndarray          # [T, 3] (head, relation, tail), internal indices
    relations: List[str]         # relation names per internal relation index
    attributes: np.ndarray       # [A, 2] (entity, attribute index); may be empty
    attribute_names: List[str]
    links: np.ndarray            # [L, 2] (KG1 entity, KG2 entity), file order
    features: Dict[str, FeatureTable] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def feature_triples(self) -> np.ndarray:
        """The triples of both graphs (internal indices)."""
        return self.triples

    @property
    def num_right(self) -> int:
        """Number of KG2 entities."""
        return self.num_entities - self.num_left

    def side(self) -> np.ndarray:
        """0 for KG1 entities, 1 for KG2 entities."""
        out = np.zeros(self.num_entities, dtype=np.int64)
        out[self.num_left:] = 1
        return out

    def summary(self) -> Dict[str, object]:
        """Name, layout, per-graph entity and triple counts, links and the feature files' widths."""
        side = self.side()
        return {
            "name": self.name,
            "layout": self.layout,
            "entities": [int(self.num_left), int(self.num_right)],
            "relations": len(self.relations),
            "triples": [int((side[self.triples[:, 0]] == 0).sum()), int((side[self.triples[:, 0]] == 1).sum())],
            "attribute_triples": int(len(self.attributes)),
            "links": int(len(self.links)),
            "feature_files": self.feature_summary(),
        }


def _columns(text: str, n: int, path: Path, number: int, what: str) -> List[str]:
    parts = text.split("\t") if "\t" in text else text.split()
    if len(parts) != n:
        raise SnagError(f"expected {n} tab-separated columns ({what}), found {len(parts)}", path, number)
    parts = [p.strip() for p in parts]
    for p in parts:
        if not p:
            raise SnagError(f"empty column ({what})", path, number)
    return parts


def _require(folder: Path, names) -> None:
    for name in names:
        if not (folder / name).is_file():
            raise SnagError("file missing from the alignment dataset", folder / name)


# -- DBP15K ------------------------------------------------------------------
def _read_ent_ids(path: Path, seen: Dict[int, Tuple[str, int]]) -> Tuple[List[int], List[str]]:
    ids, uris = [], []
    local_uris: Dict[str, int] = {}
    for number, text in read_lines(path):
        parts = text.split("\t", 1) if "\t" in text else text.split(None, 1)
        if len(parts) != 2 or not parts[1].strip():
            raise SnagError("expected 2 tab-separated columns (id, URI)", path, number)
        ident = parse_int(parts[0].strip(), path, number, "entity id")
        uri = parts[1].strip()
        if ident in seen:
            where, line = seen[ident]
            raise SnagError(f"duplicate entity id {ident} (first in {where} line {line})", path, number)
        if uri in local_uris:
            raise SnagError(f"duplicate URI {uri[:60]!r} (first on line {local_uris[uri]})", path, number)
        seen[ident] = (path.name, number)
        local_uris[uri] = number
        ids.append(ident)
        uris.append(uri)
    if not ids:
        raise SnagError("no entities", path)
    return ids, uris


def _read_id_triples(path: Path, index: Dict[int, int], side: int, num_left: int,
                     rel_index: Dict[Tuple[int, int], int], relations: List[str]) -> np.ndarray:
    lines = read_lines(path)
    out = np.empty((len(lines), 3), dtype=np.int64)
    for i, (number, text) in enumerate(lines):
        h, r, t = _columns(text, 3, path, number, "head, relation, tail")
        row = []
        for tok, what in ((h, "head"), (t, "tail")):
            ident = parse_int(tok, path, number, f"{what} entity id")
            internal = index.get(ident)
            if internal is None or (internal >= num_left) != bool(side):
                kg = f"ent_ids_{side + 1}"
                raise SnagError(f"{what} entity id {ident} is not an entity of this graph ({kg})", path, number)
            row.append(internal)
        rel = parse_int(r, path, number, "relation id")
        key = (side, rel)
        if key not in rel_index:
            rel_index[key] = len(relations)
            relations.append(f"kg{side + 1}:{rel}")
        out[i] = (row[0], rel_index[key], row[1])
    if len(out) == 0:
        raise SnagError("no triples", path)
    return out


def _side_names() -> Tuple[List[str], Callable[[int, str], int]]:
    """A list of ``kg<side>:<name>`` names and the function giving the id of ``(side, name)``, adding it
    the first time (ids in order of first use; each KG keeps its own relations and attributes)."""
    names: List[str] = []
    ids: Dict[Tuple[int, str], int] = {}

    def id_of(side: int, name: str) -> int:
        if (side, name) not in ids:
            ids[(side, name)] = len(names)
            names.append(f"kg{side + 1}:{name}")
        return ids[(side, name)]
    return names, id_of


def _check_links(links: List[Tuple[int, int, int]], path: Path) -> np.ndarray:
    first_l: Dict[int, int] = {}
    first_r: Dict[int, int] = {}
    for a, b, number in links:
        first_line(first_l, a, path, number, "KG1 entity already linked on line {first} (links must be one-to-one)")
        first_line(first_r, b, path, number, "KG2 entity already linked on line {first} (links must be one-to-one)")
    if not links:
        raise SnagError("no links", path)
    return np.asarray([(a, b) for a, b, _ in links], dtype=np.int64)


def read_dbp15k(folder: Path, seed: int = 0, features: bool = True) -> AlignmentPair:
    """Read a DBP15K-layout folder (``features``: also its ``features/`` tables)."""
    folder = Path(folder)
    _require(folder, DBP15K_FILES)
    seen: Dict[int, Tuple[str, int]] = {}
    ids1, uris1 = _read_ent_ids(folder / "ent_ids_1", seen)
    ids2, uris2 = _read_ent_ids(folder / "ent_ids_2", seen)
    source_ids = np.asarray(ids1 + ids2, dtype=np.int64)
    index = {ident: i for i, ident in enumerate(source_ids.tolist())}
    num_left = len(ids1)
    rel_index: Dict[Tuple[int, int], int] = {}
    relations: List[str] = []
    t1 = _read_id_triples(folder / "triples_1", index, 0, num_left, rel_index, relations)
    t2 = _read_id_triples(folder / "triples_2", index, 1, num_left, rel_index, relations)
    path = folder / "ill_ent_ids"
    raw_links = []
    for number, text in read_lines(path):
        a, b = _columns(text, 2, path, number, "KG1 entity id, KG2 entity id")
        ia = parse_int(a, path, number, "KG1 entity id")
        ib = parse_int(b, path, number, "KG2 entity id")
        la, lb = index.get(ia), index.get(ib)
        if la is None or la >= num_left:
            raise SnagError(f"first column {ia} is not a KG1 entity (ent_ids_1)", path, number)
        if lb is None or lb < num_left:
            raise SnagError(f"second column {ib} is not a KG2 entity (ent_ids_2)", path, number)
        raw_links.append((la, lb, number))
    links = _check_links(raw_links, path)
    pair = AlignmentPair(
        name=folder.name, layout="dbp15k", entities=uris1 + uris2, source_ids=source_ids, num_left=num_left,
        triples=np.concatenate([t1, t2]), relations=relations, attributes=np.zeros((0, 2), dtype=np.int64),
        attribute_names=[], links=links)
    pair.features = _load_features(folder, source_ids, seed) if features else {}
    return pair


# -- OpenEA ------------------------------------------------------------------
def _read_uri_triples(path: Path) -> List[Tuple[str, str, str, int]]:
    out = []
    for number, text in read_lines(path):
        parts = text.split("\t")
        if len(parts) < 3 and "\t" not in text:
            parts = text.split(None, 2)
        if len(parts) < 3:
            raise SnagError(f"expected 3 tab-separated columns, found {len(parts)}", path, number)
        h, r, t = parts[0].strip(), parts[1].strip(), "\t".join(parts[2:]).strip()
        if not h or not r or not t:
            raise SnagError("empty column", path, number)
        out.append((h, r, t, number))
    return out


def read_openea(folder: Path, seed: int = 0, features: bool = True) -> AlignmentPair:
    """Read an OpenEA-layout folder (``features``: also its ``features/`` tables)."""
    folder = Path(folder)
    _require(folder, OPENEA_FILES)
    rel_rows, attr_rows, ents = [], [], []
    for side in (1, 2):
        rel = _read_uri_triples(folder / f"rel_triples_{side}")
        if not rel:
            raise SnagError("no triples", folder / f"rel_triples_{side}")
        attr_path = folder / f"attr_triples_{side}"
        attr = _read_uri_triples(attr_path) if attr_path.is_file() else []
        names = {h for h, _, _, _ in rel} | {t for _, _, t, _ in rel} | {e for e, _, _, _ in attr}
        rel_rows.append(rel)
        attr_rows.append(attr)
        ents.append(sorted(names))
    entities = ents[0] + ents[1]
    num_left = len(ents[0])
    index = [{u: i for i, u in enumerate(ents[0])}, {u: num_left + i for i, u in enumerate(ents[1])}]
    relations, rel_id = _side_names()
    triples = [(index[side][h], rel_id(side, r), index[side][t]) for side in (0, 1) for h, r, t, _ in rel_rows[side]]
    attribute_names, attr_id = _side_names()
    attributes = [(index[side][e], attr_id(side, a)) for side in (0, 1) for e, a, _, _ in attr_rows[side]]
    path = folder / "ent_links"
    raw_links = []
    for number, text in read_lines(path):
        a, b = _columns(text, 2, path, number, "KG1 URI, KG2 URI")
        la, lb = index[0].get(a), index[1].get(b)
        if la is None:
            raise SnagError(f"{a[:60]!r} is not an entity of KG1 (not in rel_triples_1 / attr_triples_1)", path, number)
        if lb is None:
            raise SnagError(f"{b[:60]!r} is not an entity of KG2 (not in rel_triples_2 / attr_triples_2)", path, number)
        raw_links.append((la, lb, number))
    links = _check_links(raw_links, path)
    source_ids = np.arange(len(entities), dtype=np.int64)
    pair = AlignmentPair(
        name=folder.name, layout="openea", entities=entities, source_ids=source_ids, num_left=num_left,
        triples=np.asarray(triples, dtype=np.int64).reshape(-1, 3), relations=relations,
        attributes=np.asarray(attributes, dtype=np.int64).reshape(-1, 2), attribute_names=attribute_names,
        links=links)
    pair.features = _load_features(folder, source_ids, seed) if features else {}
    return pair


# -- features and entry point -------------------------------------------------
def _load_features(folder: Path, source_ids: np.ndarray, seed: int) -> Dict[str, FeatureTable]:
    feat_dir = folder / "features"
    if not feat_dir.is_dir():
        return {}
    rows = int(source_ids.max()) + 1
    tables = load_feature_dir(feat_dir, rows, seed=seed)
    for name in tables:
        if name in RESERVED and name not in REPLACEABLE:
            raise SnagError(f"'{name}' is a reserved modality name (built from the graph, not loaded)",
                            feat_dir / f"{name}.npy")
    out = {}
    for name, t in tables.items():  # row ``id`` of the file -> internal index
        out[name] = FeatureTable(name=name, values=t.values[source_ids], missing=t.missing[source_ids],
                                 mean=t.mean, std=t.std)
    return out


def detect_layout(folder: Path) -> str:
    """``"dbp15k"`` or ``"openea"`` from the files in ``folder``; a :class:`SnagError` if neither."""
    if (folder / "ent_ids_1").exists() or (folder / "ill_ent_ids").exists():
        return "dbp15k"
    if (folder / "rel_triples_1").exists() or (folder / "ent_links").exists():
        return "openea"
    raise SnagError("not an alignment dataset folder: expected DBP15K files (ent_ids_1, ent_ids_2, triples_1, "
                    "triples_2, ill_ent_ids) or OpenEA files (rel_triples_1, rel_triples_2, ent_links)", folder)


def load_alignment_dataset(spec: str, seed: int = 0, features: bool = True) -> AlignmentPair:
    """Read the DBP15K- or OpenEA-layout folder ``spec`` (``features``: also its feature tables)."""
    folder = Path(spec)
    if not folder.exists():
        raise SnagError("dataset folder not found", folder)
    if not folder.is_dir():
        raise SnagError("dataset path is not a folder", folder)
    layout = detect_layout(folder)
    return (read_dbp15k if layout == "dbp15k" else read_openea)(folder, seed, features=features)


def unified_names(pair: AlignmentPair) -> List[str]:
    """Entity URIs indexed by the unified id space (the rows of ``features/<modality>.npy``);
    ids used by neither graph get an empty name."""
    names = [""] * (int(pair.source_ids.max()) + 1 if len(pair.source_ids) else 0)
    for ident, uri in zip(pair.source_ids.tolist(), pair.entities):
        names[ident] = uri
    return names


def split_links(links: np.ndarray, train_ratio: float, valid_ratio: float, seed: int
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded shuffle of the gold links into (train, valid, test).

    ``valid`` is a slice of the training share (for model selection); ``train``
    is the rest of that share; ``test`` the remaining links.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 15_000]))
    order = rng.permutation(len(links))
    shuffled = links[order]
    n_train = int(round(train_ratio * len(links)))
    n_train = min(max(n_train, 2), len(links) - 1)
    n_valid = int(round(valid_ratio * n_train))
    if valid_ratio > 0:
        n_valid = min(max(n_valid, 1), n_train - 1)
    share = shuffled[:n_train]
    return share[n_valid:], share[:n_valid], shuffled[n_train:]
