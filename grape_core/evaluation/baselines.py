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
- ``additive_mean``: the model-free rule a careful analyst would use: a pair whose singles
  were both measured in training is their sum (``additive``), a condition measured in
  training is itself, anything else the training mean. It is what composing measured
  singles alone is worth.
- ``embedding_ridge``: ridge regression from the perturbed genes' own features (the fused
  gene embeddings GRAPE reads; summed for a pair) to the shift, the ridge chosen by
  leave-one-out over the training conditions. It is what GRAPE's gene features are worth
  without its graph.
- ``propagation``: a graph baseline with four fitted numbers. The perturbation
  ``e_P`` (1 at the perturbed genes) diffuses over the prior ``A`` (weights
  normalised per target, as the model's prior):
  ``shift(P) = a * mean_shift + b * e_P + c1 * A e_P + c2 * A^2 e_P``, least squares over
  the training conditions. A graph model that cannot beat it is not using its graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

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
        self.mean_shift = pb.shifts_of(self.train).astype(np.float64).mean(axis=0)
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


class AdditiveMeanBaseline(Baseline):
    """``additive`` where it applies, the measured training shift of a condition seen in
    training, else ``train_mean``."""

    name = "additive_mean"

    def fit(self, pb: PseudoBulk, train: Sequence[str]) -> "AdditiveMeanBaseline":
        super().fit(pb, train)
        self.additive = AdditiveBaseline().fit(pb, self.train)
        self.mean = TrainMeanBaseline().fit(pb, self.train)
        self.seen = set(self.train)
        return self

    def predict(self, conditions: Sequence[str]) -> np.ndarray:
        out = self.additive.predict(conditions)
        missing = np.isnan(out).any(axis=1)
        if missing.any():
            out[missing] = self.mean.predict([c for c, m in zip(conditions, missing) if m])
        for i, cond in enumerate(conditions):
            if cond in self.seen:
                out[i] = self.pb.means[self.pb.index(cond)].astype(np.float64)
        return out


class EmbeddingRidgeBaseline(Baseline):
    """Ridge regression from the perturbed genes' features to the shift.

    ``x_P`` = the sum of the perturbed genes' feature vectors (zero for a gene without
    one); ``shift_P = mean_shift + (x_P - x_mean) B``, with ``B`` the ridge solution over
    the training conditions. The ridge strength is chosen among ``alphas`` (times the
    features' mean squared norm) by five folds over the training singles' genes (a fold
    drops every training condition that holds one of its genes and scores its singles), as
    the held-out perturbations are of genes training never saw; the largest is, in effect,
    the training mean.

    Parameters
    ----------
    features
        ``(n_nodes, d)`` one row per gene of ``genes``.
    genes
        The symbols of the rows of ``features``.
    """

    name = "embedding_ridge"

    def __init__(self, features: np.ndarray, genes: Sequence[str], *,
                 alphas: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)):
        self.features = np.asarray(features, dtype=np.float64)
        self.gene_index = {g: i for i, g in enumerate(genes)}
        self.alphas = tuple(alphas)

    def _x(self, conditions: Sequence[str]) -> np.ndarray:
        x = np.zeros((len(conditions), self.features.shape[1]))
        for i, cond in enumerate(conditions):
            for g in genes_of(cond):
                j = self.gene_index.get(g)
                if j is not None:
                    x[i] += self.features[j]
        return x

    def fit(self, pb: PseudoBulk, train: Sequence[str]) -> "EmbeddingRidgeBaseline":
        super().fit(pb, train)
        x = self._x(self.train)
        y = pb.shifts_of(self.train).astype(np.float64)
        self.x_mean, self.y_mean = x.mean(axis=0), y.mean(axis=0)
        xc, yc = x - self.x_mean, y - self.y_mean
        # in the dual (conditions x conditions): the training conditions are few
        gram = xc @ xc.T
        scale = max(float(np.trace(gram)) / max(len(gram), 1), 1e-12)
        # hold out genes, not conditions: a held-out perturbation is of genes training never
        # saw. Five folds of the training singles' genes (seeded); a fold drops every
        # condition that holds one of its genes and scores the fold's singles (one gene at a
        # time leaks: the fit nearly interpolates, and the folds reward it)
        single_of = {genes_of(c)[0]: i for i, c in enumerate(self.train) if len(genes_of(c)) == 1}
        order = np.random.default_rng(0).permutation(sorted(single_of))
        folds = []
        for part in np.array_split(order, min(5, len(order))):
            out = set(part.tolist())
            keep = np.array([not (set(genes_of(c)) & out) for c in self.train])
            if keep.any() and len(part):
                folds.append((np.array([single_of[g] for g in part]), keep))
        errors = []
        for alpha in self.alphas:
            error = 0.0
            for rows, keep in folds:
                coef = np.linalg.solve(gram[np.ix_(keep, keep)] + alpha * scale * np.eye(keep.sum()),
                                       yc[keep])
                error += float(np.sum((gram[np.ix_(rows, keep)] @ coef - yc[rows]) ** 2))
            errors.append(error)
        self.alpha = self.alphas[int(np.argmin(errors))]
        coef = np.linalg.solve(gram + self.alpha * scale * np.eye(len(gram)), yc)
        self.weights = xc.T @ coef  # (d, n_genes)
        return self

    def predict(self, conditions: Sequence[str]) -> np.ndarray:
        x = self._x(conditions) - self.x_mean
        return self.pb.control_mean[None, :] + self.y_mean[None, :] + x @ self.weights


