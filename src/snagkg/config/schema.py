"""Frozen configuration dataclasses, YAML loading and presets.

Resolution order (later wins): dataclass defaults < preset < ``--config``
YAML < command-line flags. The resolved config is saved as ``config.yaml``
in every run folder. Unknown keys and out-of-range values are one-line
errors naming the file, line, key and the closest valid key.

This module holds the ``encoder`` section (``noise`` and ``train``: :mod:`snagkg.config.sections`)
and :class:`RunConfig`; each task registers its own section and
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
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

import yaml

from snagkg.config.flags import flag_for
from snagkg.config.sections import (
    ConfigValueError,
    NoiseConfig,
    Section,
    TrainConfig,
    positive,
)
from snagkg.config.yamlio import KeyLines, first_comment
from snagkg.config.yamlio import closest as _closest
from snagkg.config.yamlio import coerce as _coerce
from snagkg.config.yamlio import has as _has
from snagkg.config.yamlio import read_yaml as _read_yaml
from snagkg.core.registry import PROJECTION_ACTIVATIONS, READOUTS
from snagkg.data.datasets.named import dataset_option_problem
from snagkg.runtime.errors import SnagError
from snagkg.runtime.precision import PRECISIONS

PRESET_DIR = Path(__file__).parent / "presets"


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
        positive(self, "encoder", "hidden", "projection_layers", "heads", "layers")
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
class TaskSpec:
    """A registered task: its config section (``RunConfig.<name>``) and its cross-section checks."""
    name: str
    section: type
    check: Optional[Callable[["RunConfig"], None]] = None


SHARED = ("encoder", "noise", "train")
#: the registered tasks in registration order (``import snagkg``: completion, then alignment)
TASKS: Dict[str, TaskSpec] = {}
#: every config section by YAML key: the shared ones, then each task's (added by :func:`register_task`)
SECTIONS: Dict[str, type] = {"encoder": EncoderConfig, "noise": NoiseConfig, "train": TrainConfig}


def _task_sections() -> Dict[str, Section]:
    return {name: spec.section() for name, spec in TASKS.items()}


@dataclass(frozen=True)
class RunConfig:
    """A whole run: top-level options, the shared sections and one section per registered task.

    Every task's section is kept and saved (``config.yaml``: one mapping per task, after ``train``),
    so saved configs stay complete. A task's section is ``cfg.<task>`` (``cfg.completion``) or
    ``cfg.section(name)``; ``RunConfig(alignment=...)`` and ``replace(cfg, alignment=...)`` set one.
    """
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
    #: each registered task's section by task name (default: every registered task's defaults)
    tasks: Dict[str, Any] = field(default_factory=_task_sections, hash=False)
    #: set by :func:`resolve` without a preset or config file: the dotted keys its caller set; training
    #: then fills the keys of :func:`snagkg.config.auto.graph_defaults` from the graph (``None``: the
    #: config is complete as it is). Not saved: ``config.yaml`` holds the values it led to.
    explicit: Optional[FrozenSet[str]] = field(default=None, compare=False, repr=False)

    def __getattr__(self, name: str) -> Any:
        """A task's section as an attribute: ``cfg.completion``."""
        sections = self.__dict__.get("tasks")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute or task section {name!r}")

    def section(self, name: str) -> Any:
        """The section ``name``: a shared one (``encoder``, ``noise``, ``train``) or a task's."""
        return getattr(self, name) if name in SHARED else self.tasks[name]

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
            if spec.check is not None and spec.name in self.tasks:
                spec.check(self)
        problem = dataset_option_problem(self)  # (message, key) of a bad dataset_split, _columns, valid_from_train
        if problem:
            raise ConfigValueError(*problem)
        if self.modalities is not None and len(self.modalities) == 0:
            raise ConfigValueError("modalities must name at least one modality", "modalities")
        for section in [getattr(self, name) for name in SHARED] + list(self.tasks.values()):
            section.check()

    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dict (lists, no tuples): what ``config.yaml`` and ``results.json`` hold; each
        task's section is a top-level mapping after ``train``."""
        d = dataclasses.asdict(self)
        d.pop("explicit")
        d.update(d.pop("tasks"))
        if d["modalities"] is not None:
            d["modalities"] = list(d["modalities"])
        return d


