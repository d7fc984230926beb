"""Shared fixtures: tiny datasets written to a temporary folder."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

os.environ.setdefault("SNAGKG_COMPILE", "1")


def pytest_addoption(parser):
    parser.addoption("--device", default="auto",
                     help="devices for the tests that take a `device` argument (ranking, training steps, "
                          "runs through the CLI): a comma-separated list such as cpu, cuda or cpu,cuda:1; "
                          "auto (default) = cpu, and cuda too where torch can use it")


def requested_devices(config) -> list:
    names = [d.strip() for d in str(config.getoption("--device")).split(",") if d.strip()]
    if names in ([], ["auto"]):
        names = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    bad = [d for d in names if not re.fullmatch(r"cpu|cuda(:\d+)?", d)]
    if bad:
        raise pytest.UsageError(f"--device {','.join(bad)}: expected auto, cpu, cuda or cuda:N")
    return names


def pytest_configure(config):
    requested_devices(config)  # a bad --device is a usage error before collection


def pytest_generate_tests(metafunc):
    """``device``: each requested device (``--device``), marked ``device`` (``-m device`` selects these
    tests); CUDA ones skip where CUDA is unavailable."""
    if "device" in metafunc.fixturenames:
        no_cuda = not torch.cuda.is_available()
        metafunc.parametrize("device", [
            pytest.param(d, marks=[pytest.mark.device,
                                   pytest.mark.skipif(d.startswith("cuda") and no_cuda,
                                                      reason=f"--device {d}: CUDA is not available")])
            for d in requested_devices(metafunc.config)])


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_openke(folder: Path, num_entities: int = 300, num_relations: int = 8, seed: int = 0,
                features: bool = True) -> Path:
    """Write a small synthetic MMKG in the OpenKE layout (with image/text features)."""
    from snagkg.data.datasets import write_openke
    from snagkg.data.datasets.synthetic import SyntheticConfig, generate

    kg = generate(SyntheticConfig(num_entities=num_entities, num_relations=num_relations,
                                  triples_per_entity=6.0), seed=seed)
    if not features:
        kg.features = {}
    write_openke(kg, folder)
    return folder


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A tiny hand-written OpenKE dataset (tests/_helpers.py)."""
    from _helpers import write_tiny_openke
    return write_tiny_openke(tmp_path / "ds")


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    """A YAML config for runs of a few seconds on ``tiny``."""
    from _helpers import TINY_CONFIG
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_CONFIG)
    return p


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_openke(tmp_path / "tiny")


@pytest.fixture
def fast_config(tmp_path: Path) -> Path:
    """A YAML config that makes training on tiny data take seconds."""
    path = tmp_path / "fast.yaml"
    path.write_text(
        "encoder: {hidden: 32, heads: 2}\n"
        "train: {epochs: 3, batch_size: 256, lr: 0.005, negatives: 8, eval_every: 1, patience: 5}\n"
    )
    return path


@pytest.fixture(scope="session")
def memorised_run(tmp_path_factory) -> Path:
    """A completion run that memorises a tiny synthetic graph (100 entities, ~100 training triples;
    about 20% of the image and text rows missing), trained once per session (~10 s) for the tests of
    predict, export and weights (all marked slow)."""
    import snagkg

    root = tmp_path_factory.mktemp("use")
    ds = make_openke(root / "ds", num_entities=100, num_relations=4)
    cfg = snagkg.resolve_config(preset="synthetic", overrides={
        "dataset": str(ds), "train.epochs": 40, "train.lr": 0.02, "encoder.hidden": 32, "device": "cpu",
        "train.eval_every": 40, "train.batch_size": 256, "train.negatives": 16})
    snagkg.train(cfg, root / "run", progress=False, echo=lambda s: None)
    return root / "run"


@pytest.fixture(scope="session")
def memorised_task(memorised_run):
    import snagkg

    return snagkg.load_run(memorised_run, device="cpu")


@pytest.fixture
def run(memorised_run) -> Path:
    """The session's memorised completion run (a test module may define its own ``run``)."""
    return memorised_run


@pytest.fixture
def task(memorised_task):
    """The memorised run, loaded."""
    return memorised_task


@pytest.fixture
def alignment_run(tmp_path) -> Path:
    """The small alignment run folder in tests/data/legacy_runs, its dataset path pointed at the vendored data."""
    from _helpers import legacy_run
    return legacy_run("alignment", tmp_path)
