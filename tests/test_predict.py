"""``snagkg predict`` and ``Task.predict`` / ``score_triples`` on a trained run (its export and modality
weights: test_export.py, test_modality_weights.py)."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest
import torch

import snagkg
from _helpers import run_main as _cli
from snagkg.runtime.errors import SnagError
from snagkg.data.name_index import NameIndex


def _known_tails(kg):
    out = defaultdict(set)
    for h, r, t in kg.all_triples().tolist():
        out[(h, r)].add(t)
    return out


@pytest.mark.slow
def test_top_tail_of_a_training_triple_is_its_true_tail(task):
    kg, known = task.kg, _known_tails(task.kg)
    single = [(h, r, t) for h, r, t in kg.train.tolist() if len(known[(h, r)]) == 1]
    assert len(single) >= 50
    hits = 0
    for h, r, t in single:
        p = task.predict(head=kg.entities[h], relation=kg.relations[r], top=3, include_known=True)
        first = p.rows[0]
        hits += first.name == kg.entities[t]
        if first.name == kg.entities[t]:
            assert first.known and first.split == "train" and first.rank == 1
    assert hits >= 0.9 * len(single), (hits, len(single))


@pytest.mark.slow
def test_known_answers_are_left_out_and_scores_are_the_interactions(task):
    kg, known = task.kg, _known_tails(task.kg)
    vecs, sc = task.entity_vectors(), task.model.interaction
    h, r, _ = kg.train[0].tolist()
    p = task.predict(head=kg.entities[h], relation=kg.relations[r], top=kg.num_entities)
    assert len(p.rows) == kg.num_entities - len(known[(h, r)])  # every other entity, once
    assert not {row.id for row in p.rows} & known[(h, r)]
    assert not any(row.known for row in p.rows)
    ids = torch.tensor([row.id for row in p.rows])
    want = sc.score(vecs[[h] * len(ids)], torch.full((len(ids),), r), vecs[ids])
    assert np.allclose([row.score for row in p.rows], want.detach().numpy(), atol=1e-4)
    scores = [row.score for row in p.rows]
    assert scores == sorted(scores, reverse=True) and [row.rank for row in p.rows] == list(range(1, len(ids) + 1))
    # with the known answers kept, they come back marked known and with their split
    full = task.predict(head=kg.entities[h], relation=kg.relations[r], top=kg.num_entities, include_known=True)
    assert len(full.rows) == kg.num_entities
    assert {row.id for row in full.rows if row.known} == known[(h, r)]
    d = full.to_dict()
    assert d["query"]["predict"] == "tail" and len(d["rows"]) == kg.num_entities
    assert "rank" in str(full).splitlines()[1]


@pytest.mark.slow
def test_head_prediction_scores_the_same_triples(task):
    kg = task.kg
    vecs, sc = task.entity_vectors(), task.model.interaction
    h, r, t = kg.train[1].tolist()
    p = task.predict(relation=kg.relations[r], tail=kg.entities[t], top=5, include_known=True)
    assert p.direction == "head" and p.tail == kg.entities[t] and len(p.rows) == 5
    ids = torch.tensor([row.id for row in p.rows])
    want = sc.score(vecs[ids], torch.full((5,), r), vecs[[t] * 5])
    assert np.allclose([row.score for row in p.rows], want.detach().numpy(), atol=1e-4)


@pytest.mark.slow
def test_fused_vectors_are_computed_once_per_task(run, monkeypatch):
    t = snagkg.load_run(run, device="cpu")
    calls = []
    real = t.entity_vectors
    monkeypatch.setattr(t, "entity_vectors", lambda: calls.append(1) or real())
    for _ in range(3):
        t.predict(head="entity_1", relation="relation_0", top=2)
    t.score_triples([("entity_1", "relation_0", "entity_2")])
    assert len(calls) == 1


@pytest.mark.slow
def test_names_are_found_by_readable_forms_and_typos_list_candidates(task):
    p = task.predict(head="ENTITY_3", relation="Relation_1", top=1)
    assert p.head == "entity_3" and p.relation == "relation_1"
    with pytest.raises(SnagError) as exc:
        task.predict(head="entity3x", relation="relation_1")
    assert "unknown entity 'entity3x'" in str(exc.value) and "'entity_3'" in str(exc.value)
    index = NameIndex(["<http://dbpedia.org/resource/Barack_Obama>", "http://a.org/resource/X_Y",
                       "http://b.org/resource/X_Y"])
    assert index.find("Barack_Obama") == 0 and index.find("barack obama") == 0
    with pytest.raises(SnagError, match="ambiguous.*a.org.*b.org"):
        index.find("X_Y")
    assert index.find("http://b.org/resource/X_Y") == 2


@pytest.mark.slow
def test_cli_predict_table_json_and_typo(run, capsys):
    code, out, err = _cli(["predict", run, "--head", "entity_5", "--relation", "relation_2", "--top", "4",
                           "--format", "json"], capsys)
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and not any(r["known"] for r in rows)
    code, out, err = _cli(["predict", run, "--head", "entity_5", "--relation", "relation_2", "--top", "2"], capsys)
    assert code == 0 and out.splitlines()[1].split() == ["rank", "tail", "score", "known"]
    code, out, err = _cli(["predict", run, "--head", "entity_5", "--relation", "relaton_2"], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: unknown relation 'relaton_2'; did you mean")
    assert "'relation_2'" in err


@pytest.mark.slow
def test_cli_predict_triples_file_scores_equal_the_interaction(run, task, tmp_path, capsys):
    kg = task.kg
    rows = [kg.train[0].tolist(), kg.test[0].tolist(), [3, 1, 7]]
    f = tmp_path / "q.tsv"
    f.write_text("# head relation tail\n" + "".join(
        f"{kg.entities[h]}\t{kg.relations[r]}\t{kg.entities[t]}\n" for h, r, t in rows))
    code, out, err = _cli(["predict", run, "--triples", f, "--format", "tsv"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split("\t") == ["head", "relation", "tail", "score", "known", "split"]
    got = [float(ln.split("\t")[3]) for ln in lines[1:]]
    vecs, idx = task.entity_vectors(), torch.tensor(rows)
    want = task.model.interaction.score(vecs[idx[:, 0]], idx[:, 1], vecs[idx[:, 2]])
    assert np.allclose(got, want.detach().numpy(), atol=1e-6)
    assert [ln.split("\t")[5] for ln in lines[1:3]] == ["train", "test"]
    # a bad line: one line naming the file and the line
    f.write_text(f"{kg.entities[0]}\t{kg.relations[0]}\t{kg.entities[1]}\n\nentity_1 relation_0 entity_2\n")
    code, out, err = _cli(["predict", run, "--triples", f], capsys)
    assert code == 2 and err == f"error: {f}:3: expected head<TAB>relation<TAB>tail, got 1 tab-separated field(s)\n"
    f.write_text(f"{kg.entities[0]}\t{kg.relations[0]}\tnobody\n")
    code, out, err = _cli(["predict", run, "--triples", f], capsys)
    assert code == 2 and err.startswith(f"error: {f}:1: unknown entity 'nobody'")


def test_predict_on_an_alignment_run_points_to_align(alignment_run, capsys):
    code, out, err = _cli(["predict", alignment_run, "--head", "x", "--relation", "y"], capsys)
    assert code == 2 and "snagkg align" in err and err.count("\n") == 1


# -- export ------------------------------------------------------------------------------------------


# -- weights -----------------------------------------------------------------------------------------
