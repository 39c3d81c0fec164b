"""The training plan of an ensemble (:func:`train_grape`): the members on the split's
training perturbations with early stopping on validation ones (carved from training when
the split has none, then refitted on all of them), and the perturbations the prediction
interval is calibrated on (:func:`calibration_set`: predicted by weights that never saw
them).

Targets are pseudo-bulk shifts (mean of a condition's cells minus the control mean): the
per-cell MSE of the paper equals this plus a constant, at a fraction of the cost.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import keys
from ..bundle import MemberInfo
from ..config import ArchitectureConfig, TrainConfig
from ..data.conditions import genes_of
from ..data.pseudobulk import PseudoBulk
from ..data.splits import Split
from ..devices import resolve_device
from ..errors import GrapeError
from ..nn.ensemble import ensemble_spread, member_shifts
from ..nn.grape import GRAPE, GraphInputs
from .members import FittedMember, MemberTraining, train_members
from .step import graphs_available


@dataclass
class TrainResult:
    """Trained ensemble and how it got there."""

    members: list[GRAPE]
    history: list[dict[str, float]]
    """One row per member and validation check: member, step, train_loss (mean since the
    last check), val_mse, val_pearson_delta."""
    train_conditions: list[str]
    val_conditions: list[str]
    member_records: list[MemberInfo]
    """Per member: seed, best_step (the checkpoint kept), steps (run before stopping) and,
    after a refit, refit_steps."""
    seconds: float
    val_carved: bool = False
    calibration: "CalibrationSet | None" = None
    """Perturbations predicted by weights that never saw them, what the prediction interval
    is calibrated on (:func:`calibration_set`)."""


@dataclass
class CalibrationSet:
    """Predicted shifts of perturbations the predicting weights never saw."""

    conditions: list[str]
    shift: np.ndarray
    """``(n, n_genes)``."""
    std: np.ndarray
    """``(n, n_genes)``: the ensemble's spread (for a cross-fitted training perturbation,
    the final ensemble's at it: the fold member is one, and the interval's spread term must
    mean at calibration what it means when used)."""
    method: str
    """``cross`` (folds of the training perturbations' genes, plus validation) or ``split``
    (validation alone)."""


def _carve_validation(train: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    n_val = int(round(len(train) * fraction))
    if len(train) < 4 or n_val == 0:
        n_val = 1 if len(train) >= 4 else 0
    if n_val == 0:
        return train, []
    order = np.random.RandomState(seed).permutation(len(train))
    val = sorted(train[i] for i in order[:n_val])
    return [c for c in train if c not in val], val


def train_grape(
    pb: PseudoBulk,
    split: Split,
    graph: GraphInputs,
    node_index: dict[str, int],
    *,
    model_config: ArchitectureConfig | None = None,
    train_config: TrainConfig | None = None,
    encoder_state: dict[str, torch.Tensor] | None = None,
    encoder_args: dict | None = None,
    progress: bool = True,
    on_step: Callable[[int, int, int], None] | None = None,
) -> TrainResult:
    """Train an ensemble of GRAPE models on the split's training conditions.

    Parameters
    ----------
    pb
        Pseudo-bulk of the screen; targets are ``pb.shifts``.
    split
        Training conditions come from ``split.train`` and early stopping uses ``split.val``.
        When the split has no measured validation condition, a seeded ``val_fraction`` of
        training conditions is held out to choose the number of steps, and (``refit``) each
        member is then trained again on every training condition for that many steps.
    graph, node_index
        Gene graph (:func:`~grape_core.nn.inputs.graph_inputs`) and symbol -> node index.
    on_step
        Called at every validation check of every member (see :class:`MemberTraining`).
    """
    model_config = model_config or ArchitectureConfig()
    train_config = train_config or TrainConfig()
    if train_config.threads:
        torch.set_num_threads(train_config.threads)
    train = [c for c in split.train if c in pb and c != keys.CTRL]
    val = [c for c in split.val if c in pb and c != keys.CTRL]
    if not train:
        raise GrapeError(f"split {split.name!r} leaves no measured training condition")
    fit_on, carved = train, False
    if not val:
        fit_on, val = _carve_validation(train, train_config.val_fraction, train_config.seed)
        carved = bool(val)
    start = time.perf_counter()
    device = resolve_device(train_config.device)
    side_by_side = train_config.side_by_side and graphs_available(device, train_config)
    cpu_graph = graph  # where finished members are
    if side_by_side:  # one copy that every member reads
        graph = graph.to(device)
    common = dict(model_config=model_config, train_config=train_config,
                  encoder_state=encoder_state, encoder_args=encoder_args, progress=progress,
                  on_step=on_step)
    seeds = [train_config.seed + m for m in range(train_config.ensemble)]
    fitted = train_members(
        lambda m, stream: MemberTraining(pb, graph, node_index, fit_on, val, seed=seeds[m],
                                         member=m, stream=stream, **common),
        train_config.ensemble, side_by_side=side_by_side, device=device)
    records = [MemberInfo(seed=seed, best_step=fit.best_step, steps=fit.steps)
               for fit, seed in zip(fitted, seeds)]
    val_shifts = _predicted_shifts(fitted, cpu_graph, val, node_index) if val else None
    history = [row for fit in fitted for row in fit.history]
    refitting = carved and train_config.refit
    if refitting:
        fitted = train_members(
            lambda m, stream: MemberTraining(pb, graph, node_index, train, [], seed=seeds[m],
                                             member=m, stream=stream,
                                             steps=records[m].best_step,
                                             keep_history=False, **common),
            train_config.ensemble, side_by_side=side_by_side, device=device)
        records = [dataclasses.replace(record, refit_steps=refit.steps)
                   for record, refit in zip(records, fitted)]
    members = [fit.model for fit in fitted]
    final_train = train if refitting else fit_on
    steps = int(np.median([r.best_step for r in records]))
    # a refit trained on the carved validation perturbations: they cannot calibrate it
    calibration = calibration_set(
        pb, cpu_graph, node_index, final_train, fitted, [] if refitting else val,
        None if refitting else val_shifts, folds=train_config.calibration_folds,
        steps=steps, seed=train_config.seed + 1000, common={**common, "on_step": None})
    return TrainResult(members=members, history=history, train_conditions=final_train,
                       val_conditions=val, member_records=records,
                       seconds=time.perf_counter() - start, val_carved=carved,
                       calibration=calibration)


ENOUGH_CALIBRATION = 20
"""Validation perturbations enough to calibrate the interval on by themselves; with fewer,
the training perturbations are cross-fitted too (:func:`calibration_set`)."""


def calibration_set(pb: PseudoBulk, graph: GraphInputs, node_index: dict[str, int],
                    train: list[str], members: Sequence[FittedMember], val: list[str],
                    val_shifts: np.ndarray | None, *,
                    folds: int, steps: int, seed: int, common: dict[str, Any]) -> CalibrationSet | None:
    """What the prediction interval is calibrated on: every training perturbation predicted
    by a member trained without it (``folds`` folds of the training perturbations' genes,
    each fold's member trained for ``steps`` steps, the ensemble's own count, on every
    training perturbation that holds none of its genes: its perturbations are then of
    unseen genes, as held-out ones are), plus the validation perturbations as the ensemble
    predicted them (``val_shifts`` ``(members, n_val, n_genes)``, never trained on).
    ``folds`` 0, or :data:`ENOUGH_CALIBRATION` validation perturbations: those alone
    (split conformal). ``None`` when neither gives a perturbation."""
    conditions, shifts, stds = [], [], []
    method = "split"
    genes = sorted({g for c in train for g in genes_of(c)})
    enough = val_shifts is not None and len(val) >= ENOUGH_CALIBRATION
    if folds > 0 and len(genes) >= 2 and not enough:
        order = np.random.RandomState(seed).permutation(len(genes))
        for k, part in enumerate(np.array_split(order, min(folds, len(genes)))):
            out = {genes[i] for i in part}
            # a pair of genes in two folds is held out once, by the first
            held = [c for c in train if set(genes_of(c)) & out and c not in conditions]
            keep = [c for c in train if not set(genes_of(c)) & out]
            if not held or not keep:
                continue
            member = MemberTraining(pb, graph, node_index, keep, [], seed=seed + k,
                                    member=k, steps=steps, keep_history=False, **common).run()
            conditions += held
            shifts.append(_predicted_shifts([member], graph, held, node_index)[0])
            stds.append(ensemble_spread(_predicted_shifts(members, graph, held, node_index)
                                        .astype(np.float64)))
        method = "cross" if conditions else method
    if val_shifts is not None and len(val):
        values = val_shifts.astype(np.float64)
        conditions += list(val)
        shifts.append(values.mean(axis=0))
        stds.append(ensemble_spread(values))
    if not conditions:
        return None
    return CalibrationSet(conditions, np.concatenate(shifts).astype(np.float64),
                          np.concatenate(stds).astype(np.float64), method)


def _predicted_shifts(fitted: Sequence[FittedMember], graph: GraphInputs, conditions: list[str],
                      node_index: dict[str, int]) -> np.ndarray:
    """Every finished member's predicted shifts of ``conditions`` ``(members, n, n_genes)``
    (the ensemble's one forward pass, :func:`~grape_core.nn.ensemble.member_shifts`)."""
    return member_shifts([fit.model for fit in fitted], graph, node_index, conditions)
