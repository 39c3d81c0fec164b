r"""cell-eval's metrics, computed here under cell-eval's names.

cell-eval (Arc Institute; the metric package of the Virtual Cell Challenge) compares a
predicted and a real AnnData. These are its definitions (version :data:`VERSION`:
``metrics/_anndata.py``, ``metrics/_de.py``, ``_types/_de.py``, and the differential
expression of ``pdex`` that it runs), written as array functions: the package itself pulls
scanpy, polars, numba and igraph, far too heavy for the app. ``tests/evaluation/test_celleval.py``
runs the package on the AnnData files we write (:mod:`grape_core.serving.export`) and checks that
every number here equals its own.

How a prediction of mean expression is laid out for cell-eval: each perturbation gets as
many cells as the screen measured, all equal to the predicted mean (clipped at 0:
log-expression cannot be negative, and cell-eval refuses negative values), and the real
control cells. That is how cell-eval's own mean baseline (``build_base_mean_adata``) lays
out a mean. So, for perturbation :math:`p` with predicted and measured means
:math:`\hat x_p`, :math:`x_p` and control mean :math:`\bar x_c` (``(n_genes,)``):

- ``pearson_delta``: Pearson of :math:`\hat x_p - \bar x_c` and :math:`x_p - \bar x_c`
  (undefined, NaN, for a constant shift, where GEARS' ``pearson_delta`` counts 0);
- ``mse``, ``mae``: of :math:`\hat x_p` against :math:`x_p`; ``mse_delta``, ``mae_delta``:
  of the shifts (the same here: both sides share the control cells);
- ``discrimination_score_{l1,l2,cosine}``: rank the distances from :math:`\hat x_p - \bar x_c`
  to every measured shift of the evaluated perturbations; 1 when the closest is
  :math:`p`'s own, :math:`1 - r/n` when :math:`r` others are closer. The perturbed gene is
  left out (cell-eval leaves a column out when its name equals the perturbation's label, so
  a single's gene; a pair's label ``A+B`` names no column and nothing is left out);
- differential expression (DE) of each perturbation against control, in predicted and in
  real cells: Mann-Whitney U (asymptotic, continuity and tie corrections, two-sided),
  Benjamini-Hochberg FDR over the genes, log2 fold change of ``expm1`` of the mean
  log-expression. A gene is significant at FDR < 0.05 (float32, as cell-eval stores it);
- ``overlap_at_N`` / ``_50`` ... ``_500``: of the real significant genes ranked by
  \|log2 FC\| (ties in gene order), the share of the top :math:`k` (N: all of them) that are
  also among the predicted top :math:`k`; ``precision_at_*``: the same with :math:`k` taken
  from the predicted significant genes;
- ``de_direction_match``: share of the real significant genes whose predicted log2 FC has
  the same sign; ``de_spearman_lfc_sig``: Spearman of real and predicted log2 FC over them;
  ``de_sig_genes_recall``: share of them also significant in the prediction;
  ``de_nsig_counts_real`` / ``_pred``: how many; ``de_spearman_sig``: Spearman of those two
  counts across perturbations (one value, given to each); ``pr_auc``, ``roc_auc``: how well
  the predicted FDR (as -log10) ranks the real significant genes.

Not computed: ``clustering_agreement`` (Leiden clustering of centroids) and
``pearson_edistance`` (cell-to-cell distances: a mean prediction has no spread of cells).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import keys

VERSION = "0.8.2"
"""The cell-eval release whose definitions these are (pinned in requirements.txt for the
test that compares them)."""
FDR = 0.05
"""Significance threshold of every DE metric (cell-eval's default)."""
PERT_COL = keys.PERTURBATION
"""obs column of the perturbation in the AnnData cell-eval and pertpy read."""
CONTROL = keys.PERTURBATION_CONTROL
"""Label of the control cells there (pertpy's convention; ``--control-pert control``)."""
PREFIX = "cell_eval."
"""Prefix of cell-eval's metrics in flat tables (a model's ``metrics.csv``), where two of
their names (``pearson_delta``, ``mse``) would clash with GEARS' of slightly different
definition."""

ANNDATA_METRICS = ("pearson_delta", "mse", "mae", "mse_delta", "mae_delta",
                   "discrimination_score_l1", "discrimination_score_l2",
                   "discrimination_score_cosine")
"""Metrics of the pseudo-bulk means: need no cells."""
OVERLAP_KS = (None, 50, 100, 200, 500)
DE_METRICS = (
    *(f"overlap_at_{k or 'N'}" for k in OVERLAP_KS),
    *(f"precision_at_{k or 'N'}" for k in OVERLAP_KS),
    "de_spearman_sig", "de_direction_match", "de_spearman_lfc_sig", "de_sig_genes_recall",
    "de_nsig_counts_real", "de_nsig_counts_pred", "pr_auc", "roc_auc",
)
"""Metrics of differential expression against control: need the cells."""
METRICS = ANNDATA_METRICS + DE_METRICS
HEADLINE = ("pearson_delta", "mse_delta", "discrimination_score_l1", "overlap_at_N",
            "de_direction_match", "de_spearman_lfc_sig")
"""What the command line prints; the JSON report has every metric."""
LOWER_IS_BETTER = frozenset({"mse", "mae", "mse_delta", "mae_delta"})
COUNTS = frozenset({"de_nsig_counts_real", "de_nsig_counts_pred"})
"""Counts, not scores: neither direction is better (cell-eval's ``MetricBestValue.NONE``)."""


def flat(metric: str) -> str:
    """``pearson_delta`` -> ``cell_eval.pearson_delta`` (its column in flat tables)."""
    return PREFIX + metric


def unflat(column: str) -> str | None:
    """``cell_eval.pearson_delta`` -> ``pearson_delta``; ``None`` for any other column."""
    return column[len(PREFIX):] if column.startswith(PREFIX) else None


def as_predicted_cells(means: np.ndarray) -> np.ndarray:
    """Predicted mean log-expression as cell-eval reads it: clipped at 0, float32."""
    return np.clip(np.asarray(means, dtype=np.float64), 0.0, None).astype(np.float32)


# ----------------------------------------------------------------------------- pseudo-bulk
def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """scipy's ``pearsonr``: NaN when either vector is constant."""
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc * xc).sum()) * np.sqrt((yc * yc).sum())
    if denom == 0 or not np.isfinite(denom):
        return float("nan")
    return float(np.clip((xc * yc).sum() / denom, -1.0, 1.0))


