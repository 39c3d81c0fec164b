"""End-to-end recipes the command line and the app share: train a bundle, evaluate it,
run the ablations. Each step calls the library module that owns it."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import keys
from .bundle import Bundle
from .config import ModelConfig, Paths, TrainConfig
from .data import PseudoBulk, pseudobulk
from .errors import GrapeError
from .evaluate import Report, evaluate_models
from .model.grape import GRAPE, GraphInputs
from .splits import Split
from .train import TrainResult, train_grape

log = logging.getLogger(__name__)


def graph_inputs(knowledge, measured: Sequence[str], *, prior: str = "union",
                 max_in_degree: int = 15) -> tuple[GraphInputs, dict[str, int], pd.DataFrame]:
    """Tensors of the gene graph for a model, the node index, and the prior it uses.

    The prior keeps, for each gene, its ``max_in_degree`` strongest in-edges and is
    row-normalised per destination.
    """
    genes = list(knowledge.genes)
    node_index = {g: i for i, g in enumerate(genes)}
    missing = [g for g in measured if g not in node_index]
    if missing:
        raise GrapeError(f"{len(missing)} measured genes have no node (e.g. {', '.join(missing[:3])})")
    if prior not in knowledge.priors:
        raise GrapeError(f"unknown prior {prior!r}; available: {', '.join(knowledge.priors)}")
    edges = knowledge.priors[prior]
    edges = edges[edges["src"] != edges["dst"]]
    edges = (edges.sort_values(["dst", "weight"], ascending=[True, False], kind="stable")
             .groupby("dst", sort=False).head(max_in_degree).reset_index(drop=True))
    weight = edges["weight"].to_numpy(dtype=np.float64)
    totals = pd.Series(weight).groupby(edges["dst"].to_numpy()).transform("sum").to_numpy()
    edges = edges.assign(weight=(weight / np.maximum(totals, 1e-12)).astype(np.float32))
    is_coding = knowledge.table["is_coding"].astype(bool).to_numpy()
    graph = GraphInputs(
        text=torch.as_tensor(np.asarray(knowledge.text, dtype=np.float32)),
        dna=torch.as_tensor(np.asarray(knowledge.dna, dtype=np.float32)),
        dna_missing=torch.as_tensor(np.asarray(knowledge.dna_missing, dtype=bool)),
        is_coding=torch.as_tensor(is_coding),
        prior_index=torch.as_tensor(edges[["src", "dst"]].to_numpy(dtype=np.int64).T.copy()),
        prior_weight=torch.as_tensor(edges["weight"].to_numpy(dtype=np.float32)),
        measured=torch.as_tensor([node_index[g] for g in measured], dtype=torch.long),
    )
    return graph, node_index, edges


def named_edges(edges: pd.DataFrame, genes: Sequence[str], is_coding: np.ndarray) -> pd.DataFrame:
    """Edge list with gene symbols and biotype relation (``coding->noncoding``...)."""
    src, dst = edges["src"].to_numpy(), edges["dst"].to_numpy()
    kind = np.where(is_coding, keys.CODING, keys.NONCODING)
    out = pd.DataFrame({
        "source": np.asarray(genes, dtype=object)[src],
        "target": np.asarray(genes, dtype=object)[dst],
        "weight": edges["weight"].to_numpy(dtype=np.float32),
        "relation": [f"{a}->{b}" for a, b in zip(kind[src], kind[dst])],
    })
    if "source" in edges.columns:  # which prior an edge came from (go, coexpression, ...)
        out["prior"] = edges["source"].to_numpy()
    return out


@torch.no_grad()
def learned_graph(members: Sequence[GRAPE], graph: GraphInputs) -> pd.DataFrame:
    """Ensemble mean of the learned adjacency (``src``, ``dst``, ``weight``)."""
    frames = []
    for model in members:
        if model.learner is None:
            continue
        model.eval()
        x = model.encode(graph)
        index, weight = model.learner.learned(x, graph.prior_index, graph.prior_weight)
        frames.append(pd.DataFrame({"src": index[0].numpy(), "dst": index[1].numpy(),
                                    "weight": weight.numpy()}))
    if not frames:
        return pd.DataFrame({"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64),
                             "weight": np.zeros(0, np.float32)})
    edges = pd.concat(frames).groupby(["src", "dst"], as_index=False)["weight"].sum()
    edges["weight"] /= len(frames)
    return edges


@torch.no_grad()
def fused_embeddings(model: GRAPE, graph: GraphInputs) -> np.ndarray:
    """The fine-tuned gene encoder's output ``(n_nodes, d)``."""
    model.eval()
    return model.encoder(graph.text, graph.dna, graph.dna_missing).numpy()


