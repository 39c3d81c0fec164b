"""Perturbations, steady states and planted genetic interactions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dataclasses import dataclass

from ..data.conditions import format_condition
from ..errors import GrapeError
from .config import ADDITIVE, SimulationConfig

_SOLVE_BLOCK = 256  # conditions per steady-state block
_MAX_ITERATIONS = 20_000


def _draw_pairs(n_pairs: int, singles: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``n_pairs`` distinct unordered pairs of the singles' genes, sorted (gene index a < b)."""
    m = len(singles)
    possible = m * (m - 1) // 2
    if n_pairs == 0:
        return []
    if n_pairs * 4 > possible:  # dense request: enumerate every pair
        ii, jj = np.triu_indices(m, k=1)
        pick = rng.choice(possible, n_pairs, replace=False)
        chosen = set(zip(ii[pick].tolist(), jj[pick].tolist()))
    else:
        chosen = set()
        while len(chosen) < n_pairs:
            a, b = rng.choice(m, 2, replace=False)
            chosen.add((int(min(a, b)), int(max(a, b))))
    return sorted((int(singles[a]), int(singles[b])) for a, b in chosen)


@dataclass(frozen=True)
class Guides:
    """Every guide combination of every condition (a *unit*: the cells that carry it).

    With one guide per gene a condition is one unit; with ``G`` guides a single has ``G``
    units and a pair ``G^2``.
    """

    condition: np.ndarray
    """``(n_units,)`` the condition of each unit (row of the truth)."""
    label: np.ndarray
    """``(n_units,)`` the unit's guides, e.g. ``A_g1+B_g2``."""
    unit: np.ndarray
    gene: np.ndarray
    efficiency: np.ndarray
    """``(n_entries,)`` the non-zeros of the units' inputs: unit, perturbed gene, and that
    guide's efficiency."""
    gene_efficiency: np.ndarray
    """``(n_genes,)`` mean efficiency of each gene's guides (NaN when not perturbed)."""


def _guides(config: SimulationConfig, members: list[tuple[int, ...]], efficiency: np.ndarray,
            rng: np.random.Generator) -> Guides:
    """The units of every condition. One guide per gene keeps each gene's drawn
    ``efficiency``; more draw one efficiency per guide, U(config.efficiency)."""
    n_guides = config.guides_per_gene
    perturbed = np.flatnonzero(~np.isnan(efficiency))
    per_guide = np.full((len(efficiency), n_guides), np.nan)
    if n_guides == 1:
        per_guide[:, 0] = efficiency
    else:
        per_guide[perturbed] = rng.uniform(*config.efficiency, size=(len(perturbed), n_guides))
    condition, label, unit, gene, eff = [], [], [], [], []
    for c, genes in enumerate(members):
        for combo in np.ndindex(*(n_guides,) * len(genes)):
            u = len(condition)
            condition.append(c)
            label.append("+".join(f"g{k + 1}" for k in combo))
            for g, k in zip(genes, combo):
                unit.append(u)
                gene.append(g)
                eff.append(per_guide[g, k])
    gene_eff = np.full(len(efficiency), np.nan)
    gene_eff[perturbed] = per_guide[perturbed].mean(axis=1)
    return Guides(np.asarray(condition), np.asarray(label, dtype=object), np.asarray(unit),
                  np.asarray(gene), np.asarray(eff, dtype=np.float64), gene_eff)


def _mean_by_condition(values: np.ndarray, condition: np.ndarray, n_cond: int) -> np.ndarray:
    """``(n_cond, n)``: the mean of ``values``' rows per condition (their units)."""
    if len(condition) == n_cond:  # one unit per condition, in order
        return values.copy()
    out = np.zeros((n_cond, values.shape[1]), dtype=np.float64)
    np.add.at(out, condition, values)
    return (out / np.bincount(condition, minlength=n_cond)[:, None]).astype(values.dtype)


