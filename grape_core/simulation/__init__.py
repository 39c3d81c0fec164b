"""Planted-truth Perturb-seq screens: a known gene network over real symbols, and the
screen it produces.

A screen made from a known directed network lets one check what a model learned against
the truth (which edges, which effects), something no real screen allows. Every random
choice is seeded; the same :class:`SimulationConfig` gives the same screen.

Model (all vectors over the screen's genes, ``W[target, source]``)::

    linear        s_P = (I - W)^-1 u_P
    saturating    s_P = W phi(s_P) + u_P,   phi(x) = c tanh(x / c)
    u_P           -eff_k e_k for each perturbed gene k (knock-down; + for activation)
    shift_P       u_P + G_P(D_P) + a_P r,   D_P = s_P - u_P (the propagated part)
    cell          max(0, mu + shift_P + eps),   eps ~ N(0, sigma^2) [+ (I - W)^-1 eta]

``G_P`` is the identity except on pairs with a planted genetic interaction (see
:func:`simulate`). ``r`` is a fixed screen-wide response, ``a_P ~ N(1, 0.2)``.

Shapes: ``W`` ``(n_genes, n_genes)`` sparse; truth ``shifts`` ``(n_conditions, n_genes)``;
``adata`` ``(n_cells, n_genes)``. Gene order is alphabetical, the same in every file.
"""


from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..config import Paths
from ..data.conditions import format_condition
from ..errors import GrapeError
from .config import ADDITIVE, INTERACTION_TYPES, RELATIONS, SimulationConfig, check_memory
from .dynamics import (_add_columns, _draw_pairs, _guides, _mean_by_condition,
                       _plant_interactions, _steady_state)
from .folder import (FILES, FORMAT, FORMAT_VERSION, SCREEN_FOLDER, PlantedScreen, format_summary,
                     read_truth)
from .cells import _cells
from .generated import GeneratedKnowledge, GeneratedScreen, generated_screen
from .genes import _draw_genes
from .network import _draw_network
from .priors import _priors

__all__ = ["ADDITIVE", "FILES", "FORMAT", "FORMAT_VERSION", "INTERACTION_TYPES", "RELATIONS",
           "SCREEN_FOLDER", "check_memory",
           "GeneratedKnowledge", "GeneratedScreen", "PlantedScreen", "SimulationConfig",
           "format_summary", "generated_screen", "read_truth", "simulate"]


