"""Training: the plan (seeds, optimiser, batches, early stopping, ensemble) and the recipe
that turns a screen into a saved model.

- :func:`train_grape` / :func:`train_member`: the training plan. Targets are pseudo-bulk
  shifts (mean of a condition's cells minus the control mean): the per-cell MSE of the paper
  equals this plus a constant, at a fraction of the cost.
- :func:`train_bundle`: gene knowledge -> graph -> trained ensemble -> held-out evaluation
  -> :class:`~grape_core.bundle.Bundle` (``grape_core.fit``).
- :data:`ABLATIONS` / :func:`run_ablations`: the same recipe for each model variant.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import keys
from .bundle import Bundle, ConfigsInfo, DatasetInfo, GraphInfo, Manifest, MemberInfo, MetricsInfo, \
    SplitInfo, TrainingInfo
from .config import ModelConfig, Paths, TrainConfig
from .data.conditions import genes_of, is_pair
from .data.pseudobulk import PseudoBulk, pseudobulk
from .data.splits import Split
from .errors import GrapeError
from .evaluation.evaluate import uncertainty_check
from .evaluation.metrics import pearson
from .model.grape import GRAPE, GraphInputs
from .model.inputs import (fused_embeddings, graph_inputs, learned_graph, named_edges,
                           perturbation_tensor, predict_shifts)
from .model.loss import grape_loss
from .predict import Model, evaluate, predict_conditions

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Trained ensemble and how it got there."""

    members: list[GRAPE]
    history: list[dict[str, float]]
    """One row per member and epoch: member, epoch, train_loss, val_mse, val_pearson_delta
    (validation figures on the member's fixed gene sample when ``genes_per_step`` applies)."""
    train_conditions: list[str]
    val_conditions: list[str]
    best_epochs: list[int]
    seconds: float
    val_carved: bool = False
    notes: list[str] = field(default_factory=list)


def _carve_validation(train: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    n_val = int(round(len(train) * fraction))
    if len(train) < 4 or n_val == 0:
        n_val = 1 if len(train) >= 4 else 0
    if n_val == 0:
        return train, []
    order = np.random.RandomState(seed).permutation(len(train))
    val = sorted(train[i] for i in order[:n_val])
    return [c for c in train if c not in val], val


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def _training_shifts(model: GRAPE, pb: PseudoBulk, train: list[str], node_index: dict[str, int]) -> None:
    """Shared shift = mean over every training condition (as the ``train_mean`` baseline:
    pairs carry the screen-wide response too, often more clearly than singles); measured
    training singles for the additive composition of pairs."""
    shifts = torch.as_tensor(pb.shifts[pb.rows(train)], dtype=torch.float32)
    singles = [i for i, c in enumerate(train) if len(genes_of(c)) == 1]
    model.set_training_shifts(shifts.mean(0),
                              {node_index[genes_of(train[i])[0]]: shifts[i] for i in singles})


def train_member(
    pb: PseudoBulk, graph: GraphInputs, node_index: dict[str, int], train: list[str],
    val: list[str], *, model_config: ModelConfig, train_config: TrainConfig, seed: int,
    encoder_state: dict[str, torch.Tensor] | None, encoder_args: dict,
    progress: bool = True, member: int = 0,
    on_epoch: Callable[[int, int, int], None] | None = None,
) -> tuple[GRAPE, list[dict[str, float]], int]:
    """Train one ensemble member; returns the best checkpoint, its history and best epoch.

    ``on_epoch(member, epoch, max_epochs)`` is called after every epoch (progress for the
    app); an exception it raises (e.g. :class:`~grape_core.errors.Cancelled`) stops training."""
    from tqdm.auto import tqdm

    seed_everything(seed)
    device = torch.device(train_config.device)
    encoder_args = encoder_args or {"text_dim": graph.text.size(1), "dna_dim": graph.dna.size(1)}
    model = GRAPE(model_config, n_nodes=graph.n_nodes, n_measured=graph.measured.numel(),
                  encoder_args=encoder_args)
    if encoder_state:
        model.encoder.load_state_dict(encoder_state)
    _training_shifts(model, pb, train, node_index)
    model.to(device)
    graph = graph.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=train_config.lr,
                           weight_decay=train_config.weight_decay)
    x_train = perturbation_tensor(train, node_index)
    y_train = torch.as_tensor(pb.shifts[pb.rows(train)], dtype=torch.float32, device=device)
    x_val = perturbation_tensor(val, node_index)
    y_val = pb.shifts[pb.rows(val)] if val else None
    generator = torch.Generator().manual_seed(seed)
    n_measured = graph.measured.numel()
    subsample = 0 < train_config.genes_per_step < n_measured
    # early stopping reads a fixed random sample of genes too: an unbiased estimate of the
    # validation MSE, and large screens validate in a fraction of the time
    val_genes = (torch.randperm(n_measured, generator=torch.Generator().manual_seed(seed))
                 [:train_config.genes_per_step].sort().values if subsample else None)
    if val_genes is not None and y_val is not None:
        y_val = y_val[:, val_genes.numpy()]
    history: list[dict[str, float]] = []
    best_state, best_score, best_epoch, stale = None, float("inf"), 0, 0
    epochs = train_config.max_epochs if val else min(train_config.max_epochs, 60)
    bar = tqdm(range(1, epochs + 1), desc=f"member {member + 1}", leave=False,
               disable=not progress, file=sys.stderr)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(train), generator=generator)
        losses = []
        for start in range(0, len(train), train_config.batch_size):
            idx = order[start:start + train_config.batch_size]
            genes = (torch.randperm(n_measured, generator=generator)[:train_config.genes_per_step]
                     .sort().values.to(device) if subsample else None)
            out = model(graph, x_train[idx], outputs=genes)
            target = y_train[idx] if genes is None else y_train[idx][:, genes]
            loss = grape_loss(out.shift, target, out.reg, huber_delta=train_config.huber_delta,
                              reg_weight=train_config.reg_weight)
            opt.zero_grad()
            loss.total.backward()
            opt.step()
            losses.append(loss.total.item())
        row = {"member": member, "epoch": epoch, "train_loss": float(np.mean(losses))}
        if val:
            pred = predict_shifts(model, graph, x_val, outputs=val_genes).cpu().numpy()
            row["val_mse"] = float(np.mean((pred - y_val) ** 2))
            row["val_pearson_delta"] = float(np.mean([pearson(p, t) for p, t in zip(pred, y_val)]))
            score = row["val_mse"]
        else:
            score = row["train_loss"]
        history.append(row)
        if on_epoch is not None:
            on_epoch(member, epoch, epochs)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}",
                        **({"val_mse": f"{row['val_mse']:.4f}"} if val else {}))
        if score < best_score - 1e-7:
            best_state, best_score, best_epoch, stale = copy.deepcopy(model.state_dict()), score, epoch, 0
        else:
            stale += 1
            if val and stale >= train_config.patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model.cpu(), history, best_epoch


