"""Training: the plan (seeds, optimiser, batches, early stopping, ensemble) and the recipe
that turns a screen into a saved model.

- :func:`train_grape` / :func:`train_member`: the training plan. Targets are pseudo-bulk
  shifts (mean of a condition's cells minus the control mean): the per-cell MSE of the paper
  equals this plus a constant, at a fraction of the cost. The members train one after the
  other, or on a GPU side by side (:func:`train_members`, :class:`MemberTraining`).
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
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import keys
from .bundle import Bundle, ConfigsInfo, DatasetInfo, GraphInfo, Manifest, MemberInfo, MetricsInfo, \
    SplitInfo, TrainingInfo
from .config import ModelConfig, Paths, TrainConfig
from .data.conditions import format_condition, genes_of, is_pair
from .data.pseudobulk import PseudoBulk, pseudobulk
from .data.splits import Split
from .devices import resolve_device
from .errors import GrapeError
from .evaluation.calibration import fit_calibration, gene_scale, interval_check
from .evaluation.evaluate import uncertainty_check
from .evaluation.metrics import pearson
from .model.grape import GRAPE, GraphInputs, ModelSizes
from .model.inputs import (fused_embeddings, graph_inputs, learned_graph, named_edges,
                           perturbation_tensor, predict_shifts)
from .knowledge.graphs import resolve_priors
from .predict import Model, ensemble_spread, evaluate, predict_conditions
from .screen import stored_singles
from .train_step import TrainingStep, graphs_available, structure_l1_weight

log = logging.getLogger(__name__)


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
    val_shifts: np.ndarray | None = None
    """``(members, n_val, n_genes)``: the validation perturbations' shifts predicted by the
    members early stopping chose, before any refit (which trains on them). ``None`` without
    validation."""
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


@dataclass
class FittedMember:
    """One trained member (CPU, eval mode, its best checkpoint) and how it got there."""

    model: GRAPE
    history: list[dict[str, float]]
    """One row per validation check (see :attr:`TrainResult.history`)."""
    best_step: int
    """The step of the checkpoint kept (the last step when nothing was validated)."""
    steps: int
    """Steps run before stopping."""


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


def model_sizes(graph: GraphInputs, pb: PseudoBulk, train: Sequence[str],
                config: ModelConfig) -> ModelSizes:
    n_known = sum(len(genes_of(c)) == 1 for c in train) if config.additive_pairs else 0
    return ModelSizes(n_nodes=graph.n_nodes, n_measured=graph.measured.numel(),
                      n_prior_edges=int(graph.prior_index.size(1)), n_known=n_known)


def _training_data(model: GRAPE, pb: PseudoBulk, graph: GraphInputs, train: list[str],
                   node_index: dict[str, int]) -> None:
    """Shared response = training shifts summed and divided by the number of perturbed genes
    (a pair brings two doses, as the additive baseline assumes); the loss scale is the RMS
    training shift; measured training singles compose pairs."""
    shifts = torch.as_tensor(pb.shifts_of(train), dtype=torch.float32)
    n_genes = sum(len(genes_of(c)) for c in train)
    control = torch.zeros(graph.n_nodes)
    control[graph.measured] = torch.as_tensor(pb.control_mean, dtype=torch.float32)
    singles = {node_index[genes_of(c)[0]]: shifts[i] for i, c in enumerate(train)
               if len(genes_of(c)) == 1}
    model.set_training_data(mean_shift=shifts.sum(0) / max(n_genes, 1), node_control=control,
                            scale=float(shifts.pow(2).mean().sqrt().clamp_min(1e-6)),
                            singles=singles)


_MAGNITUDES = np.logspace(-4, np.log10(2.0), 60)
SCALES = np.concatenate([-_MAGNITUDES[::-1], [0.0], _MAGNITUDES])
"""Candidate prior scales of the warm start (:func:`warm_start`), dense near 0: where the
perturbed genes' own changes are large, their effect on others is a small fraction of it."""


