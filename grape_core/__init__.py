"""GRAPE Explorer: heterogeneous graph learning for genetic-perturbation prediction.

The public API, grouped by purpose (nothing heavy is imported until used)::

    data       read_perturbseq, pseudobulk, describe, PseudoBulk
    datasets   fetch, REGISTRY
    splits     make_split, simulation_split, grape_split, Split
    metrics    condition_metrics, metrics_table
    baselines  fit_baselines
    evaluate   evaluate_models, Report
    genes      gene_table, coverage, describe_genes, text_features, kmer_features,
               dna_features, similarity_prior, go_prior, coexpression_prior, union_prior,
               graph_stats, build_gene_knowledge, knowledge_for_adata, GeneKnowledge
"""

from __future__ import annotations

__version__ = "0.1.0"

from .conditions import canonical, format_condition, parse_condition
from .config import DataConfig, Paths, SplitConfig
from .data import PseudoBulk, describe, pseudobulk, read_perturbseq
from .datasets import REGISTRY, fetch
from .errors import (BundleError, ConditionError, DataFormatError, DownloadError, GrapeError,
                     SplitError, UnknownGeneError)
from .evaluate import Report, evaluate_models
from .metrics import condition_metrics, metrics_table
from .baselines import fit_baselines
from .splits import Split, grape_split, make_split, simulation_split
from .config import FeatureConfig, GraphConfig
from .features import describe_genes, dna_features, kmer_features, text_features
from .genes import coverage, gene_table
from .graphs import (coexpression_prior, go_prior, graph_stats, similarity_prior,
                     to_edge_index_dict, union_prior)
from .knowledge import GeneKnowledge, build_gene_knowledge, knowledge_for_adata

__all__ = [
    "__version__",
    "read_perturbseq", "pseudobulk", "describe", "PseudoBulk",
    "fetch", "REGISTRY",
    "make_split", "simulation_split", "grape_split", "Split",
    "condition_metrics", "metrics_table",
    "fit_baselines",
    "evaluate_models", "Report",
    "parse_condition", "format_condition", "canonical",
    "DataConfig", "SplitConfig", "Paths",
    "GrapeError", "DataFormatError", "UnknownGeneError", "ConditionError", "BundleError",
    "DownloadError", "SplitError",
    "FeatureConfig", "GraphConfig",
    "gene_table", "coverage", "describe_genes", "text_features", "kmer_features",
    "dna_features", "similarity_prior", "go_prior", "coexpression_prior", "union_prior",
    "to_edge_index_dict", "graph_stats",
    "GeneKnowledge", "build_gene_knowledge", "knowledge_for_adata",
]
