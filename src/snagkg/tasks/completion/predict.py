"""Use a trained completion model: ranked tails or heads of a query, and scores of given triples.

::

    task = snagkg.load_run("runs/db15k")
    print(task.predict(head="Barack_Obama", relation="birthPlace", top=5))
    task.score_triples([("Barack_Obama", "birthPlace", "Honolulu")])

Names are found by :class:`snagkg.lookup.NameIndex` (exact, then the URI tail or display name,
then case-insensitively). Every candidate is scored at once: the fused vectors of all entities are
computed once per task (and kept on it), the query is one ``interaction.query`` and the distances to
the whole table one ``interaction.pairwise``; the score is ``margin - distance``. Known true triples
(train, valid and test) are left out of a ranking unless ``include_known``; ``targets`` restricts
the candidates to given entities. :func:`predict_queries` answers many queries (``snagkg predict
--queries FILE``) with the vectors computed once. ``to_frame()`` gives a pandas DataFrame (the
optional extra ``snagkg[pandas]``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from snagkg.data.name_index import NameIndex
from snagkg.runtime.errors import PathLike, SnagError
from snagkg.runtime.text_table import format_table
from snagkg.tasks.completion.rotate import use_compiled

SPLITS = ("train", "valid", "test")
FORMATS = ("table", "json", "tsv")
ROW_COLUMNS = ("rank", "id", "name", "score", "known", "split")


def _frame(rows: List[Dict[str, Any]], columns: Sequence[str]) -> Any:
    """``rows`` as a pandas DataFrame with ``columns`` (also when there are no rows)."""
    try:
        import pandas as pd  # deferred: optional extra [pandas]
    except ImportError:
        raise SnagError("to_frame() needs pandas: pip install 'snagkg[pandas]'") from None
    return pd.DataFrame(rows, columns=list(columns))


@dataclass
class PredictionRow:
    """One ranked candidate: its ``rank`` (1 = best), entity ``id`` and ``name``, ``score``
    (``margin - distance``), whether the triple is ``known`` and in which ``split``."""

    rank: int
    id: int
    name: str
    score: float
    known: bool
    split: Optional[str] = None


@dataclass
class Prediction:
    """Ranked answers to ``(head, relation, ?)`` (``direction="tail"``) or ``(?, relation, tail)``."""

    direction: str
    head: Optional[str]
    relation: str
    tail: Optional[str]
    include_known: bool
    rows: List[PredictionRow] = field(default_factory=list)
    #: the number of candidate entities when ``targets`` restricted them, else ``None`` (all)
    targets: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: the query and the rows."""
        query = {"head": self.head, "relation": self.relation, "tail": self.tail, "predict": self.direction,
                 "include_known": self.include_known}
        if self.targets is not None:
            query["targets"] = self.targets
        return {"query": query, "rows": [asdict(r) for r in self.rows]}

    def to_rows(self) -> List[Dict[str, Any]]:
        """The rows as dicts (rank, id, name, score, known, split)."""
        return [asdict(r) for r in self.rows]

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame (columns rank, id, name, score, known, split)."""
        return _frame(self.to_rows(), ROW_COLUMNS)

    @property
    def query(self) -> str:
        """The query as text: ``(head, relation, ?)`` or ``(?, relation, tail)``."""
        return (f"({self.head}, {self.relation}, ?)" if self.direction == "tail"
                else f"(?, {self.relation}, {self.tail})")

    def __str__(self) -> str:
        return self.query + "\n" + format_table(["rank", self.direction, "score", "known"],
                                 [[r.rank, r.name, f"{r.score:.4f}", r.split or "-"] for r in self.rows])


@dataclass
class Predictions:
    """Answers to several queries (:func:`predict_queries`), in input order."""

    predictions: List[Prediction] = field(default_factory=list)

    def to_rows(self) -> List[Dict[str, Any]]:
        """Every answer as a dict with a ``query`` column (``(head, relation, ?)``) before the row's own."""
        return [{"query": p.query, **row} for p in self.predictions for row in p.to_rows()]

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: the rows of every query, each with its ``query`` column."""
        return {"rows": self.to_rows()}

    def to_frame(self) -> Any:
        """:meth:`to_rows` as a pandas DataFrame (columns query, rank, id, name, score, known, split)."""
        return _frame(self.to_rows(), ("query",) + ROW_COLUMNS)

    def __str__(self) -> str:
        return "\n\n".join(str(p) for p in self.predictions)


@dataclass
class TripleScore:
    """The score of one given triple (names as resolved) and whether it is known."""

    head: str
    relation: str
    tail: str
    score: float
    known: bool
    split: Optional[str] = None


@dataclass
class TripleScores:
    """Scores of given triples, in input order."""

    rows: List[TripleScore] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict with the rows."""
        return {"rows": self.to_rows()}

    def to_rows(self) -> List[Dict[str, Any]]:
        """The rows as dicts (head, relation, tail, score, known, split)."""
        return [asdict(r) for r in self.rows]

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame (columns head, relation, tail, score, known, split)."""
        return _frame(self.to_rows(), ("head", "relation", "tail", "score", "known", "split"))

    def __str__(self) -> str:
        return format_table(["head", "relation", "tail", "score", "known"],
                      [[r.head, r.relation, r.tail, f"{r.score:.4f}", r.split or "-"] for r in self.rows])


# -- what a prediction needs, computed once per task -------------------------------------------------
class _State:
    """The fused vectors, name indices and known-triple keys of one task (kept on the task)."""

    def __init__(self, task: Any):
        kg = task.kg
        self.vectors = task.entity_vectors()
        self.entities = NameIndex(kg.entities, "entity")
        self.relations = NameIndex(kg.relations, "relation")
        self.n_ent, self.n_rel = kg.num_entities, kg.num_relations
        keys, split = [], []
        for i, name in enumerate(SPLITS):
            t = np.asarray(kg.split(name), dtype=np.int64).reshape(-1, 3)
            keys.append(self.key(t[:, 0], t[:, 1], t[:, 2]))
            split.append(np.full(len(t), i, dtype=np.int64))
        key, lab = np.concatenate(keys), np.concatenate(split)
        order = np.lexsort((lab, key))  # a triple in two splits: the first split wins
        key, lab = key[order], lab[order]
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        self.known_keys, self.known_split = key[first], lab[first]

    def key(self, h: Any, r: Any, t: Any) -> np.ndarray:
        """One int64 key per triple."""
        return (np.asarray(h, dtype=np.int64) * self.n_rel + np.asarray(r, dtype=np.int64)) * self.n_ent \
            + np.asarray(t, dtype=np.int64)

    def splits_of(self, h: Any, r: Any, t: Any) -> List[Optional[str]]:
        """The split of each triple ``(h[i], r[i], t[i])``, ``None`` where it is not known."""
        k = np.atleast_1d(self.key(h, r, t))
        if len(self.known_keys) == 0:
            return [None] * len(k)
        pos = np.searchsorted(self.known_keys, k).clip(max=len(self.known_keys) - 1)
        hit = self.known_keys[pos] == k
        return [SPLITS[int(self.known_split[p])] if ok else None for p, ok in zip(pos, hit)]


def _state(task: Any) -> _State:
    """The completion task's cached :class:`_State` (``task.prediction_state``, built on first use)."""
    if task.prediction_state is None:
        task.prediction_state = _State(task)
    return task.prediction_state