@torch.no_grad()
def warm_start(model: GRAPE, graph: GraphInputs, pb: PseudoBulk, train: list[str],
               node_index: dict[str, int]) -> dict[str, float]:
    """Start from the least-squares fit of the model's linear part: with linear messages
    (as they start) and every relation's prior scale ``s``, a perturbation's shift is

    ``a r + b sum_{l <= L} (s A)^l e_P``

    (``L`` propagation steps), which gives the dose of the shared response ``a`` (one per
    perturbation, single or pair: on the Norman slice the training singles hold almost none
    of the response that the held-out ones share with the training pairs, and in every
    simulated screen a pair holds about one dose, not two), the self-effect ``b`` (every
    gene alike) and the prior's scale ``s``: for each ``s`` of :data:`SCALES` the rest by
    least squares, and the ``s`` that fits best. This
    is the ``propagation`` baseline's idea in the model's own form, so that the series the
    model runs is the one fitted (a one-step fit, scaled up to ``L`` steps, blows up where
    the data want a strong scale). Training then moves away from it only where validation
    agrees.

    ``b`` can be estimated only from training perturbations of measured genes. Without
    one, neither the sign nor the size of a perturbed gene's own change is known: the
    self-effect is then a unit (``b = 1``, whose propagation to other genes ``s`` and the
    series size) and the model predicts no own change for a perturbed gene
    (:attr:`GRAPE.self_known`). A pair's own dose comes from the training pairs whose
    singles were measured too (:func:`_pair_mix`: whether a pair's large shift is shared
    response or its own effect can only be told against its singles).
    """
    n, measured = graph.n_nodes, graph.measured
    adj = torch.sparse_coo_tensor(graph.prior_index.flip(0), graph.prior_weight, (n, n),
                                  check_invariants=True).coalesce()
    perts = perturbation_tensor(train, node_index)
    e = GRAPE.indicator(perts, n)  # (n, batch)
    y = torch.as_tensor(pb.shifts_of(train), dtype=torch.float32).T.reshape(-1).double().numpy()
    # one dose of the shared response per perturbation, single or pair: held out, a
    # perturbation gets what the training perturbations held on average (as train_mean)
    shared = [torch.broadcast_to(model.mean_shift.unsqueeze(1), e[measured].shape)
              .reshape(-1).double().numpy()]
    known = bool((e[measured].sum() > 0).item())
    hops, v = [e[measured].reshape(-1).double().numpy()], e
    for _ in range(model.config.propagation_steps):
        v = torch.sparse.mm(adj, v)
        hops.append(v[measured].reshape(-1).double().numpy())
    def fit(scale: float) -> tuple[float, list[float]]:
        series = sum(scale ** l * h for l, h in enumerate(hops))
        if known:  # b sizes the whole series
            x, target = np.stack([*shared, series], -1), y
        else:  # b is the unit; the own term is not measured anyway
            x, target = np.stack(shared, -1), y - series
        # the normal equations in numpy: torch.linalg.lstsq on the CPU is not reproducible
        # (its last bits depend on where the arrays lie in memory), and a last bit here can
        # change which learned edges win the top-k, and so the trained model
        coef = np.linalg.lstsq(x.T @ x, x.T @ target, rcond=None)[0]
        return float(np.sum((target - x @ coef) ** 2)), coef.tolist()

    scales = SCALES if model.config.propagation_steps else np.zeros(1)
    residuals = [fit(float(s))[0] for s in scales]
    i = int(np.argmin(residuals))
    scale = float(scales[i])
    if 0 < i < len(scales) - 1:  # refine between the grid's neighbours (golden section)
        low, high = float(scales[i - 1]), float(scales[i + 1])
        ratio = (np.sqrt(5.0) - 1.0) / 2.0
        for _ in range(40):
            left, right = high - ratio * (high - low), low + ratio * (high - low)
            if fit(left)[0] <= fit(right)[0]:
                high = right
            else:
                low = left
        middle = (low + high) / 2.0
        if fit(middle)[0] < residuals[i]:
            scale = middle
    coef = fit(scale)[1]
    a1 = a2 = coef[0]
    b = coef[-1] if known else 1.0
    if abs(b) < 1e-3:  # the data say the perturbed genes barely move: keep a usable unit
        known, b = False, 1.0
    signed = model.config.signed_self_effect and model.config.perturbation_encoding != "paper"
    model.shared_amplitude.copy_(torch.tensor(
        [a1, a2 - 2.0 * a1] if model.config.shared_shift else [1.0, 0.0]))
    model.self_head[-1].weight.zero_()
    model.self_head[-1].bias.fill_(0.0 if signed else b)
    model.self_scale.fill_(b)
    model.self_known.fill_(known)
    model.structure.scale.fill_(scale)
    mix = (_pair_mix(model, graph, pb, train, node_index) if model.config.pair_mixing
           else None)
    if not model.config.pair_mixing:  # the sum of the singles: two doses
        model.shared_amplitude[1] = 0.0
    if mix is not None:
        a2, kappa_m, kappa_b = mix
        model.shared_amplitude[1] = a2 - 2.0 * a1
        model.pair_mix.copy_(torch.tensor([kappa_m, kappa_m + kappa_b, 1.0, kappa_b]))
    model.pair_fitted.fill_(mix is not None)
    return {"shared": a1, "shared_pair": a2, "self_effect": b, "self_known": known,
            "prior_scale": scale, "pair_measured_singles": mix[1] if mix is not None else 1.0,
            "pair_predicted_singles": mix[2] if mix is not None else 0.0}


