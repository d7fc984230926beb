"""``snagkg weights`` and ``snagkg.api.modality_weights``: the per-entity modality weights of a run."""
from __future__ import annotations

import numpy as np
import pytest

import snagkg
from snagkg.api.modality_weights import modality_weights
from _helpers import run_main as _cli


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