# -- the API -----------------------------------------------------------------------------------------
@dataclass
class Targets:
    """Candidate entities read from a file (:func:`read_targets`): names with the lines they came from."""

    names: List[str]
    path: Optional[PathLike] = None
    lines: Optional[List[int]] = None


def _target_mask(st: _State, targets: Any) -> Optional[torch.Tensor]:
    """The ``[entities]`` mask of the allowed candidates (names, ids or :class:`Targets`), ``None``: all."""
    if targets is None:
        return None
    found = targets if isinstance(targets, Targets) else Targets(list(targets))
    mask = torch.zeros(st.n_ent, dtype=torch.bool)
    for i, name in enumerate(found.names):
        line = found.lines[i] if found.lines is not None else None
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
            if not 0 <= int(name) < st.n_ent:
                raise SnagError(f"target entity id {int(name)} is out of range 0..{st.n_ent - 1}", found.path, line)
            mask[int(name)] = True
        else:
            mask[st.entities.find(name, found.path, line)] = True
    if not mask.any():
        raise SnagError("targets: no candidate entity given", found.path)
    return mask


@torch.no_grad()
def _rank(task: Any, st: _State, anchor: int, rel: int, predict_tail: bool, top: int, include_known: bool,
          allowed: Optional[torch.Tensor]) -> Prediction:
    """The ``top`` best candidates of one query given by ids (``allowed``: the candidate mask)."""
    vecs, sc = st.vectors, task.model.interaction
    r = torch.tensor([rel], device=vecs.device)
    q = sc.query(vecs[anchor:anchor + 1], r, predict_tail)
    scores = (sc.margin - sc.pairwise(q, vecs, use_compiled(vecs.shape[0], vecs.shape[1]))[0]).float().cpu()
    rows_known, known = task.filters.lookup(torch.tensor([anchor]), torch.tensor([rel]), predict_tail)
    known_mask = torch.zeros(st.n_ent, dtype=torch.bool)
    known_mask[known] = True
    keep = torch.ones(st.n_ent, dtype=torch.bool) if allowed is None else allowed.clone()
    if not include_known:
        keep &= ~known_mask
    scores = scores.masked_fill(~keep, float("-inf"))
    k = min(top, int(keep.sum()))
    best = torch.topk(scores, k).indices.numpy() if k > 0 else np.zeros(0, dtype=np.int64)
    hs = np.full(len(best), anchor) if predict_tail else best
    ts = best if predict_tail else np.full(len(best), anchor)
    splits = st.splits_of(hs, np.full(len(best), rel), ts)
    names = task.kg.entities
    rows = [PredictionRow(i + 1, int(e), names[int(e)], float(scores[int(e)]), bool(known_mask[int(e)]), s)
            for i, (e, s) in enumerate(zip(best, splits))]
    rel_name = task.kg.relations[rel]
    return Prediction("tail" if predict_tail else "head", names[anchor] if predict_tail else None, rel_name,
                      None if predict_tail else names[anchor], include_known, rows,
                      None if allowed is None else int(allowed.sum()))


