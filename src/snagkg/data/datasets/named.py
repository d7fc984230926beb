"""Graphs given by names: ids, the seeded split, the valid hold-out and the id tables.

The readers of labelled triples (:mod:`.labelled`) and RDF (:mod:`.rdf`) hand
over ``(head, relation, tail)`` name triples; :func:`build_graph` turns them
into a :class:`~snagkg.datasets.graph.KnowledgeGraph`:

* ids are assigned deterministically: entities (every head and tail of every
  split) and relations each sorted by name (Python string order), id = rank;
* duplicate triples are dropped (and counted in a note);
* one file is split with :func:`split_counts` / :func:`hold_out` (seeded,
  every valid/test entity and relation also appears in train);
* a folder's ``valid`` is cleaned like OpenKE's (duplicates and triples also
  in train or test removed).

:func:`apply_valid_from_train` replaces the valid split of any completion
graph by a seeded share of train. :func:`write_id_tables` and
:func:`check_id_tables` write and check a run folder's ``entities.tsv`` and
``relations.tsv``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from snagkg.data.datasets.graph import (
    KnowledgeGraph,
    clean_valid,
    triple_keys,
    unseen_entity_note,
)
from snagkg.data.datasets.labelled import parse_columns
from snagkg.data.datasets.openke import RESERVED_MODALITIES
from snagkg.data.feature_dir import load_feature_dir
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import write_text

NameTriple = Tuple[str, str, str]
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
SPLITS = ("train", "valid", "test")


def parse_split(spec, flag: str = "--split") -> Tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` (or a sequence of 3 numbers) -> train, valid, test shares summing to 1.

    ``flag`` names the option in error messages (``--split``, or the config key).
    """
    shown = spec if isinstance(spec, str) else ",".join(str(x) for x in spec)
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        values = tuple(float(x) for x in parts)
    except (TypeError, ValueError):
        raise SnagError(f"{flag} {shown!r}: expected three numbers train,valid,test such as 0.8,0.1,0.1") from None
    if len(values) != 3:
        raise SnagError(f"{flag} {shown!r}: expected three numbers train,valid,test, got {len(values)}")
    if any(not np.isfinite(v) or v < 0 or v > 1 for v in values):
        raise SnagError(f"{flag} {shown!r}: every share must be between 0 and 1")
    if abs(sum(values) - 1.0) > 1e-6:
        raise SnagError(f"{flag} {shown!r}: the shares sum to {sum(values):g}, not 1")
    if values[0] <= 0:
        raise SnagError(f"{flag} {shown!r}: the train share must be positive")
    return values  # type: ignore[return-value]


def dataset_option_problem(cfg) -> Optional[Tuple[str, str]]:
    """``(message, config key)`` for a bad ``dataset_split``, ``dataset_columns`` or ``valid_from_train`` of a
    run config, else ``None`` (used by :meth:`snagkg.config.RunConfig.check`)."""

    if not 0.0 <= cfg.valid_from_train < 1.0:
        return f"valid_from_train must be in [0, 1), got {cfg.valid_from_train}", "valid_from_train"
    for key, parse in (("dataset_split", parse_split), ("dataset_columns", parse_columns)):
        if getattr(cfg, key) is not None:
            try:
                parse(str(getattr(cfg, key)), key)
            except SnagError as exc:
                return exc.message, key
    return None


