"""Frozen image encoders, by name (``snagkg features image --encoder NAME``).

An entry of :data:`IMAGE_ENCODERS` is a loader ``load(weights, device, seed) -> ImageEncoder``.
Weights come only from a local file (``--weights FILE``, a ``state_dict`` saved
with ``torch.save(model.state_dict(), FILE)``); nothing is downloaded.

* ``tiny-cnn`` (built in, no extra package): three strided 3x3 convolutions
  (16, 32, 64 channels, ReLU) and a global average pool, on 64x64 inputs ->
  64-wide vectors. Without ``--weights`` it is randomly initialised from
  ``--seed``: random convolutional features keep colour and coarse texture,
  a weak baseline that needs nothing. Save one with :func:`save_tiny_cnn`.
* ``resnet18``, ``resnet50``, ``vit_b_16`` (torchvision architectures, 224x224
  inputs, ImageNet normalisation): the classification head is removed, the
  pooled vector is the feature (512, 2048, 768 wide). They need the optional
  package ``torchvision`` (``pip install 'snagkg[vision]'``, a build matching
  your torch) and ``--weights``: e.g. the ``.pth`` file torchvision's own
  cache holds, copied from a machine that has it.

Add another with ``@IMAGE_ENCODERS.register("name")``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import torch
import torch.nn as nn

from snagkg.core.registry import Registry
from snagkg.runtime.errors import SnagError
from snagkg.runtime.io import torch_load, write_bytes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_ENCODER = "tiny-cnn"


@dataclass
class ImageEncoder:
    """A frozen image network: ``module`` maps ``[B, 3, size, size]`` normalised images to ``[B, dim]``."""

    name: str
    module: Any
    dim: int
    size: int
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD

    def encode(self, batch):
        """Vectors of a float tensor batch (already on the module's device), as float32 numpy."""

        with torch.no_grad():
            return self.module(batch).float().cpu().numpy()


IMAGE_ENCODERS: "Registry[Callable[[Optional[Path], str, int], ImageEncoder]]" = Registry("image encoder")


def _make_tiny_cnn():

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


def tiny_cnn(seed: int = 0):
    """A randomly initialised ``tiny-cnn`` network (``torch.nn.Module``), the same for the same ``seed``."""

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return _make_tiny_cnn()


def save_tiny_cnn(path, seed: int = 0) -> Path:
    """Write the ``state_dict`` of :func:`tiny_cnn` to ``path`` (a file for ``--weights``)."""



    buf = io.BytesIO()
    torch.save(tiny_cnn(seed).state_dict(), buf)
    write_bytes(path, buf.getvalue())
    return Path(path)


def read_weights(weights: Path, name: str):
    """A ``state_dict`` from the local file ``weights`` (``torch.load(weights_only=True)``)."""

    weights = Path(weights)
    if not weights.is_file():
        raise SnagError(f"weights file not found; give a local state_dict for {name} with --weights FILE "
                        "(saved by torch.save(model.state_dict(), FILE); nothing is downloaded)", weights)
    try:
        state = torch_load(weights, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise SnagError(f"cannot read the weights: {str(exc).splitlines()[0][:160]}", weights) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SnagError(f"expected a state_dict (a dict of tensors), found {type(state).__name__}", weights)
    return state


def load_state(module, state, weights: Path, name: str) -> None:
    """``module.load_state_dict(state)`` with a one-line error when the weights do not fit."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).replace("\n", " ").replace("\t", " ")
        raise SnagError(f"these weights do not fit the {name} architecture: {first[:200]}", weights) from None


@IMAGE_ENCODERS.register("tiny-cnn")
def load_tiny_cnn(weights: Optional[Path], device: str, seed: int = 0) -> ImageEncoder:
    """The built-in ``tiny-cnn`` (module docstring): ``weights`` or a random init from ``seed``."""
    module = tiny_cnn(seed)
    if weights is not None:
        load_state(module, read_weights(weights, "tiny-cnn"), weights, "tiny-cnn")
    module.eval().to(device)
    return ImageEncoder("tiny-cnn", module, 64, 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _torchvision(name: str):
    try:
        import torchvision.models as models  # deferred: optional extra [vision]
    except Exception as exc:  # noqa: BLE001 - a build that does not match torch fails with other errors
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise SnagError(f"image encoder {name!r} needs torchvision ({why}); install a build matching your torch "
                        "with: pip install 'snagkg[vision]', or use --encoder tiny-cnn") from None
    return models


def _torchvision_loader(arch: str, head: str):
    def load(weights: Optional[Path], device: str, seed: int = 0) -> ImageEncoder:

        models = _torchvision(arch)
        if weights is None:
            raise SnagError(f"image encoder {arch!r} needs --weights FILE: a local state_dict of torchvision's "
                            f"{arch} (e.g. the .pth file in torchvision's cache); nothing is downloaded")
        state = read_weights(weights, arch)
        module = getattr(models, arch)(weights=None)
        load_state(module, state, weights, arch)
        old = getattr(module, head)
        dim = old.in_features if hasattr(old, "in_features") else module.hidden_dim
        setattr(module, head, nn.Identity())
        module.eval().to(device)
        return ImageEncoder(arch, module, int(dim), 224)

    load.__doc__ = f"torchvision's {arch} without its classification head (needs torchvision and --weights)."
    return load


for _arch, _head in (("resnet18", "fc"), ("resnet50", "fc"), ("vit_b_16", "heads")):
    IMAGE_ENCODERS.register(_arch)(_torchvision_loader(_arch, _head))


def get_image_encoder(name: str) -> Callable[[Optional[Path], str, int], ImageEncoder]:
    """The loader registered as ``name``; a one-line :class:`SnagError` for an unknown name."""
    try:
        return IMAGE_ENCODERS.get(name)
    except KeyError as exc:
        raise SnagError(str(exc.args[0])) from None