def predict(task: Any, head: Optional[str] = None, relation: Optional[str] = None, tail: Optional[str] = None,
            top: int = 10, include_known: bool = False, targets: Any = None) -> Prediction:
    """The ``top`` best tails of ``(head, relation, ?)``, or heads of ``(?, relation, tail)``, by name.

    Known true triples (train, valid, test) are left out unless ``include_known``; ``targets`` (entity
    names or ids, or :class:`Targets` read by :func:`read_targets`) restricts the candidates to those.
    """
    if relation is None:
        raise SnagError("a prediction needs a relation (--relation)")
    if (head is None) == (tail is None):
        raise SnagError("give exactly one of head (--head, to rank tails) and tail (--tail, to rank heads)")
    return predict_queries(task, [(head, relation, tail)], top=top, include_known=include_known,
                           targets=targets).predictions[0]


@torch.no_grad()
def predict_queries(task: Any, queries: Iterable[Sequence[Optional[str]]], path: Optional[PathLike] = None,
                    lines: Optional[Sequence[int]] = None, top: int = 10, include_known: bool = False,
                    targets: Any = None) -> Predictions:
    """Answers to ``(head, relation, None)`` / ``(None, relation, tail)`` queries (``?`` also stands for
    ``None``), in order, with one computation of the entity vectors; every name is checked before any
    ranking (``path`` and ``lines`` place a bad one). ``top``, ``include_known`` and ``targets`` as in
    :func:`predict`."""
    if top < 1:
        raise SnagError(f"--top must be at least 1, got {top}")
    st = _state(task)
    resolved = []
    for i, query in enumerate(queries):
        line = lines[i] if lines is not None else None
        if len(query) != 3:
            raise SnagError(f"a query is head, relation, tail with one of head and tail '?'; got {len(query)} "
                            f"fields", path, line)
        h, r, t = (None if x is None or x.strip() == "?" else x for x in query)
        if r is None:
            raise SnagError("a query needs a relation ('?' stands for the head or the tail only)", path, line)
        if (h is None) == (t is None):
            raise SnagError("a query has '?' in exactly one of the head and tail columns "
                            f"(got {'both' if h is None else 'neither'})", path, line)
        anchor = st.entities.find(h if h is not None else t, path, line)  # type: ignore[arg-type]
        resolved.append((anchor, st.relations.find(r, path, line), h is not None))
    allowed = _target_mask(st, targets)
    return Predictions([_rank(task, st, a, r, tail_side, top, include_known, allowed) for a, r, tail_side in resolved])


