"""Markdown table rows for BENCHMARKS.md, read from finished run folders.

    python benchmarks/tables.py RUN [RUN ...] [--hardware TEXT] [--label TEXT ...] [--rows-only]

Each RUN is a folder written by ``snagkg train`` (``results.json``, ``config.yaml``,
``dataset.json``, ``metrics.jsonl``). One table per task is printed, one row per run:

* completion: test MRR, Hits@1, Hits@3, Hits@10 (x 100, two decimals) and valid MRR;
* alignment: test Hits@1, Hits@10 (x 100), MRR (a fraction, three decimals), the
  right-to-left Hits@1 and MRR, and valid Hits@1;

then epochs run (best epoch, and why training ended), median seconds per epoch,
training minutes, seed, the hardware (``--hardware``; default: the device the run
recorded) and the ``snagkg train`` command that reproduces the run: its preset and
dataset name plus a flag for every setting that differs from the preset as it is
now (settings without a flag are listed as an extra ``--config`` file).

``--label`` names the rows (default: the run folder's name); give it once for every
run, or once for all of them. A missing or malformed run folder is one line on
stderr naming the file, and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

COMPLETION_COLUMNS = ("row", "MRR", "H@1", "H@3", "H@10", "valid MRR", "epochs (best)", "s/epoch", "train min",
                      "seed", "hardware", "command")
ALIGNMENT_COLUMNS = ("row", "H@1", "H@10", "MRR", "RL H@1", "RL MRR", "valid H@1", "epochs (best)", "s/epoch",
                     "train min", "seed", "hardware", "command")
RESULT_KEYS = ("valid", "test", "best_epoch", "epochs_run", "train_seconds", "epoch_seconds")

#: the ``snagkg train`` flags, as this module falls back to them when ``snagkg.flags`` (the CLI's own
#: table of flags, used when present) is not there:
#: config keys set by a flag that takes a value
VALUE_FLAGS = ("seed", "precision", "ties", "train.epochs", "train.lr", "train.batch_size", "train.eval_every",
               "train.patience", "noise.ratio", "noise.mask", "noise.structure_scale", "encoder.readout",
               "encoder.hidden", "completion.embedding_lr_scale", "completion.encoder_lr_scale",
               "completion.relation_lr_scale")
#: config keys set by a flag without a value: (key, the value the flag sets, the flag)
SWITCHES = (("encoder.fusion", False, "--no-fusion"), ("completion.structure_residual", True, "--structure-residual"),
            ("completion.residual_gate", True, "--residual-gate"), ("alignment.iterative", False, "--no-iterative"))
#: settings that describe where a run ran, not what it trained
NOT_SETTINGS = ("task", "dataset", "preset", "device", "modalities")


class RunError(Exception):
    """A missing or malformed run folder: the message names the file."""


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise RunError(f"{path}: not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _last_logged_epoch(path: Path) -> Optional[int]:
    """The last epoch in ``metrics.jsonl`` (None when the file is absent); a bad line is an error."""
    if not path.is_file():
        return None
    last = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: cannot read ({exc})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            last = int(rec["epoch"])
        except (ValueError, KeyError, TypeError):
            raise RunError(f"{path}:{i}: not a metrics record (a JSON object with an 'epoch')") from None
    return last


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RunError(f"{where} is not a finite number: {value!r}")
    return float(value)


def load(folder: Path) -> Dict[str, Any]:
    """Everything a row needs from one run folder (``RunError`` names the file when something is wrong)."""
    from snagkg.config.schema import load_run_config
    from snagkg.runtime.errors import SnagError

    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"{folder}: not a run folder (no such directory)")
    res_path = folder / "results.json"
    if not res_path.is_file():
        last = _last_logged_epoch(folder / "metrics.jsonl")
        note = f" (the run is not finished: metrics.jsonl ends at epoch {last})" if last else ""
        raise RunError(f"{res_path}: not found{note}")
    res = _read_json(res_path)
    if not isinstance(res, dict):
        raise RunError(f"{res_path}: not a results object")
    for key in RESULT_KEYS:
        if key not in res:
            raise RunError(f"{res_path}: no {key!r}")
    for split in ("valid", "test"):
        if not isinstance(res[split], dict):
            raise RunError(f"{res_path}: {split!r} is not a mapping of metrics")
    for key in RESULT_KEYS[2:]:
        _number(res[key], f"{res_path}: {key!r}")
    try:
        cfg = load_run_config(folder / "config.yaml")
    except SnagError as exc:
        raise RunError(str(exc)) from None
    info = _read_json(folder / "dataset.json")
    if not isinstance(info, dict):
        raise RunError(f"{folder / 'dataset.json'}: not a dataset description")
    _last_logged_epoch(folder / "metrics.jsonl")  # a malformed log is reported too
    return {"folder": folder, "results": res, "config": cfg, "dataset": info}


def _metric(run: Dict[str, Any], split: str, key: str) -> float:
    where = f"{run['folder'] / 'results.json'}: {split} {key!r}"
    if key not in run["results"][split]:
        raise RunError(f"{run['folder'] / 'results.json'}: {split} has no {key!r}")
    return _number(run["results"][split][key], where)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format(v, "g")
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def _base_config(cfg):
    """The config the command's preset gives today (the defaults when there is none or it is gone)."""
    from dataclasses import replace

    from snagkg.config import schema as C
    from snagkg.runtime.errors import SnagError
    if cfg.preset:
        try:
            return C.resolve(preset=cfg.preset, overrides={"dataset": cfg.dataset}), cfg.preset
        except SnagError:
            pass
    return replace(C.RunConfig(), dataset=cfg.dataset), None


