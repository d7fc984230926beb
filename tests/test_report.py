"""``snagkg report``: a self-contained HTML page of one or more runs (metrics, curves, weights, robustness)."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from typing import Dict, List

import pytest

import snagkg
from snagkg.config import schema as C
from snagkg.cli.main import main
from snagkg.runtime.errors import SnagError

pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")

from snagkg.api.report import write_report  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
IMG = '<img src="data:image/png;base64,'
ODD = "ds <b>&amp;"  # a dataset folder name that must come out escaped


class _Tables(HTMLParser):
    """The cell texts of every ``<table id=...>``, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: Dict[str, List[List[str]]] = {}
        self._id = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._id = a["id"]
            self.tables[self._id] = []
        elif tag == "tr" and self._id:
            self.tables[self._id].append([])
        elif tag in ("td", "th") and self._id:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._id = None
        elif tag in ("td", "th") and self._id and self._cell is not None:
            self.tables[self._id][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def tables(html: str) -> Dict[str, List[List[str]]]:
    p = _Tables()
    p.feed(html)
    return p.tables


def rows_by(table: List[List[str]], *cols: int) -> Dict[tuple, Dict[str, str]]:
    """Data rows keyed by the given columns, each as {header: cell}."""
    head = table[0]
    return {tuple(r[c] for c in cols): dict(zip(head, r)) for r in table[1:]}


def assert_self_contained(html: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I), "external reference"
    assert "<link" not in html and "<script" not in html and "@import" not in html
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', html)
    assert images
    for data in images:
        assert base64.b64decode(data).startswith(PNG)


@pytest.fixture(scope="module")
def completion_run(tmp_path_factory):
    from conftest import make_openke

    root = tmp_path_factory.mktemp("report")
    ds = make_openke(root / ODD, num_entities=200)
    cfg = snagkg.resolve_config(preset="synthetic", overrides={
        "dataset": str(ds), "train.epochs": 2, "encoder.hidden": 16, "device": "cpu", "train.eval_every": 1})
    snagkg.train(cfg, root / "run", progress=False, echo=lambda s: None)
    return root / "run"


@pytest.fixture(scope="module")
def report(completion_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "report.html"
    write_report([completion_run], out)
    return out


@pytest.mark.slow
def test_single_run_report_numbers_plots_escaping(completion_run, report):
    html = report.read_text(encoding="utf-8")
    results = json.loads((completion_run / "results.json").read_text())
    t = tables(html)
    summary = rows_by(t["metrics"], 2)
    assert set(summary) == {("valid",), ("test",)}
    for split in ("valid", "test"):
        row = summary[(split,)]
        for k in ("mrr", "hits@1", "hits@3", "hits@10"):
            assert float(row[k]) == pytest.approx(results[split][k], abs=5e-5), (split, k)
        assert row["best epoch"] == str(results["best_epoch"]) and row["epochs run"] == "2"
        assert row["parameters"] == f"{results['parameters']:,}"
    detail = rows_by(t["metrics-1"], 0)  # split (direction) x metric, both directions separately
    assert float(detail[("test (tail)",)]["mrr"]) == pytest.approx(results["test"]["tail_mrr"], abs=5e-5)
    assert float(detail[("valid (head)",)]["mr"]) == pytest.approx(results["valid"]["head_mr"], abs=0.05)

    assert_self_contained(html)
    assert html.count(IMG) == 2  # training curves, modality weights (no robustness.json yet)

    # the dataset path holds '<b>&amp;': escaped in the config table, never raw HTML
    assert "ds &lt;b&gt;&amp;amp;" in html and "<b>" not in html
    # the modality weights of the best model: their means match the model's own
    entities = snagkg.load_run(completion_run, device="cpu").model.entities
    w = entities.modality_weights()
    stats = rows_by(t["weights-1"], 0)
    assert [k[0] for k in stats] == list(entities.modalities) == ["structure", "image", "text"]
    for j, m in enumerate(entities.modalities):
        assert float(stats[(m,)]["mean"]) == pytest.approx(w[:, j].mean().item(), abs=5e-5)
        assert float(stats[(m,)]["max"]) == pytest.approx(w[:, j].max().item(), abs=5e-5)


@pytest.mark.slow
def test_two_runs_side_by_side(completion_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(completion_run, other)
    res = json.loads((other / "results.json").read_text())
    res["test"]["mrr"] = 0.123456
    (other / "results.json").write_text(json.dumps(res))
    cfg = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(cfg.replace("lr: 0.002", "lr: 0.0035"))
    out = tmp_path / "two.html"
    assert main(["report", str(completion_run), str(other), "--output", str(out), "--no-weights"]) == 0
    html = out.read_text(encoding="utf-8")
    t = tables(html)
    side = rows_by(t["metrics"], 0, 2)
    assert set(side) == {("run", "valid"), ("run", "test"), ("other", "valid"), ("other", "test")}
    assert side[("other", "test")]["mrr"] == "0.1235"
    assert side[("run", "test")]["mrr"] == f"{json.loads((completion_run / 'results.json').read_text())['test']['mrr']:.4f}"
    assert 'class="side-by-side"' in html and 'id="overlay"' in html
    assert t["config-diff"][1:] == [["train.lr", "0.002", "0.0035"]]
    assert html.count(IMG) == 3  # overlay + one curve per run
    assert_self_contained(html)


@pytest.mark.slow
def test_robustness_section_and_bad_robustness_file(completion_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(completion_run, run)
    rob = {"run": str(run), "task": "completion", "modalities": ["image"], "mode": "drop", "split": "test",
           "levels": [0.0, 0.5, 1.0], "metrics": [{"mrr": 0.3, "hits@1": 0.2, "hits@10": 0.5},
                                                 {"mrr": 0.25, "hits@1": 0.15, "hits@10": 0.45},
                                                 {"mrr": 0.125, "hits@1": 0.05, "hits@10": 0.3}]}
    (run / "robustness.json").write_text(json.dumps(rob))
    write_report(run, tmp_path / "r.html", weights=False)
    html = (tmp_path / "r.html").read_text()
    assert "Robustness: modality image, mode drop, split test" in html
    assert tables(html)["robustness-1"] == [["level", "mrr", "hits@1", "hits@10", "mrr lost"],
                                            ["0.0000", "0.3000", "0.2000", "0.5000", "0.0000"],
                                            ["0.5000", "0.2500", "0.1500", "0.4500", "0.0500"],
                                            ["1.0000", "0.1250", "0.0500", "0.3000", "0.1750"]]
    assert html.count(IMG) == 2

    (run / "robustness.json").write_text('{"levels": [0, 0.5], "metrics": [{"mrr": 1}]}')  # lengths differ
    write_report(run, tmp_path / "r.html", weights=False)
    html = (tmp_path / "r.html").read_text()
    assert "robustness.json skipped" in html and "Robustness:" not in html
    (run / "robustness.json").write_text("{not json")
    write_report(run, tmp_path / "r.html", weights=False)
    assert "robustness.json skipped" in (tmp_path / "r.html").read_text()


@pytest.mark.slow
def test_model_that_cannot_load_is_noted(completion_run, tmp_path):
    run = tmp_path / "moved"
    shutil.copytree(completion_run, run)
    cfg = run / "config.yaml"
    cfg.write_text(re.sub(r"(?m)^dataset: .*$", f"dataset: {tmp_path / 'gone'}", cfg.read_text()))
    out = write_report([run], tmp_path / "r.html")
    html = out.read_text()
    assert "modality weights not shown: the model could not be loaded" in html
    assert "Modality weights" not in html and 'id="metrics"' in html


@pytest.mark.slow
def test_alignment_run(tmp_path):
    from snagkg.data.datasets.synthetic_pair import write_synthetic_pair

    pair = write_synthetic_pair(tmp_path / "pair", entities=100, seed=3)
    cfg = C.resolve(preset="dbp15k", overrides={
        "task": "alignment", "dataset": str(pair), "encoder.hidden": 16, "alignment.structure_dim": 16,
        "alignment.char_vocab": 300, "alignment.valid_ratio": 0.3, "alignment.iterative": False,
        "train.epochs": 2, "train.eval_every": 1, "train.batch_size": 512, "device": "cpu"})
    res = snagkg.train(cfg, tmp_path / "arun", progress=False, echo=lambda s: None)
    out = write_report([tmp_path / "arun"], tmp_path / "a.html")
    html = out.read_text()
    t = tables(html)
    assert t["metrics"][0][3:6] == ["hits@1", "hits@10", "mrr"]
    test = rows_by(t["metrics"], 2)[("test",)]
    assert float(test["hits@10"]) == pytest.approx(res.test["hits@10"], abs=5e-5)
    detail = rows_by(t["metrics-1"], 0)
    assert float(detail[("test (right to left)",)]["mrr"]) == pytest.approx(res.test["rl_mrr"], abs=5e-5)
    assert "validation hits@1" in html and html.count(IMG) == 2
    assert_self_contained(html)


def _cli_error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    return err


@pytest.mark.slow
def test_bad_input_is_one_line_naming_the_file(completion_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    out.write_text("previous report")
    assert f"{tmp_path / 'none'}: not a run folder" in _cli_error(
        ["report", str(tmp_path / "none"), "--output", str(out)], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a run folder" in _cli_error(["report", str(empty), "--output", str(out)], capsys)

    run = tmp_path / "run"
    shutil.copytree(completion_run, run)
    (run / "results.json").unlink()
    assert f"{run / 'results.json'}: results.json not found" in _cli_error(
        ["report", str(run), "--output", str(out)], capsys)
    (run / "results.json").write_text('{"valid": {"mrr": 0.1},\n "test": }')
    assert f"{run / 'results.json'}:2: not valid JSON" in _cli_error(
        ["report", str(run), "--output", str(out), "--no-weights"], capsys)
    shutil.copy(completion_run / "results.json", run / "results.json")
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write("{broken\n")
    assert f"{run / 'metrics.jsonl'}:3: not valid JSON" in _cli_error(
        ["report", str(run), "--output", str(out), "--no-weights"], capsys)
    assert "is a folder" in _cli_error(["report", str(completion_run), "--output", str(tmp_path)], capsys)
    assert out.read_text() == "previous report"  # nothing already written is lost


@pytest.mark.slow
def test_without_the_extra_the_error_says_what_to_install(completion_run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(SnagError, match=r"pip install 'snagkg\[report\]'"):
        write_report([completion_run], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no headless browser (chromium, chromium-browser or google-chrome) "
                                            "on PATH; install one (Debian: apt-get install chromium) to run it")
def test_report_renders_in_headless_chromium(report, tmp_path):
    base = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    t = tables(html)
    assert "metrics" in t and [r[2] for r in t["metrics"][1:]] == ["valid", "test"]
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) == 2

    shot = tmp_path / "shot.png"
    run = subprocess.run(base + [f"--screenshot={shot}", "--window-size=1000,1400", report.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000
    from PIL import Image

    img = Image.open(shot).convert("L")
    assert img.size == (1000, 1400)
    dark = sum(img.histogram()[:128])  # text, table borders and plot lines: not a blank page
    assert dark > 2000


# -- issue 35: present/missing weight groups, outliers, "MRR lost", the best epoch, compile_seconds --------
def _fake_run(folder, compile_seconds=0.0, robustness=None):
    """A finished-looking run folder (no model): config.yaml, results.json, metrics.jsonl."""
    folder.mkdir()
    (folder / "config.yaml").write_text("task: completion\ndataset: synthetic\n")
    split = {"mrr": 0.25, "hits@1": 0.125, "hits@10": 0.5, "tail_mrr": 0.3, "head_mrr": 0.2,
             "seconds": 1.5, "compile_seconds": compile_seconds}
    (folder / "results.json").write_text(json.dumps({"valid": split, "test": {**split, "compile_seconds": 0.0},
                                                     "best_epoch": 2, "epochs_run": 3}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "loss": 1.0 / e, "valid": {"mrr": m}}) + "\n"
        for e, m in ((1, 0.1), (2, 0.3), (3, 0.2))))
    if robustness is not None:
        (folder / "robustness.json").write_text(json.dumps(robustness))
    return folder


def test_compile_seconds_column_only_when_something_was_compiled(tmp_path):
    write_report(_fake_run(tmp_path / "cpu"), tmp_path / "a.html", weights=False)
    head = tables((tmp_path / "a.html").read_text())["metrics-1"][0]
    assert "compile_seconds" not in head and "mrr" in head and "seconds" not in head
    write_report(_fake_run(tmp_path / "gpu", compile_seconds=2.5), tmp_path / "b.html", weights=False)
    t = tables((tmp_path / "b.html").read_text())["metrics-1"]
    assert "compile_seconds" in t[0]
    assert rows_by(t, 0)[("valid",)]["compile_seconds"] == "2.50"


def test_best_epoch_is_marked_on_the_curves(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    marks = []
    real = Axes.axvline
    monkeypatch.setattr(Axes, "axvline", lambda self, x=0, *a, **k: marks.append(x) or real(self, x, *a, **k))
    write_report(_fake_run(tmp_path / "run"), tmp_path / "r.html", weights=False)
    assert marks == [2, 2]  # the loss plot and the validation plot
    assert "the best epoch (2), whose model is kept" in (tmp_path / "r.html").read_text()


def test_robustness_table_keeps_the_mrr_lost_column(tmp_path):
    rob = {"levels": [0.0, 0.5], "metrics": [{"mrr": 0.4, "hits@1": 0.3}, {"mrr": 0.1, "hits@1": 0.05}],
           "mrr_lost": [0.0, 0.3]}
    write_report(_fake_run(tmp_path / "run", robustness=rob), tmp_path / "r.html", weights=False)
    t = tables((tmp_path / "r.html").read_text())["robustness-1"]
    assert t == [["level", "mrr", "hits@1", "mrr lost"], ["0.0000", "0.4000", "0.3000", "0.0000"],
                 ["0.5000", "0.1000", "0.0500", "0.3000"]]


def test_weight_plot_splits_present_and_missing_and_shows_outliers(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from snagkg.api.report import read_run, render

    boxes = []
    real = Axes.boxplot
    monkeypatch.setattr(Axes, "boxplot", lambda self, x, *a, **k: boxes.append((x, k)) or real(self, x, *a, **k))
    run = read_run(_fake_run(tmp_path / "run"))
    run.weights = {"structure": [0.2, 0.3, 0.2, 0.9], "image": [0.7, 0.6, 0.1, 0.05], "text": [0.1, 0.1, 0.7, 0.05]}
    run.missing = {"image": [False, False, True, True], "text": [False, False, False, False]}
    html = render([run])
    data, kwargs = boxes[0]
    assert kwargs.get("showfliers") is True
    assert [list(map(float, d)) for d in data] == [[0.2, 0.3, 0.2, 0.9], [0.7, 0.6], [0.1, 0.05],
                                                  [0.1, 0.1, 0.7, 0.05]]
    groups = rows_by(tables(html)["weight-groups-1"], 0, 1)
    assert list(groups) == [("image", "present"), ("image", "missing")]
    assert groups[("image", "present")]["mean"] == "0.6500" and groups[("image", "missing")]["count"] == "2"
    overall = rows_by(tables(html)["weights-1"], 0)
    assert overall[("image",)]["mean"] == "0.3625"  # the all-entities table is kept
