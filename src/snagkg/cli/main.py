"""The ``snagkg`` command line (also ``python -m snagkg``).

Any bad input ends with one line on stderr, ``error: <file>:<line>: <what>``,
and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from snagkg.api.run import RUN_FILES, _absolute_dataset, evaluate, train
from snagkg.cli import (
    align,
    convert,
    export,
    features,
    predict,
    report,
    robustness,
    study,
    synthetic,
    tune,
    weights,
)
from snagkg.config import schema as C
from snagkg.config.flags import TRAIN_FLAGS
from snagkg.config.yamlio import flatten as _flatten
from snagkg.core.registry import TASKS
from snagkg.runtime.errors import SnagError
from snagkg.runtime.text_table import format_table
from snagkg.runtime.version import __version__
from snagkg.training.trainer import CHECKPOINT


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit 2) and that takes no abbreviated flags."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--epoch 3` is an error, not a silent `--epochs 3`
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, exit 2
        raise SnagError(f"{self.prog}: {message}")


def _train_overrides(a: argparse.Namespace) -> Dict[str, Any]:
    """The config overrides of the ``train`` flags given in ``a`` (dotted keys, from :data:`TRAIN_FLAGS`)."""
    values = {f.key: f.value(a) for f in TRAIN_FLAGS}
    return {k: v for k, v in values.items() if v is not None}


def _flags_fit_task(a: argparse.Namespace) -> Callable[[Any], None]:
    """A check that every ``train`` flag given in ``a`` applies to the task of the config it is given."""

    given = [f for f in TRAIN_FLAGS if f.value(a) is not None]

    def check(cfg: Any) -> None:
        for f in given:
            if cfg.task in C.TASKS and not f.applies_to(cfg.task):
                raise SnagError(f"{f.flag} applies to --task {' or '.join(f.tasks or ())} only, not {cfg.task}")
    return check


def cmd_train(a: argparse.Namespace) -> int:
    """``snagkg train``: resolve the config (or the saved one on --resume), train, print the JSON metrics."""

    if a.dataset is None and not a.resume:
        raise SnagError("train: --dataset is required (a folder, or 'synthetic')")
    overrides = _train_overrides(a)
    preset = a.preset
    if preset is None and overrides.get("dataset") == "synthetic" and not a.config:
        preset = "synthetic"
    if preset is None and overrides.get("task") in TASKS and not a.config:
        preset = TASKS.get(overrides["task"]).default_preset  # alignment: dbp15k (SPEC section 5)
    if a.resume:
        cfg = _resume_config(a, preset, overrides)
    else:
        cfg = C.resolve(preset=preset, config_file=a.config, overrides=overrides, before_check=_flags_fit_task(a))
    results = train(cfg, a.output, resume=a.resume, overwrite=a.overwrite,
                    progress=None if not a.no_progress else False, echo=lambda s: print(s, file=sys.stderr),
                    tracker=a.tracker)
    print(results.summary(), file=sys.stderr)
    print(json.dumps({"valid": results.valid, "test": results.test, "best_epoch": results.best_epoch}))
    return 0


def _resume_config(a: argparse.Namespace, preset: Optional[str], overrides: Dict[str, Any]):
    """The config of a resumed run: its saved ``config.yaml``; only --epochs and --device may change.

    A run killed before its first checkpoint starts again at epoch 0 with that config; one killed
    before it wrote ``config.yaml`` starts again from the command line's settings.

    Any other setting given on the command line (or via --config/--preset)
    must match the saved one: a different dataset or model would not fit the
    checkpoint.
    """


    folder = Path(a.output)
    path = folder / "config.yaml"
    if not (folder / CHECKPOINT).is_file() and not path.is_file():  # killed before it wrote its config
        if a.dataset is None:
            raise SnagError("nothing to resume: no checkpoint.pt or config.yaml in this folder; give the "
                            "command that started the run (with --dataset) to start it again", folder)
        return C.resolve(preset=preset, config_file=a.config, overrides=overrides, before_check=_flags_fit_task(a))
    saved = C.load_run_config(path)
    _flags_fit_task(a)(saved)
    free = {"train.epochs", "device"}
    given = {k: v for k, v in overrides.items() if k not in free}
    if given or a.config or a.preset:
        wanted = _absolute_dataset(C.resolve(preset=preset, config_file=a.config, overrides=overrides))
        old, new = _flatten(saved.to_dict()), _flatten(wanted.to_dict())
        _, lines = C._read_yaml(path)
        for key in old:
            if wanted.explicit is not None and key not in wanted.explicit:
                continue  # no preset: the saved run's other values came from its graph (config.auto)
            if key in free or key == "preset" or old[key] == new.get(key):
                continue
            raise SnagError(
                f"cannot resume with a different {key}: {old[key]!r} in the saved run, {new.get(key)!r} now "
                f"(only --epochs and --device may change on --resume; use a new --output for other settings)",
                path, lines.get(tuple(key.split("."))))
    train_cfg = saved.train if a.epochs is None else replace(saved.train, epochs=a.epochs)
    cfg = replace(saved, train=train_cfg, device=a.device or saved.device)
    C._checked(cfg, [("command line", overrides, {})], "command line")
    return cfg


def cmd_evaluate(a: argparse.Namespace) -> int:
    """``snagkg evaluate``: a run's best model on one split; prints JSON metrics."""

    metrics = evaluate(a.run, split=a.split, ties=a.ties, limit=a.limit, device=a.device,
                       progress=not a.no_progress and sys.stderr.isatty(), candidates=a.candidates)
    print(json.dumps(metrics))
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """``snagkg demo``: train and evaluate on the built-in synthetic MMKG."""


    out = Path(a.output)
    overwrite = False
    if out.exists():  # replace an earlier demo run, but never delete anything else
        if not out.is_dir():
            raise SnagError("output path exists and is not a folder", out)
        foreign = sorted(p.name for p in out.iterdir()
                         if p.name not in RUN_FILES and p.name != ".lock" and not p.name.endswith(".tmp"))
        if foreign:
            raise SnagError(f"output folder holds files that are not from a snagkg run ({foreign[0]}); "
                            "choose another --output", out)
        overwrite = True
    t0 = time.perf_counter()
    print("snagkg demo: SNAG (structure + image + text, Gaussian modality noise) on the built-in synthetic MMKG",
          file=sys.stderr)
    cfg = C.resolve(preset="synthetic", overrides={"dataset": "synthetic", "seed": a.seed, "device": a.device})
    res = train(cfg, out, overwrite=overwrite, progress=None, echo=lambda s: print(s, file=sys.stderr))
    print(f"\nresults in {out}/results.json ({time.perf_counter() - t0:.0f}s)")
    print(res.summary())
    return 0