def uncertainty_check(mean: np.ndarray, std: np.ndarray, truth: np.ndarray,
                      control: np.ndarray) -> dict[str, float]:
    """Does a larger ensemble spread go with a larger error, over held-out (condition, gene)?

    Only genes expressed above the median control level count: silent genes have both no
    error and no spread, which would make any model look calibrated.
    """
    from scipy.stats import spearmanr

    expressed = control >= np.median(control)
    err = np.abs(mean - truth)[:, expressed].ravel()
    spread = std[:, expressed].ravel()
    if spread.size < 3 or np.ptp(spread) == 0:
        return {"spearman_std_vs_error": float("nan"), "n": int(spread.size)}
    q = np.quantile(spread, [0.1, 0.9])
    return {
        "spearman_std_vs_error": float(spearmanr(spread, err).statistic),
        "mean_error_top_decile_std": float(err[spread >= q[1]].mean()),
        "mean_error_bottom_decile_std": float(err[spread <= q[0]].mean()),
        "within_2_std": float(np.mean(err <= 2 * spread)),
        "n": int(spread.size),
        "genes": "expressed above the median control level",
    }


def bundle_predictor(bundle: Bundle):
    from .predict import predict_conditions

    return lambda conditions: predict_conditions(bundle, conditions)[0]


def evaluate_bundle(bundle: Bundle, pb: PseudoBulk | None = None, *, part: str = "test") -> Report:
    """GRAPE (row ``grape``) and every baseline on the bundle's held-out conditions."""
    pb = pb or bundle.pseudobulk
    bundle.check_genes(pb.genes)
    report = evaluate_models(pb, bundle.split, {"grape": bundle_predictor(bundle)}, part=part)
    report.extra["verdict"] = report.verdict("grape")
    return report


def metrics_frame(report: Report, split: Split) -> pd.DataFrame:
    rows = []
    for name, table in report.tables.items():
        for cond, row in table.iterrows():
            rows.append({"model": name, "condition": cond,
                         "subgroup": split.subgroup_of(cond) or "", **row.to_dict()})
    return pd.DataFrame(rows)


