"""Reading config files: the safe YAML reader (with the line of every key) and value coercion.

Used by :mod:`snagkg.config`; nothing here knows the config sections.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import yaml

from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import regular_file

#: ``(key path, ...) -> line`` of every key of a YAML file
KeyLines = Dict[Tuple[str, ...], int]

_SAFE_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_SAFE_TAG + t for t in ("null", "bool", "int", "float", "str", "seq", "map")}


def read_yaml(path: Path) -> Tuple[Dict[str, Any], KeyLines]:
    """Safe-load a YAML mapping, keeping the line of every key.

    Only plain YAML is accepted: ``!!python/...`` and other custom tags are
    refused (nothing in a config file is ever executed or imported), and so
    are duplicate keys.
    """
    path = regular_file(path, "config file")
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
    lines: KeyLines = {}
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


def first_comment(path: Path) -> str:
    """The text of the first ``#`` comment line of a YAML file ("" if it has none)."""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#"):
            return line.lstrip().lstrip("#").strip()
    return ""


def coerce(cls: type, key: str, value: Any, where: str, label: Optional[str] = None) -> Any:
    """``value`` as the type of the dataclass field ``cls.key`` (its default's type); SnagError if it is not."""
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


def closest(key: str, options, prefix: str = "") -> str:
    """A hint for an unknown ``key``: the closest of ``options``, or all of them."""
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    if close:
        return f"; did you mean {prefix + close[0]!r}?"
    return f" (valid keys: {', '.join(prefix + o for o in sorted(options))})"


def has(data: Dict[str, Any], dotted: str) -> bool:
    """Whether the nested mapping ``data`` sets the dotted key (``train.lr``)."""
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A nested mapping as dotted keys: ``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out



def read_spec(path: Path, known: Sequence[str]) -> Tuple[Dict[str, Any], KeyLines, str, Callable[..., Optional[int]]]:
    """A run-grid SPEC (``snagkg study``, ``snagkg tune``): its mapping, the line of every key, its name
    and a ``line(*key)`` lookup. A top-level key not in ``known`` and a missing ``dataset`` are errors
    naming the line; ``base`` (optional) must be a mapping of config overrides."""
    data, lines = read_yaml(Path(path))
    src = str(path)

    def line(*key: str) -> Optional[int]:
        return lines.get(tuple(key))

    for key in data:
        if key not in known:
            raise SnagError(f"unknown key {key!r} (known: {', '.join(sorted(known))})", src, line(key))
    if not isinstance(data.get("dataset"), str):
        raise SnagError("dataset (a folder, a triples file or 'synthetic') is required", src, line("dataset"))
    if not isinstance(data.get("base") or {}, dict):
        raise SnagError("base must be a mapping of config overrides", src, line("base"))
    return data, lines, src, line