def discrimination_scores(pred_effects: np.ndarray, real_effects: np.ndarray,
                          labels: Sequence[str], genes: Sequence[str], *,
                          metric: str = "l1") -> np.ndarray:
    """cell-eval's ``discrimination_score``: per perturbation, 1 minus the share of the
    evaluated perturbations whose measured shift is closer to its predicted shift than its
    own measured shift is (1: its own is the closest).

    Parameters
    ----------
    pred_effects, real_effects
        Predicted and measured shifts ``(n_perts, n_genes)``, rows in ``labels``' order.
    labels
        cell-eval labels of the perturbations (``KLF1``, ``A+B``); a gene whose name equals
        a label is left out of that perturbation's distances.
    genes
        Gene names ``(n_genes,)``.
    metric
        ``l1``, ``l2`` or ``cosine``.

    Returns
    -------
    ``(n_perts,)`` scores in ``labels``' order.
    """
    from sklearn.metrics import pairwise_distances

    names = {"l1": "l1", "l2": "l2", "cosine": "cosine"}
    if metric not in names:
        raise ValueError(f"metric must be l1, l2 or cosine, not {metric!r}")
    labels = [str(label) for label in labels]
    order = np.argsort(np.asarray(labels, dtype=str), kind="stable")  # cell-eval's np.unique order
    real = np.asarray(real_effects, dtype=np.float64)[order]
    pred = np.asarray(pred_effects, dtype=np.float64)[order]
    genes = np.asarray(list(genes), dtype=str)
    n = len(order)
    out = np.empty(n)
    for i, label in enumerate(np.asarray(labels, dtype=str)[order]):
        keep = np.flatnonzero(genes != label)
        distances = pairwise_distances(real[:, keep], pred[i, keep].reshape(1, -1),
                                       metric=names[metric]).ravel()
        rank = int(np.flatnonzero(np.argsort(distances) == i)[0])
        out[i] = 1.0 - rank / n
    scores = np.empty(n)
    scores[order] = out
    return scores