def hold_out(triples: np.ndarray, quotas: Sequence[int], rng: np.random.Generator, n_ent: int,
             n_rel: int) -> Tuple[np.ndarray, List[np.ndarray], int]:
    """Draw ``quotas[i]`` triples for each held-out part, in a seeded random order.

    A triple is held out only if its head, tail and relation each still occur in
    what stays behind (so every entity and relation of a held-out part also
    appears in the rest); the others stay. Returns ``(rest, parts, kept)``: index
    arrays into ``triples`` and how many drawn triples stayed behind for that
    reason before the last one held out (a part that comes out short does not
    count every triple left over as moved). A part comes out short only when no more triples can be held out.
    """
    order = rng.permutation(len(triples))
    ents = np.bincount(triples[:, 0], minlength=n_ent) + np.bincount(triples[:, 2], minlength=n_ent)
    rels = np.bincount(triples[:, 1], minlength=n_rel)
    ent_left, rel_left = ents.tolist(), rels.tolist()
    parts: List[List[int]] = [[] for _ in quotas]
    rest: List[int] = []
    kept = taken_after = 0
    q = 0
    while q < len(quotas) and quotas[q] <= 0:
        q += 1
    rows = triples.tolist()
    for pos, i in enumerate(order.tolist()):
        if q == len(quotas):
            rest.extend(order[pos:].tolist())
            break
        h, r, t = rows[i]
        need = 2 if h == t else 1  # a self loop uses its entity twice
        if rel_left[r] > 1 and ent_left[h] > need and ent_left[t] > need:
            ent_left[h] -= 1
            ent_left[t] -= 1
            rel_left[r] -= 1
            parts[q].append(i)
            taken_after = kept  # skips that a later draw made up for (not the ones no draw could replace)
            while q < len(quotas) and len(parts[q]) >= quotas[q]:
                q += 1
        else:
            rest.append(i)
            kept += 1
    as_array = [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    return np.sort(np.asarray(rest, dtype=np.int64)), as_array, taken_after


def _ids(triples: Dict[str, List[NameTriple]]) -> Tuple[List[str], List[str]]:
    ents, rels = set(), set()
    for rows in triples.values():
        for h, r, t in rows:
            ents.add(h)
            ents.add(t)
            rels.add(r)
    return sorted(ents), sorted(rels)


def _encode(rows: List[NameTriple], ent: Dict[str, int], rel: Dict[str, int]) -> np.ndarray:
    if not rows:
        return np.zeros((0, 3), dtype=np.int64)
    return np.asarray([(ent[h], rel[r], ent[t]) for h, r, t in rows], dtype=np.int64)


def _unique_sorted(arr: np.ndarray, n_ent: int, n_rel: int) -> np.ndarray:
    """Distinct triples in id order (so the split never depends on the order of the input file)."""
    _, first = np.unique(triple_keys(arr, n_ent, n_rel), return_index=True)
    return arr[first]


def _require_nonempty(kg: KnowledgeGraph, source: Path, hint: str) -> None:
    for name in SPLITS:
        if len(kg.split(name)) == 0:
            raise SnagError(f"the {name} split is empty{hint}", source)


def build_graph(name: str, triples: Dict[str, List[NameTriple]], source: Path, *, split=None,
                seed: int = 0, features_dir: Optional[Path] = None, feature_seed: int = 0,
                literals: Optional[List[NameTriple]] = None, info: Optional[dict] = None) -> KnowledgeGraph:
    """A :class:`KnowledgeGraph` from name triples.

    ``triples`` has either one entry ``"all"`` (one file: split with ``split``
    shares, default 0.8/0.1/0.1, and ``seed``) or ``train``/``valid``/``test``.
    ``features_dir`` (if it exists) holds ``<modality>.npy`` tables in id order.
    """

    entities, relations = _ids(triples)
    ent = {n: i for i, n in enumerate(entities)}
    rel = {n: i for i, n in enumerate(relations)}
    n_ent, n_rel = len(entities), len(relations)
    notes: List[str] = []
    info = dict(info or {})
    if "all" in triples:
        rows = _encode(triples["all"], ent, rel)
        if len(rows) == 0:
            raise SnagError("no triples", source)
        uniq = _unique_sorted(rows, n_ent, n_rel)
        if len(uniq) < len(rows):
            notes.append(f"{len(rows) - len(uniq)} duplicate triples dropped ({len(uniq)} distinct)")
        shares = parse_split(split) if split is not None else DEFAULT_SPLIT
        n = len(uniq)
        n_valid, n_test = int(round(n * shares[1])), int(round(n * shares[2]))
        rest, (valid_i, test_i), kept = hold_out(uniq, [n_valid, n_test], np.random.default_rng(seed), n_ent, n_rel)
        train, valid, test = uniq[rest], uniq[valid_i], uniq[test_i]
        msg = (f"split {n} triples with seed {seed} into train {len(train)} / valid {len(valid)} / "
               f"test {len(test)} (shares {','.join(f'{s:g}' for s in shares)})")
        if kept:
            msg += (f"; {kept} triples moved to train so that every valid/test entity and relation "
                    f"also appears in train")
        if len(valid) < n_valid or len(test) < n_test:
            msg += f" (asked for valid {n_valid} / test {n_test}: no more triples could be held out)"
        notes.append(msg)
        info["split"] = {"shares": list(shares), "seed": seed, "moved_to_train": kept}
    else:
        if split is not None:
            raise SnagError("--split applies to a single triples file; this folder already has "
                            "train, valid and test files", source)
        parts = {}
        for part in SPLITS:
            arr = _encode(triples[part], ent, rel)
            uniq = _unique_sorted(arr, n_ent, n_rel) if len(arr) else arr
            if part != "valid" and len(uniq) < len(arr):
                notes.append(f"{part}: {len(arr) - len(uniq)} duplicate triples dropped")
            parts[part] = uniq if part != "valid" else arr
        valid, note = clean_valid(parts["valid"], parts["train"], parts["test"], n_ent, n_rel) \
            if len(parts["valid"]) else (parts["valid"], None)
        if note:
            notes.append(note)
        train, test = parts["train"], parts["test"]
        for part, arr in (("valid", valid), ("test", test)):
            warn = unseen_entity_note(train, arr, part) if len(arr) and len(train) else None
            if warn:
                notes.append(warn)
    tables = {}
    if features_dir is not None:
        for reserved in RESERVED_MODALITIES:
            if (features_dir / f"{reserved}.npy").exists():
                raise SnagError(f"'{reserved}' is a reserved modality name (learned, not loaded)",
                                features_dir / f"{reserved}.npy")
        tables = load_feature_dir(features_dir, n_ent, seed=feature_seed)
    literals = list(literals or [])
    if literals:
        outside = sum(1 for e, _, _ in literals if e not in ent)
        info["literals"] = len(literals)
        n_lit = len(literals)
        where = ("its subject is not an entity of the graph" if n_lit == 1 else
                 f"{outside} of them with a subject that is not an entity of the graph")
        notes.append(f"{n_lit} literal value{'' if n_lit == 1 else 's'} kept as attribute data"
                     + (f" ({where})" if outside else ""))
    kg = KnowledgeGraph(name=name, entities=entities, relations=relations, train=train, valid=valid, test=test,
                        features=tables, notes=notes, literals=literals, info=info, features_dir=features_dir)
    return kg


def check_splits(kg: KnowledgeGraph, source) -> None:
    """A one-line error if a split of ``kg`` is empty (a run needs all three)."""
    _require_nonempty(kg, Path(source), " (the graph is too small for the split, or --split gives it no share; "
                                        "--valid-from-train can provide a valid split)")


def apply_valid_from_train(kg: KnowledgeGraph, fraction: float, seed: int = 0) -> KnowledgeGraph:
    """Replace ``kg.valid`` by a seeded share ``fraction`` of ``kg.train`` (in place; returns ``kg``).

    The held-out triples leave train; the test split is never touched; the
    published valid triples are kept only as known triples for filtered
    ranking (:attr:`KnowledgeGraph.known`). Every held-out entity and relation
    still appears in train (see :func:`hold_out`).
    """
    if not 0.0 < fraction < 1.0:
        raise SnagError(f"--valid-from-train must be between 0 and 1 (exclusive), got {fraction}")
    n = int(round(len(kg.train) * fraction))
    if n == 0:
        raise SnagError(f"--valid-from-train {fraction:g} holds out no triple of the {len(kg.train)} train triples")
    rng = np.random.default_rng([int(seed), 1])
    rest, (held,), kept = hold_out(kg.train, [n], rng, kg.num_entities, kg.num_relations)
    if len(held) == 0:
        raise SnagError(f"--valid-from-train {fraction:g}: no train triple can be held out without leaving an "
                        f"entity or relation out of train")
    published = kg.valid
    kg.known = published if kg.known is None else np.concatenate([kg.known, published], axis=0)
    kg.valid, kg.train = kg.train[held], kg.train[rest]
    msg = (f"valid replaced: {len(held)} of {len(rest) + len(held)} train triples held out as the validation split "
           f"(--valid-from-train {fraction:g}, seed {seed}); the published valid split ({len(published)} triples) "
           f"is not used (its triples are only filtered as known facts); test untouched")
    if kept:
        msg += f"; {kept} drawn triples stayed in train so that every valid entity and relation appears in train"
    if len(held) < n:
        msg += f"; asked for {n}, no more could be held out"
    kg.notes.append(msg)
    kg.info["valid_from_train"] = {"fraction": fraction, "seed": int(seed), "triples": int(len(held)),
                                   "published_valid": int(len(published))}
    return kg


def id_table(names: Sequence[str]) -> str:
    """``id<TAB>name`` lines, one per name in id order."""
    return "".join(f"{i}\t{n}\n" for i, n in enumerate(names))


def write_id_tables(kg: KnowledgeGraph, folder) -> None:
    """Write ``entities.tsv`` and ``relations.tsv`` (``id<TAB>name``) into ``folder`` atomically."""

    folder = Path(folder)
    write_text(folder / "entities.tsv", id_table(kg.entities))
    write_text(folder / "relations.tsv", id_table(kg.relations))


def check_id_tables(kg: KnowledgeGraph, folder) -> None:
    """A one-line error if a run folder's ``entities.tsv`` / ``relations.tsv`` disagree with ``kg``'s ids."""
    for fname, names in (("entities.tsv", kg.entities), ("relations.tsv", kg.relations)):
        path = Path(folder) / fname
        if not path.is_file():
            continue  # runs written before the id tables existed
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) != len(names):
            raise SnagError(f"the dataset has changed since training: {len(names)} names now, "
                            f"{len(lines)} in this file", path)
        for number, (line, name) in enumerate(zip(lines, names), start=1):
            if line != f"{number - 1}\t{name}":
                raise SnagError(f"the dataset has changed since training: id {number - 1} is now {name!r}", path,
                                number)
