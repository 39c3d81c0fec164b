"""The data layer: read a Perturb-seq screen, its pseudo-bulk, conditions and splits.

``read``  local ``.h5ad`` files only (:func:`read`, :func:`read_perturbseq`, :func:`describe`)
``pseudobulk``  per-condition means, control mean, DE genes (:class:`PseudoBulk`)
``backed``  X read in chunks, in memory or from a file larger than memory
            (:func:`control_cells`, :func:`is_backed`)
``conditions``  the only place condition labels (``A+ctrl``, ``A+B``) are parsed and written
``datasets``  the registry of public screens and their download (:func:`download`: the only
            network code; reading never downloads)
``splits``  GEARS' simulation split and the paper's 75/25 split
"""

from __future__ import annotations

from .backed import control_cells, is_backed
from .conditions import canonical, format_condition, genes_of, is_pair, parse_condition
from .datasets import REGISTRY, download, resolve_dataset
from .pseudobulk import PseudoBulk, pseudobulk
from .read import describe, read, read_perturbseq
from .splits import Split, grape_split, make_split, simulation_split

__all__ = [
    "read", "read_perturbseq", "describe", "PseudoBulk", "pseudobulk", "control_cells",
    "is_backed",
    "parse_condition", "format_condition", "canonical", "genes_of", "is_pair",
    "REGISTRY", "download", "resolve_dataset",
    "Split", "make_split", "simulation_split", "grape_split",
]
