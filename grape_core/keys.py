"""Named constants: AnnData keys, condition labels, node and edge types.

Every string that names a column, a label or a graph type lives here, so a reader
can find each one in a single place.
"""

from __future__ import annotations

# --- AnnData keys (GEARS processed format) -------------------------------------------
CONDITION = "condition"
"""Standardised condition column written by :func:`grape_core.read_perturbseq`."""
CONDITION_RAW = "condition_raw"
"""The label exactly as it appeared in the source file."""
CELL_TYPE = "cell_type"
GENE_NAME = "gene_name"
DE_KEY = "rank_genes_groups_cov_all"
CONDITION_NAME = "condition_name"  # GEARS: f"{cell_type}_{condition}_{dose}"
UNS_SOURCE = "grape_source"
UNS_BACKED = "grape_backed"
"""Where X lies on disk, for a screen read with ``backed=True`` (X is then ``None``)."""
FILE_ROW = "grape_row"
"""obs column of a backed screen: the row of each cell in the file's X."""
GEARS_H5AD = "perturb_processed.h5ad"
"""File name of a GEARS dataset folder's screen (and of a downloaded one)."""

# Columns tried, in order, when the user names none.
CONDITION_CANDIDATES = ("condition", "perturbation", "target_gene", "gene", "guide_target")
GENE_NAME_CANDIDATES = ("gene_name", "feature_name", "gene_symbol", "symbol", "gene_symbols")
CONTROL_CANDIDATES = ("ctrl", "control", "non-targeting", "non_targeting", "nontargeting", "NT",
                      "unperturbed")
STUDY_COLUMNS = ("dataset", "study")

# pertpy / cell-eval layout of an exported AnnData: obs['perturbation'] is ``KLF1``, ``A+B``
# or ``control`` (:func:`grape_core.data.conditions.perturbation_label`)
PERTURBATION = "perturbation"
PERTURBATION_CONTROL = "control"

# --- conditions ------------------------------------------------------------------------
CTRL = "ctrl"
"""Canonical control label (GEARS): singles are ``GENE+ctrl``, pairs ``A+B``."""
SEP = "+"

# --- graph -----------------------------------------------------------------------------
CODING = "coding"
NONCODING = "noncoding"
NODE_TYPES = (CODING, NONCODING)
GENE = "gene"
"""The single node type of the homogeneous ablation."""


def relation(src: str, dst: str) -> tuple[str, str, str]:
    """Edge-type triple ``(src, "to", dst)`` as used by PyTorch Geometric."""
    return (src, "to", dst)


RELATIONS = tuple(relation(s, d) for s in NODE_TYPES for d in NODE_TYPES)
"""coding->coding, coding->noncoding, noncoding->coding, noncoding->noncoding."""

# --- metrics (GEARS names) ---------------------------------------------------------------
METRICS = (
    "mse", "rmse", "pearson", "mse_de", "pearson_de", "pearson_delta", "pearson_delta_de",
    "frac_correct_direction_all", "frac_correct_direction_20",
)
SUBGROUPS = ("unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")
