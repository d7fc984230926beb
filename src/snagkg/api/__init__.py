"""The library's entry points: resolve a config, train, evaluate, load a trained run, use it.

Everything a library user needs is here (and re-exported as ``snagkg.<name>``); the command line
(:mod:`snagkg.cli`) calls these and nothing below them.
"""
from __future__ import annotations

import snagkg.tasks  # noqa: F401  (registers every task: config sections, scorers, task builders)
from snagkg.api.export import export_run
from snagkg.api.results import Results
from snagkg.api.robustness import robustness
from snagkg.api.run import evaluate, load_run, train
from snagkg.config.schema import RunConfig
from snagkg.config.schema import resolve as resolve_config

__all__ = ["RunConfig", "resolve_config", "Results", "train", "evaluate", "load_run", "robustness", "export_run"]