def anndata_metrics(pred: np.ndarray, real: np.ndarray, control: np.ndarray,
                    labels: Sequence[str], genes: Sequence[str], *,
                    pred_control: np.ndarray | None = None) -> pd.DataFrame:
    """cell-eval's metrics of the pseudo-bulk means (:data:`ANNDATA_METRICS`).

    Parameters
    ----------
    pred, real
        Predicted (:func:`as_predicted_cells`) and measured mean log-expression
        ``(n_perts, n_genes)``.
    control
        Mean log-expression of the real control cells ``(n_genes,)``.
    labels
        cell-eval labels of the perturbations, rows of ``pred`` (``KLF1``, ``A+B``).
    pred_control
        The predicted AnnData's control mean when it has its own control cells (the
        replicate's second half); default ``control``.

    Returns
    -------
    DataFrame indexed by ``labels``, one column per metric.
    """
    pred = np.asarray(pred, dtype=np.float64)
    real = np.asarray(real, dtype=np.float64)
    control = np.asarray(control, dtype=np.float64)
    pred_control = control if pred_control is None else np.asarray(pred_control, dtype=np.float64)
    dp, dr = pred - pred_control[None, :], real - control[None, :]
    rows = {}
    for i, label in enumerate(labels):
        e, d = pred[i] - real[i], dp[i] - dr[i]
        rows[str(label)] = {"pearson_delta": _pearson(dp[i], dr[i]), "mse": float(np.mean(e * e)),
                            "mae": float(np.mean(np.abs(e))), "mse_delta": float(np.mean(d * d)),
                            "mae_delta": float(np.mean(np.abs(d)))}
    table = pd.DataFrame.from_dict(rows, orient="index")
    for metric in ("l1", "l2", "cosine"):
        table[f"discrimination_score_{metric}"] = discrimination_scores(dp, dr, labels, genes,
                                                                        metric=metric)
    return table.reindex(columns=list(ANNDATA_METRICS))


# ----------------------------------------------------------------------------- DE
@dataclass(frozen=True)
class DETable:
    """Differential expression of perturbations against control, as cell-eval keeps it
    (pdex's output cast to float32).

    Attributes
    ----------
    lfc
        log2 fold change ``(n_perts, n_genes)``, float32 (±inf where one side is 0).
    fdr
        Benjamini-Hochberg FDR over each perturbation's genes ``(n_perts, n_genes)``, float32.
    """

    lfc: np.ndarray
    fdr: np.ndarray

    @property
    def significant(self) -> np.ndarray:
        """``(n_perts, n_genes)`` bool: FDR < :data:`FDR`, compared in float32."""
        return self.fdr < np.float32(FDR)


GENE_CHUNK = 512
"""Genes tested at once (bounds the memory of the rank test on large screens)."""


@dataclass(frozen=True)
class Constant:
    """``n`` cells that all hold ``values`` ``(n_genes,)``: a predicted mean laid out as
    cells (module docstring), without the ``n x n_genes`` copy."""

    values: np.ndarray
    n: int


def _chunk(group, start: int, stop: int) -> np.ndarray:
    """Columns ``start:stop`` as float32 (-0.0 made 0.0); log-expression is never negative."""
    block = group[:, start:stop]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    block = np.asarray(block, dtype=np.float32) + np.float32(0.0)
    if block.size and block.min() < 0:
        raise ValueError("negative log-expression: cell-eval reads log1p data (>= 0)")
    return block


def _keys(block: np.ndarray) -> np.ndarray:
    """One sortable uint64 per value: its column in the high bits, the float32's bits in
    the low ones. For non-negative float32 the bit pattern orders as the value does, so
    sorting keys sorts every column at once, exactly (equal values give equal keys)."""
    columns = np.arange(block.shape[1], dtype=np.uint64)[None, :] << np.uint64(32)
    return columns | block.view(np.uint32).astype(np.uint64)


def _tie_sum(counts: np.ndarray) -> np.ndarray:
    counts = counts.astype(np.float64)
    return counts ** 3 - counts