def train_bundle(
    adata,
    split: Split,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    feature_config=None,
    graph_config=None,
    paths: Paths | None = None,
    progress: bool = True,
    name: str = "",
    command: str = "",
    knowledge=None,
    ablations: bool = False,
) -> Bundle:
    """Gene knowledge -> graph -> trained ensemble -> held-out evaluation -> :class:`Bundle`.

    Parameters
    ----------
    adata
        Output of :func:`~grape_core.data.read_perturbseq` (``n_cells × n_genes``).
    split
        Train / val / test conditions (saved with the model).
    knowledge
        Pre-built gene knowledge (else built, with its cache, for the data's genes).
    ablations
        Also retrain every variant of :data:`ABLATIONS` (one member each) and keep their
        held-out metrics in the bundle.
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    paths = paths or Paths.from_env()
    start = time.perf_counter()
    pb = pseudobulk(adata)
    if knowledge is None:
        from .knowledge import knowledge_for_adata

        knowledge = knowledge_for_adata(adata, feature_config=feature_config,
                                        graph_config=graph_config, paths=paths, progress=progress)
    graph, node_index, prior = graph_inputs(knowledge, pb.genes, prior=model_config.prior,
                                            max_in_degree=model_config.prior_max_in_degree)
    result: TrainResult = train_grape(
        pb, split, graph, node_index, model_config=model_config, train_config=train_config,
        encoder_state=knowledge.encoder_state, encoder_args=knowledge.encoder_args,
        progress=progress,
    )
    is_coding = knowledge.table["is_coding"].astype(bool).to_numpy()
    genes = list(knowledge.genes)
    learned = named_edges(learned_graph(result.members, graph), genes, is_coding)
    prior_named = named_edges(prior, genes, is_coding)
    pair = set(zip(prior_named["source"], prior_named["target"]))
    learned["in_prior"] = [(s, t) in pair for s, t in zip(learned["source"], learned["target"])]
    source = adata.uns.get(keys.UNS_SOURCE, {})
    manifest: dict[str, Any] = {
        "name": name,
        "command": command,
        "dataset": {
            "name": source.get("name", ""),
            "file": (source.get("path") or "").replace("\\", "/").rsplit("/", 1)[-1],
            "sha256": source.get("sha256", ""),
            "subset": source.get("subset", []),
            "condition_key": source.get("condition_key", ""),
            "control_label": source.get("control_label", ""),
            "cells": int(adata.n_obs),
            "genes": int(adata.n_vars),
            "conditions": len(pb.conditions),
        },
        "split": {"name": split.name, "seed": split.seed, "params": split.params,
                  "train": len(result.train_conditions), "val": len(result.val_conditions),
                  "test": len([c for c in split.test if c in pb]),
                  "val_carved_from_train": result.val_carved},
        "configs": {
            "model": model_config.to_dict(),
            "train": train_config.to_dict(),
            "feature": knowledge.configs["feature"],
            "graph": knowledge.configs["graph"],
        },
        "encoder_args": dict(knowledge.encoder_args),
        "ensemble": len(result.members),
        "training": {"seconds": round(result.seconds, 2), "best_epochs": result.best_epochs,
                     "train_conditions": result.train_conditions,
                     "val_conditions": result.val_conditions},
        "graph": {"prior": model_config.prior, "prior_edges": int(len(prior)),
                  "learned_edges": int(len(learned)),
                  "learned_in_prior": int(learned["in_prior"].sum()) if len(learned) else 0},
    }
    bundle = Bundle(
        manifest=manifest, members=result.members, graph=graph, genes=tuple(genes),
        table=knowledge.table.copy(), pseudobulk=pb, split=split, prior_edges=prior_named,
        learned_edges=learned, history=pd.DataFrame(result.history), metrics=pd.DataFrame(),
        fused=fused_embeddings(result.members[0], graph),
    )
    held_out = [c for c in split.test if c in pb and c != keys.CTRL]
    if held_out:
        report = evaluate_bundle(bundle)
        bundle.metrics = metrics_frame(report, split)
        manifest["metrics"] = {"test": report.models, "subgroups": report.subgroup_summary(),
                               "verdict": report.extra["verdict"]}
        from .predict import predict_conditions

        mean, std = predict_conditions(bundle, held_out)
        manifest["uncertainty"] = uncertainty_check(mean, std, pb.means[pb.rows(held_out)],
                                                    pb.control_mean)
    if ablations and held_out:
        bundle.ablations = run_ablations(bundle, adata, knowledge=knowledge, progress=progress)
    manifest["training"]["total_seconds"] = round(time.perf_counter() - start, 2)
    return bundle


ABLATIONS: dict[str, dict[str, Any]] = {
    "grape": {},
    "no_structure_learning": {"structure_learning": False},
    "homogeneous_graph": {"heterogeneous": False},
    "no_text_view": {"use_text": False},
    "no_dna_view": {"use_dna": False},
    "no_global_path": {"global_path": False},
    "no_shared_shift": {"shared_shift": False},
    "no_additive_pairs": {"additive_pairs": False},
    "paper_flags": {"detach_structure": True, "perturbation_encoding": "paper",
                    "global_path": False},
}
"""Variant name -> changes to the model's config. ``paper_flags`` restores the published
code's three choices (detached structure learning, zero-then-negate marking, no global path)."""


def run_ablations(
    bundle: Bundle,
    adata,
    *,
    variants: Sequence[str] | None = None,
    epochs: int | None = None,
    progress: bool = True,
    knowledge=None,
) -> pd.DataFrame:
    """Retrain each variant on the bundle's split with one seed; held-out metrics per variant.

    Every row (``grape`` included) is trained the same way (one member, same seed, same
    epochs), so differences come from the variant alone.
    """
    from .config import FeatureConfig, GraphConfig
    from .knowledge import knowledge_for_adata

    pb = pseudobulk(adata)
    bundle.check_genes(pb.genes)
    configs = bundle.manifest["configs"]
    if knowledge is None:
        knowledge = knowledge_for_adata(
            adata,
            feature_config=FeatureConfig.from_dict(configs["feature"]) if configs.get("feature") else None,
            graph_config=GraphConfig.from_dict(configs["graph"]) if configs.get("graph") else None,
            progress=progress,
        )
    has_pairs = any(len(c.split("+")) == 2 and "ctrl" not in c for c in pb.conditions)
    names = list(variants or [v for v in ABLATIONS if has_pairs or v != "no_additive_pairs"])
    train_config = bundle.train_config.replace(ensemble=1)
    if epochs:
        train_config = train_config.replace(max_epochs=epochs)
    rows = {}
    for name in names:
        config = bundle.model_config.replace(**ABLATIONS[name])
        start = time.perf_counter()
        variant = train_bundle(adata, bundle.split, model_config=config, train_config=train_config,
                               knowledge=knowledge, progress=progress, name=name)
        metrics = variant.manifest.get("metrics", {}).get("test", {}).get("grape", {})
        rows[name] = {"n": metrics.get("n_conditions", 0),
                      **{m: metrics.get(m, float("nan")) for m in
                         ("mse", "pearson_delta", "pearson_delta_de", "frac_correct_direction_20")},
                      "seconds": round(time.perf_counter() - start, 1)}
    return pd.DataFrame.from_dict(rows, orient="index")
