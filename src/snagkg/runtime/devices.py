"""The one device helper: ``--device`` / ``device:`` names to torch devices.

Training and evaluation (both tasks) call :func:`select_device` with a name
the run config has already checked (``auto``, ``cpu``, ``cuda`` or
``cuda:N``), so it lets torch parse the name. The ``snagkg features``
commands take ``--device`` straight from the command line and call
:func:`device_name`, which also checks the spelling first (and accepts
``mps``). Both report a CUDA device on a machine without CUDA the same way.
"""
from __future__ import annotations

import re

import torch

from snagkg.runtime.errors import SnagError

__all__ = ["CUDA_MISSING", "device_name", "select_device"]

CUDA_MISSING = "--device cuda requested but CUDA is not available (torch.cuda.is_available() is False)"
_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")


def device_name(name: str, check_name: bool = True) -> str:
    """The device to use for ``name`` as a string (``auto``: ``cuda`` when available, else ``cpu``).

    ``check_name`` (the ``features`` commands): treat an empty name as
    ``auto``, strip spaces, and refuse anything but ``cpu``, ``cuda[:N]`` or
    ``mps`` with a one-line :class:`SnagError`. Without it the name is
    returned as given (torch parses it). A CUDA name raises
    :data:`CUDA_MISSING` when CUDA is not available.
    """

    if check_name:
        name = (name or "auto").strip()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if check_name and not _DEVICE.fullmatch(name):
        raise SnagError(f"--device: {name!r} is not a device (use auto, cpu, cuda or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SnagError(CUDA_MISSING.replace("--device cuda", f"--device {name}", 1))
    return name


def select_device(name: str):
    """The ``torch.device`` for a run config's ``device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``)."""

    return torch.device(device_name(name, check_name=False))
