"""Torch modules of GRAPE: tensors in, tensors out (no AnnData, files, optimiser or device
choice). ``encoder``: gene encoder and InfoNCE."""

from __future__ import annotations

from .encoder import GeneEncoder, info_nce

__all__ = ["GeneEncoder", "info_nce"]
