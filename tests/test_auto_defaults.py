"""Defaults for an unseen graph (snagkg.config.auto): the rule's values for representative graphs,
explicit settings win, the command line prints one line and saves the values, a preset or a config
file turns the rule off, and snagkg.train from Python follows the same rule."""
from __future__ import annotations

import json

import pytest
import yaml

import snagkg
from snagkg.config import schema as C
from snagkg.config.auto import (
    GraphStats,
    apply_graph_defaults,
    describe,
    graph_defaults,
)

from _helpers import run_main
from conftest import make_openke

FEATURES = ("structure", "image", "text")


def _stats(entities, triples, modalities=FEATURES, bf16=False):
    return GraphStats(entities=entities, relations=16, train_triples=triples, modalities=modalities,
                      native_bf16=bf16)


def test_small_graph_with_features_gets_the_synthetic_presets_sizes():
    d = graph_defaults(_stats(2_000, 19_200))
    assert (d["encoder.hidden"], d["train.lr"], d["train.batch_size"]) == (128, 0.002, 512)
    assert (d["train.epochs"], d["train.eval_every"], d["train.patience"]) == (200, 5, 4)
    assert d["completion.negatives_scheme"] == "per_triple" and d["precision"] == "fp32"
    assert "completion.structure_residual" not in d and "encoder.fusion" not in d  # SNAG's fusion, as the preset
    # the synthetic preset's model keys: the rule sets the same
    preset = C.resolve(preset="synthetic")
    assert (preset.encoder.hidden, preset.train.lr, preset.train.batch_size) == (128, 0.002, 512)


@pytest.mark.parametrize("triples,scheme", [(79_222, "per_triple"), (34_196, "shared")])  # DB15K 6.2, MKG-W 2.3
def test_medium_graph_with_features_gets_the_cpu_presets_plug_in(triples, scheme):
    entities = 12_842 if scheme == "per_triple" else 15_000
    d = graph_defaults(_stats(entities, triples, ("structure", "relation"), bf16=True))
    assert (d["encoder.hidden"], d["train.lr"], d["train.batch_size"]) == (256, 0.001, 1024)
    assert (d["train.epochs"], d["train.eval_every"], d["train.patience"]) == (300, 10, 8)
    assert d["completion.structure_residual"] and d["completion.residual_gate"]
    assert d["noise.structure_scale"] == 0.0 and d["precision"] == "bf16"
    assert d["completion.negatives_scheme"] == scheme
    cpu = C.resolve(preset="mkg-w-cpu")  # the rule's values are the measured preset's
    assert (cpu.encoder.hidden, cpu.train.lr, cpu.train.batch_size, cpu.train.epochs) == (256, 0.001, 1024, 300)


def test_large_graph_validates_on_a_slice_and_shares_negatives():
    d = graph_defaults(_stats(1_000_000, 8_000_000))
    assert d["train.eval_limit"] == 1_000 and d["completion.negatives_scheme"] == "shared"
    assert d["encoder.hidden"] == 128 and d["train.epochs"] == 30
    # SNAG's fusion, not the plug-in, at this budget (the synthetic 100k graph: 10.62 against 6.58 after 3 epochs)
    assert "completion.structure_residual" not in d and "completion.residual_gate" not in d
    assert "noise.structure_scale" not in d and d["precision"] == "fp32"
    edge = graph_defaults(_stats(99_999, 800_000))  # the plug-in up to 99,999 entities
    assert edge["completion.structure_residual"] and edge["completion.residual_gate"]


def test_structure_alone_is_plain_rotate_from_5000_entities():
    d = graph_defaults(_stats(20_000, 100_000, ("structure",), bf16=True))
    assert d["modalities"] == ("structure",) and d["encoder.fusion"] is False and d["noise.ratio"] == 0.0
    assert "precision" not in d and d["completion.negatives_scheme"] == "per_triple"
    small = graph_defaults(_stats(400, 2_800, ("structure",), bf16=True))  # the synthetic preset's fusion
    assert "encoder.fusion" not in small and "noise.ratio" not in small and small["precision"] == "bf16"


def test_explicit_settings_win_and_dependent_values_follow_them():
    stats = _stats(15_000, 34_196, ("structure", "relation"))
    cfg = snagkg.resolve_config(overrides={"dataset": "x", "train.lr": 1e-4, "completion.structure_residual": False})
    new, chosen = apply_graph_defaults(cfg, stats)
    assert new.train.lr == 1e-4 and "train.lr" not in chosen  # the library default, given explicitly, stays
    assert not new.completion.structure_residual and not new.completion.residual_gate  # no gate without residual
    assert new.noise.structure_scale == 1.0 and new.encoder.hidden == 256
    assert new.explicit is None and apply_graph_defaults(new, stats) == (new, {})  # once only
    # --modalities structure with --structure-residual keeps the encoder it needs
    cfg = snagkg.resolve_config(overrides={"dataset": "x", "modalities": "structure",
                                           "completion.structure_residual": True})
    new, chosen = apply_graph_defaults(cfg, _stats(15_000, 34_196, ("structure",)))
    assert new.encoder.fusion and new.noise.ratio == 0.2 and "encoder.fusion" not in chosen


