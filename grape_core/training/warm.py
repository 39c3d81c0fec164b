"""A new ensemble member, started from the least-squares fit of its linear part
(:func:`warm_start`): training then moves away from it only where validation agrees.

Shapes: training shifts ``(n_train, n_measured)``; the prior's adjacency ``(n_nodes, n_nodes)``
sparse; the warm start's design ``(n_train * n_measured, k)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..config import ArchitectureConfig
from ..data.conditions import format_condition, genes_of
from ..data.pseudobulk import PseudoBulk
from ..nn.grape import GRAPE, GraphInputs, ModelSizes
from ..nn.inputs import perturbation_tensor


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_sizes(graph: GraphInputs, pb: PseudoBulk, train: Sequence[str],
                config: ArchitectureConfig) -> ModelSizes:
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

    ``a r + b e_P + b pi sum_{1 <= l <= L} (s A)^l e_P``

    (``L`` propagation steps), which gives the dose of the shared response ``a`` (one per
    perturbation, single or pair: on the Norman slice the training singles hold almost none
    of the response that the held-out ones share with the training pairs, and in every
    simulated screen a pair holds about one dose, not two), the self-effect ``b`` (every
    gene alike), the outflow ``pi`` (what the perturbed gene's targets feel of its own
    change; 1 with ``free_outflow`` off, the series then ``b sum_{l <= L} (s A)^l e_P``) and
    the prior's scale ``s``: for each ``s`` of :data:`SCALES` the rest by least squares, and
    the ``s`` that fits best. This is the ``propagation`` baseline's idea in the model's own
    form, so that the series the model runs is the one fitted (a one-step fit, scaled up to
    ``L`` steps, blows up where the data want a strong scale). Training then moves away from
    it only where validation agrees.

    ``b`` can be estimated only from training perturbations of measured genes. Without
    one, neither the sign nor the size of a perturbed gene's own change is known: the
    self-effect is then a unit (``b = 1``, whose propagation to other genes ``s`` and the
    series size; ``pi`` 1, since there is no own change to size it apart from) and the model
    predicts no own change for a perturbed gene (:attr:`GRAPE.self_known`). A pair's own
    dose comes from the training pairs whose singles were measured too (:func:`_pair_mix`:
    whether a pair's large shift is shared response or its own effect can only be told
    against its singles).
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
    free = model.config.free_outflow

    def fit(scale: float, known: bool) -> tuple[float, list[float]]:
        series = [scale ** l * h for l, h in enumerate(hops)]
        target = y
        if free and known:  # b the own change, b pi what the targets feel
            x = np.stack([*shared, series[0], sum(series[1:], np.zeros_like(y))], -1)
        elif known:  # b sizes the whole series
            x = np.stack([*shared, sum(series)], -1)
        else:  # b is the unit; the own term is not measured anyway
            x, target = np.stack(shared, -1), y - sum(series)
        # the normal equations in numpy: torch.linalg.lstsq on the CPU is not reproducible
        # (its last bits depend on where the arrays lie in memory), and a last bit here can
        # change which learned edges win the top-k, and so the trained model
        coef = np.linalg.lstsq(x.T @ x, x.T @ target, rcond=None)[0]
        return float(np.sum((target - x @ coef) ** 2)), coef.tolist()

    def best_scale(known: bool) -> tuple[float, list[float]]:
        scales = SCALES if model.config.propagation_steps else np.zeros(1)
        residuals = [fit(float(s), known)[0] for s in scales]
        i = int(np.argmin(residuals))
        scale = float(scales[i])
        if 0 < i < len(scales) - 1:  # refine between the grid's neighbours (golden section)
            low, high = float(scales[i - 1]), float(scales[i + 1])
            ratio = (np.sqrt(5.0) - 1.0) / 2.0
            for _ in range(40):
                left, right = high - ratio * (high - low), low + ratio * (high - low)
                if fit(left, known)[0] <= fit(right, known)[0]:
                    high = right
                else:
                    low = left
            middle = (low + high) / 2.0
            if fit(middle, known)[0] < residuals[i]:
                scale = middle
        return scale, fit(scale, known)[1]

    scale, coef = best_scale(known)
    b = coef[1] if known else 1.0
    if abs(b) < 1e-3:  # the data say the perturbed genes barely move: keep a usable unit
        known, b = False, 1.0
        scale, coef = best_scale(known)
    a1 = a2 = coef[0]
    # without a measured own change there is nothing to size apart: pi stays 1
    outflow = coef[-1] / b if free and known else 1.0
    signed = model.config.signed_self_effect and model.config.perturbation_encoding != "paper"
    model.shared_amplitude.copy_(torch.tensor(
        [a1, a2 - 2.0 * a1] if model.config.shared_shift else [1.0, 0.0]))
    model.self_head[-1].weight.zero_()
    model.self_head[-1].bias.fill_(0.0 if signed else b)
    model.self_scale.fill_(b)
    model.self_known.fill_(known)
    model.outflow.fill_(outflow)
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
            "outflow": outflow,
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
               *, model_config: ArchitectureConfig, encoder_args: dict | None,
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
