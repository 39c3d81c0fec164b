"""GRAPE Explorer: heterogeneous graph learning for genetic-perturbation prediction.

The public API (everything in ``__all__``), by stage::

    read       read(path) (local files only), download(name) (the only network access),
               describe, pseudobulk, PseudoBulk                        (grape_core.data)
    split      split(conditions), Split, simulation_split, grape_split
    knowledge  knowledge_for_adata, GeneKnowledge, the prior graphs,
               read_prior_table / prior_from_table (your own network)  (grape_core.knowledge)
    simulate   simulate(SimulationConfig) -> PlantedScreen (known network)
    train      fit(adata, ...) -> Model (Model.save); any layout read() takes, pertpy's
               obs['perturbation'] / 'control' included                (grape_core.training)
    load       load("adamson" or a folder) -> Model (a read-only bundle and its caches)
    predict    model.predict(["KLF1", "A+B"]) -> AnnData (pertpy's layout);
               predict(model, "A+B") -> Prediction, predict_many(model, [...]);
               to_anndata(predictions) for scanpy                      (grape_core.serving)
    screen     screen(model, targets, direction=...) -> ScreenResult
    evaluate   evaluate(model) -> Report (GEARS' and cell-eval's metrics, the data's
               replicate); benchmark(pb, split) for baselines alone; fit_baselines
                                                                       (grape_core.evaluation)
    settings   settings: every GRAPE_* environment variable, typed and checked

Layers, each importing only those before it: data, knowledge, model (``nn``, ``bundle``,
``evaluation``), training, serving, viz; the command line (``cli``) and the app
(``explorer/``) on top.

Example::

    import grape_core as gc
    model = gc.load("norman")
    pred = gc.predict(model, "KLF1+MAP2K6")
    hits = gc.screen(model, targets=["HBG2"], direction="up")

Nothing heavy is imported here: torch is imported by the first call that needs it, and
no UI toolkit is ever imported by the library (the app lives in ``explorer/``).
"""

from __future__ import annotations

from . import data, evaluation, keys, knowledge
from ._version import __version__
from .bundle import Bundle, Manifest, verify_bundle
from .config import (ArchitectureConfig, DataConfig, FeatureConfig, GraphConfig, Paths,
                     SplitConfig, TrainConfig)
from .data.conditions import canonical, format_condition, parse_condition
from .data.datasets import REGISTRY, download
from .data.pseudobulk import PseudoBulk, pseudobulk
from .data.read import describe, read, read_perturbseq
from .data.splits import Split, grape_split, make_split, simulation_split
from .devices import resolve_device
from .errors import (BundleError, ConditionError, DataFormatError, DownloadError, GrapeError,
                     SplitError, UnknownGeneError)
from .evaluation.baselines import fit_baselines
from .evaluation.benchmark import Report, benchmark
from .evaluation.metrics import condition_metrics, metrics_table
from .knowledge.build import build_gene_knowledge, knowledge_for_adata
from .knowledge.folder import GeneKnowledge
from .knowledge.features import describe_genes, dna_features, kmer_features, text_features
from .knowledge.genes import coverage, gene_table
from .knowledge.graphs import (coexpression_prior, go_prior, graph_stats, prior_from_table,
                               read_prior_table, similarity_prior, to_edge_index_dict, union_prior)
from .serving import (Model, Prediction, ScreenResult, evaluate, fit, load, predict, predict_many,
                      read_perturbations, screen, to_anndata)
from .settings import settings
from .simulation import PlantedScreen, SimulationConfig, simulate

split = make_split
"""``split(conditions, config=None) -> Split``: GEARS' simulation split by default."""

# names of earlier versions, kept working for code that imports them
ModelConfig = ArchitectureConfig
fetch = download
evaluate_models = benchmark

__all__ = [
    "__version__",
    # namespaces
    "data", "knowledge", "evaluation",
    # read
    "read", "read_perturbseq", "describe", "pseudobulk", "PseudoBulk", "download", "REGISTRY",
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
    "load", "Model", "predict", "predict_many", "read_perturbations", "Prediction", "to_anndata",
    "screen", "ScreenResult",
    "evaluate", "benchmark", "Report", "fit_baselines", "condition_metrics", "metrics_table",
    # settings
    "settings", "DataConfig", "SplitConfig", "ArchitectureConfig", "TrainConfig",
    "FeatureConfig", "GraphConfig", "Paths",
    # errors
    "GrapeError", "DataFormatError", "UnknownGeneError", "ConditionError", "BundleError",
    "DownloadError", "SplitError",
]
