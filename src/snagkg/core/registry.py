"""Tiny name -> component registries (readouts, scorers, feature extractors).

The registries that :mod:`snagkg.config` checks names against live here, below
every module that fills them, so the config can check a name without
importing the encoder or a task: :data:`READOUTS` is filled by
:mod:`snagkg.core.encoder`, :data:`SCORERS` by :mod:`snagkg.tasks.completion.scorers`,
:data:`TASKS` by each task package (``import snagkg`` imports them all).
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Dict, Generic, List, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Components registered under a name (``@REG.register("name")``) and looked up by it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that registers its argument as ``name`` (a name is registered once)."""
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj
        return deco

    def get(self, name: str) -> T:
        """The component registered as ``name``; ``KeyError`` naming the closest name if none."""
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r} (choose from {', '.join(sorted(self._items))}){hint}") from None

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a test's or a plugin's temporary component); nothing if it is not registered."""
        self._items.pop(name, None)

    def names(self) -> List[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


#: encoder readouts (``encoder.readout``), filled by :mod:`snagkg.encoder`
READOUTS: "Registry[type]" = Registry("readout")
#: triple scorers (``completion.scorer``), filled by :mod:`snagkg.completion.scorers`
SCORERS: "Registry[type]" = Registry("scorer")
#: what goes between stacked projection layers (``encoder.projection_activation``)
PROJECTION_ACTIVATIONS = ("none", "gelu")
#: task classes (``task``): subclasses of :class:`snagkg.training.trainer.Task`, built by
#: ``cls.build(cfg)``; filled by :mod:`snagkg.tasks.completion.task` and :mod:`snagkg.tasks.alignment.task`
TASKS: "Registry[Any]" = Registry("task")
