"""The ``snagkg train`` flag table, the task each flag applies to, ``snagkg presets`` and the module layout.

Nothing here trains: ``snagkg.run.train`` is replaced by a stub that records the config it gets.
"""
from __future__ import annotations

import ast
import dataclasses
import types
from pathlib import Path

import pytest

import snagkg
from snagkg.config import schema as C
from snagkg.cli.main import _train_overrides, build_parser, main
from snagkg.config.flags import TRAIN_FLAGS, Flag

SRC = Path(snagkg.__file__).resolve().parent

#: a value each flag can take that differs from the default, when the flag needs one
_STRINGS = {"dataset": "some/folder", "encoder.readout": "graph", "modalities": "structure", "device": "cpu",
            "dataset_split": "0.6,0.2,0.2", "dataset_columns": "h,t,r", "alignment.gat_fanout": "15,10",
            "task": "alignment"}
_EXPECTED = {"modalities": ("structure",), "alignment.gat_fanout": (15, 10)}
#: other flags a flag needs to resolve (a config check would refuse it alone)
_NEEDS = {"completion.residual_gate": ["--structure-residual"], "encoder.fusion": ["--modalities", "structure"]}


def _sample(flag: Flag):
    """``(command-line words, the value the config key should get)`` for one flag."""
    if flag.type is None:
        return [flag.flag], flag.sets
    if flag.choices:
        return [flag.flag, flag.choices[-1]], flag.choices[-1]
    if flag.type is int:
        return [flag.flag, "4"], 4
    if flag.type is float:
        return [flag.flag, "0.5"], 0.5
    return [flag.flag, _STRINGS[flag.key]], _EXPECTED.get(flag.key, _STRINGS[flag.key])


def _get(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.fixture
def trained(monkeypatch):
    """Replace training by a stub; the list gets every config ``snagkg train`` would have trained."""
    import snagkg.api.run
    import snagkg.cli.main

    seen = []

    def fake_train(cfg, output, **kwargs):
        seen.append(cfg)
        return types.SimpleNamespace(summary=lambda: "stub", valid={}, test={}, best_epoch=0)

    monkeypatch.setattr(snagkg.api.run, "train", fake_train)
    monkeypatch.setattr(snagkg.cli.main, "train", fake_train)  # the command's own binding
    return seen


def _train(tmp_path, *words):
    return main(["train", "--dataset", str(tmp_path / "data"), "--output", str(tmp_path / "run"), *words])


def test_flag_table_is_consistent():
    flags = [f.flag for f in TRAIN_FLAGS]
    assert len(flags) == len(set(flags)) and len({f.key for f in TRAIN_FLAGS}) == len(TRAIN_FLAGS)
    top = {f.name for f in dataclasses.fields(C.RunConfig)}
    for f in TRAIN_FLAGS:
        section, _, name = f.key.rpartition(".")
        assert (name in {g.name for g in dataclasses.fields(C.SECTIONS[section])}) if section else name in top, f.key
        assert C.cli_flag(f.key) == f.flag
        if section in C.TASKS:  # a task's own options apply to that task only
            assert f.tasks == (section,), f.key
        assert f.tasks is None or set(f.tasks) <= set(C.TASKS)
    # --task offers the registered tasks (the parser reads them from the registry, not a list of names)
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                 if "--task" in a.option_strings)
    assert tuple(train.choices) == tuple(C.TASKS) == ("completion", "alignment")
    # the flags whose name is not the key's last part
    assert {f.key: f.flag for f in TRAIN_FLAGS if f.flag != "--" + f.key.split(".")[-1].replace("_", "-")} == {
        "noise.ratio": "--noise-ratio", "noise.mask": "--mask-ratio", "noise.structure_scale": "--structure-noise-scale",
        "alignment.iterative": "--no-iterative", "encoder.fusion": "--no-fusion",
        "dataset_split": "--split", "dataset_columns": "--columns"}
    assert C.cli_flag("train.weight_decay") == "--weight-decay"  # no flag: the key's last part


@pytest.mark.parametrize("flag", TRAIN_FLAGS, ids=lambda f: f.flag)
def test_every_flag_reaches_its_config_key(flag, tmp_path, trained, capsys):
    words, expected = _sample(flag)
    task = (flag.tasks or ("completion",))[0] if flag.key != "task" else expected
    extra = [] if flag.key == "task" else ["--task", task]
    assert _train(tmp_path, *extra, *words, *_NEEDS.get(flag.key, [])) == 0, capsys.readouterr().err
    (cfg,) = trained
    assert _get(cfg, flag.key) == expected and cfg.task == task
    a = build_parser().parse_args(["train", "--output", "x", *words])
    assert _train_overrides(a) == {flag.key: expected if flag.key != "modalities" else "structure"}


def test_no_flag_no_override():
    assert _train_overrides(build_parser().parse_args(["train", "--output", "x"])) == {}


_MISFITS = [(f, task) for f in TRAIN_FLAGS if f.tasks for task in ("completion", "alignment") if task not in f.tasks]


