"""The one training recipe: a screen in, a model folder's :class:`~grape_core.bundle.Bundle`
out. The command line (``train``), the app's jobs, the full public screens
(:mod:`.public`) and the Python API (:func:`grape_core.fit`) all run :func:`train_bundle`.

Its steps, each a function of its own::

    default_split      GEARS' simulation split of the screen's perturbations (seeded)
    gene_graph         gene knowledge (cached) -> the prior(s) -> the model's graph tensors
    train_grape        the ensemble (:mod:`.plan`: members, early stopping, calibration set)
    assemble           the manifest and the bundle: configs, data, split, graphs, history
    calibrate          the prediction interval (:mod:`grape_core.evaluation.calibration`)
    store_singles      every member's shift of every single, so that a screen is a lookup
    evaluate_held_out  GRAPE, every baseline and the replicate on the held-out perturbations

Ablations (:mod:`.ablations`) are a step of their own, after the recipe; :func:`save_model`
writes the folder.
"""

from __future__ import annotations

import dataclasses
import errno
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import keys
from ..bundle import (SINGLES_FLOAT16_ABOVE, SINGLES_MAX_VALUES, Bundle, ConfigsInfo, DatasetInfo,
                      GraphInfo, Manifest, MetricsInfo, SplitInfo, TrainingInfo)
from ..config import ArchitectureConfig, Paths, SplitConfig, TrainConfig
from ..data.conditions import format_condition
from ..data.pseudobulk import PseudoBulk, pseudobulk
from ..data.splits import Split, make_split
from ..errors import GrapeError
from ..evaluation.baselines import fit_baselines
from ..evaluation.benchmark import Report, benchmark, predicted_already, uncertainty_check
from ..evaluation.calibration import fit_calibration, gene_scale, interval_check
from ..knowledge.graphs import resolve_priors
from ..nn.ensemble import ensemble_expression, member_shifts, on_device
from ..nn.inputs import fused_embeddings, graph_inputs, learned_graph, named_edges
from .plan import TrainResult, train_grape


def default_split(pb: PseudoBulk, *, seed: int = 1) -> Split:
    """GEARS' simulation split of the screen's perturbations, what every caller of the
    recipe uses unless given another.

    Parameters
    ----------
    pb
        The screen's pseudo-bulk.
    seed
        The split's seed.

    Returns
    -------
    Split
    """
    return make_split(pb.conditions, SplitConfig(seed=seed))


def gene_graph(adata, pb: PseudoBulk, *, knowledge=None, priors: Sequence[Any] | None = None,
               model_config: ArchitectureConfig, feature_config=None, graph_config=None,
               paths: Paths | None = None, progress: bool = True):
    """Gene knowledge (built, or read from its cache), the prior(s) and the model's graph.

    Parameters
    ----------
    adata
        The screen (``n_cells × n_genes``).
    pb
        Its pseudo-bulk (the measured genes, in output order).
    knowledge
        Pre-built :class:`~grape_core.knowledge.folder.GeneKnowledge` (else built for the
        screen's genes).
    priors
        Built-in names, edge-list files or DataFrames (default ``model_config.prior``).
    model_config
        The architecture; returned with ``prior`` set to the priors' names.
    feature_config, graph_config, paths, progress
        For building the knowledge.

    Returns
    -------
    knowledge, model_config, graph, node_index, prior, prior_sources
        The knowledge, the config, :class:`~grape_core.nn.grape.GraphInputs`, symbol ->
        node, the prior edges the model uses ``(n_edges, 3+)`` and one record per prior.
    """
    if knowledge is None:
        from ..knowledge.build import knowledge_for_adata

        knowledge = knowledge_for_adata(adata, feature_config=feature_config,
                                        graph_config=graph_config, paths=paths, progress=progress)
    prior_edges, prior_sources = resolve_priors(
        list(priors) if priors is not None else list(model_config.prior), knowledge.priors,
        knowledge.genes)
    model_config = model_config.replace(prior=tuple(str(p["name"]) for p in prior_sources))
    graph, node_index, prior = graph_inputs(knowledge, pb.genes, prior_edges,
                                            max_in_degree=model_config.prior_max_in_degree)
    return knowledge, model_config, graph, node_index, prior, prior_sources


