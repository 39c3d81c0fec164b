"""Ablations: the same recipe for each model variant (:data:`ABLATIONS`), one member each, so
that differences come from the variant alone (:func:`run_ablations`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..bundle import Bundle
from ..config import ArchitectureConfig
from ..data.conditions import is_pair
from ..data.pseudobulk import PseudoBulk, pseudobulk
from ..errors import GrapeError


ABLATIONS: dict[str, dict[str, Any]] = {
    "grape": {},
    "no_graph": {"propagation_steps": 0},
    "no_structure_learning": {"structure_learning": False},
    "no_interventional_consistency": {"interventional_consistency": False},
    "homogeneous_graph": {"heterogeneous": False},
    "linear_messages": {"nonlinear_messages": False},
    "no_text_view": {"use_text": False},
    "no_dna_view": {"use_dna": False},
    "with_global_path": {"global_path": True},
    "no_shared_head": {"shared_head": False},
    "with_gene_correction": {"gene_correction": True},
    "no_shared_shift": {"shared_shift": False},
    "no_additive_pairs": {"additive_pairs": False},
    "no_pair_mixing": {"pair_mixing": False},
    "no_signed_self_effect": {"signed_self_effect": False},
    "tied_outflow": {"free_outflow": False},
    "paper_flags": {k: v for k, v in ArchitectureConfig.paper().to_dict().items()
                    if v != getattr(ArchitectureConfig(), k)},
}
"""Variant name -> changes to the model's config. ``no_graph``: only the perturbed gene
itself changes (no propagation). ``paper_flags`` restores the published code's choices
(:meth:`ArchitectureConfig.paper`)."""


def run_ablations(
    bundle: Bundle,
    adata,
    *,
    variants: Sequence[str] | None = None,
    steps: int | None = None,
    progress: bool = True,
    knowledge=None,
    pb: PseudoBulk | None = None,
    priors: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Retrain each variant on the bundle's split with one seed; held-out metrics per variant.

    Every row (``grape`` included) is trained the same way (one member, same seed, same
    step budget), so differences come from the variant alone. ``priors``: the bundle's
    prior specification (default: its built-in prior names).
    """
    from ..config import FeatureConfig, GraphConfig
    from ..knowledge.build import knowledge_for_adata
    from .recipe import train_bundle

    pb = pb if pb is not None else pseudobulk(adata)
    bundle.check_genes(pb.genes)
    configs = bundle.manifest.configs
    if knowledge is None:
        knowledge = knowledge_for_adata(
            adata,
            feature_config=FeatureConfig.from_dict(configs.feature) if configs.feature else None,
            graph_config=GraphConfig.from_dict(configs.graph) if configs.graph else None,
            progress=progress,
        )
    if priors is None:
        priors = list(bundle.model_config.prior)
        unknown = [p for p in priors if p not in knowledge.priors]
        if unknown:
            raise GrapeError(f"the ablations need the prior file(s) {', '.join(unknown)} of model "
                             f"{bundle.name!r}; pass them again (--prior FILE)")
    has_pairs = any(is_pair(c) for c in pb.conditions)
    names = list(variants or [v for v in ABLATIONS
                              if has_pairs or v not in ("no_additive_pairs", "no_pair_mixing")])
    # one member each, and no intervals: a variant is judged on its held-out metrics alone
    train_config = bundle.train_config.replace(ensemble=1, calibration_folds=0)
    if steps:
        train_config = train_config.replace(max_steps=steps)
    rows = {}
    for name in names:
        config = bundle.model_config.replace(**ABLATIONS[name])
        start = time.perf_counter()
        variant = train_bundle(adata, bundle.split, model_config=config, train_config=train_config,
                               knowledge=knowledge, progress=progress, name=name, pb=pb,
                               priors=priors)
        found = variant.manifest.metrics
        metrics = found.test.get("grape", {}) if found is not None else {}
        rows[name] = {"n": metrics.get("n_conditions", 0),
                      **{m: metrics.get(m, float("nan")) for m in
                         ("mse", "pearson_delta", "pearson_delta_de", "frac_correct_direction_20")},
                      "seconds": round(time.perf_counter() - start, 1)}
    return pd.DataFrame.from_dict(rows, orient="index")
