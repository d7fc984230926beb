"""Frozen configuration dataclasses, YAML loading and presets.

Resolution order (later wins): dataclass defaults < preset < ``--config``
YAML < command-line flags. The resolved config is saved as ``config.yaml``
in every run folder. Unknown keys and out-of-range values are one-line
errors naming the file, line, key and the closest valid key.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import yaml

from .errors import SnagError

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass(frozen=True)
class EncoderConfig:
    hidden: int = 256               # d = 2k: RotatE works on k = hidden / 2 complex numbers
    projection_layers: int = 1
    heads: int = 2
    layers: int = 1
    dropout: float = 0.1
    ffn: bool = False
    tanh: bool = True
    readout: str = "mean"

    def check(self) -> None:
        _positive(self, "hidden", "projection_layers", "heads", "layers")
        if self.hidden % 2:
            raise ValueError("encoder.hidden must be even (RotatE uses hidden/2 complex numbers)")
        if self.hidden % self.heads:
            raise ValueError(f"encoder.hidden ({self.hidden}) must be divisible by encoder.heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"encoder.dropout must be in [0, 1), got {self.dropout}")
        from .encoder import READOUTS
        if self.readout not in READOUTS:
            raise ValueError(f"encoder.readout {self.readout!r} is not one of {', '.join(READOUTS.names())}")


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
                raise ValueError(f"noise.{name} must be in [0, 1], got {v}")


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
            raise ValueError(f"train.lr must be positive, got {self.lr}")
        for name in ("weight_decay", "grad_clip", "eval_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must not be negative, got {getattr(self, name)}")


@dataclass(frozen=True)
class CompletionConfig:
    scorer: str = "rotate"
    margin: float = 12.0            # gamma
    adversarial_temperature: float = 2.0   # alpha
    filter_negatives: bool = True

    def check(self) -> None:
        if not self.margin > 0:
            raise ValueError(f"completion.margin must be positive, got {self.margin}")
        if self.adversarial_temperature < 0:
            raise ValueError("completion.adversarial_temperature must not be negative")
        from .completion.scorers import SCORERS
        if self.scorer not in SCORERS:
            raise ValueError(f"completion.scorer {self.scorer!r} is not one of {', '.join(SCORERS.names())}")


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
            raise ValueError(f"alignment.train_ratio must be in [0, 1), got {self.train_ratio}")
        if not 0.0 <= self.valid_ratio < 1.0:
            raise ValueError(f"alignment.valid_ratio must be in [0, 1), got {self.valid_ratio}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"alignment.warmup must be in [0, 1), got {self.warmup}")
        if not 0.0 <= self.gat_dropout < 1.0:
            raise ValueError(f"alignment.gat_dropout must be in [0, 1), got {self.gat_dropout}")
        if not self.temperature > 0:
            raise ValueError(f"alignment.temperature must be positive, got {self.temperature}")
        for name in ("structure_dim", "gat_heads", "top_relations", "top_attributes", "char_vocab",
                     "propose_every", "add_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"alignment.{name} must be positive, got {getattr(self, name)}")
        for name in ("gat_layers", "csls_k", "iterative_start"):
            if getattr(self, name) < 0:
                raise ValueError(f"alignment.{name} must not be negative, got {getattr(self, name)}")


@dataclass(frozen=True)
class RunConfig:
    task: str = "completion"
    dataset: str = "synthetic"
    preset: Optional[str] = None
    modalities: Optional[Tuple[str, ...]] = None   # None: structure + every feature table found
    seed: int = 0
    device: str = "auto"
    ties: str = "realistic"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig)

    def check(self) -> None:
        if self.task not in ("completion", "alignment"):
            raise ValueError(f"task must be 'completion' or 'alignment', got {self.task!r}")
        if self.ties not in ("realistic", "optimistic"):
            raise ValueError(f"ties must be 'realistic' or 'optimistic', got {self.ties!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.modalities is not None and len(self.modalities) == 0:
            raise ValueError("modalities must name at least one modality")
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
            raise ValueError(f"{section}.{name} must be positive, got {v}")


def _coerce(cls: type, key: str, value: Any, where: str) -> Any:
    f = {f.name: f for f in fields(cls)}[key]
    default = f.default if f.default is not dataclasses.MISSING else None
    typ = type(default) if default is not None else None
    if key == "modalities":
        if value is None:
            return None
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise SnagError(f"{key} must be a list of modality names", where)
        return tuple(value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise SnagError(f"{key} must be true or false, got {value!r}", where)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SnagError(f"{key} must be an integer, got {value!r}", where)
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SnagError(f"{key} must be a number, got {value!r}", where)
        return float(value)
    if typ is str or key in ("preset",):
        if value is not None and not isinstance(value, str):
            raise SnagError(f"{key} must be a string, got {value!r}", where)
        return value
    return value


def _closest(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f" (valid keys: {', '.join(sorted(options))})"


def _read_yaml(path: Path) -> Tuple[Dict[str, Any], Dict[Tuple[str, ...], int]]:
    """Safe-load a YAML mapping, keeping the line of every key."""
    if not path.exists():
        raise SnagError("config file not found", path)
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError:
        raise SnagError("not valid UTF-8", path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise SnagError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", path, line) from None
    if node is None:
        return {}, {}
    lines: Dict[Tuple[str, ...], int] = {}

    def walk(n: Any, prefix: Tuple[str, ...]) -> Any:
        if isinstance(n, yaml.MappingNode):
            out = {}
            for k, v in n.value:
                key = str(k.value)
                lines[prefix + (key,)] = k.start_mark.line + 1
                out[key] = walk(v, prefix + (key,))
            return out
        return yaml.safe_load(yaml.serialize(n))

    data = walk(node, ())
    if not isinstance(data, dict):
        raise SnagError("config must be a YAML mapping", path, 1)
    return data, lines


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
                    raise SnagError(f"unknown config key '{key}.{k2}'{_closest(k2, names)}", source, line2)
                sub[k2] = _coerce_at(cls, k2, v2, source, line2)
            updates[key] = replace(getattr(cfg, key), **sub)
        else:
            updates[key] = _coerce_at(RunConfig, key, value, source, where_line)
    return replace(cfg, **updates)


def _coerce_at(cls: type, key: str, value: Any, source: str, line: Optional[int]) -> Any:
    try:
        return _coerce(cls, key, value, source)
    except SnagError as exc:
        raise SnagError(exc.message, source, line) from None


def load_preset(name: str) -> Dict[str, Any]:
    path = PRESET_DIR / f"{name.lower()}.yaml"
    if not path.exists():
        options = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        close = difflib.get_close_matches(name.lower(), options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SnagError(f"unknown preset {name!r} (choose from {', '.join(options)}){hint}")
    data, _ = _read_yaml(path)
    return data


def preset_names() -> list:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve(preset: Optional[str] = None, config_file: Optional[str] = None,
            overrides: Optional[Dict[str, Any]] = None, base: Optional[RunConfig] = None) -> RunConfig:
    """Build the run config: defaults < preset < YAML file < overrides.

    ``overrides`` uses dotted keys for sections: ``{"train.epochs": 5, "seed": 1}``.
    """
    cfg = base or RunConfig()
    file_data: Dict[str, Any] = {}
    file_lines: Dict[Tuple[str, ...], int] = {}
    if config_file:
        file_data, file_lines = _read_yaml(Path(config_file))
    preset = (overrides or {}).get("preset") or preset or file_data.get("preset")
    if preset:
        cfg = apply_mapping(cfg, load_preset(preset), str(PRESET_DIR / f"{preset}.yaml"))
        cfg = replace(cfg, preset=preset)
    if file_data:
        cfg = apply_mapping(cfg, file_data, str(config_file), file_lines)
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
        cfg = apply_mapping(cfg, nested, "command line")
    try:
        cfg.check()
    except ValueError as exc:
        raise SnagError(str(exc), config_file or "command line") from None
    return cfg


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def from_dict(data: Dict[str, Any], source: str = "config.yaml") -> RunConfig:
    cfg = apply_mapping(RunConfig(), data, source)
    try:
        cfg.check()
    except ValueError as exc:
        raise SnagError(str(exc), source) from None
    return cfg


def load_run_config(path: Path) -> RunConfig:
    data, lines = _read_yaml(Path(path))
    cfg = apply_mapping(RunConfig(), data, str(path), lines)
    try:
        cfg.check()
    except ValueError as exc:
        raise SnagError(str(exc), path) from None
    return cfg
