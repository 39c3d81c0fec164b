"""Baselines that every model is compared with, on the same split and in the same call.

All share one interface: ``fit(pseudobulk, train_conditions)`` then
``predict(conditions) -> (n_conds, n_genes)`` mean expression; a row of NaN means the
baseline does not apply to that condition (``additive`` on a single, or on a pair whose
singles were not measured in training).

- ``control``: no change (the control mean).
- ``train_mean``: control + the mean shift of all training perturbations.
- ``linear``: Ahlmann-Eltze et al., Nat. Methods 2025. Gene embedding ``G`` = top-K principal
  components of the centred training response matrix (genes x conditions), perturbation
  embedding = rows of ``G`` of the perturbed genes (summed for a pair), ridge-regularised
  bilinear fit ``Y - b ≈ G W Pᵀ``. A perturbed gene that is not measured has no row in
  ``G``: its embedding is zero and the prediction falls back to ``b`` (the train mean).
- ``additive``: control + measured shift of A + measured shift of B (training singles).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import keys
from ..data.conditions import genes_of
from ..data.pseudobulk import PseudoBulk


class Baseline:
    name = "baseline"

    def fit(self, pb: PseudoBulk, train: Sequence[str]) -> "Baseline":
        self.pb = pb
        self.train = [c for c in train if c != keys.CTRL and c in pb]
        if not self.train:
            raise ValueError("a baseline needs at least one measured training condition")
        return self

    def predict(self, conditions: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class ControlBaseline(Baseline):
    name = "control"

    def predict(self, conditions: Sequence[str]) -> np.ndarray:
        return np.tile(self.pb.control_mean, (len(conditions), 1)).astype(np.float64)


class TrainMeanBaseline(Baseline):
    name = "train_mean"

    def fit(self, pb: PseudoBulk, train: Sequence[str]) -> "TrainMeanBaseline":
        super().fit(pb, train)
        self.mean_shift = pb.shifts[pb.rows(self.train)].astype(np.float64).mean(axis=0)
        return self

    def predict(self, conditions: Sequence[str]) -> np.ndarray:
        row = self.pb.control_mean + self.mean_shift
        return np.tile(row, (len(conditions), 1))


class LinearBaseline(Baseline):
    name = "linear"

    def __init__(self, n_components: int = 10, ridge: float = 0.1):
        self.n_components = n_components
        self.ridge = ridge

    def _pert_embedding(self, condition: str) -> np.ndarray:
        emb = np.zeros(self.G.shape[1])
        for g in genes_of(condition):
            j = self.gene_index.get(g)
            if j is not None:
                emb += self.G[j]
        return emb

    def fit(self, pb: PseudoBulk, train: Sequence[str]) -> "LinearBaseline":
        super().fit(pb, train)
        Y = pb.means[pb.rows(self.train)].astype(np.float64).T  # (n_genes, n_train)
        self.b = Y.mean(axis=1)
        centred = Y - self.b[:, None]
        U, S, _ = np.linalg.svd(centred, full_matrices=False)
        k = min(self.n_components, len(S))
        self.G = U[:, :k] * S[:k]  # (n_genes, K) gene scores
        self.gene_index = {g: i for i, g in enumerate(pb.genes)}
        P = np.stack([self._pert_embedding(c) for c in self.train])  # (n_train, K)
        lam = self.ridge * np.eye(k)
        left = np.linalg.solve(self.G.T @ self.G + lam, self.G.T)  # (K, n_genes)
        right = P @ np.linalg.inv(P.T @ P + lam)  # (n_train, K)
        self.W = left @ centred @ right  # (K, K)
        return self

    def predict(self, conditions: Sequence[str]) -> np.ndarray:
        P = np.stack([self._pert_embedding(c) for c in conditions])
        return (self.G @ self.W @ P.T).T + self.b[None, :]


class AdditiveBaseline(Baseline):
    name = "additive"

    def fit(self, pb: PseudoBulk, train: Sequence[str]) -> "AdditiveBaseline":
        super().fit(pb, train)
        shifts = pb.shifts
        self.single_shift = {
            genes_of(c)[0]: shifts[pb.index(c)].astype(np.float64)
            for c in self.train if len(genes_of(c)) == 1
        }
        return self

    def predict(self, conditions: Sequence[str]) -> np.ndarray:
        out = np.full((len(conditions), len(self.pb.genes)), np.nan)
        for i, cond in enumerate(conditions):
            genes = genes_of(cond)
            if len(genes) == 2 and all(g in self.single_shift for g in genes):
                out[i] = self.pb.control_mean + sum(self.single_shift[g] for g in genes)
        return out


BASELINES: dict[str, type[Baseline]] = {
    "control": ControlBaseline,
    "train_mean": TrainMeanBaseline,
    "linear": LinearBaseline,
    "additive": AdditiveBaseline,
}


def fit_baselines(pb: PseudoBulk, train: Sequence[str], *, pairs: bool | None = None) -> dict[str, Baseline]:
    """Every baseline fitted on ``train``; ``additive`` only when the screen has pairs."""
    if pairs is None:
        pairs = any(len(genes_of(c)) == 2 for c in pb.conditions)
    names = [n for n in BASELINES if pairs or n != "additive"]
    return {n: BASELINES[n]().fit(pb, train) for n in names}