def _pair_mix(model: GRAPE, graph: GraphInputs, pb: PseudoBulk, train: list[str],
              node_index: dict[str, int]) -> tuple[float, float, float] | None:
    """Least squares over the training pairs whose singles were both measured in training:
    ``shift_ab = a_2 r + kappa_m (s_a + s_b) + kappa_b (d_a + d_b)``, with ``s_x`` single x's
    own part (its measured shift less the shared response it holds) and ``d_x`` the warm
    started model's prediction of it (which carries none of the measurement's noise). A
    single the model must predict gets ``kappa_m + kappa_b``, what both together give. ``None``
    without two such pairs: the data cannot say how a pair combines."""
    if model.known_shift.size(0) == 0:
        return None
    rows = model.known_row
    pairs = [c for c in train if len(genes_of(c)) == 2
             and all(int(rows[node_index[g]]) >= 0 for g in genes_of(c))]
    if len(pairs) < 2:
        return None
    genes = sorted({g for c in pairs for g in genes_of(c)})
    model.eval()
    z, edges = model.graph(graph)
    outputs = torch.arange(graph.measured.numel())
    _, delta = model.parts(perturbation_tensor([format_condition((g,)) for g in genes], node_index),
                           z, edges, graph, outputs)
    model._cache = None
    predicted = dict(zip(genes, delta.double().numpy()))
    r = model.mean_shift.double().numpy()
    own = (model.known_shift - model.known_dose.unsqueeze(1) * model.mean_shift).double().numpy()
    measured = np.stack([own[int(rows[node_index[a]])] + own[int(rows[node_index[b]])]
                         for a, b in (genes_of(c) for c in pairs)])
    modelled = np.stack([predicted[a] + predicted[b] for a, b in (genes_of(c) for c in pairs)])
    y = pb.shifts_of(pairs).astype(np.float64)
    x = np.stack([np.broadcast_to(r, y.shape), measured, modelled], -1).reshape(-1, 3)
    a2, kappa_m, kappa_b = np.linalg.lstsq(x.T @ x, x.T @ y.reshape(-1), rcond=None)[0].tolist()
    return a2, float(np.clip(kappa_m, 0.0, 2.0)), float(np.clip(kappa_b, -1.0, 2.0))


def new_member(pb: PseudoBulk, graph: GraphInputs, node_index: dict[str, int], train: list[str],
               *, model_config: ModelConfig, encoder_args: dict | None,
               encoder_state: dict[str, torch.Tensor] | None, seed: int) -> GRAPE:
    """An untrained member that knows its training data (shared response, singles)."""
    seed_everything(seed)
    encoder_args = encoder_args or {"text_dim": graph.text.size(1), "dna_dim": graph.dna.size(1)}
    model = GRAPE(model_config, model_sizes(graph, pb, train, model_config),
                  encoder_args=encoder_args)
    if encoder_state:
        model.encoder.load_state_dict(encoder_state)
    _training_data(model, pb, graph, train, node_index)
    warm_start(model, graph, pb, train, node_index)
    return model