def train_grape(
    pb: PseudoBulk,
    split: Split,
    graph: GraphInputs,
    node_index: dict[str, int],
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    encoder_state: dict[str, torch.Tensor] | None = None,
    encoder_args: dict | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, int, int], None] | None = None,
) -> TrainResult:
    """Train an ensemble of GRAPE models on the split's training conditions.

    Parameters
    ----------
    pb
        Pseudo-bulk of the screen; targets are ``pb.shifts``.
    split
        Training conditions come from ``split.train`` and early stopping uses ``split.val``;
        when the split has no measured validation condition, a seeded ``val_fraction`` of
        training conditions is held out instead.
    graph, node_index
        Gene graph (see :func:`grape_core.bundle.graph_inputs`) and symbol -> node index.
    on_epoch
        Called after every epoch of every member (see :func:`train_member`).
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    train = [c for c in split.train if c in pb and c != keys.CTRL]
    val = [c for c in split.val if c in pb and c != keys.CTRL]
    carved = False
    if not train:
        raise GrapeError(f"split {split.name!r} leaves no measured training condition")
    if not val:
        train, val = _carve_validation(train, train_config.val_fraction, train_config.seed)
        carved = bool(val)
    start = time.perf_counter()
    members, history, best = [], [], []
    for m in range(train_config.ensemble):
        model, hist, epoch = train_member(
            pb, graph, node_index, train, val, model_config=model_config,
            train_config=train_config, seed=train_config.seed + m, encoder_state=encoder_state,
            encoder_args=encoder_args, progress=progress, member=m, on_epoch=on_epoch,
        )
        members.append(model)
        history += hist
        best.append(epoch)
    return TrainResult(members=members, history=history, train_conditions=train,
                       val_conditions=val, best_epochs=best,
                       seconds=time.perf_counter() - start, val_carved=carved)


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
    pb: PseudoBulk | None = None,
    on_epoch: Callable[[int, int, int], None] | None = None,
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
    pb
        The pseudo-bulk of ``adata`` when the caller has it already (computed once per
        command).
    on_epoch
        ``on_epoch(member, epoch, max_epochs)`` after every epoch (the app's progress bar);
        an exception it raises stops training.

    Returns
    -------
    Bundle
        Not yet saved (:meth:`~grape_core.bundle.Bundle.save`).

    Examples
    --------
    >>> import grape_core as gc
    >>> adata = gc.read("adamson")  # doctest: +SKIP
    >>> bundle = gc.fit(adata, gc.split(adata))  # doctest: +SKIP
    >>> bundle.save("models/adamson")  # doctest: +SKIP
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    paths = paths or Paths.from_env()
    start = time.perf_counter()
    pb = pseudobulk(adata)
    if knowledge is None:
        from .knowledge.build import knowledge_for_adata

        knowledge = knowledge_for_adata(adata, feature_config=feature_config,
                                        graph_config=graph_config, paths=paths, progress=progress)
    graph, node_index, prior = graph_inputs(knowledge, pb.genes, prior=model_config.prior,
                                            max_in_degree=model_config.prior_max_in_degree)
    result: TrainResult = train_grape(
        pb, split, graph, node_index, model_config=model_config, train_config=train_config,
        encoder_state=knowledge.encoder_state, encoder_args=knowledge.encoder_args,
        progress=progress, on_epoch=on_epoch,
    )
    is_coding = knowledge.table["is_coding"].astype(bool).to_numpy()
    genes = list(knowledge.genes)
    learned = named_edges(learned_graph(result.members, graph), genes, is_coding)
    prior_named = named_edges(prior, genes, is_coding)
    pair = set(zip(prior_named["source"], prior_named["target"]))
    learned["in_prior"] = [(s, t) in pair for s, t in zip(learned["source"], learned["target"])]
    source = adata.uns.get(keys.UNS_SOURCE, {})
    epochs_run = pd.DataFrame(result.history).groupby("member")["epoch"].max().to_dict() \
        if result.history else {}
    manifest = Manifest(
        name=name,
        command=command,
        dataset=DatasetInfo(
            name=source.get("name", ""),
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
        ensemble=len(result.members),
        training=TrainingInfo(
            seconds=round(result.seconds, 2), best_epochs=tuple(result.best_epochs),
            train_conditions=tuple(result.train_conditions),
            val_conditions=tuple(result.val_conditions),
            members=tuple(MemberInfo(best_epoch=int(e), seed=train_config.seed + m,
                                     epochs=int(epochs_run.get(m, e)))
                          for m, e in enumerate(result.best_epochs))),
        graph=GraphInfo(prior=model_config.prior, prior_edges=int(len(prior)),
                        learned_edges=int(len(learned)),
                        learned_in_prior=int(learned["in_prior"].sum()) if len(learned) else 0),
    )
    bundle = Bundle(
        manifest=manifest, members=result.members, graph=graph, genes=tuple(genes),
        table=knowledge.table.copy(), pseudobulk=pb, split=split, prior_edges=prior_named,
        learned_edges=learned, history=pd.DataFrame(result.history), metrics=pd.DataFrame(),
        fused=fused_embeddings(result.members[0], graph),
    )
    held_out = [c for c in split.test if c in pb and c != keys.CTRL]
    if held_out:
        model = Model(bundle)
        report = evaluate(model)
        mean, std = predict_conditions(model, held_out)
        manifest = manifest.replace(
            metrics=MetricsInfo(test=report.models, subgroups=report.subgroup_summary(),
                                verdict=report.verdict("grape")),
            uncertainty=uncertainty_check(mean, std, pb.means[pb.rows(held_out)], pb.control_mean))
        bundle = bundle.replace(manifest=manifest, metrics=report.long_frame(split))
    if ablations and held_out:
        bundle = bundle.replace(ablations=run_ablations(bundle, adata, knowledge=knowledge,
                                                        progress=progress, pb=pb))
    training = bundle.manifest.training
    return bundle.replace(manifest=bundle.manifest.replace(training=dataclasses.replace(
        training, total_seconds=round(time.perf_counter() - start, 2))))


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
    pb: PseudoBulk | None = None,
) -> pd.DataFrame:
    """Retrain each variant on the bundle's split with one seed; held-out metrics per variant.

    Every row (``grape`` included) is trained the same way (one member, same seed, same
    epochs), so differences come from the variant alone.
    """
    from .config import FeatureConfig, GraphConfig
    from .knowledge.build import knowledge_for_adata

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
    has_pairs = any(is_pair(c) for c in pb.conditions)
    names = list(variants or [v for v in ABLATIONS if has_pairs or v != "no_additive_pairs"])
    train_config = bundle.train_config.replace(ensemble=1)
    if epochs:
        train_config = train_config.replace(max_epochs=epochs)
    rows = {}
    for name in names:
        config = bundle.model_config.replace(**ABLATIONS[name])
        start = time.perf_counter()
        variant = train_bundle(adata, bundle.split, model_config=config, train_config=train_config,
                               knowledge=knowledge, progress=progress, name=name, pb=pb)
        found = variant.manifest.metrics
        metrics = found.test.get("grape", {}) if found is not None else {}
        rows[name] = {"n": metrics.get("n_conditions", 0),
                      **{m: metrics.get(m, float("nan")) for m in
                         ("mse", "pearson_delta", "pearson_delta_de", "frac_correct_direction_20")},
                      "seconds": round(time.perf_counter() - start, 1)}
    return pd.DataFrame.from_dict(rows, orient="index")
