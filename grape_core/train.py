"""The training plan: seeds, optimiser, batches of conditions, early stopping, ensemble.

Targets are pseudo-bulk shifts (mean of a condition's cells minus the control mean): the
per-cell MSE of the paper equals this plus a constant, at a fraction of the cost.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import keys
from .conditions import genes_of
from .config import ModelConfig, TrainConfig
from .data import PseudoBulk
from .errors import GrapeError
from .metrics import pearson
from .model.grape import GRAPE, GraphInputs
from .model.loss import grape_loss
from .splits import Split

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


def perturbation_tensor(conditions: Sequence[str], node_index: dict[str, int]) -> torch.Tensor:
    """Node indices of each condition's genes, ``(n_conds, 2)``, ``-1`` padding for singles."""
    out = torch.full((len(conditions), 2), -1, dtype=torch.long)
    for i, cond in enumerate(conditions):
        for j, gene in enumerate(genes_of(cond)):
            if gene not in node_index:
                raise GrapeError(f"gene {gene!r} of condition {cond!r} has no node in the graph")
            out[i, j] = node_index[gene]
    return out


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


@torch.no_grad()
def predict_shifts(model: GRAPE, graph: GraphInputs, perts: torch.Tensor, *, batch_size: int = 64,
                   outputs: torch.Tensor | None = None) -> torch.Tensor:
    """Shifts ``(n_conds, n_measured)`` of one member, in eval mode (only the measured
    positions ``outputs`` when given)."""
    if model.training:
        model.eval()
    out = [model(graph, perts[i:i + batch_size], outputs=outputs).shift
           for i in range(0, perts.size(0), batch_size)]
    width = graph.measured.numel() if outputs is None else outputs.numel()
    return torch.cat(out) if out else torch.zeros(0, width)


def train_member(
    pb: PseudoBulk, graph: GraphInputs, node_index: dict[str, int], train: list[str],
    val: list[str], *, model_config: ModelConfig, train_config: TrainConfig, seed: int,
    encoder_state: dict[str, torch.Tensor] | None, encoder_args: dict,
    progress: bool = True, member: int = 0,
) -> tuple[GRAPE, list[dict[str, float]], int]:
    """Train one ensemble member; returns the best checkpoint, its history and best epoch."""
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
            encoder_args=encoder_args, progress=progress, member=m,
        )
        members.append(model)
        history += hist
        best.append(epoch)
    return TrainResult(members=members, history=history, train_conditions=train,
                       val_conditions=val, best_epochs=best,
                       seconds=time.perf_counter() - start, val_carved=carved)