def simulate(config: SimulationConfig | None = None, *, paths: Paths | None = None,
             progress: bool = False) -> PlantedScreen:
    """Simulate a planted-truth screen.

    Steps, each with its own random stream spawned from ``config.seed`` (so changing, say,
    the number of cells leaves the network unchanged):

    1. **Genes**: real symbols from the shipped annotation, resolved by
       :func:`grape_core.knowledge.genes.gene_table` as protein-coding or lncRNA (GENCODE biotype when
       ``paths.gene_sources`` holds it, else NCBI), GO-annotated genes first
       (``prefer_go``); sorted alphabetically.
    2. **Network**: ``round(regulator_fraction * n)`` random regulators, each with
       ``U{targets}`` targets drawn without replacement with odds
       ``propensity[rel] * (1 + go_bias * shares_go)``; weight ``sign * U(weight_range) *
       strength[rel]`` with sign + at probability ``activating[rel]``; W scaled to
       ``spectral_radius`` (a network without cycles keeps its weights).
    3. **Perturbations**: ``n_singles`` genes (``perturbed_regulator_fraction`` of them
       regulators), efficiency ``U(efficiency)``; ``n_pairs`` random pairs of them.
    4. **Steady state** per condition (see the module docstring); ``D = s - u`` is the part
       that went through the network.
    5. **Interactions** on ``round(interaction_fraction * n_pairs)`` pairs, types in equal
       numbers, strength ``g`` drawn from the type's range; ``D_AB`` is the pair's
       propagated part, ``D_X`` that of gene X alone:

       - synergy:     ``D' = g D_AB``, g in ``synergy_scale`` (> 1)
       - suppression: ``D' = g D_AB``, g in ``suppression_scale`` (< 1)
       - epistasis:   ``D' = D_X + (1 - g)(D_AB - D_X)``, X one gene of the pair (recorded
         as ``dominant``), g in ``epistasis_strength``
       - neomorphic:  ``D' = D_AB + g z``, z = +-1 on ``neomorphic_genes`` random genes
         outside the pair (recorded), g in ``neomorphic_effect``

       The direct change of the perturbed genes (u) is never altered.
    6. **Shared response**: ``shift_P = u_P + D'_P + a_P r``.
    7. **Cells**: control means ``mu ~ U(control_mean_range)``; each cell
       ``max(0, mu + shift_P + eps)``, eps ~ N(0, cell_noise^2), plus
       ``(I - W)^-1 eta``, eta ~ N(0, network_noise^2) when ``network_noise > 0``.
    8. **Priors**: ``prior_true_fraction`` of the true edges plus ``prior_false_edges``
       (default: as many) uniform random non-edges, shuffled; the random prior has as many
       edges, all false. Weight 1, or with ``prior_signed`` each edge's sign: a true edge's
       own (``prior_wrong_signs`` of them flipped), a false edge's at random.

    Parameters
    ----------
    config
        Settings (default: :class:`SimulationConfig` ()).
    paths
        :class:`grape_core.config.Paths` for the GENCODE biotype table (default: from the
        environment).
    progress
        tqdm bars on stderr.

    Returns
    -------
    :class:`PlantedScreen`.

    Raises
    ------
    GrapeError
        The annotation holds too few suitable genes for the request, or the screen needs
        more memory than ``GRAPE_SIMULATE_MEMORY_GB`` allows (:func:`check_memory`).

    Examples
    --------
    >>> screen = simulate(SimulationConfig(n_genes=60, n_singles=10, n_pairs=3, seed=1))
    >>> screen.adata.shape[1], len(screen.conditions)
    (60, 13)
    """
    config = config or SimulationConfig()
    check_memory(config)  # before any allocation
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(8)]
    rng_genes, rng_net, rng_pert, rng_inter, rng_shared, rng_cells, rng_prior, rng_guides = streams

    genes, go_sets, biotype_sources = _draw_genes(config, rng_genes, paths)
    n = len(genes)
    is_coding = genes["is_coding"].to_numpy(bool)
    W, edges, net_summary = _draw_network(config, is_coding, go_sets, rng_net)
    edges.insert(0, "target", genes["gene"].to_numpy(object)[edges.pop("target_idx")])
    edges.insert(0, "source", genes["gene"].to_numpy(object)[edges.pop("source_idx")])
    edges = edges.sort_values(["source", "target"], kind="stable").reset_index(drop=True)

    # perturbations
    regulator = np.zeros(n, bool)
    regulator[np.unique(np.asarray(W.tocoo().col))] = True
    n_reg_pert = int(round(config.perturbed_regulator_fraction * config.n_singles))
    if n_reg_pert > regulator.sum():  # possible only when some propensities are 0
        raise GrapeError(f"the network has {int(regulator.sum())} regulators with targets, "
                         f"fewer than the {n_reg_pert} perturbed regulators asked; raise "
                         "--regulators or the relation propensities")
    chosen = np.concatenate([
        rng_pert.choice(np.flatnonzero(regulator), n_reg_pert, replace=False),
        rng_pert.choice(np.flatnonzero(~regulator), config.n_singles - n_reg_pert, replace=False),
    ])
    singles = np.sort(chosen)
    efficiency = np.full(n, np.nan)
    efficiency[singles] = rng_pert.uniform(*config.efficiency, size=len(singles))
    pair_idx = _draw_pairs(config.n_pairs, singles, rng_pert)
    names = genes["gene"].to_numpy(object)
    conditions = tuple([format_condition([names[k]]) for k in singles]
                       + [format_condition([names[a], names[b]]) for a, b in pair_idx])
    members = [(int(k),) for k in singles] + [(int(a), int(b)) for a, b in pair_idx]
    # what the new settings draw comes from a stream of its own, after everything else: the
    # default screen is the one it always was
    hill_level = rng_guides.uniform(*config.hill_level_range, size=n)
    guides = _guides(config, members, efficiency, rng_guides)

    if config.simulator == "harissa":
        return _harissa(config, genes, edges, W, net_summary, regulator, singles, pair_idx,
                        efficiency, conditions, members, names, biotype_sources,
                        rng_cells, rng_prior, progress=progress)

    # steady state of every guide combination; D = s - u is the part that went through the
    # network. A condition's network change is the mean over its guide combinations.
    sign = -1.0 if config.mode == "knockdown" else 1.0
    n_cond = len(members)
    n_units = len(guides.condition)
    U = sp.csc_matrix((sign * guides.efficiency, (guides.gene, guides.unit)), shape=(n, n_units))
    unit_network, iterations = _steady_state(W, U, config, hill_level=hill_level,
                                             progress=progress)  # (n_units, n)
    _add_columns(unit_network, U, -1.0)  # now D
    # planted interactions act on a condition's D; with one guide per gene (the only case
    # they are allowed) a condition is its one unit
    network = unit_network if n_units == n_cond else _mean_by_condition(
        unit_network, guides.condition, n_cond)
    interactions = _plant_interactions(config, singles, pair_idx, network, names, rng_inter)
    _add_columns(unit_network, U, 1.0)  # s' = u + D'
    network_shifts = (_mean_by_condition(unit_network, guides.condition, n_cond)
                      * (1.0 - config.escape_fraction)).astype(np.float32)

    r = rng_shared.normal(0.0, config.shared_std, size=n)
    a = rng_shared.normal(1.0, config.shared_scale_sd, size=n_cond)
    shared = a[:, None] * r[None, :]
    shifts = (network_shifts + shared).astype(np.float32)
    unit_shifts = (unit_network + shared[guides.condition]).astype(np.float32)
    escaped_shifts = shared.astype(np.float32)
    mu = rng_shared.uniform(*config.control_mean_range, size=n)

    genes = genes.assign(
        regulator=regulator,
        perturbed=~np.isnan(efficiency),
        efficiency=guides.gene_efficiency if config.guides_per_gene > 1 else efficiency,
        control_mean=mu,
        shared_response=r,
    )[["gene", "biotype", "is_coding", "has_go", "regulator", "perturbed", "efficiency",
       "control_mean", "shared_response"]]
    if config.propagation == "hill":
        genes["hill_level"] = np.where(regulator, hill_level, np.nan)
    genes = genes.reset_index(drop=True)

    adata, sparse_x = _cells(config, W, mu, unit_shifts, escaped_shifts, guides, conditions,
                             names, rng_cells, progress=progress)
    priors, prior_summary = _priors(config, W, names, rng_prior)

    summary = {
        "genes": {
            "total": n,
            "coding": int(is_coding.sum()),
            "noncoding": int((~is_coding).sum()),
            "with_go": int(genes["has_go"].sum()),
            "regulators": int(regulator.sum()),
            "perturbed": int(len(singles)),
            "perturbed_regulators": int(regulator[singles].sum()),
            "perturbed_noncoding": int((~is_coding[singles]).sum()),
            "biotype_source": biotype_sources,
        },
        "network": net_summary,
        "conditions": {
            "singles": int(len(singles)),
            "pairs": int(len(pair_idx)),
            "interactions": {t: int((interactions["type"] == t).sum())
                             for t in (ADDITIVE, *INTERACTION_TYPES)},
            "steady_state_iterations": iterations,
        },
        "cells": {
            "control": config.n_control_cells,
            "per_condition": config.cells_per_condition,
            "model": config.cell_model,
            "guides_per_gene": config.guides_per_gene,
            "escape_fraction": config.escape_fraction,
            "total": int(adata.n_obs),
            "x_format": "csr" if sparse_x else "dense",
        },
        "priors": prior_summary,
    }
    return PlantedScreen(config=config, adata=adata, genes=genes, edges=edges, W=W,
                         priors=priors, interactions=interactions, conditions=conditions,
                         shifts=shifts, network_shifts=network_shifts,
                         shared_scale=a, summary=summary)


