"""Frozen configuration dataclasses, YAML loading and presets.

Resolution order (later wins): dataclass defaults < preset < ``--config``
YAML < command-line flags. The resolved config is saved as ``config.yaml``
in every run folder. Unknown keys and out-of-range values are one-line
errors naming the file, line, key and the closest valid key.

This module holds the sections every task shares (``encoder``, ``noise``,
``train``) and :class:`RunConfig`; each task registers its own section and
its cross-section checks with :func:`register_task`
(:mod:`snagkg.completion.config`, :mod:`snagkg.alignment.config`, imported by
``import snagkg``). Names are checked against the registries in
:mod:`snagkg.registry`; the YAML reader is :mod:`snagkg.configio` and the
command-line flags are :mod:`snagkg.flags`. Nothing here imports a task or
the encoder.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml

from snagkg.config.flags import flag_for
from snagkg.config.yamlio import KeyLines, first_comment
from snagkg.config.yamlio import closest as _closest
from snagkg.config.yamlio import coerce as _coerce
from snagkg.config.yamlio import has as _has
from snagkg.config.yamlio import read_yaml as _read_yaml
from snagkg.core.registry import PROJECTION_ACTIVATIONS, READOUTS
from snagkg.data.datasets.named import dataset_option_problem
from snagkg.runtime.errors import SnagError
from snagkg.runtime.kernels import PRECISIONS

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigValueError(ValueError):
    """An out-of-range config value; ``keys`` are the dotted keys involved (first: the main one)."""

    def __init__(self, message: str, *keys: str):
        super().__init__(message)
        self.keys = keys


class Section:
    """Base of the config sections: frozen dataclasses of options, one YAML mapping each."""

    def check(self) -> None:
        """Raise :class:`ConfigValueError` for an out-of-range option (the default: none)."""


def _positive(obj: Any, section: str, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if v <= 0:
            raise ConfigValueError(f"{section}.{name} must be positive, got {v}", f"{section}.{name}")


@dataclass(frozen=True)
class EncoderConfig(Section):
    """The fusion encoder (SPEC section 3; :class:`snagkg.encoder.ModalityEncoder`)."""
    hidden: int = 256               # d = 2k: RotatE works on k = hidden / 2 complex numbers
    projection_layers: int = 1
    # between stacked projection layers: "none" (SPEC: a linear projection, as in the published
    # code; folded into one product at run time) or "gelu" (runs saved before this option)
    projection_activation: str = "none"
    heads: int = 2
    layers: int = 1
    dropout: float = 0.1
    ffn: bool = False
    tanh: bool = True
    readout: str = "mean"           # a name in snagkg.registry.READOUTS
    fusion: bool = True             # false: no encoder, the structure embedding is the entity vector (plain KGE)

    def check(self) -> None:
        """Widths positive, hidden even and divisible by heads, known activation and readout."""
        _positive(self, "encoder", "hidden", "projection_layers", "heads", "layers")
        if self.hidden % 2:
            raise ConfigValueError("encoder.hidden must be even (RotatE uses hidden/2 complex numbers)",
                                   "encoder.hidden")
        if self.hidden % self.heads:
            raise ConfigValueError(f"encoder.hidden ({self.hidden}) must be divisible by encoder.heads ({self.heads})",
                                   "encoder.hidden", "encoder.heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigValueError(f"encoder.dropout must be in [0, 1), got {self.dropout}", "encoder.dropout")
        if self.projection_activation not in PROJECTION_ACTIVATIONS:
            raise ConfigValueError(f"encoder.projection_activation must be one of "
                                   f"{', '.join(PROJECTION_ACTIVATIONS)}, got {self.projection_activation!r}",
                                   "encoder.projection_activation")
        if self.readout not in READOUTS:
            raise ConfigValueError(f"encoder.readout {self.readout!r} is not one of {', '.join(READOUTS.names())}",
                                   "encoder.readout")


@dataclass(frozen=True)
class NoiseConfig(Section):
    """Gaussian modality noise masking (GMNM, SPEC section 2; :mod:`snagkg.noise`)."""
    ratio: float = 0.2              # rho: probability that a row is noised
    mask: float = 0.7               # eps: how much of the row is replaced
    per_step: bool = False          # refresh the draw every step instead of every epoch
    structure_scale: float = 1.0    # structure embedding gets (rho, eps) * this (alignment: 0.5)

    def check(self) -> None:
        """Every ratio in [0, 1]."""
        for name in ("ratio", "mask", "structure_scale"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigValueError(f"noise.{name} must be in [0, 1], got {v}", f"noise.{name}")


@dataclass(frozen=True)
class TrainConfig(Section):
    """The training loop (:mod:`snagkg.training`), shared by every task."""
    epochs: int = 1000
    batch_size: int = 1024
    lr: float = 1e-4
    weight_decay: float = 0.0
    negatives: int = 32
    eval_every: int = 10            # evaluate on VALID every N epochs
    patience: int = 10              # stop after N evaluations without a better valid MRR
    eval_limit: int = 0             # rank only the first N valid triples during training (0: all)
    eval_candidates: int = 0        # completion: rank against N sampled candidates, not all entities (0: all)
    grad_clip: float = 0.0          # 0: off
    checkpoint_every: int = 1       # save a resumable checkpoint every N epochs

    def check(self) -> None:
        """Counts and the learning rate positive; weight decay, clipping, eval limit and candidates not negative."""
        _positive(self, "train", "epochs", "batch_size", "negatives", "eval_every", "patience", "checkpoint_every")
        if not self.lr > 0:
            raise ConfigValueError(f"train.lr must be positive, got {self.lr}", "train.lr")
        for name in ("weight_decay", "grad_clip", "eval_limit", "eval_candidates"):
            if getattr(self, name) < 0:
                raise ConfigValueError(f"train.{name} must not be negative, got {getattr(self, name)}",
                                       f"train.{name}")


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its config section (``RunConfig.<name>``) and its cross-section checks."""
    name: str
    section: type
    check: Optional[Callable[["RunConfig"], None]] = None