class _Propagator:
    """Steady states of one network, for blocks of perturbation columns ``u``.

    ``W[target, source]``; ``s`` is every gene's change (log scale) at the steady state:

    - ``linear``      ``s = W s + u``, i.e. ``(I - W)^-1 u``;
    - ``saturating``  ``s = W phi(s) + u``, ``phi(x) = c tanh(x / c)``: what a regulator
      passes on saturates;
    - ``bounded``     ``s = c tanh((W s + u) / c)``: every gene's own change saturates, the
      perturbed gene's included;
    - ``hill``        ``s = W g(s) + u``: regulator j acts through a Hill function of its
      *level*, ``H_j(s) = y_j e^{n s} / (1 + y_j e^{n s})`` with ``y_j = h_j / (1 - h_j)``
      (``h_j``: how saturated j's Hill function is in control cells), and
      ``g_j(s) = (H_j(s) - h_j) / (n h_j (1 - h_j))``, so that a small change passes on as
      it does in ``linear`` but a large one does not: a regulator near saturation barely
      passes on an activation, one far from it barely passes on a knock-down.

    Only regulators have out-edges, so the system is solved on the regulators R alone (for
    ``linear``: ``s_R = W_RR s_R + u_R``) by fixed-point iteration with the sparse W (no
    dense inverse and no LU fill-in, which on a 20,000-gene network is slower than
    iterating), then every gene's change from the regulators'. ``linear``, ``saturating``
    and ``bounded`` contract because the spectral radius is below 1 and ``tanh`` is
    1-Lipschitz; ``hill`` (whose ``g`` can be steeper than 1) is damped by half a step.
    Iteration stops when no value changes by more than 1e-12 (times the largest |s|) in
    one step.
    """

    def __init__(self, W: sp.csr_matrix, *, kind: str = "linear", saturation: float = 1.0,
                 hill_level: np.ndarray | None = None, hill_coefficient: float = 2.0):
        self.regulators = np.flatnonzero(np.diff(W.tocsc().indptr) > 0)
        self.W_rr = W[self.regulators][:, self.regulators].tocsr()  # (n_reg, n_reg)
        self.W_r = W[:, self.regulators].tocsr()  # (n_genes, n_reg)
        self.kind, self.saturation = kind, float(saturation)
        if kind == "hill":
            if hill_level is None:
                raise ValueError("hill dynamics need every gene's hill_level")
            h = np.asarray(hill_level, dtype=np.float64)[self.regulators][:, None]
            self._hill = (h, h / (1.0 - h), float(hill_coefficient))
        self.iterations = 0
        """The most iterations one block needed so far."""

    def phi(self, x: np.ndarray) -> np.ndarray:
        """What a regulator passes on, for its change ``x`` (rows: regulators)."""
        if self.kind == "saturating":
            return self.saturation * np.tanh(x / self.saturation)
        if self.kind == "hill":
            h, y, n = self._hill
            ey = y * np.exp(np.clip(n * x, -50.0, 50.0))
            return (ey / (1.0 + ey) - h) / (n * h * (1.0 - h))
        return x

    def outer(self, x: np.ndarray) -> np.ndarray:
        """A gene's change from its input ``W phi(s) + u``."""
        if self.kind == "bounded":
            return self.saturation * np.tanh(x / self.saturation)
        return x

    def solve(self, u: np.ndarray) -> np.ndarray:
        """``(n_genes, n_cols)`` float64 -> steady states of the same shape."""
        u_r = u[self.regulators]
        s_r = self.outer(u_r)
        damping = 0.5 if self.kind == "hill" else 1.0
        for it in range(1, _MAX_ITERATIONS + 1):
            new = self.W_rr @ self.phi(s_r)
            new += u_r
            new = self.outer(new)
            if damping != 1.0:
                new = s_r + damping * (new - s_r)
            # the change is checked every 8th step only: it costs as much as a step
            if it % 8 == 0 or it == _MAX_ITERATIONS:
                np.subtract(new, s_r, out=s_r)
                delta = float(np.abs(s_r).max()) if new.size else 0.0
                s_r = new
                if delta <= 1e-12 * max(1.0, float(np.abs(new).max()) if new.size else 0.0):
                    break
            s_r = new
        else:
            raise GrapeError(f"the steady state did not converge in {_MAX_ITERATIONS:,} "
                             "iterations; lower --spectral-radius")
        if not np.isfinite(s_r).all():
            raise GrapeError("the steady state is not finite; lower --spectral-radius")
        self.iterations = max(self.iterations, it)
        return self.outer(u + self.W_r @ self.phi(s_r))