def _mwu_pvalues(groups: Sequence, control, n_genes: int) -> np.ndarray:
    r"""Two-sided Mann-Whitney U p-values of every group against the control cells, gene by
    gene: pdex's test (asymptotic normal approximation with continuity correction and the
    tie-corrected variance, as ``scipy.stats.mannwhitneyu(method="asymptotic")``).

    :math:`U_1 = \sum_i \#\{\text{control} < x_i\} + \tfrac12 \#\{\text{control} = x_i\}`
    is read from the sorted control values (:func:`_keys`), so a group costs a search, not a
    sort of its cells with the control's.
    """
    from scipy.special import erfc

    out = np.ones((len(groups), n_genes))
    n2 = int(control.shape[0])
    for start in range(0, n_genes, GENE_CHUNK):
        stop = min(start + GENE_CHUNK, n_genes)
        g = stop - start
        ctrl = np.sort(_keys(_chunk(control, start, stop)).ravel())
        uniq, counts = np.unique(ctrl, return_counts=True)
        ctrl_ties = np.bincount((uniq >> np.uint64(32)).astype(np.int64),
                                weights=_tie_sum(counts), minlength=g)
        offset = np.arange(g, dtype=np.int64) * n2  # each column holds n2 control keys
        for i, group in enumerate(groups):
            if isinstance(group, Constant):
                values = np.asarray(group.values[start:stop], dtype=np.float32)[None, :]
                keys_, n1 = _keys(values + np.float32(0.0)).ravel(), int(group.n)
                weight = np.full(g, float(n1))
            else:
                block = _chunk(group, start, stop)
                keys_, n1 = _keys(block).ravel(), int(block.shape[0])
                weight = None
            left = np.searchsorted(ctrl, keys_, side="left")
            right = np.searchsorted(ctrl, keys_, side="right")
            column = (keys_ >> np.uint64(32)).astype(np.int64)
            below = (left - offset[column]) + 0.5 * (right - left)
            if weight is not None:
                u1 = below * n1
                group_uniq, group_counts, equal = keys_, np.full(g, n1), right - left
                group_column = column
            else:
                u1 = np.bincount(column, weights=below, minlength=g)
                group_uniq, group_counts = np.unique(keys_, return_counts=True)
                equal = (np.searchsorted(ctrl, group_uniq, side="right")
                         - np.searchsorted(ctrl, group_uniq, side="left"))
                group_column = (group_uniq >> np.uint64(32)).astype(np.int64)
            extra = _tie_sum(equal + group_counts) - _tie_sum(equal)
            ties = ctrl_ties + np.bincount(group_column, weights=extra, minlength=g)
            n = n1 + n2
            mu = n1 * n2 / 2.0
            s_sq = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))
            u = np.maximum(u1, n1 * n2 - u1)
            with np.errstate(invalid="ignore", divide="ignore"):
                z = (u - mu - 0.5) / np.sqrt(s_sq)
                p = np.clip(erfc(z / np.sqrt(2.0)), 0.0, 1.0)
            out[i, start:stop] = np.where(s_sq > 0, p, 1.0)  # all values equal: no evidence
    return out


def _geometric_mean(group, *, dense: bool) -> np.ndarray:
    """pdex's pseudo-bulk of log1p data, ``expm1(mean(X))``, with its float32 arithmetic:
    the mean as numpy takes it of a dense float32 matrix, or scipy of a sparse one (the
    layout cell-eval reads the file in), then ``expm1`` in float32. A prediction equal to
    the control mean (the ``control`` baseline) has fold changes of 0 up to the last bit,
    and their signs, which ``de_direction_match`` counts, come from these roundings."""
    if isinstance(group, Constant):
        values = np.asarray(group.values, dtype=np.float32)
        mean = np.broadcast_to(values, (int(group.n), values.size)).mean(axis=0)
    elif dense:
        matrix = group.toarray() if sp.issparse(group) else group
        mean = np.asarray(matrix, dtype=np.float32).mean(axis=0)
    else:
        mean = np.asarray(sp.csr_matrix(group, dtype=np.float32).mean(axis=0)).ravel()
    return np.expm1(np.asarray(mean, dtype=np.float32)).astype(np.float64)