#: the registered tasks in registration order (``import snagkg``: completion, then alignment)
TASKS: Dict[str, TaskSpec] = {}
#: every config section by YAML key: the shared ones, then each task's (added by :func:`register_task`)
SECTIONS: Dict[str, type] = {"encoder": EncoderConfig, "noise": NoiseConfig, "train": TrainConfig}


def _task_section(name: str) -> Callable[[], Section]:
    def make() -> Section:
        if name not in TASKS:
            raise RuntimeError(f"no config section registered for the {name} task (import snagkg registers it)")
        return TASKS[name].section()
    return make


@dataclass(frozen=True)
class RunConfig:
    """A whole run: top-level options, the shared sections and one section per task (all of them saved)."""
    task: str = "completion"        # a registered task (TASKS)
    dataset: str = "synthetic"
    dataset_split: Optional[str] = None     # one triples file: "train,valid,test" shares (None: 0.8,0.1,0.1)
    dataset_columns: Optional[str] = None   # TSV/CSV triples: role of each column, e.g. "h,t,r" (None: header or h,r,t)
    valid_from_train: float = 0.0           # > 0: hold out this share of train as the valid split (test untouched)
    split_seed: int = 0                     # seed of dataset_split and valid_from_train (not the run seed)
    preset: Optional[str] = None
    modalities: Optional[Tuple[str, ...]] = None   # None: structure + every feature table found
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"         # fp32, or bf16: the encoder's products in bfloat16
    ties: str = "realistic"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    completion: Any = field(default_factory=_task_section("completion"))  # snagkg.completion.config
    alignment: Any = field(default_factory=_task_section("alignment"))    # snagkg.alignment.config

    def check(self) -> None:
        """Top-level options, the cross-section rules (shared, then each task's), then every section."""
        if self.task not in TASKS:
            raise ConfigValueError(f"task must be {' or '.join(repr(t) for t in TASKS)}, got {self.task!r}", "task")
        if self.ties not in ("realistic", "optimistic"):
            raise ConfigValueError(f"ties must be 'realistic' or 'optimistic', got {self.ties!r}", "ties")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}", "device")
        if self.precision not in PRECISIONS:
            raise ConfigValueError(f"precision must be {' or '.join(PRECISIONS)}, got {self.precision!r}",
                                   "precision")
        if not self.encoder.fusion and (self.modalities is None or tuple(self.modalities) != ("structure",)):
            raise ConfigValueError("encoder.fusion false (no encoder) needs --modalities structure: without the "
                                   "fusion encoder there is no way to use feature modalities", "encoder.fusion",
                                   "modalities")
        for spec in TASKS.values():
            if spec.check is not None:
                spec.check(self)
        problem = dataset_option_problem(self)  # (message, key) of a bad dataset_split, _columns, valid_from_train
        if problem:
            raise ConfigValueError(*problem)
        if self.modalities is not None and len(self.modalities) == 0:
            raise ConfigValueError("modalities must name at least one modality", "modalities")
        for name in SECTIONS:
            getattr(self, name).check()

    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dict (lists, no tuples): what ``config.yaml`` and ``results.json`` hold."""
        d = dataclasses.asdict(self)
        if d["modalities"] is not None:
            d["modalities"] = list(d["modalities"])
        return d


def register_task(name: str, section: type, check: Optional[Callable[[RunConfig], None]] = None) -> type:
    """Register ``section`` as the config section of task ``name`` and ``check(cfg)`` as its cross-section rules.

    ``name`` must be a :class:`RunConfig` field (every run keeps every task's section, so saved
    configs stay complete); ``check`` raises :class:`ConfigValueError`. Registering a name again
    replaces it. Returns ``section``.
    """
    if name not in {f.name for f in fields(RunConfig)} or name in ("encoder", "noise", "train"):
        raise ValueError(f"{name!r} is not a task section of RunConfig")
    TASKS[name] = TaskSpec(name, section, check)
    SECTIONS[name] = section
    return section


Layer = Tuple[str, Dict[str, Any], KeyLines]
COMMAND_LINE = "command line"


def cli_flag(key: str) -> str:
    """The ``snagkg train`` flag that sets the dotted config ``key`` (``train.lr`` -> ``--lr``)."""
    flag = flag_for(key)
    return flag.flag if flag is not None else "--" + key.split(".")[-1].replace("_", "-")


def _checked(cfg: RunConfig, layers: List[Layer], fallback: Any) -> RunConfig:
    """Run ``cfg.check()``; report a bad value at the file and line that set it.

    ``layers`` are ``(source, data, key lines)`` from the highest precedence
    down; the error names the first layer that set one of the offending keys.
    """
    try:
        cfg.check()
    except ConfigValueError as exc:
        for source, data, lines in layers:
            for key in exc.keys:
                if _has(data, key):
                    msg = str(exc)
                    if source == COMMAND_LINE:  # name the flag the user typed, not only the config key
                        msg = f"{cli_flag(key)}: {msg}"
                    raise SnagError(msg, source, lines.get(tuple(key.split(".")))) from None
        raise SnagError(str(exc), fallback) from None
    except ValueError as exc:
        raise SnagError(str(exc), fallback) from None
    return cfg


def apply_mapping(cfg: RunConfig, data: Dict[str, Any], source: str, lines: Optional[KeyLines] = None) -> RunConfig:
    """Return ``cfg`` updated with a nested mapping (from YAML or a preset)."""
    lines = lines or {}
    top = {f.name for f in fields(RunConfig)}
    updates: Dict[str, Any] = {}
    for key, value in data.items():
        where_line = lines.get((key,))
        if key not in top:
            raise SnagError(f"unknown config key {key!r}{_closest(key, top)}", source, where_line)
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise SnagError(f"{key} must be a mapping of options", source, where_line)
            cls = SECTIONS[key]
            names = {f.name for f in fields(cls)}
            sub = {}
            for k2, v2 in value.items():
                line2 = lines.get((key, k2))
                if k2 not in names:
                    raise SnagError(f"unknown config key '{key}.{k2}'{_closest(k2, names, key + '.')}", source, line2)
                sub[k2] = _coerce_at(cls, k2, v2, source, line2, f"{key}.{k2}")
            updates[key] = replace(getattr(cfg, key), **sub)
        else:
            updates[key] = _coerce_at(RunConfig, key, value, source, where_line)
    return replace(cfg, **updates)


def _coerce_at(cls: type, key: str, value: Any, source: str, line: Optional[int],
               label: Optional[str] = None) -> Any:
    try:
        return _coerce(cls, key, value, source, label)
    except SnagError as exc:
        raise SnagError(exc.message, source, line) from None


def _preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{str(name).lower()}.yaml"
    if not path.exists():
        options = preset_names()
        close = difflib.get_close_matches(str(name).lower(), options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SnagError(f"unknown preset {name!r} (choose from {', '.join(options)}){hint}")
    return path


def load_preset(name: str) -> Dict[str, Any]:
    """The mapping of preset ``name`` (``src/snagkg/presets/<name>.yaml``)."""
    data, _ = _read_yaml(_preset_path(name))
    return data


def preset_names() -> List[str]:
    """The names of the presets, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def describe_preset(name: str) -> Tuple[str, str]:
    """``(task, first comment line)`` of preset ``name``: what ``snagkg presets`` lists."""
    path = _preset_path(name)
    data, _ = _read_yaml(path)
    return str(data.get("task", RunConfig.task)), first_comment(path)


