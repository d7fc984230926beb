"""Frozen configuration dataclasses, YAML loading and presets.

Resolution order (later wins): dataclass defaults < preset < ``--config``
YAML < command-line flags. The resolved config is saved as ``config.yaml``
in every run folder. Unknown keys and out-of-range values are one-line
errors naming the file, line, key and the closest valid key.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import yaml

from .errors import SnagError

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigValueError(ValueError):
    """An out-of-range config value; ``keys`` are the dotted keys involved (first: the main one)."""

    def __init__(self, message: str, *keys: str):
        super().__init__(message)
        self.keys = keys


@dataclass(frozen=True)
class EncoderConfig:
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
    readout: str = "mean"
    fusion: bool = True             # false: no encoder, the structure embedding is the entity vector (plain KGE)

    def check(self) -> None:
        _positive(self, "hidden", "projection_layers", "heads", "layers")
        if self.hidden % 2:
            raise ConfigValueError("encoder.hidden must be even (RotatE uses hidden/2 complex numbers)",
                                   "encoder.hidden")
        if self.hidden % self.heads:
            raise ConfigValueError(f"encoder.hidden ({self.hidden}) must be divisible by encoder.heads ({self.heads})",
                                   "encoder.hidden", "encoder.heads")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigValueError(f"encoder.dropout must be in [0, 1), got {self.dropout}", "encoder.dropout")
        from .encoder import PROJECTION_ACTIVATIONS, READOUTS
        if self.projection_activation not in PROJECTION_ACTIVATIONS:
            raise ConfigValueError(f"encoder.projection_activation must be one of "
                                   f"{', '.join(PROJECTION_ACTIVATIONS)}, got {self.projection_activation!r}",
                                   "encoder.projection_activation")
        if self.readout not in READOUTS:
            raise ConfigValueError(f"encoder.readout {self.readout!r} is not one of {', '.join(READOUTS.names())}",
                                   "encoder.readout")


@dataclass(frozen=True)
class NoiseConfig:
    ratio: float = 0.2              # rho: probability that a row is noised
    mask: float = 0.7               # eps: how much of the row is replaced
    per_step: bool = False          # refresh the draw every step instead of every epoch
    structure_scale: float = 1.0    # structure embedding gets (rho, eps) * this (alignment: 0.5)

    def check(self) -> None:
        for name in ("ratio", "mask", "structure_scale"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigValueError(f"noise.{name} must be in [0, 1], got {v}", f"noise.{name}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1000
    batch_size: int = 1024
    lr: float = 1e-4
    weight_decay: float = 0.0
    negatives: int = 32
    eval_every: int = 10            # evaluate on VALID every N epochs
    patience: int = 10              # stop after N evaluations without a better valid MRR
    eval_limit: int = 0             # rank only the first N valid triples during training (0: all)
    grad_clip: float = 0.0          # 0: off
    checkpoint_every: int = 1       # save a resumable checkpoint every N epochs

    def check(self) -> None:
        _positive(self, "epochs", "batch_size", "negatives", "eval_every", "patience", "checkpoint_every")
        if not self.lr > 0:
            raise ConfigValueError(f"train.lr must be positive, got {self.lr}", "train.lr")
        for name in ("weight_decay", "grad_clip", "eval_limit"):
            if getattr(self, name) < 0:
                raise ConfigValueError(f"train.{name} must not be negative, got {getattr(self, name)}",
                                       f"train.{name}")


@dataclass(frozen=True)
class CompletionConfig:
    scorer: str = "rotate"
    margin: float = 12.0            # gamma
    adversarial_temperature: float = 2.0   # alpha
    filter_negatives: bool = True
    # learning rate of the trainable structure embedding table, relative to train.lr
    embedding_lr_scale: float = 1.0
    # learning rate of the encoder (projections, fusion layers, readout), relative to train.lr
    encoder_lr_scale: float = 1.0
    # learning rate of the scorer's relation parameters (RotatE: phases stored in
    # [-range, range], range = (margin + 2) / k, so one unit of step turns a relation by
    # pi / range radians), relative to train.lr
    relation_lr_scale: float = 1.0
    # add the (noised) structure embedding row to the fused vector: RotatE's free entity vector
    # plus the encoder's fusion of every modality (SNAG's fusion as a plug-in to RotatE, SPEC
    # section 6); needs the fusion encoder and the structure modality
    structure_residual: bool = False
    # with structure_residual: multiply the fused vector by a learned scalar gate that starts
    # at 0 (ReZero), so training starts from plain RotatE and the encoder's share grows only
    # as far as the loss asks for it
    residual_gate: bool = False

    def check(self) -> None:
        for name in ("embedding_lr_scale", "encoder_lr_scale", "relation_lr_scale"):
            if not getattr(self, name) > 0:
                raise ConfigValueError(f"completion.{name} must be positive, got {getattr(self, name)}",
                                       f"completion.{name}")
        if self.residual_gate and not self.structure_residual:
            raise ConfigValueError("completion.residual_gate (--residual-gate) gates the fused vector added to the "
                                   "structure row: it needs completion.structure_residual (--structure-residual)",
                                   "completion.residual_gate")
        if not self.margin > 0:
            raise ConfigValueError(f"completion.margin must be positive, got {self.margin}", "completion.margin")
        if self.adversarial_temperature < 0:
            raise ConfigValueError("completion.adversarial_temperature must not be negative",
                                   "completion.adversarial_temperature")
        from .completion.scorers import SCORERS
        if self.scorer not in SCORERS:
            raise ConfigValueError(f"completion.scorer {self.scorer!r} is not one of {', '.join(SCORERS.names())}",
                                   "completion.scorer")


@dataclass(frozen=True)
class AlignmentConfig:
    """Multi-modal entity alignment (SPEC section 5; ``snagkg.alignment``)."""
    train_ratio: float = 0.0        # share of the gold links used for training; 0: layout default (DBP15K 0.3, OpenEA 0.2)
    valid_ratio: float = 0.1        # share of the training links held out for model selection (never test)
    structure_dim: int = 300        # width of the structure embedding and of the GAT
    gat_layers: int = 2
    gat_heads: int = 2
    gat_dropout: float = 0.0
    temperature: float = 0.1        # tau of the in-batch contrastive loss
    csls_k: int = 3                 # CSLS neighbourhood (0: plain cosine)
    top_relations: int = 1000       # relation bag width
    top_attributes: int = 1000      # attribute bag width
    char_vocab: int = 2000          # most frequent name character bigrams kept
    warmup: float = 0.15            # share of the run spent warming the learning rate up (cosine after)
    iterative: bool = True          # iterative learning: add stable mutual nearest neighbours as links
    iterative_start: int = 0        # warm stage in epochs before proposals start (0: half of train.epochs)
    propose_every: int = 5          # propose mutual nearest neighbours every N epochs
    add_every: int = 50             # add the proposals that stayed mutual every N epochs

    def check(self) -> None:
        if not 0.0 <= self.train_ratio < 1.0:
            raise ConfigValueError(f"alignment.train_ratio must be in [0, 1), got {self.train_ratio}",
                                   "alignment.train_ratio")
        if not 0.0 <= self.valid_ratio < 1.0:
            raise ConfigValueError(f"alignment.valid_ratio must be in [0, 1), got {self.valid_ratio}",
                                   "alignment.valid_ratio")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigValueError(f"alignment.warmup must be in [0, 1), got {self.warmup}",
                                   "alignment.warmup")
        if not 0.0 <= self.gat_dropout < 1.0:
            raise ConfigValueError(f"alignment.gat_dropout must be in [0, 1), got {self.gat_dropout}",
                                   "alignment.gat_dropout")
        if not self.temperature > 0:
            raise ConfigValueError(f"alignment.temperature must be positive, got {self.temperature}",
                                   "alignment.temperature")
        for name in ("structure_dim", "gat_heads", "top_relations", "top_attributes", "char_vocab",
                     "propose_every", "add_every"):
            if getattr(self, name) <= 0:
                raise ConfigValueError(f"alignment.{name} must be positive, got {getattr(self, name)}",
                                       f"alignment.{name}")
        for name in ("gat_layers", "csls_k", "iterative_start"):
            if getattr(self, name) < 0:
                raise ConfigValueError(f"alignment.{name} must not be negative, got {getattr(self, name)}",
                                       f"alignment.{name}")


@dataclass(frozen=True)
class RunConfig:
    task: str = "completion"
    dataset: str = "synthetic"
    preset: Optional[str] = None
    modalities: Optional[Tuple[str, ...]] = None   # None: structure + every feature table found
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"   # fp32, or bf16: the encoder's products in bfloat16 (completion)
    ties: str = "realistic"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)

    def check(self) -> None:
        if self.task not in ("completion", "alignment"):
            raise ConfigValueError(f"task must be 'completion' or 'alignment', got {self.task!r}", "task")
        if self.ties not in ("realistic", "optimistic"):
            raise ConfigValueError(f"ties must be 'realistic' or 'optimistic', got {self.ties!r}", "ties")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}", "device")
        from .kernels import PRECISIONS
        if self.precision not in PRECISIONS:
            raise ConfigValueError(f"precision must be {' or '.join(PRECISIONS)}, got {self.precision!r}",
                                   "precision")
        if not self.encoder.fusion:
            if self.task != "completion":
                raise ConfigValueError("encoder.fusion false (no encoder) is available for the completion task only",
                                       "encoder.fusion")
            if self.modalities is None or tuple(self.modalities) != ("structure",):
                raise ConfigValueError("encoder.fusion false (no encoder) needs --modalities structure: without the "
                                       "fusion encoder there is no way to use feature modalities", "encoder.fusion",
                                       "modalities")
            if self.completion.structure_residual:
                raise ConfigValueError("completion.structure_residual adds the structure row to the fused vector: "
                                       "it needs the fusion encoder (drop --no-fusion or --structure-residual)",
                                       "completion.structure_residual", "encoder.fusion")
        if self.precision != "fp32" and self.task != "completion":
            raise ConfigValueError(f"precision {self.precision} is available for the completion task only",
                                   "precision")
        if self.modalities is not None and len(self.modalities) == 0:
            raise ConfigValueError("modalities must name at least one modality", "modalities")
        for sec in (self.encoder, self.noise, self.train, self.completion, self.alignment):
            sec.check()

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["modalities"] is not None:
            d["modalities"] = list(d["modalities"])
        return d


SECTIONS = {"encoder": EncoderConfig, "noise": NoiseConfig, "train": TrainConfig, "completion": CompletionConfig,
            "alignment": AlignmentConfig}


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        v = getattr(obj, name)
        if v <= 0:
            section = {EncoderConfig: "encoder", TrainConfig: "train"}.get(type(obj), "")
            raise ConfigValueError(f"{section}.{name} must be positive, got {v}", f"{section}.{name}")


def _coerce(cls: type, key: str, value: Any, where: str, label: Optional[str] = None) -> Any:
    f = {f.name: f for f in fields(cls)}[key]
    name = label or key
    default = f.default if f.default is not dataclasses.MISSING else None
    typ = type(default) if default is not None else None
    if key == "modalities":
        if value is None:
            return None
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise SnagError(f"{name} must be a list of modality names", where)
        return tuple(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise SnagError(f"{name} must be true or false, got {value!r}", where)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SnagError(f"{name} must be an integer, got {value!r}", where)
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SnagError(f"{name} must be a number, got {value!r}", where)
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise SnagError(f"{name} must be a finite number, got {value!r}", where)
        return value
    if typ is str or key in ("preset",):
        if value is not None and not isinstance(value, str):
            raise SnagError(f"{name} must be a string, got {value!r}", where)
        return value
    return value


def _closest(key: str, options, prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    if close:
        return f"; did you mean {prefix + close[0]!r}?"
    return f" (valid keys: {', '.join(prefix + o for o in sorted(options))})"


_SAFE_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_SAFE_TAG + t for t in ("null", "bool", "int", "float", "str", "seq", "map")}


def _read_yaml(path: Path) -> Tuple[Dict[str, Any], Dict[Tuple[str, ...], int]]:
    """Safe-load a YAML mapping, keeping the line of every key.

    Only plain YAML is accepted: ``!!python/...`` and other custom tags are
    refused (nothing in a config file is ever executed or imported), and so
    are duplicate keys.
    """
    path = Path(path)
    if not path.exists():
        raise SnagError("config file not found", path)
    if not path.is_file():
        raise SnagError("config path is not a regular file", path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise SnagError("not valid UTF-8", path, line) from None
    except OSError as exc:
        raise SnagError(f"cannot read: {exc.strerror or exc}", path) from None

    def fail(exc: yaml.YAMLError) -> SnagError:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return SnagError(f"invalid YAML: {what}", path, line)

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise fail(exc) from None
    except RecursionError:
        raise SnagError("invalid YAML: nested too deeply", path) from None
    if node is None:
        return {}, {}
    lines: Dict[Tuple[str, ...], int] = {}
    constructor = yaml.SafeLoader("")

    def walk(n: Any, prefix: Tuple[str, ...]) -> Any:
        line = n.start_mark.line + 1
        if n.tag not in _PLAIN_TAGS:
            tag = str(n.tag).replace(_SAFE_TAG, "!!")
            raise SnagError(f"YAML tag {tag!r} is not allowed in a config (plain values only; "
                            "nothing in a config is ever executed)", path, line)
        if isinstance(n, yaml.MappingNode):
            if n.tag != _SAFE_TAG + "map":
                raise SnagError(f"YAML tag {n.tag!r} is not allowed here (expected a mapping)", path, line)
            out: Dict[str, Any] = {}
            for k, v in n.value:
                kline = k.start_mark.line + 1
                if not isinstance(k, yaml.ScalarNode) or k.tag not in _PLAIN_TAGS:
                    raise SnagError("config keys must be plain names", path, kline)
                key = str(k.value)
                if prefix + (key,) in lines:
                    raise SnagError(f"duplicate key {key!r} (first on line {lines[prefix + (key,)]})", path, kline)
                lines[prefix + (key,)] = kline
                out[key] = walk(v, prefix + (key,))
            return out
        try:
            return constructor.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            raise fail(exc) from None

    data = walk(node, ())
    if not isinstance(data, dict):
        raise SnagError("config must be a YAML mapping (key: value lines)", path, node.start_mark.line + 1)
    return data, lines


def _has(data: Dict[str, Any], dotted: str) -> bool:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


Layer = Tuple[str, Dict[str, Any], Dict[Tuple[str, ...], int]]


COMMAND_LINE = "command line"
#: config keys whose command-line flag is not ``--`` + the last part of the key
_FLAGS = {"noise.ratio": "--noise-ratio", "noise.mask": "--mask-ratio", "encoder.fusion": "--no-fusion",
          "noise.structure_scale": "--structure-noise-scale"}


def cli_flag(key: str) -> str:
    """The ``snagkg train`` flag that sets the dotted config ``key`` (``train.lr`` -> ``--lr``)."""
    return _FLAGS.get(key, "--" + key.split(".")[-1].replace("_", "-"))


def _checked(cfg: "RunConfig", layers: "list[Layer]", fallback: Any) -> "RunConfig":
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


def apply_mapping(cfg: RunConfig, data: Dict[str, Any], source: str,
                  lines: Optional[Dict[Tuple[str, ...], int]] = None) -> RunConfig:
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
        options = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(str(name).lower(), options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SnagError(f"unknown preset {name!r} (choose from {', '.join(options)}){hint}")
    return path


def load_preset(name: str) -> Dict[str, Any]:
    data, _ = _read_yaml(_preset_path(name))
    return data


def preset_names() -> list:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve(preset: Optional[str] = None, config_file: Optional[str] = None,
            overrides: Optional[Dict[str, Any]] = None, base: Optional[RunConfig] = None) -> RunConfig:
    """Build the run config: defaults < preset < YAML file < overrides.

    ``overrides`` uses dotted keys for sections: ``{"train.epochs": 5, "seed": 1}``.
    An out-of-range value is reported at the file and line (or the command
    line) that set it.
    """
    cfg = base or RunConfig()
    file_data: Dict[str, Any] = {}
    file_lines: Dict[Tuple[str, ...], int] = {}
    if config_file:
        file_data, file_lines = _read_yaml(Path(config_file))
    preset = (overrides or {}).get("preset") or preset or file_data.get("preset")
    layers: list = []
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
    return _checked(cfg, layers, config_file or COMMAND_LINE)


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def from_dict(data: Dict[str, Any], source: str = "config.yaml") -> RunConfig:
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