def _flag_table() -> Tuple[Dict[str, Tuple[Any, str]], Dict[str, str]]:
    """``({key: (value, switch)}, {key: flag with a value})`` for the ``snagkg train`` flags."""
    try:
        from snagkg.config.flags import TRAIN_FLAGS
    except ImportError:
        from snagkg.config.schema import cli_flag
        return {k: (v, f) for k, v, f in SWITCHES}, {k: cli_flag(k) for k in VALUE_FLAGS}
    switches = {f.key: (f.sets, f.flag) for f in TRAIN_FLAGS if f.type is None}
    valued = {f.key: f.flag for f in TRAIN_FLAGS if f.type is not None and f.key not in NOT_SETTINGS}
    return switches, valued


def command(cfg, dataset_name: str, used_modalities: Optional[List[str]] = None) -> Tuple[str, Optional[str]]:
    """The ``snagkg train`` command of a run: preset, dataset and a flag for every setting that differs
    from the preset; settings no flag can set come back apart, as the YAML of an extra ``--config``
    file (None when there are none)."""
    base, preset = _base_config(cfg)
    parts = ["snagkg", "train"]
    if cfg.task != base.task:
        parts += ["--task", cfg.task]
    parts += ["--dataset", dataset_name]
    if preset:
        parts += ["--preset", preset]
    if cfg.modalities != base.modalities:
        mods = cfg.modalities if cfg.modalities is not None else used_modalities
        if mods:
            parts += ["--modalities", ",".join(mods)]
    from snagkg.config.yamlio import flatten

    now, was = flatten(cfg.to_dict()), flatten(base.to_dict())
    switches, valued = _flag_table()
    extra: Dict[str, Dict[str, Any]] = {}
    for key, value in now.items():
        if key in NOT_SETTINGS or value == was.get(key):
            continue
        if key in switches and value == switches[key][0]:
            parts.append(switches[key][1])
        elif key in valued:
            parts += [valued[key], _value(value)]
        else:  # no flag sets it: a --config file must
            sec, _, sub = key.rpartition(".")
            extra.setdefault(sec, {})[sub] = value
    text = " ".join(parts)
    if extra:
        body = ", ".join(f"{sec}: {{{', '.join(f'{k}: {_value(v)}' for k, v in subs.items())}}}" if sec
                         else ", ".join(f"{k}: {_value(v)}" for k, v in subs.items())
                         for sec, subs in extra.items())
        return f"{text} --config extra.yaml", "{" + body + "}"
    return text, None