def test_the_line_names_the_graph_and_every_chosen_value():
    stats = _stats(19_814, 61_771, ("structure", "text", "relation"), bf16=True)
    line = describe(stats, graph_defaults(stats))
    assert "\n" not in line and line.startswith("defaults for this graph (19,814 entities, 3.1 train triples/entity")
    assert "hidden 256, lr 0.001" in line and "negatives shared" in line and "precision bf16" in line


def test_a_preset_or_config_file_records_no_explicit_keys(tmp_path):
    assert C.resolve(preset="synthetic", overrides={"train.lr": 0.1}).explicit is None
    f = tmp_path / "c.yaml"
    f.write_text("train: {epochs: 2}\n")
    assert C.resolve(config_file=str(f)).explicit is None
    cfg = C.resolve(overrides={"train.lr": 0.1, "seed": None})
    assert cfg.explicit == {"train.lr"} and "explicit" not in cfg.to_dict()


@pytest.fixture
def graph(tmp_path):
    return make_openke(tmp_path / "g", num_entities=120, num_relations=4)


def _line(err):
    return [s for s in err.splitlines() if s.startswith("defaults for this graph")]


def test_cli_prints_one_line_and_saves_the_values(graph, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_main(["train", "--dataset", graph, "--output", out, "--epochs", "1", "--hidden", "16",
                             "--patience", "10", "--device", "cpu", "--no-progress", "--precision", "fp32"], capsys)
    assert code == 0, err
    lines = _line(err)
    assert len(lines) == 1 and "120 entities" in lines[0] and "lr 0.002" in lines[0] and "hidden" not in lines[0]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["lr"] == 0.002 and saved["train"]["batch_size"] == 512 and saved["train"]["eval_every"] == 5
    assert saved["train"]["patience"] == 10  # given, though it is the library's default: the flag wins
    assert saved["encoder"]["hidden"] == 16 and saved["train"]["epochs"] == 1 and saved["precision"] == "fp32"
    results = json.loads((out / "results.json").read_text())
    assert results["extra"]["graph_defaults"]["values"]["train.lr"] == 0.002
    assert results["extra"]["graph_defaults"]["stats"]["entities"] == 120
    # --resume with the same flags: the saved run's graph values are not "different settings"
    code, _, err = run_main(["train", "--dataset", graph, "--output", out, "--epochs", "2", "--hidden", "16",
                             "--patience", "10", "--device", "cpu", "--no-progress", "--precision", "fp32",
                             "--resume"], capsys)
    assert code == 0, err
    assert not _line(err) and yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 0.002


def test_a_preset_turns_the_rule_off(graph, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_main(["train", "--dataset", graph, "--output", out, "--preset", "synthetic", "--epochs", "1",
                             "--hidden", "16", "--device", "cpu", "--no-progress"], capsys)
    assert code == 0, err
    assert not _line(err)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["preset"] == "synthetic" and saved["train"]["eval_every"] == 5 and saved["precision"] == "fp32"
    assert "graph_defaults" not in json.loads((out / "results.json").read_text())["extra"]


def test_python_train_applies_the_rule(graph, tmp_path):
    seen = []
    cfg = snagkg.resolve_config(overrides={"dataset": str(graph), "train.epochs": 1, "encoder.hidden": 16,
                                           "device": "cpu", "modalities": "structure"})
    res = snagkg.train(cfg, tmp_path / "py", progress=False, echo=seen.append)
    assert res.config["train"]["lr"] == 0.002 and res.config["train"]["batch_size"] == 512
    assert res.config["encoder"]["hidden"] == 16 and res.config["modalities"] == ["structure"]
    values = res.extra["graph_defaults"]["values"]
    assert values["train.lr"] == 0.002 and "modalities" not in values and "encoder.hidden" not in values
    assert res.extra["graph_defaults"]["stats"]["modalities"] == ["structure"]
    assert len(_line("\n".join(seen))) == 1
    # a config built directly (no resolve) is used as it is
    direct = C.RunConfig(dataset=str(graph), device="cpu", train=C.TrainConfig(epochs=1),
                         encoder=C.EncoderConfig(hidden=16))
    res = snagkg.train(direct, tmp_path / "direct", progress=False, echo=lambda s: None)
    assert res.config["train"]["lr"] == 1e-4 and "graph_defaults" not in res.extra