def de_against_control(groups: Sequence, control, *, dense: bool | None = None) -> DETable:
    """pdex's DE (``mode='ref'``, log1p input, geometric mean, no pseudocount) of each group
    of cells against the control cells, as cell-eval runs it.

    Parameters
    ----------
    groups
        Each perturbation's cells ``(n_cells_p, n_genes)`` (arrays or sparse matrices of
        log-expression) or a :class:`Constant` (a predicted mean laid out as cells).
    control
        The control cells ``(n_control, n_genes)``.
    dense
        Whether the AnnData holding them stores X dense (:func:`~grape_core.serving.export.cell_eval_anndata`:
        dense as soon as one input is); sets the float32 path of the means. Default: dense
        unless every input is sparse.

    Returns
    -------
    :class:`DETable` with one row per group.
    """
    from scipy.stats import false_discovery_control

    if dense is None:
        dense = not (sp.issparse(control) and all(sp.issparse(g) for g in groups))
    n_genes = control.shape[1]
    ctrl = _geometric_mean(control, dense=dense)
    pvalues = _mwu_pvalues(groups, control, n_genes)
    lfc = np.zeros((len(groups), n_genes), dtype=np.float32)
    fdr = np.ones((len(groups), n_genes), dtype=np.float32)
    for i, group in enumerate(groups):
        with np.errstate(invalid="ignore", divide="ignore"):
            change = np.log2(_geometric_mean(group, dense=dense) / ctrl)
        lfc[i] = np.where(np.isnan(change), 0.0, change)  # 0/0: no change (pdex)
        fdr[i] = false_discovery_control(pvalues[i]) if n_genes else pvalues[i]
    return DETable(lfc=lfc, fdr=fdr)


def _ranked(sig: np.ndarray, abs_lfc: np.ndarray) -> np.ndarray:
    """Significant genes by |log2 FC|, largest first, ties in gene order (polars' ordinal
    rank)."""
    idx = np.flatnonzero(sig)
    return idx[np.argsort(-abs_lfc[idx], kind="stable")]


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    if len(x) < 2:
        return float("nan")
    return _pearson(rankdata(x), rankdata(y))


def _auc(labels: np.ndarray, scores: np.ndarray, kind: str) -> float:
    from sklearn.metrics import auc, average_precision_score, roc_curve

    positives = labels.sum()
    if not 0 < positives < len(labels):
        return float("nan")
    if kind == "pr":
        return float(average_precision_score(labels, scores))
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(auc(fpr, tpr))