class PropagationBaseline(Baseline):
    """Shared shift + self-effect + k-step diffusion over a prior graph (see the module
    docstring).

    Parameters
    ----------
    prior
        Edges with gene symbols: columns ``source``, ``target`` (``source`` regulates
        ``target``) and optionally ``weight`` (negative: a repression).
    genes
        Every gene the prior may name (the graph's nodes: measured genes and perturbed genes
        that are not measured). Default: the measured genes and the screen's perturbed genes.
    steps
        Diffusion steps :math:`k` (one coefficient each).
    """

    name = "propagation"

    def __init__(self, prior: pd.DataFrame, *, genes: Sequence[str] | None = None, steps: int = 2):
        self.prior, self.genes, self.steps = prior, genes, steps

    def fit(self, pb: PseudoBulk, train: Sequence[str]) -> "PropagationBaseline":
        super().fit(pb, train)
        nodes = list(self.genes) if self.genes is not None else list(pb.genes) + sorted(
            set(pb.perturbed_genes) - set(pb.genes))
        self.node_index = {g: i for i, g in enumerate(nodes)}
        src = self.prior["source"].map(self.node_index)
        dst = self.prior["target"].map(self.node_index)
        keep = src.notna() & dst.notna() & (src != dst)
        weight = (self.prior["weight"].to_numpy(dtype=np.float64)[keep.to_numpy()]
                  if "weight" in self.prior else np.ones(int(keep.sum())))
        n = len(nodes)
        adj = sp.csr_matrix((weight, (dst[keep].to_numpy(int), src[keep].to_numpy(int))), shape=(n, n))
        totals = np.asarray(abs(adj).sum(axis=1)).ravel()  # sizes: a signed prior's too
        self.adj = sp.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ adj  # row = target
        self.measured = np.array([self.node_index[g] for g in pb.genes])
        self.mean_shift = pb.shifts_of(self.train).astype(np.float64).mean(axis=0)
        # least squares through the normal equations, a chunk of conditions at a time: the
        # design matrix of a genome-scale screen would not fit in memory
        k = 2 + self.steps
        xtx, xty = np.zeros((k, k)), np.zeros(k)
        for start in range(0, len(self.train), 64):
            part = self.train[start:start + 64]
            x = self._features(part).reshape(-1, k)  # (n_part * n_genes, n_features)
            y = pb.shifts_of(part).astype(np.float64).reshape(-1)
            xtx += x.T @ x
            xty += x.T @ y
        self.coef = np.linalg.lstsq(xtx, xty, rcond=None)[0]
        return self

    def _features(self, conditions: Sequence[str]) -> np.ndarray:
        e = np.zeros((len(self.node_index), len(conditions)))
        for j, cond in enumerate(conditions):
            for g in genes_of(cond):
                if g in self.node_index:
                    e[self.node_index[g], j] = 1.0
        feats = [np.broadcast_to(self.mean_shift[:, None], (len(self.measured), len(conditions))),
                 e[self.measured]]
        v = e
        for _ in range(self.steps):
            v = self.adj @ v
            feats.append(v[self.measured])
        return np.stack(feats, axis=-1).transpose(1, 0, 2)

    def predict(self, conditions: Sequence[str]) -> np.ndarray:
        return self.pb.control_mean[None, :] + self._features(conditions) @ self.coef


BASELINES: dict[str, type[Baseline]] = {
    "control": ControlBaseline,
    "train_mean": TrainMeanBaseline,
    "linear": LinearBaseline,
    "additive": AdditiveBaseline,
    "propagation": PropagationBaseline,
    "additive_mean": AdditiveMeanBaseline,
    "embedding_ridge": EmbeddingRidgeBaseline,
}


def fit_baselines(pb: PseudoBulk, train: Sequence[str], *, pairs: bool | None = None,
                  prior: pd.DataFrame | None = None, genes: Sequence[str] | None = None,
                  features: np.ndarray | None = None) -> dict[str, Baseline]:
    """Every baseline fitted on ``train``: ``additive`` and ``additive_mean`` when the screen
    has pairs, ``propagation`` when a ``prior`` (edges with gene symbols) is given, and
    ``embedding_ridge`` when gene ``features`` ``(len(genes), d)`` are; ``genes`` are the
    graph's nodes (see :class:`PropagationBaseline`).

    Parameters
    ----------
    pb
        The screen's pseudo-bulk.
    train
        The conditions the baselines are fitted on.
    pairs
        Fit the pair baselines (default: when the screen has pairs).
    prior, genes
        A prior graph (edges with gene symbols) and its nodes, for ``propagation``.
    features
        Gene embeddings ``(len(genes), d)``, for ``embedding_ridge``.

    Returns
    -------
    dict
        Name -> fitted :class:`Baseline` (its ``predict(conditions)`` gives
        ``(n_conditions, n_measured)`` expression).
    """
    if pairs is None:
        pairs = any(len(genes_of(c)) == 2 for c in pb.conditions)
    out: dict[str, Baseline] = {}
    for name in ("control", "train_mean", "linear", "additive", "additive_mean"):
        if name not in ("additive", "additive_mean") or pairs:
            out[name] = BASELINES[name]().fit(pb, train)
    if prior is not None:
        out["propagation"] = PropagationBaseline(prior, genes=genes).fit(pb, train)
    if features is not None:
        if genes is None or len(genes) != len(features):
            raise ValueError("embedding_ridge needs one feature row per gene of `genes`")
        out["embedding_ridge"] = EmbeddingRidgeBaseline(features, genes).fit(pb, train)
    return out
