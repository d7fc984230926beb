"""Studies (snagkg.api.study, snagkg.api.study_summary, snagkg.evaluation.statistics, ``snagkg study``):
the statistics against hand computations, a tiny study end to end with resume after a kill, SPEC
errors, and the robustness patterns (long-tail, corrupt)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from snagkg.api.robustness import modality_draws, robustness
from snagkg.api.study import RANKS_FILE, load_spec, plan
from snagkg.api.study_summary import summarize_study
from snagkg.cli.main import main
from snagkg.evaluation.statistics import Spread, paired_difference
from snagkg.runtime.errors import SnagError

from conftest import make_openke


# -- statistics ----------------------------------------------------------------------------------------
def test_spread_is_mean_and_sample_std():
    s = Spread.of([0.30, 0.34, 0.35])
    assert s.mean == pytest.approx(0.33)
    assert s.std == pytest.approx(np.sqrt(((0.03 ** 2) + (0.01 ** 2) + (0.02 ** 2)) / 2))
    assert (s.low, s.high, s.count) == (0.30, 0.35, 3)
    assert Spread.of([0.5]).std == 0.0


def test_paired_difference_by_hand():
    rr_a = [np.array([1.0, 0.5, 0.25, 1.0]), np.array([1.0, 1.0, 0.5, 0.2])]
    rr_b = [np.array([0.5, 0.5, 0.25, 1.0]), np.array([1.0, 0.5, 0.5, 0.2])]
    d = paired_difference("a", "b", [1, 2], rr_a, rr_b, samples=4000)
    # per seed: (0.5 + 0 + 0 + 0) / 4 = 0.125 and (0 + 0.5 + 0 + 0) / 4 = 0.125; pooled mean 1.0 / 8
    assert d.mean == pytest.approx(0.125)
    assert (d.seed_low, d.seed_high) == (pytest.approx(0.125), pytest.approx(0.125))
    assert d.queries == 4 and d.seeds == [1, 2]
    # the bootstrap mean of 8 values of which 2 are 0.5: its 2.5% quantile is 0 (no 0.5 drawn in
    # (6/8)^8 = 10% of resamples), so the interval includes 0 and the difference is not resolved
    assert d.low == 0.0 and d.high > d.mean and not d.resolved


def test_paired_difference_resolved_when_every_query_moves_the_same_way():
    rr_a = [np.full(50, 0.6), np.full(50, 0.7)]
    rr_b = [np.full(50, 0.5), np.full(50, 0.5)]
    d = paired_difference("a", "b", [1, 2], rr_a, rr_b)
    assert d.mean == pytest.approx(0.15) and (d.seed_low, d.seed_high) == (pytest.approx(0.1), pytest.approx(0.2))
    assert 0.1 <= d.low < d.mean < d.high <= 0.2 and d.resolved
    flipped = paired_difference("b", "a", [1, 2], rr_b, rr_a)
    assert flipped.mean == pytest.approx(-0.15) and flipped.high < 0 and flipped.resolved


def test_paired_difference_needs_the_same_queries():
    with pytest.raises(ValueError, match="same queries"):
        paired_difference("a", "b", [1], [np.ones(3)], [np.ones(4)])


# -- SPEC errors ---------------------------------------------------------------------------------------
SPEC = """dataset: {dataset}
config: {config}
seeds: [1, 2]
variants:
  noise: {{}}
  no-noise: {{noise: {{ratio: 0.0}}}}
compare:
  - [noise, no-noise]