@torch.no_grad()
def score_triples(task: Any, rows: Iterable[Sequence[str]], path: Optional[PathLike] = None,
                  lines: Optional[Sequence[int]] = None) -> TripleScores:
    """Scores (``margin - distance``) of ``(head, relation, tail)`` name triples, all in one batch.

    ``path`` and ``lines`` (one line number per row) place a bad name in the errors.
    """
    st = _state(task)
    ids: List[Tuple[int, int, int]] = []
    for i, row in enumerate(rows):
        line = lines[i] if lines is not None else None
        if len(row) != 3:
            raise SnagError(f"expected head, relation, tail; got {len(row)} fields", path, line)
        h, r, t = row
        ids.append((st.entities.find(h, path, line), st.relations.find(r, path, line), st.entities.find(t, path, line)))
    if not ids:
        return TripleScores([])
    idx = torch.tensor(ids, dtype=torch.long, device=st.vectors.device)
    vecs, sc = st.vectors, task.model.interaction
    q = sc.query(vecs[idx[:, 0]], idx[:, 1], True)
    scores = (sc.margin - sc.distance(q, vecs[idx[:, 2]])).float().cpu().tolist()
    arr = idx.cpu().numpy()
    splits = st.splits_of(arr[:, 0], arr[:, 1], arr[:, 2])
    ents, rels = task.kg.entities, task.kg.relations
    return TripleScores([TripleScore(ents[h], rels[r], ents[t], s, sp is not None, sp)
                         for (h, r, t), s, sp in zip(arr.tolist(), scores, splits)])


def _content_lines(path: PathLike, what: str) -> List[Tuple[int, str]]:
    """``(line number, line)`` of the non-blank lines of a UTF-8 file that are not ``#`` comments."""
    p = Path(path)
    if not p.is_file():
        raise SnagError(f"{what} file not found", p)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SnagError(f"not UTF-8 text ({exc.reason})", p) from None
    return [(n, raw.rstrip("\r")) for n, raw in enumerate(text.splitlines(), start=1)
            if raw.strip() and not raw.lstrip().startswith("#")]


def read_triples(path: PathLike, what: str = "triples") -> Tuple[List[List[str]], List[int]]:
    """``head<TAB>relation<TAB>tail`` rows of a file (blank lines and ``#`` comments skipped), with
    their line numbers; a line with another number of fields is an error naming file and line."""
    rows, numbers = [], []
    for n, line in _content_lines(path, what):
        fields = line.split("\t")
        if len(fields) != 3 or not all(f.strip() for f in fields):
            raise SnagError(f"expected head<TAB>relation<TAB>tail, got {len(fields)} tab-separated field(s)"
                            if len(fields) != 3 else "empty field in head<TAB>relation<TAB>tail", path, n)
        rows.append([f.strip() for f in fields])
        numbers.append(n)
    if not rows:
        raise SnagError(f"no {what} in file", path)
    return rows, numbers


def read_queries(path: PathLike) -> Tuple[List[List[str]], List[int]]:
    """``head<TAB>relation<TAB>?`` and ``?<TAB>relation<TAB>tail`` rows of a file (as :func:`read_triples`),
    with their line numbers; :func:`predict_queries` checks the ``?``."""
    return read_triples(path, what="queries")


def read_targets(path: PathLike) -> Targets:
    """The candidate entities of a file: one name (or id) per line; blank lines and ``#`` comments skipped."""
    found = _content_lines(path, "targets")
    if not found:
        raise SnagError("no entity names in the targets file", path)
    return Targets([line.strip() for _, line in found], Path(path), [n for n, _ in found])