class MemberTraining:
    """One ensemble member's training, advanced a step at a time (:meth:`advance`) until
    :attr:`done`, so that members can train one after the other or side by side
    (:func:`train_members`).

    At most ``steps`` (default ``max_steps``) optimisation steps of ``batch_size``
    conditions, with a check of the validation MSE every ``eval_every`` steps that keeps the
    best checkpoint (none when ``val`` is empty: the last one). The warm start itself is
    the first candidate: training must beat it.

    ``on_step(member, step, max_steps)`` is called at every check (progress for the app), and
    with ``step == max_steps`` when early stopping ends training sooner: ``step ==
    max_steps`` means the member is done. An exception it raises (e.g.
    :class:`~grape_core.errors.Cancelled`) stops training.

    ``stream``: a CUDA stream that all of this member's work is queued on (side by side).
    ``keep_history``: record the training loss at each check (off for a refit, whose history
    is not kept: a check without validation then never waits on the device).
    """

    def __init__(
        self, pb: PseudoBulk, graph: GraphInputs, node_index: dict[str, int], train: list[str],
        val: list[str], *, model_config: ModelConfig, train_config: TrainConfig, seed: int,
        encoder_state: dict[str, torch.Tensor] | None, encoder_args: dict | None,
        progress: bool = True, member: int = 0, steps: int | None = None,
        on_step: Callable[[int, int, int], None] | None = None, stream=None,
        keep_history: bool = True,
    ):
        from tqdm.auto import tqdm

        tc = self.train_config = train_config
        self.member, self.on_step, self.stream = member, on_step, stream
        self.keep_history = keep_history
        self.val = val
        self.total = tc.max_steps if steps is None else steps
        device = resolve_device(tc.device)
        with self._queued():
            model = new_member(pb, graph, node_index, train, model_config=model_config,
                               encoder_args=encoder_args, encoder_state=encoder_state,
                               seed=seed).to(device)
            self.model, self.graph = model, graph.to(device)
            structure = [model.structure.theta, model.structure.scale, model.structure.beta]
            # the few scalars that combine the model's parts: no pull towards 0 (a pair's
            # predicted singles would fade away where no training pair holds one)
            mixing = [model.shared_amplitude]
            if model.config.pair_mixing:
                mixing.append(model.pair_mix)
            else:
                model.pair_mix.requires_grad_(False)
            ids = {id(p) for p in structure + mixing}
            graphed = graphs_available(device, tc)
            opt = torch.optim.Adam([
                {"params": structure, "lr": tc.structure_lr},
                {"params": mixing, "lr": tc.lr},
                {"params": [p for p in model.parameters()
                            if id(p) not in ids and p.requires_grad], "lr": tc.lr,
                 "weight_decay": tc.weight_decay},
            ], capturable=graphed)
            self.x_val = perturbation_tensor(val, node_index).to(device)
            self.y_val = pb.shifts_of(val) if val else None
            self.optimise = TrainingStep(
                model, self.graph, opt, perturbation_tensor(train, node_index).to(device),
                torch.as_tensor(pb.shifts_of(train), dtype=torch.float32, device=device),
                train_config=tc, reg_weight=structure_l1_weight(tc, len(train),
                                                                self.graph.measured.numel()),
                graphed=graphed)
            # every step's batch drawn at once (the same draws as one batch at a time) and
            # sent to the device once: a step then never waits on a copy from the host
            generator = torch.Generator().manual_seed(seed)
            self.batches = torch.randint(
                0, len(train), (self.total, min(tc.batch_size, len(train))),
                generator=generator).to(device)
            # which measured singles of a batch's pairs are composed as if unmeasured: the
            # pairs held out have one or two such singles, and training must show them
            self.hides = (torch.rand((self.total, self.batches.size(1), 2), generator=generator)
                          < tc.hide_singles).to(device)
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score, self.best_step, self.stale = float("inf"), self.total, 0
        self.losses: list[torch.Tensor] = []
        self.step = 0
        self.done = self.total == 0
        self.bar = tqdm(total=self.total, desc=f"member {member + 1}", leave=False,
                        disable=not progress, file=sys.stderr, mininterval=0.5,
                        position=member if stream is not None else None)
        if val:
            with self._queued():
                model.eval()
                if model.structure.learn:
                    model.refresh_structure(self.graph)
                self._validate()

    def _queued(self):
        """Queue work on this member's stream (side by side), else where it is."""
        return torch.cuda.stream(self.stream) if self.stream is not None else nullcontext()

    def advance(self) -> None:
        """One optimisation step, and the validation check when one is due."""
        model, tc = self.model, self.train_config
        with self._queued():
            self.step += 1
            model.train()
            if model.structure.learn and (self.step - 1) % model.config.gsl_refresh == 0:
                model.refresh_structure(self.graph)
            loss = self.optimise(self.batches[self.step - 1], self.hides[self.step - 1])
            if self.keep_history:
                self.losses.append(loss)
            self.bar.update()
            checked = self.step % tc.eval_every == 0 or self.step == self.total
            if checked:
                self._validate()
                self.done = (self.step == self.total
                             or bool(self.val and self.stale >= tc.patience))
        if checked and self.on_step is not None:
            self.on_step(self.member, self.step, self.total)
            if self.done and self.step < self.total:  # stopped early: say it is done
                self.on_step(self.member, self.total, self.total)

    def _validate(self) -> None:
        """Record a validation check; keep the checkpoint when it is the best so far."""
        if not (self.val or self.keep_history):
            return
        row = {"member": self.member, "step": self.step,  # losses stay on the device until now
               "train_loss": float(np.mean(torch.stack(self.losses).cpu().tolist()))
               if self.losses else float("nan")}
        self.losses = []
        if self.val:
            pred = predict_shifts(self.model, self.graph, self.x_val).numpy()
            row["val_mse"] = float(np.mean((pred - self.y_val) ** 2))
            row["val_pearson_delta"] = float(np.mean([pearson(p, t)
                                                      for p, t in zip(pred, self.y_val)]))
            self.bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_mse=f"{row['val_mse']:.5f}")
            if row["val_mse"] < self.best_score - 1e-9:
                self.best_state = copy.deepcopy(self.model.state_dict())
                self.best_score, self.best_step, self.stale = row["val_mse"], self.step, 0
            else:
                self.stale += 1
        self.history.append(row)

    def finish(self) -> FittedMember:
        """The member with its best checkpoint."""
        self.bar.close()
        with self._queued():
            if self.best_state is not None:
                self.model.load_state_dict(self.best_state)
            else:
                self.best_step = self.step
            self.model.eval()
            model = self.model.cpu()
        return FittedMember(model, self.history, int(self.best_step), int(self.step))

    def run(self) -> FittedMember:
        """Every step, then :meth:`finish`."""
        while not self.done:
            self.advance()
        return self.finish()


