"""Where tensors live: ``auto``, ``cpu``, ``cuda`` (``cuda:N``) or ``mps``.

``auto`` takes a GPU when one is there (CUDA, then Apple's MPS) and the CPU otherwise. A
device the machine does not have is one clear error, never a traceback at the first step.
"""

from __future__ import annotations

from typing import Any

from .errors import GrapeError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | Any = "auto"):
    """The :class:`torch.device` for a device name.

    Raises
    ------
    GrapeError
        An unknown name, or a device this machine (or this build of torch) does not have.

    Parameters
    ----------
    name
        ``auto`` (a GPU when there is one), ``cpu``, ``cuda``, ``cuda:N``, ``mps``, or a
        :class:`torch.device`.

    Returns
    -------
    torch.device
    """
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    text = str(name or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise GrapeError(f"device {text!r} is not available: this machine has no CUDA GPU "
                             "(or this torch is a CPU build); use --device cpu or --device auto")
        index = text.partition(":")[2]
        if index:
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise GrapeError(f"device {text!r} is not available: this machine has "
                                 f"{torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
        return torch.device(text)
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise GrapeError("device 'mps' is not available: this is not an Apple-silicon Mac "
                             "with Metal support; use --device cpu or --device auto")
        return torch.device("mps")
    raise GrapeError(f"unknown device {str(name)!r}; use one of auto, cpu, cuda, cuda:N, mps")