def assemble(adata, pb: PseudoBulk, split: Split, result: TrainResult, knowledge, graph,
             prior: pd.DataFrame, prior_sources: Sequence[dict], *,
             model_config: ArchitectureConfig, train_config: TrainConfig, name: str = "",
             command: str = "") -> Bundle:
    """The trained ensemble as a :class:`~grape_core.bundle.Bundle`, with its manifest.

    Parameters
    ----------
    adata, pb, split
        The screen, its pseudo-bulk and the split.
    result
        :func:`~grape_core.training.plan.train_grape`'s ensemble.
    knowledge, graph, prior, prior_sources
        From :func:`gene_graph`.
    model_config, train_config
        The configs it was trained with.
    name, command
        The model's name and the command that trained it (recorded in the manifest).

    Returns
    -------
    Bundle
        Without calibration, stored singles or metrics yet.
    """
    is_coding = knowledge.table["is_coding"].astype(bool).to_numpy()
    genes = list(knowledge.genes)
    learned_index = learned_graph(result.members, graph)
    learned = named_edges(learned_index, genes, is_coding)
    learned["in_prior"] = learned_index["in_prior"].to_numpy(dtype=bool)
    prior_named = named_edges(prior, genes, is_coding)
    source = adata.uns.get(keys.UNS_SOURCE, {})
    manifest = Manifest(
        name=name,
        command=command,
        dataset=DatasetInfo(
            name=source.get("name", "") or pb.dataset,
            file=(source.get("path") or "").replace("\\", "/").rsplit("/", 1)[-1],
            sha256=source.get("sha256", ""),
            subset=tuple(source.get("subset", [])),
            condition_key=source.get("condition_key", ""),
            control_label=source.get("control_label", ""),
            cells=int(adata.n_obs),
            genes=int(adata.n_vars),
            conditions=len(pb.conditions),
        ),
        split=SplitInfo(name=split.name, seed=split.seed, params=dict(split.params),
                        train=len(result.train_conditions), val=len(result.val_conditions),
                        test=len([c for c in split.test if c in pb]),
                        val_carved_from_train=result.val_carved),
        configs=ConfigsInfo(model=model_config.to_dict(), train=train_config.to_dict(),
                            feature=knowledge.configs["feature"], graph=knowledge.configs["graph"]),
        encoder_args=dict(knowledge.encoder_args),
        model_sizes=dataclasses.asdict(result.members[0].sizes),
        ensemble=len(result.members),
        training=TrainingInfo(
            seconds=round(result.seconds, 2),
            train_conditions=tuple(result.train_conditions),
            val_conditions=tuple(result.val_conditions),
            members=tuple(result.member_records)),
        graph=GraphInfo(prior=model_config.prior, prior_sources=tuple(prior_sources),
                        prior_edges=int(len(prior)), learned_edges=int(len(learned)),
                        learned_in_prior=int(learned["in_prior"].sum()) if len(learned) else 0),
    )
    return Bundle(
        manifest=manifest, members=result.members, graph=graph, genes=tuple(genes),
        table=knowledge.table.copy(), pseudobulk=pb, split=split, prior_edges=prior_named,
        learned_edges=learned, history=pd.DataFrame(result.history), metrics=pd.DataFrame(),
        fused=fused_embeddings(result.members[0], graph), singles=None,
    )


def calibrate(bundle: Bundle, result: TrainResult) -> Bundle:
    """The prediction interval, fitted on the perturbations the predicting weights never saw
    (:attr:`TrainResult.calibration`).

    Parameters
    ----------
    bundle
        From :func:`assemble`.
    result
        The training's result.

    Returns
    -------
    Bundle
        With ``manifest.calibration`` (``None`` when nothing could be held back).
    """
    pb = bundle.pseudobulk
    found = result.calibration
    calibration = None
    if found is not None:
        calibration = fit_calibration(
            found.shift, found.std, pb.shifts_of(found.conditions),
            gene_scale(pb, result.train_conditions, result.val_conditions), pb.control_mean,
            method=found.method)
    return bundle.replace(manifest=bundle.manifest.replace(calibration=calibration))