def _steady_state(W: sp.csr_matrix, U: sp.csc_matrix, config: SimulationConfig, *,
                  hill_level: np.ndarray | None = None,
                  progress: bool = False) -> tuple[np.ndarray, int]:
    """Steady state of every condition (a column of U, ``(n_genes, n_conditions)``) under
    ``config.propagation`` (:class:`_Propagator`).

    Returns
    -------
    ``(n_conditions, n_genes)`` float32, and the most fixed-point iterations a block needed.
    """
    from tqdm.auto import tqdm

    n, n_cond = U.shape
    solver = _Propagator(W, kind=config.propagation, saturation=config.saturation,
                         hill_level=hill_level, hill_coefficient=config.hill_coefficient)
    out = np.empty((n_cond, n), dtype=np.float32)
    for start in tqdm(range(0, n_cond, _SOLVE_BLOCK), desc=f"steady state ({config.propagation})",
                      unit="block", disable=not progress, leave=False):
        out[start:start + _SOLVE_BLOCK] = solver.solve(U[:, start:start + _SOLVE_BLOCK].toarray()).T
    return out, solver.iterations


def _add_columns(values: np.ndarray, U: sp.spmatrix, sign: float) -> None:
    """``values[p, g] += sign * U[g, p]`` for the non-zeros of U, in place."""
    coo = U.tocoo()
    np.add.at(values, (coo.col, coo.row), (sign * coo.data).astype(values.dtype))


def _plant_interactions(config: SimulationConfig, singles: np.ndarray,
                        pairs: list[tuple[int, int]], propagated: np.ndarray, names: np.ndarray,
                        rng: np.random.Generator) -> pd.DataFrame:
    """Choose the interacting pairs and apply their rule to ``propagated`` (rows after the
    singles are the pairs) in place. Returns the interactions table, one row per pair."""
    n_single, n_pair = len(singles), len(pairs)
    k = int(round(config.interaction_fraction * n_pair))
    kinds = [config.interaction_types[i % len(config.interaction_types)] for i in range(k)]
    kinds = list(rng.permutation(np.asarray(kinds, dtype=object))) if k else []
    planted = dict(zip(sorted(rng.choice(n_pair, k, replace=False).tolist()), kinds))
    row_of = {int(g): r for r, g in enumerate(singles)}
    n = propagated.shape[1]
    records = []
    for p, (a, b) in enumerate(pairs):
        kind = planted.get(p, ADDITIVE)
        row = n_single + p
        strength, dominant, genes, signs = float("nan"), "", "", ""
        if kind == "synergy":
            strength = float(rng.uniform(*config.synergy_scale))
            propagated[row] *= strength
        elif kind == "suppression":
            strength = float(rng.uniform(*config.suppression_scale))
            propagated[row] *= strength
        elif kind == "epistasis":
            strength = float(rng.uniform(*config.epistasis_strength))
            x = (a, b)[int(rng.integers(2))]
            dominant = str(names[x])
            single = propagated[row_of[x]]
            propagated[row] = single + (1.0 - strength) * (propagated[row] - single)
        elif kind == "neomorphic":
            strength = float(rng.uniform(*config.neomorphic_effect))
            others = np.setdiff1d(np.arange(n), [a, b])
            idx = np.sort(rng.choice(others, config.neomorphic_genes, replace=False))
            z = rng.choice([-1.0, 1.0], size=len(idx))
            propagated[row, idx] += (strength * z).astype(propagated.dtype)
            genes = ";".join(str(names[i]) for i in idx)
            signs = ";".join("+" if v > 0 else "-" for v in z)
        records.append({"pair": format_condition([names[a], names[b]]), "type": kind,
                        "strength": strength, "dominant": dominant, "genes": genes,
                        "signs": signs})
    return pd.DataFrame(records, columns=["pair", "type", "strength", "dominant", "genes", "signs"])