def _harissa(config, genes, edges, W, net_summary, regulator, singles, pair_idx, efficiency,
             conditions, members, names, biotype_sources, rng_cells, rng_prior, *,
             progress: bool) -> PlantedScreen:
    """The screen of :func:`simulate` with cells from harissa's model
    (:func:`~grape_core.simulation.harissa.harissa_screen`)."""
    from .harissa import harissa_screen

    adata, sparse_x, shifts, control = harissa_screen(config, W, members, efficiency, conditions,
                                                      names, rng_cells, progress=progress)
    n = len(names)
    genes = genes.assign(regulator=regulator, perturbed=~np.isnan(efficiency),
                         efficiency=efficiency, control_mean=control.astype(np.float64),
                         shared_response=np.zeros(n))[
        ["gene", "biotype", "is_coding", "has_go", "regulator", "perturbed", "efficiency",
         "control_mean", "shared_response"]].reset_index(drop=True)
    interactions = pd.DataFrame({"pair": [conditions[len(singles) + i] for i in range(len(pair_idx))],
                                 "type": ADDITIVE, "strength": np.nan, "dominant": "",
                                 "genes": "", "signs": ""})
    priors, prior_summary = _priors(config, W, names, rng_prior)
    is_coding = genes["is_coding"].to_numpy(bool)
    summary = {
        "simulator": "harissa",
        "genes": {"total": n, "coding": int(is_coding.sum()), "noncoding": int((~is_coding).sum()),
                  "with_go": int(genes["has_go"].sum()), "regulators": int(regulator.sum()),
                  "perturbed": int(len(singles)),
                  "perturbed_regulators": int(regulator[singles].sum()),
                  "perturbed_noncoding": int((~is_coding[singles]).sum()),
                  "biotype_source": biotype_sources},
        "network": net_summary,
        "conditions": {"singles": int(len(singles)), "pairs": int(len(pair_idx)),
                       "interactions": {t: int((interactions["type"] == t).sum())
                                        for t in (ADDITIVE, *INTERACTION_TYPES)},
                       "steady_state_iterations": 0},
        "cells": {"control": config.n_control_cells, "per_condition": config.cells_per_condition,
                  "total": int(adata.n_obs), "x_format": "csr" if sparse_x else "dense",
                  "model": "harissa", "guides_per_gene": 1, "escape_fraction": 0.0},
        "priors": prior_summary,
    }
    return PlantedScreen(config=config, adata=adata, genes=genes, edges=edges, W=W,
                         priors=priors, interactions=interactions, conditions=conditions,
                         shifts=shifts, network_shifts=shifts,
                         shared_scale=np.zeros(len(conditions)), summary=summary)