@pytest.mark.parametrize("flag, task", _MISFITS, ids=lambda x: x.flag if isinstance(x, Flag) else x)
def test_a_flag_for_another_task_is_a_one_line_error(flag, task, tmp_path, trained, capsys):
    assert {f.flag for f, _ in _MISFITS} >= {"--structure-residual", "--no-iterative", "--embedding-lr-scale"}
    words, _ = _sample(flag)
    assert _train(tmp_path, "--task", task, *words) == 2
    err = capsys.readouterr().err
    assert err == f"error: {flag.flag} applies to --task {' or '.join(flag.tasks)} only, not {task}\n"
    assert trained == [] and not (tmp_path / "run").exists()


def test_the_task_may_come_from_the_preset_or_the_config_file(tmp_path, trained, capsys):
    assert _train(tmp_path, "--preset", "dbp15k", "--structure-residual") == 2
    assert "--structure-residual applies to --task completion only, not alignment" in capsys.readouterr().err
    f = tmp_path / "c.yaml"
    f.write_text("task: alignment\n")
    assert _train(tmp_path, "--config", str(f), "--residual-gate") == 2
    assert "--residual-gate applies to --task completion only" in capsys.readouterr().err
    f.write_text("task: completion\n")
    assert _train(tmp_path, "--config", str(f), "--no-iterative") == 2
    assert capsys.readouterr().err == "error: --no-iterative applies to --task alignment only, not completion\n"
    assert trained == []
    assert _train(tmp_path, "--preset", "dbp15k", "--no-iterative", "--precision", "bf16") == 0
    assert trained[0].task == "alignment" and not trained[0].alignment.iterative


def test_the_task_on_resume_is_the_saved_runs(tmp_path, trained, capsys):
    from snagkg.training.trainer import CHECKPOINT

    run = tmp_path / "run"
    run.mkdir()
    (run / CHECKPOINT).write_bytes(b"")
    (run / "config.yaml").write_text(C.dump(C.resolve(preset="dbp15k", overrides={"dataset": str(tmp_path)})))
    assert main(["train", "--output", str(run), "--resume", "--structure-residual"]) == 2
    assert capsys.readouterr().err == ("error: --structure-residual applies to --task completion only, "
                                       "not alignment\n")
    assert trained == []


def test_presets_lists_every_preset_file(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = sorted((SRC / "config" / "presets").glob("*.yaml"), key=lambda p: p.stem)
    assert len(lines) == len(files) > 0
    for path, line in zip(files, lines):
        name, task, *comment = line.split(None, 2)
        first = next(x for x in path.read_text().splitlines() if x.startswith("#")).lstrip("#").strip()
        assert name == path.stem and comment == ([first] if first else [])
        assert task == ("alignment" if "\ntask: alignment" in "\n" + path.read_text() else "completion")
    assert any(line.split()[:2] == ["dbp15k", "alignment"] for line in lines)


def test_align_and_features_are_ordinary_sub_commands():
    import snagkg.cli.main as cli

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"train", "evaluate", "demo", "presets", "align", "features"} <= set(sub.choices)
    assert not hasattr(cli, "_extensions") and "__import__" not in (SRC / "cli" / "main.py").read_text()


def _imports(path: Path, package: str):
    """The absolute module names a source file imports."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
    return out


def test_config_imports_no_task_and_no_encoder():
    mods = _imports(SRC / "config" / "schema.py", "snagkg.config")
    assert "snagkg.core.registry" in mods and "snagkg.config.yamlio" in mods
    bad = [m for m in mods if m.startswith(("snagkg.tasks.completion", "snagkg.tasks.alignment", "snagkg.core.encoder"))]
    assert bad == []
    for task in ("completion", "alignment"):
        ours = [m for m in _imports(SRC / "tasks" / task / "config.py", f"snagkg.tasks.{task}") if m.startswith("snagkg")]
        assert set(ours) <= {"snagkg.config.schema", "snagkg.core.registry", "snagkg.runtime.errors"}, ours
    for leaf in ("core/registry.py", "config/yamlio.py", "config/flags.py"):
        assert [m for m in _imports(SRC / leaf, "snagkg") if m.startswith("snagkg") and not m.startswith("snagkg.runtime.")] == []


def test_task_sections_are_registered_and_round_trip(tmp_path):
    from snagkg.tasks.alignment.config import AlignmentConfig
    from snagkg.tasks.completion.config import CompletionConfig

    assert list(C.TASKS) == ["completion", "alignment"]
    assert C.SECTIONS["completion"] is CompletionConfig and C.SECTIONS["alignment"] is AlignmentConfig
    cfg = C.resolve(overrides={"completion.margin": 6.0, "alignment.csls_k": 5, "task": "alignment"})
    assert isinstance(cfg.completion, CompletionConfig) and cfg.alignment.csls_k == 5
    p = tmp_path / "config.yaml"
    p.write_text(C.dump(cfg))
    assert C.load_run_config(p) == cfg
    with pytest.raises(snagkg.SnagError, match="task must be 'completion' or 'alignment'"):
        C.resolve(overrides={"task": "nope"})
    with pytest.raises(ValueError, match="not a task section"):
        C.register_task("encoder", CompletionConfig)


def test_every_module_has_at_most_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