def command_cell(cfg, dataset_name: str, used_modalities: Optional[List[str]] = None) -> str:
    """The command as a Markdown table cell (code spans; the extra config file's content after it)."""
    text, extra = command(cfg, dataset_name, used_modalities)
    return f"`{text}`" + (f" with extra.yaml `{extra}`" if extra else "")


def _seconds(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _epochs(run: Dict[str, Any]) -> str:
    res, cfg = run["results"], run["config"]
    ran, best = int(res["epochs_run"]), int(res["best_epoch"])
    if res.get("stopped_early"):
        why = "early stop"
    elif ran >= cfg.train.epochs:
        why = "cap"
    else:
        why = "stopped"
    return f"{ran} ({best}), {why}"


def row(run: Dict[str, Any], label: str, hardware: Optional[str]) -> List[str]:
    res, cfg, info = run["results"], run["config"], run["dataset"]
    name = "synthetic" if cfg.dataset == "synthetic" else str(info.get("name") or Path(cfg.dataset).name)
    hw = hardware if hardware is not None else str((res.get("extra") or {}).get("device", "not recorded"))
    tail = [_epochs(run), _seconds(float(res["epoch_seconds"])), f"{float(res['train_seconds']) / 60:.1f}",
            str(cfg.seed), hw, command_cell(cfg, name, info.get("used_modalities"))]
    pct = lambda split, key: f"{100 * _metric(run, split, key):.2f}"  # noqa: E731
    if cfg.task == "alignment":
        return [label, pct("test", "hits@1"), pct("test", "hits@10"), f"{_metric(run, 'test', 'mrr'):.3f}",
                pct("test", "rl_hits@1"), f"{_metric(run, 'test', 'rl_mrr'):.3f}",
                f"{100 * _metric(run, 'valid', 'hits@1'):.1f}"] + tail
    return [label, pct("test", "mrr"), pct("test", "hits@1"), pct("test", "hits@3"), pct("test", "hits@10"),
            pct("valid", "mrr")] + tail


def markdown(columns, rows, header: bool = True) -> str:
    lines = []
    if header:
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def tables(folders: List[Path], labels: List[str], hardware: Optional[str], header: bool = True) -> str:
    """The Markdown tables of ``folders`` (one per task, in the order the tasks first appear)."""
    by_task: Dict[str, List[List[str]]] = {}
    for folder, label in zip(folders, labels):
        run = load(folder)
        by_task.setdefault(run["config"].task, []).append(row(run, label, hardware))
    out = []
    for task, rows in by_task.items():
        cols = ALIGNMENT_COLUMNS if task == "alignment" else COMPLETION_COLUMNS
        out.append(markdown(cols, rows, header))
    return "\n\n".join(out)


def _labels(folders: List[Path], given: Optional[List[str]]) -> Tuple[List[str], Optional[str]]:
    if not given:
        return [f.resolve().name or str(f) for f in folders], None
    if len(given) == 1:
        return given * len(folders), None
    if len(given) != len(folders):
        return [], f"--label given {len(given)} times for {len(folders)} runs (give it once, or once per run)"
    return list(given), None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="tables.py", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders written by snagkg train")
    ap.add_argument("--hardware", help="the machine the runs trained on, e.g. 'AMD EPYC Zen 3, 2 threads, fp32'")
    ap.add_argument("--label", action="append", help="the row's name (once for all runs, or once per run)")
    ap.add_argument("--rows-only", action="store_true", help="print the rows without the table header")
    a = ap.parse_args(argv)
    labels, problem = _labels(a.runs, a.label)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        print(tables(a.runs, labels, a.hardware, header=not a.rows_only))
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