def stored_singles(bundle: Bundle, *, device: str = "cpu") -> np.ndarray | None:
    """What a bundle stores for screens (:attr:`Bundle.singles`): every member's shift of
    every single perturbation, each node on its own, at every measured gene.

    Parameters
    ----------
    bundle
        The trained bundle.
    device
        Where the members predict.

    Returns
    -------
    np.ndarray or None
        ``(n_members, n_nodes, n_measured)``, float16 above :data:`SINGLES_FLOAT16_ABOVE`
        values (as saved, so a model screens the same before and after a reload); ``None``
        above :data:`SINGLES_MAX_VALUES` values (genome scale), where the first screen
        computes them (:class:`~grape_core.serving.singles.SinglesStore`).

    Raises
    ------
    BundleError
        The members predict non-finite values.
    """
    size = len(bundle.members) * len(bundle.genes) * len(bundle.measured)
    if size > SINGLES_MAX_VALUES:
        return None
    members, graph = on_device(bundle.members, bundle.graph, device)
    return member_shifts(members, graph, bundle.node_index,
                         [format_condition((g,)) for g in bundle.genes],
                         dtype=np.float16 if size > SINGLES_FLOAT16_ABOVE else np.float32,
                         finite=bundle.name)


def held_out_report(bundle: Bundle, predicted: np.ndarray, *, cells=None) -> Report:
    """GRAPE's predictions of the held-out perturbations beside every baseline fitted on the
    members' own training perturbations (and the replicate, with the cells).

    Parameters
    ----------
    bundle
        The trained bundle.
    predicted
        GRAPE's predicted expression of the split's measured test perturbations, in order
        ``(n_test, n_measured)``.
    cells
        The screen's cells: cell-eval's DE metrics and the replicate row.

    Returns
    -------
    Report
    """
    training = bundle.manifest.training
    baselines = fit_baselines(bundle.pseudobulk, training.train_conditions or bundle.split.train,
                              prior=bundle.prior_edges, genes=bundle.genes,
                              features=bundle.fused)
    return benchmark(bundle.pseudobulk, bundle.split, {"grape": predicted_already(predicted)},
                     part="test", baselines=baselines, cells=cells)


def evaluate_held_out(bundle: Bundle, adata, *, device: str = "cpu") -> Bundle:
    """The held-out metrics, the verdict, the uncertainty checks and the per-condition
    table, into the bundle (nothing when the split holds nothing out).

    Parameters
    ----------
    bundle
        The calibrated bundle.
    adata
        The screen's cells (the replicate row and cell-eval's DE metrics); a stand-in without
        ``obs`` (a generated timing screen, which has no cells) gets neither.
    device
        Where the members predict.

    Returns
    -------
    Bundle
        With ``manifest.metrics``, ``manifest.uncertainty`` and ``metrics``.
    """
    pb, split = bundle.pseudobulk, bundle.split
    held_out = [c for c in split.test if c in pb and c != keys.CTRL]
    if not held_out:
        return bundle
    members, graph = on_device(bundle.members, bundle.graph, device)
    mean, std = ensemble_expression(members, graph, bundle.node_index, held_out,
                                    pb.control_mean, name=bundle.name)
    cells = adata if getattr(adata, "obs", None) is not None else None
    report = held_out_report(bundle, mean, cells=cells)
    uncertainty = uncertainty_check(mean, std, pb.means[pb.rows(held_out)], pb.control_mean)
    calibration = bundle.manifest.calibration
    if calibration is not None:
        training = bundle.manifest.training
        control = pb.control_mean.astype(np.float64)
        scale = gene_scale(pb, training.train_conditions or split.train,
                           training.val_conditions)
        uncertainty |= interval_check(calibration, mean - control, std, pb.shifts_of(held_out),
                                      scale, control, pb.de_idx[pb.rows(held_out)])
    found = report.to_dict()  # GEARS' names in test; cell-eval's, under theirs, beside
    extra = {"cell_eval": found["cell_eval"]["models"]}
    if report.replicate:
        extra["replicate"] = report.replicate
    manifest = bundle.manifest.replace(
        metrics=MetricsInfo(test=found["models"], subgroups=found["subgroups"],
                            verdict=report.verdict("grape"), extra=extra),
        uncertainty=uncertainty)
    return bundle.replace(manifest=manifest, metrics=report.long_frame(split))