def de_metrics(real: DETable, pred: DETable, labels: Sequence[str]) -> pd.DataFrame:
    """cell-eval's DE metrics (:data:`DE_METRICS`) of predicted against real DE.

    Parameters
    ----------
    real, pred
        :func:`de_against_control` of the real and the predicted cells, rows in ``labels``'
        order, the same genes.
    labels
        cell-eval labels of the perturbations.

    Returns
    -------
    DataFrame indexed by ``labels``; NaN where cell-eval has no value (a perturbation with
    no real significant gene has no ``de_direction_match``, for one).
    """
    real_sig, pred_sig = real.significant, pred.significant
    real_abs, pred_abs = np.abs(real.lfc), np.abs(pred.lfc)
    none_anywhere = not real_sig.any() or not pred_sig.any()  # cell-eval: every overlap 0
    rows: dict[str, dict[str, float]] = {}
    n_real = real_sig.sum(axis=1)
    n_pred = pred_sig.sum(axis=1)
    for i, label in enumerate(labels):
        row: dict[str, float] = {}
        r_genes = _ranked(real_sig[i], real_abs[i])
        p_genes = _ranked(pred_sig[i], pred_abs[i])
        for k in OVERLAP_KS:
            for kind, pool in (("overlap", r_genes), ("precision", p_genes)):
                k_eff = min(len(pool) if not k else k, len(pool))
                value = 0.0
                if not none_anywhere and k_eff:
                    value = len(np.intersect1d(r_genes[:k_eff], p_genes[:k_eff])) / k_eff
                row[f"{kind}_at_{k or 'N'}"] = value
        sig = np.flatnonzero(real_sig[i])
        if len(sig):
            r, p = real.lfc[i, sig], pred.lfc[i, sig]
            row["de_direction_match"] = float(np.mean(np.sign(r) == np.sign(p)))
            row["de_spearman_lfc_sig"] = _spearman(r.astype(np.float64), p.astype(np.float64))
            row["de_sig_genes_recall"] = float(np.mean(pred_sig[i, sig]))
        else:
            row.update(de_direction_match=np.nan, de_spearman_lfc_sig=np.nan,
                       de_sig_genes_recall=np.nan)
        row["de_nsig_counts_real"] = float(n_real[i])
        row["de_nsig_counts_pred"] = float(n_pred[i])
        scores = -np.log10(np.clip(pred.fdr[i], np.float32(1e-10), np.float32(1.0)))
        row["pr_auc"] = _auc(real_sig[i].astype(float), scores, "pr")
        row["roc_auc"] = _auc(real_sig[i].astype(float), scores, "roc")
        rows[str(label)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    with_sig = n_real > 0
    if not with_sig.any():
        table["de_spearman_sig"] = 1.0  # cell-eval: no significant gene anywhere agrees
    else:
        table["de_spearman_sig"] = _spearman(n_real[with_sig].astype(float),
                                             n_pred[with_sig].astype(float))
    return table.reindex(columns=list(DE_METRICS))


# ----------------------------------------------------------------------------- together
def compute(pred: np.ndarray, real: np.ndarray, control: np.ndarray, labels: Sequence[str],
            genes: Sequence[str], *, de_real: DETable | None = None,
            de_pred: DETable | None = None,
            pred_control: np.ndarray | None = None) -> pd.DataFrame:
    """Every cell-eval metric that the inputs allow: those of the means always, the DE ones
    when both DE tables are given.

    Returns
    -------
    DataFrame indexed by ``labels``, columns :data:`ANNDATA_METRICS` then, with DE tables,
    :data:`DE_METRICS`.
    """
    table = anndata_metrics(pred, real, control, labels, genes, pred_control=pred_control)
    if de_real is not None and de_pred is not None:
        table = table.join(de_metrics(de_real, de_pred, labels))
    return table


SB_METRICS = frozenset({
    "pearson_delta", "discrimination_score_l1", "discrimination_score_l2",
    "discrimination_score_cosine", *(f"{kind}_at_{k or 'N'}" for kind in ("overlap", "precision")
                                     for k in OVERLAP_KS),
    "de_spearman_sig", "de_spearman_lfc_sig", "de_direction_match", "de_sig_genes_recall",
    "pr_auc", "roc_auc"})
"""The metrics cell-eval's data ceiling maps to full depth (``SB_METRICS`` of its
``_evaluator.py``)."""


def full_depth_ceiling(replicate: Mapping[str, float]) -> dict[str, float]:
    """cell-eval's data ceiling (``compute_ceiling``'s aggregate) from the replicate's mean
    metrics: the Spearman-Brown prophecy :math:`2r/(1+r)` for :data:`SB_METRICS` where
    :math:`r > 0`, NaN elsewhere (no defensible ceiling)."""
    out = {}
    for metric, r in replicate.items():
        if metric not in SB_METRICS:
            continue
        out[metric] = float(2 * r / (1 + r)) if np.isfinite(r) and r > 0 else float("nan")
    return out


def labels_for(conditions: Sequence[str]) -> list[str]:
    """cell-eval and pertpy labels of canonical conditions: ``KLF1+ctrl`` -> ``KLF1``,
    ``A+B`` -> ``A+B``, ``ctrl`` -> ``control``."""
    from ..data.conditions import perturbation_label

    return [perturbation_label(c) for c in conditions]


def describe() -> Mapping[str, str]:
    """What the report's ``cell_eval`` section is, in one place (JSON)."""
    return {
        "version": VERSION,
        "pert_col": PERT_COL,
        "control_pert": CONTROL,
        "prediction_layout": "each perturbation: as many cells as measured, all equal to the "
                             "predicted mean log-expression clipped at 0; the real control "
                             "cells (cell-eval's own layout of a mean baseline)",
        "target_gene": "left out of discrimination_score_* for a single (a pair's label names "
                       "no gene), as cell-eval 0.8.2 does; every other metric keeps it",
        "fdr": FDR,
        "not_computed": "clustering_agreement, pearson_edistance",
    }