"""


def _spec(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,where,what", [
    ("dataset: x\nseeds: [1]\nvariants: {a: {}}\nextra: 1\n", 4, "unknown key 'extra'"),
    ("dataset: x\nseeds: []\nvariants: {a: {}}\n", 2, "seeds must be a non-empty list"),
    ("dataset: x\nseeds: [1, 1]\nvariants: {a: {}}\n", 2, "distinct"),
    ("dataset: synthetic\nseeds: [1]\nvariants:\n  a: {}\ncompare:\n  - [a, b]\n", 5, "'b' is not a variant"),
    ("dataset: synthetic\nseeds: [1]\nvariants:\n  a: {noise: {ratio: 2.0}}\n", 4, "variant 'a'"),
    ("dataset: synthetic\nseeds: [1]\nvariants:\n  a/b: {}\n", 4, "variant name 'a/b'"),
    # mistakes that would otherwise surface after the training, or run something else than asked
    ("preset: nope\ndataset: synthetic\nseeds: [1]\nvariants: {a: {}}\n", 1, "unknown preset 'nope'"),
    ("dataset: synthetic\nseeds: [1]\nbase: {train: {lr: -1}}\nvariants: {a: {}}\n", 3, "lr"),
    ("dataset: synthetic\nseeds: [1]\nvariants: {a: {}}\ncompare: [[a, a]]\n", 4, "compared with itself"),
    ("dataset: synthetic\nseeds: [1]\nvariants: {a: {}}\nintensity:\n  x: noise.ratioo\n  variants: [a]\n", 5,
     "'noise.ratioo' is not a config key"),
    ("dataset: synthetic\nseeds: [1]\nvariants: {a: {}}\nintensity: {x: noise.ratio, variants: [a], y: 1}\n", 4,
     "intensity: unknown key 'y'"),
    ("dataset: synthetic\nseeds: [1]\nvariants: {a: {}}\nrobustness:\n  variants: [a]\n  modalites: [image]\n", 6,
     "robustness: unknown key 'modalites'"),
    ("dataset: synthetic\nseeds: [1]\nvariants: {a: {}}\nrobustness:\n  variants: [a]\n  modalities: image\n", 6,
     "robustness modalities must be a non-empty list"),
    ("dataset: synthetic\nseeds: [1]\nvariants: {a: {}}\nrobustness:\n  variants: [a]\n  patterns: uniform\n", 6,
     "robustness patterns must be a non-empty list"),
    ("dataset: synthetic\nseeds: [1]\nvariants: {a: {}}\nrobustness:\n  variants: [a]\n  levels: [0, x]\n", 6,
     "levels must be numbers"),
    ("dataset: synthetic\nseeds: [1]\nvariants: {a: {}}\nrobustness:\n  variants: [a]\n  levels: 5\n", 6,
     "levels must be a non-empty list"),
    ("dataset: synthetic\nseeds: [1]\nvariants: {a: {modalities: [structure, image]}}\nrobustness:\n"
     "  variants: [a]\n  modalities: [text]\n", 6, "variant 'a': robustness modality 'text' is not used by this run"),
])
def test_spec_errors_name_the_file_and_line(tmp_path, capsys, text, where, what):
    spec = _spec(tmp_path, text)
    assert main(["study", str(spec), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {spec}:{where}:") and what in err, err


def test_a_changed_spec_for_a_trained_run_is_an_error(tmp_path):
    ds = make_openke(tmp_path / "ds", num_entities=120)
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("encoder: {hidden: 16, heads: 2}\ntrain: {epochs: 1, batch_size: 256, negatives: 4}\n")
    spec = load_spec(_spec(tmp_path, SPEC.format(dataset=ds, config=cfg)))
    jobs = plan(spec, tmp_path / "out")
    assert [(j.variant, j.seed) for j in jobs] == [("noise", 1), ("no-noise", 1), ("noise", 2), ("no-noise", 2)]
    folder = jobs[1].folder
    folder.mkdir(parents=True)
    from snagkg.config import schema as C
    (folder / "config.yaml").write_text(C.dump(spec.config_of("noise", 1)))  # trained with noise on
    with pytest.raises(SnagError, match="other settings than the SPEC now asks for .*noise.ratio"):
        plan(spec, tmp_path / "out")


# -- a tiny study end to end ---------------------------------------------------------------------------
def _run_cli(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "snagkg", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_tiny_study_resumes_after_a_kill_and_summarises_by_hand(tmp_path):
    ds = make_openke(tmp_path / "ds", num_entities=150)
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("encoder: {hidden: 16, heads: 2}\n"
                   "train: {epochs: 3, batch_size: 256, lr: 0.01, negatives: 4, eval_every: 1, patience: 5}\n")
    spec = _spec(tmp_path, SPEC.format(dataset=ds, config=cfg))
    out = tmp_path / "study"
    # kill the study once the first run has a checkpoint
    p = _run_cli(["study", str(spec), "--output", str(out), "--jobs", "1", "--no-progress"],
                 start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "noise" / "seed-1" / "checkpoint.pt").exists():
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "no-noise" / "seed-2" / "results.json").exists()
    done = _run_cli(["study", str(spec), "--output", str(out), "--jobs", "2", "--no-progress"])
    stdout, stderr = done.communicate(timeout=600)
    assert done.returncode == 0, stderr
    assert "4 runs" in stderr
    first = (out / "noise" / "seed-1" / RANKS_FILE).stat().st_mtime_ns
    again = _run_cli(["study", str(spec), "--output", str(out), "--no-progress"])
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0 and "4 done, 0 to run" in stderr
    assert (out / "noise" / "seed-1" / RANKS_FILE).stat().st_mtime_ns == first  # re-used, not redone

    summary = summarize_study(out, samples=500)
    tests = {(v, s): json.loads((out / v / f"seed-{s}" / "results.json").read_text())["test"]
             for v in ("noise", "no-noise") for s in (1, 2)}
    noise = next(v for v in summary.variants if v.name == "noise")
    mrrs = [tests[("noise", s)]["mrr"] for s in (1, 2)]
    assert noise.metrics["mrr"].mean == pytest.approx(np.mean(mrrs))
    assert noise.metrics["mrr"].std == pytest.approx(np.std(mrrs, ddof=1))
    # the saved ranks are the ranks the run's metrics were computed from
    for (v, s), test in tests.items():
        ranks = np.load(out / v / f"seed-{s}" / RANKS_FILE)
        assert len(ranks) == 2 * test["count"]
        assert (1.0 / ranks).mean() == pytest.approx(test["mrr"], abs=1e-6)
    (d,) = summary.differences
    by_seed = [tests[("noise", s)]["mrr"] - tests[("no-noise", s)]["mrr"] for s in (1, 2)]
    assert d.mean == pytest.approx(np.mean(by_seed), abs=1e-6)
    assert (d.seed_low, d.seed_high) == (pytest.approx(min(by_seed), abs=1e-6), pytest.approx(max(by_seed), abs=1e-6))
    assert d.low <= d.mean <= d.high
    text = (out / "summary.md").read_text()
    assert "noise - no-noise" in text and ("not shown" in text) == (not d.resolved)


# -- robustness patterns -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import snagkg
    root = tmp_path_factory.mktemp("patterns")
    ds = make_openke(root / "ds", num_entities=150)
    cfg = snagkg.resolve_config(overrides={"dataset": str(ds), "encoder.hidden": 16, "train.epochs": 1,
                                           "train.batch_size": 256, "train.negatives": 4, "seed": 1})
    snagkg.train(cfg, root / "run", progress=False, echo=lambda s: None)
    return root / "run"


def test_long_tail_orders_rows_by_degree_lowest_first(tiny_run):
    from snagkg.api.run import load_run
    task = load_run(tiny_run)
    ent = task.model.entities
    degrees = task.entity_degrees()
    assert degrees.sum() == 2 * len(task.kg.train)
    uniform = modality_draws(ent, ["image"], seed=3)["image"]["perm"].numpy()
    tail = modality_draws(ent, ["image"], seed=3, degrees=degrees)["image"]["perm"].numpy()
    assert sorted(tail) == list(range(len(degrees)))
    assert (np.diff(degrees[tail]) >= 0).all()                  # lowest degree first
    assert not (np.diff(degrees[uniform]) >= 0).all()           # the uniform order is not sorted
    low = degrees[tail[0]]
    ties = tail[degrees[tail] == low]
    assert list(ties) == [i for i in uniform if degrees[i] == low]  # ties keep the seeded order


def test_corrupt_replaces_rows_but_leaves_the_missing_mask(tiny_run):
    drop = robustness(tiny_run, modality="image", levels=[0, 1], pattern="uniform", write=False)
    corrupt = robustness(tiny_run, modality="image", levels=[0, 1], pattern="corrupt", write=False)
    base = drop.missing[0]["image"]
    assert drop.missing[1]["image"] == 1.0 and base < 1.0
    assert corrupt.missing[0]["image"] == corrupt.missing[1]["image"] == base
    assert corrupt.metrics[1]["mrr"] != corrupt.metrics[0]["mrr"]  # the rows did change
    assert corrupt.pattern == "corrupt"
    long_tail = robustness(tiny_run, modality="image", levels=[0, 0.5], pattern="long-tail", write=False)
    assert long_tail.missing[1]["image"] > base


def test_pattern_errors(tiny_run, capsys):
    assert main(["robustness", str(tiny_run), "--pattern", "corrupt", "--mode", "corrupt"]) == 2
    assert "takes no --mode corrupt" in capsys.readouterr().err
    with pytest.raises(SnagError, match="--pattern must be one of"):
        robustness(tiny_run, pattern="random", write=False)


# -- summary and report of a study folder written by hand ----------------------------------------------
FAKE = """dataset: synthetic
seeds: [1, 2]
variants:
  a: {}
  b: {noise: {ratio: 0.0}}
