"""Pinned metrics: the synthetic runs of tests/data/make_pins.py give exactly the metrics recorded in
tests/data/redesign_pins.json (made before the redesign of the shared representation)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
PINS = json.loads((DATA / "redesign_pins.json").read_text())


def _pins_module():
    spec = importlib.util.spec_from_file_location("make_pins", DATA / "make_pins.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PINS))
def test_same_seed_gives_the_pinned_metrics(name, tmp_path):
    """The synthetic runs give exactly the metrics they gave before the redesign (same operation
    order: equal to the last bit, not within a tolerance). The pins were made with 2 torch threads
    (the reductions' order depends on the thread count), so the test runs with 2 whatever the
    caller's OMP_NUM_THREADS or core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _check_pins(name, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_pins(name, tmp_path):
    pins = _pins_module()
    got = pins.run(name, pins.runs(tmp_path)[name], tmp_path)
    want = PINS[name]
    assert got["best_epoch"] == want["best_epoch"]
    for split in ("valid", "test"):
        for key, value in want[split].items():  # the keys of before; direction keys were added since
            assert got[split][key] == value, (split, key)
