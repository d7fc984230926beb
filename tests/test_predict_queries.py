"""``snagkg predict --queries FILE`` / ``--targets FILE``, ``task.predict(targets=...)``,
``Prediction.to_frame()``, and tables whose columns stay aligned with wide (CJK) names (issue 35).

The fast tests build the result objects by hand; the ones on a trained run use the session-wide
``memorised_run`` of tests/conftest.py (slow).
"""
from __future__ import annotations

import builtins
import json

import pytest

from _helpers import run_main as _cli
from snagkg.runtime.errors import SnagError
from snagkg.runtime.text_table import display_width, format_table
from snagkg.tasks.completion.predict import Prediction, PredictionRow, Predictions


def _column_starts(line: str, fields) -> list:
    """The display column where each of ``fields`` starts in ``line`` (searched left to right)."""
    out, pos = [], 0
    for f in fields:
        pos = line.index(f, pos)
        out.append(display_width(line[:pos]))
        pos += len(f)
    return out


def test_display_width_counts_wide_characters_twice():
    assert display_width("Tokyo") == 5
    assert display_width("東京") == 4
    assert display_width("ｔｏｋｙｏ") == 10  # full-width Latin
    assert display_width("e\u0301") == 1  # a combining accent takes no column
    assert display_width("東京 tower") == 10


def test_format_table_aligns_cjk_names():
    rows = [["1", "東京都", "0.5000"], ["2", "Paris", "0.2500"], ["3", "서울특별시", "0.1250"]]
    lines = format_table(["rank", "name", "score"], rows).splitlines()
    starts = {tuple(_column_starts(line, r)) for line, r in zip(lines[1:], rows)}
    assert len(starts) == 1, lines  # every row's score starts at the same terminal column
    assert _column_starts(lines[0], ["rank", "name", "score"]) == list(next(iter(starts)))
    right = format_table(["n", "v"], [["東", "1"], ["abc", "22"]], align=">>").splitlines()
    assert {display_width(x) for x in right} == {len("abc  22")}


def _prediction(names, head="東京", direction="tail"):
    rows = [PredictionRow(i + 1, i, n, 1.0 - i / 10, False, None) for i, n in enumerate(names)]
    return Prediction(direction, head if direction == "tail" else None, "近い",
                      None if direction == "tail" else head, False, rows)


def test_prediction_table_stays_aligned_with_wide_names():
    p = _prediction(["大阪", "Lyon", "서울특별시"])
    lines = str(p).splitlines()
    assert lines[0] == "(東京, 近い, ?)"
    starts = {_column_starts(line, [f"{r.score:.4f}"])[0] for line, r in zip(lines[2:], p.rows)}
    assert len(starts) == 1 and _column_starts(lines[1], ["score"])[0] in starts


def test_several_queries_print_one_block_each_and_rows_with_a_query_column():
    many = Predictions([_prediction(["大阪", "Lyon"]), _prediction(["Paris"], head="Nice", direction="head")])
    blocks = str(many).split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["(東京, 近い, ?)", "(?, 近い, Nice)"]
    rows = many.to_rows()
    assert [r["query"] for r in rows] == ["(東京, 近い, ?)"] * 2 + ["(?, 近い, Nice)"]
    assert list(rows[0]) == ["query", "rank", "id", "name", "score", "known", "split"]
    assert json.loads(json.dumps(many.to_dict()))["rows"][2]["name"] == "Paris"


def test_to_frame_is_a_dataframe_and_a_one_line_error_without_pandas(monkeypatch):
    pd = pytest.importorskip("pandas")
    p = _prediction(["大阪", "Lyon"])
    frame = p.to_frame()
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["rank", "id", "name", "score", "known",
                                                                       "split"]
    assert frame["name"].tolist() == ["大阪", "Lyon"]
    assert list(Prediction("tail", "a", "r", None, False).to_frame().columns)[0] == "rank"  # no rows: columns kept
    assert Predictions([p]).to_frame()["query"].tolist() == ["(東京, 近い, ?)"] * 2

    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(SnagError) as err:
        p.to_frame()
    assert "\n" not in str(err.value) and "pip install 'snagkg[pandas]'" in str(err.value)


