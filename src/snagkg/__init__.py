"""snagkg: multi-modal knowledge graph representations with SNAG (Gaussian modality noise masking).

The small public API::

    import snagkg
    cfg = snagkg.resolve_config(preset="synthetic", overrides={"dataset": "synthetic", "train.epochs": 20})
    results = snagkg.train(cfg, "runs/demo")          # -> snagkg.Results (also results.json)
    metrics = snagkg.evaluate("runs/demo", split="test")
    task = snagkg.load_run("runs/demo")               # model, data, task.evaluate(...)
    weights = task.model.modality_weights()           # which modality each entity trusted

Building blocks: :mod:`snagkg.noise` (GMNM, usable around any table),
:class:`snagkg.encoder.ModalityEncoder`, :mod:`snagkg.completion`,
:mod:`snagkg.datasets`, :mod:`snagkg.evaluation`.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .config import RunConfig, resolve as resolve_config  # noqa: E402
# the task config sections register themselves with snagkg.config, and the registries the
# config checks names against (snagkg.registry) fill as the encoder and the scorers load
from .completion import config as _completion_config  # noqa: E402,F401
from .alignment import config as _alignment_config  # noqa: E402,F401
from . import encoder as _encoder  # noqa: E402,F401
from .completion import scorers as _scorers  # noqa: E402,F401
from .errors import SnagError  # noqa: E402
from .noise import ModalityNoise, gauss_modality_noise  # noqa: E402
from .results import Results  # noqa: E402
from .run import evaluate, load_run, train  # noqa: E402
from .robustness import robustness  # noqa: E402  (the function; the module is snagkg.robustness in sys.modules)
from .export import export_run  # noqa: E402

__all__ = ["RunConfig", "resolve_config", "SnagError", "ModalityNoise", "gauss_modality_noise",
           "Results", "train", "evaluate", "load_run", "robustness", "export_run", "__version__"]
