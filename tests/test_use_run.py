"""Using a trained run: ``snagkg predict``, ``snagkg export`` and ``snagkg weights`` (and their API)."""
from __future__ import annotations

import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

import snagkg
from snagkg.cli.main import main
from snagkg.runtime.errors import SnagError
from snagkg.api.export import load_export
from snagkg.data.name_index import NameIndex
from snagkg.api.modality_weights import modality_weights

from conftest import make_openke

LEGACY = Path(__file__).parent / "data" / "legacy_runs"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A completion run that memorises a tiny synthetic graph (100 entities, ~100 training triples;
    about 20% of the image and text rows missing), trained once for this file (~10 s)."""
    root = tmp_path_factory.mktemp("use")
    ds = make_openke(root / "ds", num_entities=100, num_relations=4)
    cfg = snagkg.resolve_config(preset="synthetic", overrides={
        "dataset": str(ds), "train.epochs": 40, "train.lr": 0.02, "encoder.hidden": 32, "device": "cpu",
        "train.eval_every": 40, "train.batch_size": 256, "train.negatives": 16})
    snagkg.train(cfg, root / "run", progress=False, echo=lambda s: None)
    return root / "run"


@pytest.fixture(scope="module")
def task(run):
    return snagkg.load_run(run, device="cpu")


@pytest.fixture
def alignment_run(tmp_path) -> Path:
    """The small alignment run folder in tests/data, its dataset path pointed at the vendored data."""
    folder = tmp_path / "alignment"
    shutil.copytree(LEGACY / "alignment", folder)
    data = tmp_path / "alignment_data"
    shutil.copytree(LEGACY / "alignment_data", data)
    cfg = folder / "config.yaml"
    lines = [f"dataset: {data}" if ln.startswith("dataset:") else ln for ln in cfg.read_text().splitlines()]
    cfg.write_text("\n".join(lines) + "\n")
    return folder


def _known_tails(kg):
    out = defaultdict(set)
    for h, r, t in kg.all_triples().tolist():
        out[(h, r)].add(t)
    return out


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# -- predict -----------------------------------------------------------------------------------------
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
@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".npz", ".tsv", ".parquet"])
def test_export_round_trips_exactly(run, task, tmp_path, capsys, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"vectors{suffix}"
    code, stdout, err = _cli(["export", run, "--output", out, "--device", "cpu"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["format"] == suffix[1:]
    data = load_export(out)
    assert np.array_equal(data["entity_vectors"], task.entity_vectors().numpy())
    assert list(data["entity_names"]) == task.kg.entities
    assert np.array_equal(data["entity_ids"], np.arange(task.kg.num_entities))
    sc = task.model.interaction
    with torch.no_grad():
        phases = sc.phases(torch.arange(task.kg.num_relations)).numpy()
    assert np.array_equal(data["relation_phases"], phases)
    assert list(data["relation_names"]) == task.kg.relations
    assert list(data["modalities"]) == ["structure", "image", "text"]
    assert np.array_equal(data["modality_weights"], task.model.modality_weights().numpy())
    reps = task.model.entities
    assert np.array_equal(data["missing"], np.stack([reps.missing(m).numpy() for m in ("image", "text")], 1))


def test_export_of_an_alignment_run_has_normalised_vectors_and_no_relations(alignment_run, tmp_path):
    summary = snagkg.export_run(alignment_run, tmp_path / "a.npz", device="cpu")
    assert summary["task"] == "alignment"
    data = load_export(tmp_path / "a.npz")
    t = snagkg.load_run(alignment_run, device="cpu")
    assert np.array_equal(data["entity_vectors"], t.model.entity_vectors().numpy())
    assert np.allclose(np.linalg.norm(data["entity_vectors"], axis=1), 1.0, atol=1e-5)
    assert "relation_names" not in data and list(data["entity_names"]) == t.pair.entities
    assert np.allclose(data["modality_weights"].sum(1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_export_errors(run, tmp_path, capsys, monkeypatch):
    old = tmp_path / "v.npz"
    old.write_bytes(b"keep")
    code, _, err = _cli(["export", run, "--output", tmp_path / "v.csv"], capsys)
    assert code == 2 and "unknown export format '.csv'" in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    code, _, err = _cli(["export", run, "--output", tmp_path / "v.parquet"], capsys)
    assert code == 2 and "pip install 'snagkg[parquet]'" in err and not (tmp_path / "v.parquet").exists()
    with pytest.raises(SnagError, match="not found"):
        load_export(tmp_path / "none.npz")
    assert old.read_bytes() == b"keep"


# -- weights -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_weights_sum_to_one_and_flag_missing_entities(task, run, tmp_path, capsys):
    table = modality_weights(task)
    assert np.allclose(table.weights.sum(1), 1.0, atol=1e-5)
    assert table.modalities == ["structure", "image", "text"]
    for m in ("image", "text"):
        want = task.kg.features[m].missing
        assert np.array_equal(table.missing[m], want) and 0.05 < want.mean() < 0.4
    out = tmp_path / "w.csv"
    code, stdout, err = _cli(["weights", run, "--output", out], capsys)
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0] == "id,name,structure,image,text,missing_image,missing_text"
    assert len(lines) == task.kg.num_entities + 1
    row = lines[1].split(",")
    assert abs(sum(float(x) for x in row[2:5]) - 1.0) < 1e-5
    assert row[5:] == [str(int(table.missing["image"][0])), str(int(table.missing["text"][0]))]
    summary = {(ln.split()[0], ln.split()[1]): int(ln.split()[2]) for ln in stdout.splitlines()[1:]}
    n_missing = int(table.missing["image"].sum())
    assert summary[("image", "missing")] == n_missing
    assert summary[("image", "present")] == task.kg.num_entities - n_missing
    # one entity missing its image, asked for by name: the row shows it
    gone = int(np.flatnonzero(table.missing["image"])[0])
    code, stdout, err = _cli(["weights", run, "--entity", task.kg.entities[gone]], capsys)
    assert code == 0, err
    header, row = stdout.splitlines()[:2]
    assert header.split()[-2:] == ["missing_image", "missing_text"] and row.split()[-2] == "yes"
    code, _, err = _cli(["weights", run, "--entity", "entity_x1"], capsys)
    assert code == 2 and "did you mean" in err


def test_weights_of_an_alignment_run(alignment_run, capsys):
    t = snagkg.load_run(alignment_run, device="cpu")
    name = t.pair.entities[3].rsplit("/", 1)[1]  # the URI tail finds the entity when it is unique
    table = modality_weights(t, [t.pair.entities[3]])
    assert table.ids.tolist() == [3] and np.allclose(table.weights.sum(1), 1.0, atol=1e-5)
    assert table.modalities == ["structure", "relation", "char"]
    code, out, err = _cli(["weights", alignment_run, "--entity", t.pair.entities[3]], capsys)
    assert code == 0, err
    assert name in out or t.pair.entities[3] in out
