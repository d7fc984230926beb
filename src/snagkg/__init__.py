"""snagkg: multi-modal knowledge graph representations with SNAG (Gaussian modality noise masking).

The small public API::

    import snagkg
    cfg = snagkg.resolve_config(preset="synthetic", overrides={"dataset": "synthetic", "train.epochs": 20})
    results = snagkg.train(cfg, "runs/demo")          # -> snagkg.Results (also results.json)
    metrics = snagkg.evaluate("runs/demo", split="test")
    task = snagkg.load_run("runs/demo")               # model, data, task.evaluate(...)
    weights = task.model.modality_weights()           # which modality each entity trusted

Building blocks: :mod:`snagkg.core.noise` (GMNM, usable around any table),
:class:`snagkg.core.encoder.ModalityEncoder`, :mod:`snagkg.tasks.completion`,
:mod:`snagkg.data.datasets`, :mod:`snagkg.evaluation`. The layout is in docs/architecture.md.
"""
from __future__ import annotations

from snagkg.api import (
                        Results,
                        RunConfig,
                        evaluate,
                        export_run,
                        load_run,
                        resolve_config,
                        robustness,
                        train,
)
from snagkg.core.noise import ModalityNoise, gauss_modality_noise
from snagkg.runtime.errors import SnagError
from snagkg.runtime.version import __version__

__all__ = ["RunConfig", "resolve_config", "SnagError", "ModalityNoise", "gauss_modality_noise",
           "Results", "train", "evaluate", "load_run", "robustness", "export_run", "__version__"]