compare:
  - [a, b]
intensity: {x: noise.ratio, variants: [b, a]}
robustness: {variants: [a, b], modalities: [image], patterns: [uniform], levels: [0.0, 0.5, 1.0]}
"""


@pytest.fixture
def fake_study(tmp_path):
    """A study folder as `snagkg study` leaves it, with made-up figures (no training)."""
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.yaml").write_text(FAKE)
    ranks = {("a", 1): [1, 2, 1, 4], ("a", 2): [1, 1, 2, 4], ("b", 1): [2, 2, 1, 4], ("b", 2): [1, 2, 2, 4]}
    curves = {("a", 1): [0.6, 0.5, 0.4], ("a", 2): [0.6, 0.55, 0.5], ("b", 1): [0.6, 0.4, 0.2], ("b", 2): [0.6, 0.5, 0.3]}
    for (v, s), r in ranks.items():
        run = out / v / f"seed-{s}"
        run.mkdir(parents=True)
        rr = 1.0 / np.asarray(r, dtype=np.float64)
        test = {"mrr": float(rr.mean()), "hits@1": float((np.asarray(r) == 1).mean()), "hits@10": 1.0, "count": 2}
        (run / "results.json").write_text(json.dumps({"test": test, "best_epoch": 3 if v == "a" else 2, "epochs_run": 3}))
        np.save(run / RANKS_FILE, np.asarray(r, dtype=np.float64))
        c = curves[(v, s)]
        (run / "robustness.uniform.image.json").write_text(json.dumps(
            {"levels": [0.0, 0.5, 1.0], "metrics": [{"mrr": m} for m in c], "mrr_lost": [c[0] - m for m in c]}))
    return out


def test_summary_of_a_study_folder_by_hand(fake_study, capsys):
    s = summarize_study(fake_study, samples=1000)
    a, b = s.variants
    assert a.metrics["mrr"].mean == pytest.approx(np.mean([(1 + 0.5 + 1 + 0.25) / 4, (1 + 1 + 0.5 + 0.25) / 4]))
    assert a.at_cap == 2 and b.at_cap == 0 and s.unfinished == []
    (d,) = s.differences
    assert d.mean == pytest.approx(((0.5 + 0 + 0 + 0) + (0 + 0.5 + 0 + 0)) / 8)  # per query, pooled over seeds
    assert (d.seed_low, d.seed_high) == (pytest.approx(0.125), pytest.approx(0.125))
    key, points = s.intensity
    assert key == "noise.ratio" and [(x, v) for x, v, _ in points] == [(0.0, "b"), (0.2, "a")]
    sweep_a = next(w for w in s.sweeps if w.variant == "a")
    assert [m.mean for m in sweep_a.mrr] == pytest.approx([0.6, 0.525, 0.45])
    assert sweep_a.lost.mean == pytest.approx(np.mean([(0.1 + 0.2) / 2, (0.05 + 0.1) / 2]))
    ((pattern, modality, ratio),) = s.lost_ratio
    assert (pattern, modality) == ("uniform", "image")
    assert ratio.mean == pytest.approx(np.mean([0.15 / 0.3, 0.075 / 0.2]))
    assert s.ratio_of == ("a", "b") and "MRR lost by a as a share of that lost by b" in s.markdown()
    assert main(["study", str(fake_study), "--summary", "--samples", "200"]) == 0
    printed = capsys.readouterr().out
    assert "| a - b | +12.50 |" in printed and (fake_study / "summary.csv").read_text().startswith("kind,name")
    assert json.loads((fake_study / "summary.json").read_text())["differences"][0]["a"] == "a"


def test_summary_lists_unfinished_runs(fake_study):
    (fake_study / "b" / "seed-2" / RANKS_FILE).unlink()
    s = summarize_study(fake_study, samples=200)
    assert s.unfinished == ["b/seed-2"] and s.differences[0].seeds == [1]


def test_summary_refuses_ranks_that_do_not_reproduce_the_test_mrr(fake_study, capsys):
    """Ranks of other queries than the headline averages (an older version's both-direction alignment
    ranks, say) would pair the wrong queries: a one-line error naming the file."""
    bad = fake_study / "a" / "seed-2" / RANKS_FILE
    np.save(bad, np.asarray([1, 1, 2, 4, 3, 3, 3, 3], dtype=np.float64))  # the four queries, then four more
    with pytest.raises(SnagError, match="ranks give test MRR"):
        summarize_study(fake_study, samples=200)
    assert main(["study", str(fake_study), "--summary"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(bad) in err and "\n" not in err and "rerun the study" in err


def test_a_rerun_study_rewrites_stale_ranks(tiny_run, tmp_path):
    """A finished run whose saved ranks do not reproduce its test MRR is not done: the study rewrites
    them from the run's best model (nothing is trained again)."""
    from snagkg.api.study import Job, checked_ranks, job_done, run_job
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    job = Job("v", 1, run, None, None)
    assert not job_done(job)                                   # no ranks yet
    threads = torch.get_num_threads()
    run_job(job, threads)
    mrr = json.loads((run / "results.json").read_text())["test"]["mrr"]
    good = checked_ranks(run, mrr)
    assert job_done(job) and (1.0 / good).mean() == pytest.approx(mrr, abs=1e-6)
    np.save(run / RANKS_FILE, np.concatenate([good, good[::-1] + 1]))
    assert not job_done(job)
    before = (run / "best.pt").stat().st_mtime_ns
    run_job(job, threads)
    assert job_done(job) and np.array_equal(np.load(run / RANKS_FILE), good)
    assert (run / "best.pt").stat().st_mtime_ns == before