_fields_init = RunConfig.__init__


def _init(self: RunConfig, *args: Any, **kwargs: Any) -> None:
    """The dataclass ``__init__``, plus a task's section by its name (``RunConfig(alignment=...)``)."""
    given = {k: kwargs.pop(k) for k in list(kwargs) if k in TASKS}
    _fields_init(self, *args, **kwargs)
    if given:
        object.__setattr__(self, "tasks", {**self.tasks, **given})


RunConfig.__init__ = _init  # type: ignore[method-assign]


def register_task(name: str, section: type, check: Optional[Callable[[RunConfig], None]] = None) -> type:
    """Register ``section`` as the config section of task ``name`` and ``check(cfg)`` as its cross-section rules.

    Any new task name may register: its section is the YAML mapping ``<name>:`` and ``cfg.<name>``
    (a :class:`RunConfig` field's name may not). ``check`` raises :class:`ConfigValueError`.
    Registering a name again replaces it. Returns ``section``.
    """
    if name in {f.name for f in fields(RunConfig)} or not name.isidentifier():
        raise ValueError(f"{name!r} is not a task section of RunConfig (it names a RunConfig field)")
    TASKS[name] = TaskSpec(name, section, check)
    SECTIONS[name] = section
    return section


def unregister_task(name: str) -> None:
    """Forget task ``name``'s section (configs made afterwards no longer hold it)."""
    TASKS.pop(name, None)
    SECTIONS.pop(name, None)


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
    top = {f.name for f in fields(RunConfig) if f.name not in ("tasks", "explicit")} | set(TASKS)
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
            updates[key] = replace(cfg.section(key), **sub)
        else:
            updates[key] = _coerce_at(RunConfig, key, value, source, where_line)
    return replace(cfg, **updates)


def _coerce_at(cls: type, key: str, value: Any, source: str, line: Optional[int],
               label: Optional[str] = None) -> Any:
    try:
        return _coerce(cls, key, value, source, label)
    except SnagError as exc:
        raise SnagError(exc.message, source, line) from None


def is_preset_file(name: str) -> bool:
    """Whether preset ``name`` is a path to a YAML file (``runs/tune/best.yaml``), not a built-in name."""
    return str(name).lower().endswith((".yaml", ".yml")) or "/" in str(name) or "\\" in str(name)


def _preset_path(name: str) -> Path:
    if is_preset_file(name):  # a preset file of the user's (snagkg tune writes one)
        path = Path(name).expanduser()
        if not path.is_file():
            raise SnagError("preset file not found (a preset is a name from `snagkg presets` or a YAML file)", path)
        return path
    path = PRESET_DIR / f"{str(name).lower()}.yaml"
    if not path.exists():
        options = preset_names()
        close = difflib.get_close_matches(str(name).lower(), options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SnagError(f"unknown preset {name!r} (choose from {', '.join(options)}){hint}")
    return path


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
            before_check: Optional[Callable[[RunConfig], None]] = None,
            overrides_source: str = COMMAND_LINE) -> RunConfig:
    """Build the run config: defaults < preset < YAML file < overrides.

    Without a preset, a config file or ``base`` the config records the keys ``overrides`` set
    (``RunConfig.explicit``), and :func:`snagkg.api.run.train` fills the keys that
    :mod:`snagkg.config.auto` names, but those, from the graph it reads.

    ``overrides`` uses dotted keys for sections: ``{"train.epochs": 5, "seed": 1}``.
    An out-of-range value is reported at the file and line (or the command
    line) that set it. ``before_check(cfg)``, if given, sees the merged config
    before any value is checked (the command line checks which task its flags
    apply to there). ``overrides_source`` names the overrides in errors (the command line's
    name the flag too; a study passes its own label and places the error in its SPEC).
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
        cfg = apply_mapping(cfg, nested, overrides_source)
        layers.insert(0, (overrides_source, nested, {}))
    if not preset and not config_file and base is None:  # training fills the rest from the graph
        cfg = replace(cfg, explicit=frozenset(k for k, v in (overrides or {}).items() if v is not None))
    if before_check is not None:
        before_check(cfg)
    return _checked(cfg, layers, config_file or overrides_source)


def dump(cfg: RunConfig) -> str:
    """``cfg`` as YAML (what a run folder's ``config.yaml`` holds)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


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
