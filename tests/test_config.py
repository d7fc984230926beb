import re
from pathlib import Path

import pytest

import snagkg
from snagkg.config import schema as C
from snagkg.runtime.errors import SnagError


def test_defaults_and_presets():
    cfg = C.resolve()
    assert cfg.train.lr == 1e-4 and cfg.train.negatives == 32 and cfg.completion.margin == 12.0
    db = C.resolve(preset="db15k")
    assert db.encoder.readout == "graph" and db.encoder.projection_layers == 2 and db.preset == "db15k"
    assert C.resolve(preset="mkg-w").encoder.readout == "mean"
    assert {"db15k", "mkg-w", "mkg-y", "synthetic"} <= set(C.preset_names())


def test_precedence_preset_file_cli(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.01\n  epochs: 7\nnoise: {ratio: 0.5}\n")
    cfg = C.resolve(preset="db15k", config_file=str(f), overrides={"train.epochs": 3})
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 3 and cfg.noise.ratio == 0.5
    assert cfg.encoder.readout == "graph"  # from the preset


def test_roundtrip_dump_load(tmp_path):
    cfg = C.resolve(preset="mkg-w", overrides={"modalities": "structure,text", "seed": 4})
    p = tmp_path / "config.yaml"
    p.write_text(C.dump(cfg))
    assert C.load_run_config(p) == cfg
    assert cfg.modalities == ("structure", "text")


def test_frozen():
    cfg = C.resolve()
    with pytest.raises(Exception):
        cfg.seed = 3  # type: ignore[misc]


def test_unknown_key_names_closest(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 3\n  learning_rate: 0.1\n")
    with pytest.raises(SnagError) as e:
        C.resolve(config_file=str(f))
    msg = str(e.value)
    assert "learning_rate" in msg and f"{f}:3:" in msg


@pytest.mark.parametrize("override,text", [({"train.lr": -1.0}, "lr"), ({"noise.ratio": 1.5}, "ratio"),
                                           ({"encoder.readout": "nope"}, "readout"),
                                           ({"completion.embedding_lr_scale": 0.0}, "embedding_lr_scale"),
                                           ({"completion.relation_lr_scale": -1.0}, "relation_lr_scale")])
def test_out_of_range(override, text):
    with pytest.raises(SnagError, match=text):
        C.resolve(overrides=override)


def test_unknown_preset():
    with pytest.raises(SnagError, match="did you mean 'db15k'"):
        C.resolve(preset="db15")


def test_projection_activation_default_and_saved_runs_before_it(tmp_path):
    """New runs stack projections linearly; a run saved before the option keeps its GELU."""
    cfg = C.resolve(preset="db15k")
    assert cfg.encoder.projection_activation == "none"
    p = tmp_path / "config.yaml"
    p.write_text(C.dump(cfg))
    assert C.load_run_config(p).encoder.projection_activation == "none"
    old = C.dump(cfg).replace("  projection_activation: none\n", "")
    assert "projection_activation" not in old
    p.write_text(old)
    assert C.load_run_config(p).encoder.projection_activation == "gelu"
    p.write_text(C.dump(C.resolve(preset="mkg-w")).replace("  projection_activation: none\n", ""))
    assert C.load_run_config(p).encoder.projection_activation == "none"  # one layer: nothing to keep
    with pytest.raises(SnagError, match="projection_activation"):
        C.resolve(overrides={"encoder.projection_activation": "relu"})


def test_structure_noise_scale_flag_reaches_the_structure_noise_only(tiny_dataset):
    from snagkg.cli.main import _train_overrides, build_parser
    from snagkg.tasks.completion.task import CompletionTask
    from snagkg.data.datasets import read_openke

    a = build_parser().parse_args(["train", "--dataset", str(tiny_dataset), "--output", "unused",
                                   "--noise-ratio", "0.4", "--mask-ratio", "0.6", "--structure-noise-scale", "0.5",
                                   "--modalities", "structure,text"])
    cfg = snagkg.resolve_config(overrides={**_train_overrides(a), "encoder.hidden": 16})
    assert cfg.noise.structure_scale == 0.5
    assert C.cli_flag("noise.structure_scale") == "--structure-noise-scale"
    noise = CompletionTask(read_openke(tiny_dataset), cfg).model.entities.noise
    assert (noise["structure"].ratio, noise["structure"].mask) == pytest.approx((0.2, 0.3))
    assert (noise["text"].ratio, noise["text"].mask) == pytest.approx((0.4, 0.6))
    with pytest.raises(SnagError, match="structure_scale"):
        snagkg.resolve_config(overrides={"noise.structure_scale": 1.5})


def _benchmark_rows(section: str) -> dict:
    """BENCHMARKS.md's table rows under the heading ``section``: label -> cells."""
    lines = (Path(__file__).parents[1] / "BENCHMARKS.md").read_text().splitlines()
    heads = [i for i, line in enumerate(lines) if re.fullmatch(r"#+ " + re.escape(section), line)]
    assert len(heads) == 1, f"BENCHMARKS.md has {len(heads)} headings {section!r}"
    level = lines[heads[0]].index(" ")
    rows, header = {}, None
    for line in lines[heads[0] + 1:]:
        if line.startswith("#") and line.index(" ") <= level:
            break
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None or cells[0] == "row":
            header = cells
            continue
        label = re.sub(r"\s*\(the preset\)$", "", cells[0].replace("**", ""))
        rows[label] = dict(zip(header, (c.replace("**", "") for c in cells)))
    return rows


REPRODUCES = re.compile(r'# Reproduces BENCHMARKS\.md, section "(?P<section>[^"]+)", row "(?P<row>[^"]+)" '
                        r'\((?P<metric>test MRR|H@1) (?P<value>[\d.]+), seed (?P<seed>\d+)')


@pytest.mark.parametrize("name", [p.stem for p in sorted(C.PRESET_DIR.glob("*-cpu.yaml"))])
def test_a_cpu_preset_names_the_benchmark_row_it_reproduces(name):
    """Every measured CPU preset says which BENCHMARKS.md row it reproduces; that row exists, shows
    the figure and seed the comment quotes, and its command is the preset alone on a dataset."""
    first = (C.PRESET_DIR / f"{name}.yaml").read_text().splitlines()[0]
    m = REPRODUCES.match(first)
    assert m, f"{name}.yaml: first line does not name its BENCHMARKS.md row: {first!r}"
    rows = _benchmark_rows(m["section"])
    assert m["row"] in rows, (m["row"], sorted(rows))
    row = rows[m["row"]]
    assert row["MRR" if m["metric"] == "test MRR" else "H@1"] == m["value"]
    assert row["seed"] == m["seed"]
    assert re.fullmatch(rf"`snagkg train --dataset [\w.-]+ --preset {re.escape(name)}`", row["command"]), row["command"]