def test_alignment_ranks_are_the_headline_queries(alignment_run):
    """An alignment run's saved ranks are its left-to-right ranks, the queries its MRR averages."""
    from snagkg.api.run import load_run
    task = load_run(alignment_run)
    ranks = task.query_ranks("test")
    test = task.evaluate("test")
    assert len(ranks) == test["count"] == len(task.split_links("test"))
    assert (1.0 / ranks.astype(np.float64)).mean() == pytest.approx(test["mrr"], abs=1e-9)
    assert test["rl_mrr"] != pytest.approx(test["mrr"], abs=1e-9)  # the other direction differs: not in them


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_study_report_writes_its_plots_as_png_files(fake_study, tmp_path, capsys):
    out, figures = tmp_path / "study.html", tmp_path / "figures"
    assert main(["report", str(fake_study), "--output", str(out), "--figures", str(figures)]) == 0
    assert sorted(p.name for p in figures.iterdir()) == ["intensity.png", "robustness-uniform-image.png"]
    html = out.read_text()
    for png in figures.iterdir():  # the files are the page's plots, byte for byte
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG") and base64.b64encode(data).decode("ascii") in html
    assert "plots as PNG files in" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["report", str(fake_study), "--output", str(out), "--figures", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    assert main(["report", str(run), "--output", str(out), "--figures", str(figures)]) == 2
    assert "--figures is for one study folder" in capsys.readouterr().err


def test_study_report(fake_study, tmp_path):
    out = tmp_path / "study.html"
    assert main(["report", str(fake_study), "--output", str(out)]) == 0
    html = out.read_text()
    assert "a - b" in html and "+12.50" in html
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', html)) == 2  # intensity + one sweep
    if BROWSER is None:
        pytest.skip("no headless browser (Debian: apt-get install chromium) for the rendering check")
    base = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0 and "Differences" in dom.stdout and "no: not shown" in dom.stdout
