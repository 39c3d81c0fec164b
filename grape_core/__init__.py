"""GRAPE Explorer: heterogeneous graph learning for genetic-perturbation prediction.

The public API (everything in ``__all__``), by stage::

    read       read(source), describe, pseudobulk, PseudoBulk         (grape_core.data)
    split      split(conditions), Split, simulation_split, grape_split
    knowledge  knowledge_for_adata, GeneKnowledge, the prior graphs,
               read_prior_table / prior_from_table (your own network)  (grape_core.knowledge)
    simulate   simulate(SimulationConfig) -> PlantedScreen (known network)
    train      fit(adata, split, priors=...) -> Bundle (Bundle.save)   (grape_core.train)
    load       load(folder) -> Model (a read-only bundle and its caches)
    predict    predict(model, "A+B") -> Prediction, predict_many(model, [...]);
               to_anndata(predictions) for scanpy
    screen     screen(model, targets, direction=...) -> ScreenResult
    evaluate   evaluate(model) -> Report, evaluate_models, fit_baselines (grape_core.evaluation)

Example::

    import grape_core as gc
    model = gc.load("assets/models/norman")
    pred = gc.predict(model, "KLF1+MAP2K6")
    hits = gc.screen(model, targets=["HBG2"], direction="up")

Nothing heavy is imported here: torch is imported by the first call that needs it, and
no UI toolkit is ever imported by the library (the app lives in ``explorer/``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import data, evaluation, knowledge
from .bundle import Bundle, Manifest, verify_bundle
from .config import DataConfig, FeatureConfig, GraphConfig, ModelConfig, Paths, SplitConfig, TrainConfig
from .data.conditions import canonical, format_condition, parse_condition
from .data.datasets import REGISTRY, fetch, read
from .data.pseudobulk import PseudoBulk, pseudobulk
from .data.read import describe, read_perturbseq
from .data.splits import Split, grape_split, make_split, simulation_split
from .errors import (BundleError, ConditionError, DataFormatError, DownloadError, GrapeError,
                     SplitError, UnknownGeneError)
from .evaluation.baselines import fit_baselines
from .evaluation.evaluate import Report, evaluate_models
from .evaluation.metrics import condition_metrics, metrics_table
from .knowledge.build import GeneKnowledge, build_gene_knowledge, knowledge_for_adata
from .knowledge.features import describe_genes, dna_features, kmer_features, text_features
from .knowledge.genes import coverage, gene_table
from .knowledge.graphs import (coexpression_prior, go_prior, graph_stats, prior_from_table,
                               read_prior_table, similarity_prior, to_edge_index_dict, union_prior)
from .devices import resolve_device
from .simulate import PlantedScreen, SimulationConfig, simulate
from .export import to_anndata
from .predict import Model, Prediction, evaluate, load, predict, predict_many, read_perturbations
from .screen import ScreenResult, screen

split = make_split
"""``split(conditions, config=None) -> Split``: GEARS' simulation split by default."""


def fit(adata, split: Split, **kwargs) -> Bundle:
    """Train a GRAPE ensemble on a screen and evaluate it on the split's held-out
    conditions: :func:`grape_core.train.train_bundle` (keyword arguments as there).

    Returns the :class:`Bundle` (save it with :meth:`Bundle.save`).
    """
    from .train import train_bundle

    return train_bundle(adata, split, **kwargs)


__all__ = [
    "__version__",
    # namespaces
    "data", "knowledge", "evaluation",
    # read
    "read", "read_perturbseq", "describe", "pseudobulk", "PseudoBulk", "fetch", "REGISTRY",
    "parse_condition", "format_condition", "canonical",
    # split
    "split", "make_split", "simulation_split", "grape_split", "Split",
    # knowledge
    "knowledge_for_adata", "build_gene_knowledge", "GeneKnowledge", "gene_table", "coverage",
    "describe_genes", "text_features", "kmer_features", "dna_features", "similarity_prior",
    "go_prior", "coexpression_prior", "union_prior", "to_edge_index_dict", "graph_stats",
    "read_prior_table", "prior_from_table",
    # simulate
    "simulate", "SimulationConfig", "PlantedScreen",
    # train, load, predict, screen, evaluate
    "resolve_device",
    "fit", "Bundle", "Manifest", "verify_bundle",
    "load", "Model", "predict", "predict_many", "read_perturbations", "Prediction", "to_anndata", "screen", "ScreenResult",
    "evaluate", "evaluate_models", "Report", "fit_baselines", "condition_metrics", "metrics_table",
    # settings
    "DataConfig", "SplitConfig", "ModelConfig", "TrainConfig", "FeatureConfig", "GraphConfig",
    "Paths",
    # errors
    "GrapeError", "DataFormatError", "UnknownGeneError", "ConditionError", "BundleError",
    "DownloadError", "SplitError",
]
