"""GRAPE Explorer: heterogeneous graph learning for genetic-perturbation prediction.

The public API (everything in ``__all__``), by stage::

    read       read(source), describe, pseudobulk, PseudoBulk         (grape_core.data)
    split      split(conditions), Split, simulation_split, grape_split
    knowledge  knowledge_for_adata, GeneKnowledge, the prior graphs,
               read_prior_table / prior_from_table (your own network)  (grape_core.knowledge)
    simulate   simulate(SimulationConfig) -> PlantedScreen (known network)
    train      fit(adata, ...) -> Model (Model.save); any layout read() takes, pertpy's
               obs['perturbation'] / 'control' included                (grape_core.train)
    load       load(folder) -> Model (a read-only bundle and its caches)
    predict    model.predict(["KLF1", "A+B"]) -> AnnData (pertpy's layout);
               predict(model, "A+B") -> Prediction, predict_many(model, [...]);
               to_anndata(predictions) for scanpy
    screen     screen(model, targets, direction=...) -> ScreenResult
    evaluate   evaluate(model) -> Report (GEARS' and cell-eval's metrics, the data's
               replicate), evaluate_models, fit_baselines            (grape_core.evaluation)

Example::

    import grape_core as gc
    model = gc.load("assets/models/norman")
    pred = gc.predict(model, "KLF1+MAP2K6")
    hits = gc.screen(model, targets=["HBG2"], direction="up")

Nothing heavy is imported here: torch is imported by the first call that needs it, and
no UI toolkit is ever imported by the library (the app lives in ``explorer/``).
"""

from __future__ import annotations

from ._version import __version__

from . import data, evaluation, keys, knowledge
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


def fit(adata, split: Split | None = None, *, perturbation_key: str | None = None,
        control: str | None = None, gene_key: str | None = None, seed: int = 1,
        ensemble: int | None = None, max_steps: int | None = None, device: str = "cpu",
        progress: bool = True, **kwargs) -> Model:
    """Train a GRAPE ensemble on a Perturb-seq screen and evaluate it on held-out
    perturbations; the model predicts AnnData (:meth:`Model.predict`).

    Parameters
    ----------
    adata
        ``n_cells × n_genes``, log-normalised expression: pertpy's layout
        (``obs['perturbation']`` with ``control``, pairs ``A+B``), GEARS'
        (``obs['condition']``: ``ctrl``, ``A+ctrl``) or anything :func:`read_perturbseq`
        reads; it is checked, never changed.
    split
        Train / validation / held-out perturbations; default GEARS' simulation split of the
        screen's perturbations with ``seed``.
    perturbation_key, control, gene_key
        obs column of the perturbation, its control label, var column of the gene symbols
        (default: detected).
    seed
        Seeds the split and training.
    ensemble, max_steps, device
        Members of the ensemble (default 3), optimisation steps per member (default 2,000,
        with early stopping), ``cpu`` / ``cuda`` / ``auto``.
    progress
        Progress bars on stderr.
    **kwargs
        As :func:`grape_core.train.train_bundle` (``priors``, ``model_config``,
        ``train_config``, ``name``...).

    Returns
    -------
    Model
        Trained, with its held-out metrics beside the baselines and the data's replicate
        (``model.bundle.manifest.metrics``); :meth:`Model.save` writes its folder.

    Examples
    --------
    >>> import anndata, grape_core as gc
    >>> adata = anndata.read_h5ad("screen.h5ad")  # doctest: +SKIP
    >>> model = gc.fit(adata, max_steps=200)  # doctest: +SKIP
    >>> model.predict(["KLF1", "KLF1+MAP2K6"])  # doctest: +SKIP
    AnnData object with n_obs × n_vars = 3 × 500 ...
    """
    from .config import SplitConfig, TrainConfig
    from .train import train_bundle

    if keys.CONDITION not in adata.obs or keys.UNS_SOURCE not in adata.uns:
        adata = read_perturbseq(adata, condition_key=perturbation_key, control_label=control,
                                gene_name_key=gene_key)
    pb = kwargs.pop("pb", None) or pseudobulk(adata)
    if split is None:
        split = make_split(pb.conditions, SplitConfig(seed=seed))
    train_config = kwargs.pop("train_config", None) or TrainConfig(seed=seed, device=device)
    changes = {"ensemble": ensemble, "max_steps": max_steps}
    train_config = train_config.replace(**{k: v for k, v in changes.items() if v is not None})
    bundle = train_bundle(adata, split, train_config=train_config, progress=progress, pb=pb,
                          **kwargs)
    return Model(bundle, device=device)


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
