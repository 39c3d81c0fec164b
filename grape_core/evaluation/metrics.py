"""GEARS-named metrics as pure functions of arrays.

For one held-out condition with predicted and measured mean expression ``pred``, ``truth``
``(n_genes,)``, control mean ``ctrl`` and DE gene indices ``de`` (top 20):

- ``mse``, ``rmse``, ``pearson``: over all genes, on expression;
- ``mse_de``, ``pearson_de``: over the DE genes, on expression;
- ``pearson_delta``, ``pearson_delta_de``: on shifts ``pred - ctrl`` vs ``truth - ctrl``;
- ``frac_correct_direction_all`` / ``_20``: share of genes whose shift has the right sign.

As in GEARS, a Pearson correlation of a constant vector (undefined) counts as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import keys


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either vector is constant (GEARS convention)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    if denom == 0 or not np.isfinite(denom):
        return 0.0
    return float(np.clip((xc * yc).sum() / denom, -1.0, 1.0))


def mse(x: np.ndarray, y: np.ndarray) -> float:
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return float(np.mean(d * d))


def frac_correct_direction(pred_shift: np.ndarray, true_shift: np.ndarray) -> float:
    """Share of genes with ``sign(pred_shift) == sign(true_shift)`` (0 counts as a sign)."""
    return float(np.mean(np.sign(pred_shift) == np.sign(true_shift)))


def condition_metrics(
    pred: np.ndarray, truth: np.ndarray, ctrl: np.ndarray, de: np.ndarray
) -> dict[str, float]:
    """All metrics for one condition (GEARS' names).

    Parameters
    ----------
    pred, truth, ctrl
        Predicted, measured and control mean expression, ``(n_genes,)``.
    de
        Positions of the condition's differentially expressed genes.

    Returns
    -------
    dict
        Metric name -> value (``mse``, ``pearson``, ``pearson_delta``, their ``_de`` forms,
        ``frac_correct_direction_*``...).
    """
    de = np.asarray(de, dtype=int)
    dp, dt = pred - ctrl, truth - ctrl
    m = mse(pred, truth)
    return {
        "mse": m,
        "rmse": float(np.sqrt(m)),
        "pearson": pearson(pred, truth),
        "mse_de": mse(pred[de], truth[de]),
        "pearson_de": pearson(pred[de], truth[de]),
        "pearson_delta": pearson(dp, dt),
        "pearson_delta_de": pearson(dp[de], dt[de]),
        "frac_correct_direction_all": frac_correct_direction(dp, dt),
        "frac_correct_direction_20": frac_correct_direction(dp[de], dt[de]),
    }


def metrics_table(
    pred: np.ndarray,
    truth: np.ndarray,
    ctrl: np.ndarray,
    de_idx: np.ndarray,
    conditions: Sequence[str],
) -> pd.DataFrame:
    """Per-condition metrics.

    Parameters
    ----------
    pred, truth
        ``(n_conds, n_genes)`` mean expression. Rows of ``pred`` that are all NaN mean the
        model makes no prediction for that condition; they are left out.
    ctrl
        ``(n_genes,)`` control mean.
    de_idx
        ``(n_conds, n_de)`` DE gene indices.

    Returns
    -------
    DataFrame indexed by condition, one column per metric of :data:`keys.METRICS`.
    """
    rows = {}
    for i, cond in enumerate(conditions):
        if np.all(np.isnan(pred[i])):
            continue
        rows[cond] = condition_metrics(pred[i], truth[i], ctrl, de_idx[i])
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(keys.METRICS))


def summarize(table: pd.DataFrame) -> dict[str, float]:
    """Mean of each metric over conditions, plus ``n_conditions``.

    Every numeric column is averaged over the conditions that have a value (cell-eval's
    ``cell_eval.*`` columns have none where cell-eval has none: a perturbation without a
    real DE gene has no ``de_direction_match``); GEARS' metrics are defined everywhere."""
    columns = list(dict.fromkeys([*keys.METRICS, *table.columns]))
    out = {m: float(table[m].mean()) if m in table and table[m].notna().any() else float("nan")
           for m in columns}
    out["n_conditions"] = int(len(table))
    return out