def cmd_presets(a: argparse.Namespace) -> int:
    """``snagkg presets``: one line per preset: its name, its task and the first comment line of its file."""

    rows = [(name, *C.describe_preset(name)) for name in C.preset_names()]
    if rows:
        print(format_table(rows[0], rows[1:]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``snagkg`` parser: train, evaluate, demo, presets, align and features."""
    p = _Parser(prog="snagkg", description="Multi-modal knowledge graph representation learning with SNAG.")
    p.add_argument("--version", action="version", version=f"snagkg {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of unexpected errors")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train a model into an output folder")
    t.add_argument("--output", required=True, help="run folder (config, checkpoints, logs, results.json)")
    t.add_argument("--preset", help="hyperparameter preset: a name (see snagkg presets) or a preset YAML file "
                                    "(e.g. the best.yaml of snagkg tune)")
    t.add_argument("--config", help="YAML file overriding the preset")
    for flag in TRAIN_FLAGS:
        if flag.key == "task":  # the registered tasks: a new task package adds its name here
            flag = replace(flag, choices=tuple(C.TASKS))
        flag.add_to(t)
    t.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --output")
    t.add_argument("--tracker", metavar="NAME[,NAME]",
                   help="experiment trackers: csv (metrics.csv), tensorboard (<output>/tensorboard), mlflow "
                        "($MLFLOW_TRACKING_URI, else ./mlruns); comma-separated for several")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a run's best model; prints JSON metrics")
    e.add_argument("run")
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.add_argument("--limit", type=int, default=0, help="rank only the first N triples")
    e.add_argument("--ties", choices=["realistic", "optimistic"])
    e.add_argument("--candidates", type=int, default=0, metavar="K",
                   help="completion: rank against K sampled filtered candidates per query instead of every "
                        "entity (seeded; the JSON says \"sampled\": K)")
    e.add_argument("--device")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="train and evaluate on the built-in synthetic MMKG")
    d.add_argument("--output", default="runs/demo")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--device", default="auto")
    d.set_defaults(func=cmd_demo)

    sub.add_parser("presets", help="list the presets: name, task and what each is for").set_defaults(
        func=cmd_presets)
    for command in (features, convert, align, predict, export, weights, report, robustness, study, synthetic, tune):
        command.register(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``snagkg`` command line on ``argv``; returns the exit code (bad input: one line, 2)."""
    verbose = "-v" in (argv if argv is not None else sys.argv[1:]) or "--verbose" in (argv if argv is not None else sys.argv[1:])
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except SnagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; continue a training run with --resume", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; lower --batch-size or use a smaller model", file=sys.stderr)
        return 1
    except Exception as exc:  # unexpected: a bug, not bad input
        if verbose:
            raise
        print(f"error: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              f"(rerun with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