# -- on a trained run ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_targets_restrict_the_candidates(memorised_task):
    task = memorised_task
    kg = task.kg
    h, r, _ = kg.train[0].tolist()
    full = task.predict(head=kg.entities[h], relation=kg.relations[r], top=kg.num_entities, include_known=True)
    chosen = [row.name for row in full.rows[3:8]]
    p = task.predict(head=kg.entities[h], relation=kg.relations[r], top=10, include_known=True, targets=chosen)
    assert [row.name for row in p.rows] == chosen  # the same order, the same scores, only those
    assert [row.score for row in p.rows] == [row.score for row in full.rows[3:8]]
    assert p.to_dict()["query"]["targets"] == 5
    by_id = task.predict(head=kg.entities[h], relation=kg.relations[r], include_known=True,
                         targets=[row.id for row in full.rows[3:8]])
    assert [row.name for row in by_id.rows] == chosen
    with pytest.raises(SnagError, match="unknown entity 'no such entity'"):
        task.predict(head=kg.entities[h], relation=kg.relations[r], targets=["no such entity"])


@pytest.mark.slow
def test_predict_queries_from_a_file(memorised_run, memorised_task, tmp_path, capsys):
    kg = memorised_task.kg
    (h, r, _), (_, r2, t2) = kg.train[0].tolist(), kg.train[1].tolist()
    queries = tmp_path / "queries.tsv"
    queries.write_text(f"# two queries\n{kg.entities[h]}\t{kg.relations[r]}\t?\n\n"
                       f"?\t{kg.relations[r2]}\t{kg.entities[t2]}\n")
    one = memorised_task.predict(head=kg.entities[h], relation=kg.relations[r], top=3)
    two = memorised_task.predict(relation=kg.relations[r2], tail=kg.entities[t2], top=3)

    code, out, err = _cli(["predict", memorised_run, "--queries", queries, "--top", "3", "--device", "cpu"], capsys)
    assert code == 0, err
    assert out.rstrip("\n") == str(one) + "\n\n" + str(two)

    code, out, err = _cli(["predict", memorised_run, "--queries", queries, "--top", "3", "--format", "tsv",
                           "--device", "cpu"], capsys)
    lines = out.rstrip("\n").split("\n")
    assert code == 0 and lines[0].split("\t") == ["query", "rank", "id", "name", "score", "known", "split"]
    assert len(lines) == 7 and lines[1].startswith(one.query + "\t1\t") and lines[4].startswith(two.query + "\t1\t")

    code, out, _ = _cli(["predict", memorised_run, "--queries", queries, "--top", "3", "--format", "json",
                         "--device", "cpu"], capsys)
    rows = json.loads(out)["rows"]
    assert code == 0 and [x["query"] for x in rows] == [one.query] * 3 + [two.query] * 3

    targets = tmp_path / "targets.txt"
    targets.write_text("# candidates\n" + "".join(f"{row.name}\n" for row in one.rows[1:]))
    code, out, err = _cli(["predict", memorised_run, "--head", kg.entities[h], "--relation", kg.relations[r],
                           "--targets", targets, "--format", "json", "--device", "cpu"], capsys)
    assert code == 0, err
    assert [x["name"] for x in json.loads(out)["rows"]] == [row.name for row in one.rows[1:]]


@pytest.mark.slow
def test_bad_query_and_target_lines_are_one_line_errors(memorised_run, memorised_task, tmp_path, capsys):
    kg = memorised_task.kg
    bad = tmp_path / "bad.tsv"
    bad.write_text(f"{kg.entities[0]}\t{kg.relations[0]}\t?\n?\t{kg.relations[0]}\t?\n")
    code, _, err = _cli(["predict", memorised_run, "--queries", bad, "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {bad}:2: ") and "exactly one" in err
    bad.write_text(f"{kg.entities[0]}\t{kg.relations[0]}\t?\n")
    targets = tmp_path / "targets.txt"
    targets.write_text(f"{kg.entities[1]}\nnobody at all\n")
    code, _, err = _cli(["predict", memorised_run, "--queries", bad, "--targets", targets, "--device", "cpu"],
                        capsys)
    assert code == 2 and err.startswith(f"error: {targets}:2: unknown entity 'nobody at all'")
    code, _, err = _cli(["predict", memorised_run, "--queries", bad, "--head", kg.entities[0]], capsys)
    assert code == 2 and "--queries" in err and err.count("\n") == 1