def resolve(preset: Optional[str] = None, config_file: Optional[str] = None,
            overrides: Optional[Dict[str, Any]] = None, base: Optional[RunConfig] = None,
            before_check: Optional[Callable[[RunConfig], None]] = None) -> RunConfig:
    """Build the run config: defaults < preset < YAML file < overrides.

    ``overrides`` uses dotted keys for sections: ``{"train.epochs": 5, "seed": 1}``.
    An out-of-range value is reported at the file and line (or the command
    line) that set it. ``before_check(cfg)``, if given, sees the merged config
    before any value is checked (the command line checks which task its flags
    apply to there).
    """
    cfg = base or RunConfig()
    file_data: Dict[str, Any] = {}
    file_lines: KeyLines = {}
    if config_file:
        file_data, file_lines = _read_yaml(Path(config_file))
    preset = (overrides or {}).get("preset") or preset or file_data.get("preset")
    layers: List[Layer] = []
    if preset:
        from_file = preset == file_data.get("preset") and config_file is not None
        if not isinstance(preset, str):
            raise SnagError(f"preset must be a name, got {preset!r}", config_file, file_lines.get(("preset",)))
        try:
            path = _preset_path(preset)
        except SnagError as exc:
            if from_file:
                raise SnagError(exc.message, config_file, file_lines.get(("preset",))) from None
            raise
        preset_data, preset_lines = _read_yaml(path)
        cfg = apply_mapping(cfg, preset_data, str(path), preset_lines)
        cfg = replace(cfg, preset=preset)
        layers.insert(0, (str(path), preset_data, preset_lines))
    if file_data:
        cfg = apply_mapping(cfg, file_data, str(config_file), file_lines)
        layers.insert(0, (str(config_file), file_data, file_lines))
    if overrides:
        nested: Dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            if "." in key:
                sec, sub = key.split(".", 1)
                nested.setdefault(sec, {})[sub] = value
            else:
                nested[key] = value
        cfg = apply_mapping(cfg, nested, COMMAND_LINE)
        layers.insert(0, (COMMAND_LINE, nested, {}))
    if before_check is not None:
        before_check(cfg)
    return _checked(cfg, layers, config_file or COMMAND_LINE)


def dump(cfg: RunConfig) -> str:
    """``cfg`` as YAML (what a run folder's ``config.yaml`` holds)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def from_dict(data: Dict[str, Any], source: str = "config.yaml") -> RunConfig:
    """A checked config from a nested mapping (``RunConfig.to_dict`` output); errors name ``source``."""
    if not isinstance(data, dict):
        raise SnagError("config must be a mapping", source)
    cfg = apply_mapping(RunConfig(), data, source)
    return _checked(cfg, [(source, data, {})], source)


def load_run_config(path: Path) -> RunConfig:
    """The resolved config saved with a run.

    Runs saved before ``encoder.projection_activation`` existed put a GELU between stacked
    projection layers: a saved config without the key that stacks layers keeps that, so
    those runs load and evaluate as they were trained (one layer: nothing to keep).
    """
    data, lines = _read_yaml(Path(path))
    enc = data.get("encoder") if isinstance(data, dict) else None
    if isinstance(enc, dict) and "projection_activation" not in enc and enc.get("projection_layers", 1) != 1:
        data["encoder"] = {**enc, "projection_activation": "gelu"}
    cfg = apply_mapping(RunConfig(), data, str(path), lines)
    return _checked(cfg, [(str(path), data, lines)], path)