def train_bundle(
    adata,
    split: Split | None = None,
    *,
    model_config: ArchitectureConfig | None = None,
    train_config: TrainConfig | None = None,
    feature_config=None,
    graph_config=None,
    paths: Paths | None = None,
    progress: bool = True,
    name: str = "",
    command: str = "",
    knowledge=None,
    pb: PseudoBulk | None = None,
    priors: Sequence[Any] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> Bundle:
    """The recipe: gene knowledge -> graph -> trained ensemble -> calibration -> stored
    singles -> held-out evaluation -> :class:`Bundle`.

    Parameters
    ----------
    adata
        Output of :func:`~grape_core.data.read_perturbseq` (``n_cells × n_genes``).
    split
        Train / val / test conditions (saved with the model); default
        :func:`default_split` with ``train_config.seed``.
    model_config, train_config
        The architecture and the optimisation (defaults: the project's).
    feature_config, graph_config, paths
        For building the gene knowledge when ``knowledge`` is not given.
    progress
        Progress bars on stderr.
    name, command
        The model's name and the command that trained it (recorded in the manifest).
    knowledge
        Pre-built gene knowledge (else built, with its cache, for the data's genes).
    pb
        The pseudo-bulk of ``adata`` when the caller has it already (computed once per
        command).
    priors
        The prior graph(s): built-in names, edge-list files (CSV, TSV, Parquet) or
        DataFrames with columns ``source,target[,weight]``; several are merged
        (:func:`~grape_core.knowledge.graphs.resolve_priors`). Default: ``model_config.prior``.
    on_step
        ``on_step(member, step, max_steps)`` at every validation check (the app's progress
        bar); an exception it raises stops training.

    Returns
    -------
    Bundle
        Not yet saved (:func:`save_model`).

    Examples
    --------
    >>> import grape_core as gc
    >>> from grape_core.training.recipe import train_bundle
    >>> adata = gc.read("screen.h5ad")  # doctest: +SKIP
    >>> train_bundle(adata).save("models/screen")  # doctest: +SKIP
    """
    model_config = model_config or ArchitectureConfig()
    train_config = train_config or TrainConfig()
    paths = paths or Paths.from_env()
    start = time.perf_counter()
    pb = pb if pb is not None else pseudobulk(adata)
    split = split if split is not None else default_split(pb, seed=train_config.seed)
    knowledge, model_config, graph, node_index, prior, prior_sources = gene_graph(
        adata, pb, knowledge=knowledge, priors=priors, model_config=model_config,
        feature_config=feature_config, graph_config=graph_config, paths=paths,
        progress=progress)
    result = train_grape(
        pb, split, graph, node_index, model_config=model_config, train_config=train_config,
        encoder_state=knowledge.encoder_state, encoder_args=knowledge.encoder_args,
        progress=progress, on_step=on_step,
    )
    bundle = assemble(adata, pb, split, result, knowledge, graph, prior, prior_sources,
                      model_config=model_config, train_config=train_config, name=name,
                      command=command)
    bundle = calibrate(bundle, result)
    started = time.perf_counter()  # predicted where it was trained
    bundle = bundle.replace(singles=stored_singles(bundle, device=train_config.device))
    seconds = {"singles_seconds": round(time.perf_counter() - started, 2)}
    if any(c in pb and c != keys.CTRL for c in split.test):
        started = time.perf_counter()
        bundle = evaluate_held_out(bundle, adata, device=train_config.device)
        seconds["evaluation_seconds"] = round(time.perf_counter() - started, 2)
    training = bundle.manifest.training
    return bundle.replace(manifest=bundle.manifest.replace(training=dataclasses.replace(
        training, total_seconds=round(time.perf_counter() - start, 2), **seconds)))


def save_model(bundle: Bundle, folder: str | Path, *, overwrite: bool = False) -> Path:
    """Write the model folder (:meth:`~grape_core.bundle.Bundle.save`); a full disk is one
    line naming the model and the models folder.

    Parameters
    ----------
    bundle
        The trained bundle.
    folder
        The model folder.
    overwrite
        Replace a model folder already there.

    Returns
    -------
    Path

    Raises
    ------
    GrapeError
        The folder exists (without ``overwrite``), cannot be written, or the disk is full.
    """
    folder = Path(folder)
    try:
        return bundle.save(folder, overwrite=overwrite)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise GrapeError(f"the disk is full: cannot save model {folder.name!r} to "
                             f"{folder.parent} ({exc.strerror}); free some space and try "
                             "again") from exc
        raise