def train_member(pb: PseudoBulk, graph: GraphInputs, node_index: dict[str, int], train: list[str],
                 val: list[str], **kwargs) -> FittedMember:
    """Train one ensemble member (arguments: :class:`MemberTraining`)."""
    return MemberTraining(pb, graph, node_index, train, val, **kwargs).run()


def train_members(start: Callable[[int, Any], MemberTraining], n: int, *,
                  side_by_side: bool = False, device: torch.device | None = None,
                  ) -> list[FittedMember]:
    """``n`` members, ``start(m, stream)`` beginning member ``m``
    (:class:`MemberTraining`), each finished (:meth:`MemberTraining.finish`).

    One after the other, or ``side_by_side``: a step of each member in turn, each on its
    own CUDA stream when ``device`` is a GPU, so that the GPU runs their steps at the same
    time. A member's work stays in order on its own stream and each member draws its
    batches from its own generator, so side by side trains the same members.
    """
    if not side_by_side:  # started one at a time: one member's state in memory
        return [start(m, None).run() for m in range(n)]
    runs = []
    for m in range(n):
        stream = None
        if device is not None and device.type == "cuda":
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))  # what the caller queued
        runs.append(start(m, stream))
    active = [run for run in runs if not run.done]
    while active:
        for run in active:
            run.advance()
        active = [run for run in active if not run.done]
    return [run.finish() for run in runs]


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
        Gene graph (:func:`~grape_core.model.inputs.graph_inputs`) and symbol -> node index.
    on_step
        Called at every validation check of every member (see :class:`MemberTraining`).
    """
    model_config = model_config or ModelConfig()
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
    if carved and train_config.refit:
        fitted = train_members(
            lambda m, stream: MemberTraining(pb, graph, node_index, train, [], seed=seeds[m],
                                             member=m, stream=stream,
                                             steps=records[m].best_step,
                                             keep_history=False, **common),
            train_config.ensemble, side_by_side=side_by_side, device=device)
        records = [dataclasses.replace(record, refit_steps=refit.steps)
                   for record, refit in zip(records, fitted)]
    members = [fit.model for fit in fitted]
    final_train = train if (carved and train_config.refit) else fit_on
    steps = int(np.median([r.best_step for r in records]))
    calibration = calibration_set(
        pb, cpu_graph, node_index, final_train, fitted,
        val if not (carved and train_config.refit) else [], val_shifts if not (
            carved and train_config.refit) else None, folds=train_config.calibration_folds,
        steps=steps, seed=train_config.seed + 1000, common={**common, "on_step": None})
    return TrainResult(members=members, history=history, train_conditions=final_train,
                       val_conditions=val, member_records=records,
                       seconds=time.perf_counter() - start, val_carved=carved,
                       val_shifts=val_shifts, calibration=calibration)


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
    """Every finished member's predicted shifts of ``conditions`` ``(members, n, n_genes)``."""
    perts = perturbation_tensor(conditions, node_index)
    with torch.inference_mode():
        return torch.stack([predict_shifts(fit.model, graph, perts) for fit in fitted]).numpy()


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
    priors: Sequence[Any] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
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
    pb = pb if pb is not None else pseudobulk(adata)
    if knowledge is None:
        from .knowledge.build import knowledge_for_adata

        knowledge = knowledge_for_adata(adata, feature_config=feature_config,
                                        graph_config=graph_config, paths=paths, progress=progress)
    prior_edges, prior_sources = resolve_priors(
        list(priors) if priors is not None else list(model_config.prior), knowledge.priors,
        knowledge.genes)
    model_config = model_config.replace(prior=tuple(str(p["name"]) for p in prior_sources))
    graph, node_index, prior = graph_inputs(knowledge, pb.genes, prior_edges,
                                            max_in_degree=model_config.prior_max_in_degree)
    result: TrainResult = train_grape(
        pb, split, graph, node_index, model_config=model_config, train_config=train_config,
        encoder_state=knowledge.encoder_state, encoder_args=knowledge.encoder_args,
        progress=progress, on_step=on_step,
    )
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
    bundle = Bundle(
        manifest=manifest, members=result.members, graph=graph, genes=tuple(genes),
        table=knowledge.table.copy(), pseudobulk=pb, split=split, prior_edges=prior_named,
        learned_edges=learned, history=pd.DataFrame(result.history), metrics=pd.DataFrame(),
        fused=fused_embeddings(result.members[0], graph), singles=None,
    )
    calibration = None
    found = result.calibration
    if found is not None:
        calibration = fit_calibration(
            found.shift, found.std, pb.shifts_of(found.conditions),
            gene_scale(pb, result.train_conditions, result.val_conditions), pb.control_mean,
            method=found.method)
    bundle = bundle.replace(manifest=bundle.manifest.replace(calibration=calibration))
    model = Model(bundle, device=train_config.device)  # predicts where it was trained
    started = time.perf_counter()
    bundle = bundle.replace(singles=stored_singles(model))
    seconds = {"singles_seconds": round(time.perf_counter() - started, 2)}
    held_out = [c for c in split.test if c in pb and c != keys.CTRL]
    if held_out:
        started = time.perf_counter()
        mean, std = predict_conditions(model, held_out)  # once, for metrics and uncertainty
        # with the cells: cell-eval's DE metrics and the replicate row, stored in metrics.csv
        report = evaluate(model, predicted=mean, cells=adata)
        uncertainty = uncertainty_check(mean, std, pb.means[pb.rows(held_out)], pb.control_mean)
        if calibration is not None:
            control = pb.control_mean.astype(np.float64)
            uncertainty |= interval_check(
                calibration, mean - control, std, pb.shifts_of(held_out), model.gene_scale(),
                control, pb.de_idx[pb.rows(held_out)])
        found = report.to_dict()  # GEARS' names in test; cell-eval's, under theirs, beside
        extra = {"cell_eval": found["cell_eval"]["models"]}
        if report.replicate:
            extra["replicate"] = report.replicate
        manifest = bundle.manifest.replace(
            metrics=MetricsInfo(test=found["models"], subgroups=found["subgroups"],
                                verdict=report.verdict("grape"), extra=extra),
            uncertainty=uncertainty)
        bundle = bundle.replace(manifest=manifest, metrics=report.long_frame(split))
        seconds["evaluation_seconds"] = round(time.perf_counter() - started, 2)
    if ablations and held_out:
        bundle = bundle.replace(ablations=run_ablations(bundle, adata, knowledge=knowledge,
                                                        progress=progress, pb=pb, priors=priors))
    training = bundle.manifest.training
    return bundle.replace(manifest=bundle.manifest.replace(training=dataclasses.replace(
        training, total_seconds=round(time.perf_counter() - start, 2), **seconds)))


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
    "paper_flags": {k: v for k, v in ModelConfig.paper().to_dict().items()
                    if v != getattr(ModelConfig(), k)},
}
"""Variant name -> changes to the model's config. ``no_graph``: only the perturbed gene
itself changes (no propagation). ``paper_flags`` restores the published code's choices
(:meth:`ModelConfig.paper`)."""


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
