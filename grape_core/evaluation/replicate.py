r"""The data's own ceiling: half of each held-out perturbation's cells scored against the
other half, and every model placed between the mean response (0) and that replicate (1).

**The replicate.** As cell-eval's data ceiling (``MetricsEvaluator.compute_ceiling``): the
cells of each evaluated perturbation, and the control cells, are shuffled by one seeded
generator (``numpy.random.default_rng(seed)``, one group after the other in the sorted order
of their labels, ``control`` among them) and cut into two disjoint halves of
:math:`\lfloor n/2 \rfloor` cells (an odd cell is left out; a group of fewer than 2 cells
has no replicate). The first half plays the measurement, the second the prediction, **each
with its own half of the control cells**: the halves share no cell, so a shared control
does not make them agree more than two experiments would. Each half is pseudo-bulked and
scored with exactly the metrics of the models (GEARS' on the full data's DE genes, and
cell-eval's). It is a replicate at half the depth: a model is scored against all the
cells, so a model can come out above it (a scaled score above 1) where the halves are
noisy. cell-eval maps its correlation metrics to full depth with the Spearman-Brown formula
:math:`2r/(1+r)`; we report the measured half-split, which needs no model of the noise.

**Scaled score.** For a metric value :math:`m` of a model, :math:`b` of the mean response
(the ``train_mean`` baseline: every perturbation's predicted shift is the mean training
shift) and :math:`r` of the replicate, on the same perturbations,

.. math::
    s = \frac{m - b}{r - b}

0 is the mean response, 1 repeating the experiment, for errors as for correlations (their
direction cancels). Per perturbation from that perturbation's values; overall from the
means over the perturbations all three have. When the replicate does not beat the mean
response beyond a tie (:func:`~grape_core.evaluation.verdicts.better`) the data cannot
tell a good model from the mean: the score is undefined (NaN, ``null`` in JSON) and the
reason is given, never a number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import keys
from ..data.conditions import perturbation_label
from . import celleval
from .verdicts import better, is_score, model_label

BASELINE = "train_mean"
"""The mean response: 0 on the scaled score."""
REFERENCE = "replicate"
"""Row name of the split-half replicate: 1 on the scaled score. Not a model: never a
baseline in a verdict."""
SEED = 0
"""Seed of the split (cell-eval's ``--ceiling-seed`` default)."""


def _mean(matrix) -> np.ndarray:
    return np.asarray(matrix.mean(axis=0), dtype=np.float64).ravel()


@dataclass(frozen=True)
class CellSample:
    """The cells that cell-level metrics read: each evaluated perturbation's and the
    control cells, in file order.

    Attributes
    ----------
    genes
        Gene names ``(n_genes,)``, the column order.
    conditions
        Canonical conditions present (control excluded).
    cells
        Condition -> its cells ``(n_cells_c, n_genes)``, CSR or array, float32.
    control
        The control cells ``(n_control, n_genes)``.
    """

    genes: tuple[str, ...]
    conditions: tuple[str, ...]
    cells: Mapping[str, Any]
    control: Any

    @classmethod
    def from_adata(cls, adata, conditions: Sequence[str]) -> "CellSample":
        """The cells of ``conditions`` (those ``adata`` has) and the control cells of a screen
        read by :func:`~grape_core.data.read.read_perturbseq`, in memory or on disk (only
        these rows are read).

        Raises
        ------
        GrapeError
            No control cells.
        """
        from ..data.backed import cell_matrix
        from ..errors import GrapeError

        labels = adata.obs[keys.CONDITION].astype(str).to_numpy()
        present = set(labels)
        wanted = [c for c in dict.fromkeys(conditions) if c in present and c != keys.CTRL]
        rows_of = {c: np.flatnonzero(labels == c) for c in wanted}
        ctrl = np.flatnonzero(labels == keys.CTRL)
        if not len(ctrl):
            raise GrapeError("the data have no control cells; cell-level metrics need them")
        every = np.sort(np.concatenate([ctrl, *rows_of.values()]))
        with cell_matrix(adata) as (matrix, rows):
            in_file = every if rows is None else rows[every]
            order = np.argsort(in_file, kind="stable")
            X = matrix.take_rows(in_file[order])
            if np.any(np.diff(order) < 0):
                X = X[np.argsort(order, kind="stable")]

        def take(r: np.ndarray):
            return X[np.searchsorted(every, r)]

        return cls(genes=tuple(adata.var_names.astype(str)), conditions=tuple(wanted),
                   cells={c: take(r) for c, r in rows_of.items()}, control=take(ctrl))

    def n_cells(self, condition: str) -> int:
        return int(self.cells[condition].shape[0])

    def means(self, conditions: Sequence[str]) -> np.ndarray:
        """Mean log-expression ``(len(conditions), n_genes)``, float64."""
        return np.stack([_mean(self.cells[c]) for c in conditions]) if len(conditions) else \
            np.zeros((0, len(self.genes)))

    @property
    def control_mean(self) -> np.ndarray:
        return _mean(self.control)


@dataclass(frozen=True)
class Halves:
    """A screen's cells split in two (:func:`split_halves`)."""

    measured: CellSample
    """First half of every group: plays the measurement."""
    predicted: CellSample
    """Second half: plays the prediction."""
    dropped: tuple[str, ...] = ()
    """Conditions with fewer than 2 cells (no replicate)."""
    seed: int = SEED


def split_halves(sample: CellSample, *, seed: int = SEED) -> Halves | None:
    """Two disjoint halves of every group's cells, as cell-eval's data ceiling draws them
    (module docstring); ``None`` when there are fewer than 2 control cells."""
    groups = {perturbation_label(c): c for c in sample.conditions}
    rng = np.random.default_rng(seed)
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    dropped = []
    for label in sorted([keys.PERTURBATION_CONTROL, *groups]):
        condition = groups.get(label, keys.CTRL)
        matrix = sample.control if condition == keys.CTRL else sample.cells[condition]
        perm = rng.permutation(matrix.shape[0])
        half = matrix.shape[0] // 2
        if half < 1:
            if condition == keys.CTRL:
                return None
            dropped.append(condition)
            continue
        first[condition] = matrix[np.sort(perm[:half])]
        second[condition] = matrix[np.sort(perm[half:2 * half])]
    kept = tuple(c for c in sample.conditions if c in first)

    def part(cells: dict[str, Any]) -> CellSample:
        return CellSample(genes=sample.genes, conditions=kept,
                          cells={c: cells[c] for c in kept}, control=cells[keys.CTRL])

    return Halves(measured=part(first), predicted=part(second), dropped=tuple(dropped), seed=seed)


def replicate_table(halves: Halves, de_idx: Mapping[str, np.ndarray], *,
                    cell_eval: bool = True) -> pd.DataFrame:
    """The replicate's metrics: the second half scored as a prediction of the first.

    Parameters
    ----------
    halves
        :func:`split_halves`.
    de_idx
        Condition -> its DE gene indices in the full data (GEARS' ``_de`` metrics use the
        same genes for the replicate as for the models).
    cell_eval
        Also cell-eval's metrics (:mod:`.celleval`, flat names ``cell_eval.*``), DE ones
        included.

    Returns
    -------
    DataFrame indexed by condition: :data:`~grape_core.keys.METRICS`, then cell-eval's.
    """
    from .metrics import condition_metrics

    truth_side, pred_side = halves.measured, halves.predicted
    conditions = list(truth_side.conditions)
    truth = truth_side.means(conditions)
    pred = pred_side.means(conditions)
    ctrl_truth, ctrl_pred = truth_side.control_mean, pred_side.control_mean
    rows = {}
    for i, c in enumerate(conditions):
        # the second half's shift, on the first half's control: pred - ctrl is its own shift
        rows[c] = condition_metrics(ctrl_truth + (pred[i] - ctrl_pred), truth[i], ctrl_truth,
                                    np.asarray(de_idx[c], dtype=int))
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(keys.METRICS))
    if cell_eval and conditions:
        labels = celleval.labels_for(conditions)
        de_truth = celleval.de_against_control([truth_side.cells[c] for c in conditions],
                                               truth_side.control)
        de_pred = celleval.de_against_control([pred_side.cells[c] for c in conditions],
                                              pred_side.control)
        ce = celleval.compute(pred, truth, ctrl_truth, labels, truth_side.genes,
                              de_real=de_truth, de_pred=de_pred, pred_control=ctrl_pred)
        ce.index = conditions
        table = table.join(ce.rename(columns=celleval.flat))
    return table


# ----------------------------------------------------------------------------- scaled
@dataclass(frozen=True)
class Scaled:
    """A model's metrics placed between the mean response (0) and the replicate (1).

    Attributes
    ----------
    model
        Its row name.
    overall
        Metric -> scaled score of the means over the perturbations that the model, the
        baseline and the replicate all have; NaN when undefined (see ``reasons``).
    per_condition
        ``(n_conditions, n_metrics)`` scaled score of each perturbation (NaN: undefined).
    reasons
        Metric -> why ``overall`` is undefined.
    n_conditions
        Metric -> perturbations behind ``overall``.
    """

    model: str
    overall: dict[str, float]
    per_condition: pd.DataFrame
    reasons: dict[str, str] = field(default_factory=dict)
    n_conditions: dict[str, int] = field(default_factory=dict)


def scale(value: float, base: float, reference: float, metric: str) -> float:
    """``(value - base) / (reference - base)``; NaN unless ``reference`` is
    :func:`~.verdicts.better` than ``base`` on ``metric`` (beyond a tie)."""
    if not all(np.isfinite([value, base, reference])) or not better(reference, base, metric):
        return float("nan")
    return float((value - base) / (reference - base))


def why_undefined(base: float, reference: float, metric: str, *, baseline: str = BASELINE) -> str:
    """The reason a scaled score is undefined, in words."""
    if not np.isfinite(reference):
        return "no replicate value (a perturbation with fewer than 2 cells per half)"
    if not np.isfinite(base):
        return f"the {model_label(baseline)} baseline has no value"
    return (f"the replicate ({reference:.4g}) does not beat the {model_label(baseline)} "
            f"baseline ({base:.4g}) beyond a tie: here the data cannot tell a model from the "
            "mean response")


def scaled_scores(tables: Mapping[str, pd.DataFrame], *, baseline: str = BASELINE,
                  reference: str = REFERENCE,
                  metrics: Sequence[str] | None = None) -> dict[str, Scaled]:
    """Every model's :class:`Scaled` scores (module docstring).

    Parameters
    ----------
    tables
        Per-condition metrics of each model, the baseline and the replicate (rows
        conditions, columns metrics: :attr:`~.evaluate.Report.tables`).
    metrics
        Default: every column that is a score (counts such as ``de_nsig_counts_*`` have no
        better direction and are left out).

    Returns
    -------
    Model -> :class:`Scaled`; empty without the baseline or the replicate.
    """
    if baseline not in tables or reference not in tables:
        return {}
    base, ref = tables[baseline], tables[reference]
    out = {}
    for name, table in tables.items():
        if name in (reference,):
            continue
        columns = [m for m in (metrics or table.columns)
                   if m in table and m in base and m in ref and is_score(m)]
        per = pd.DataFrame(index=table.index, columns=columns, dtype=float)
        overall, reasons, counts = {}, {}, {}
        for m in columns:
            frame = pd.concat([table[m], base[m], ref[m]], axis=1, keys=["m", "b", "r"],
                              join="inner").astype(float)
            per.loc[frame.index, m] = [scale(v, b, r, m) for v, b, r in frame.to_numpy()]
            both = frame.dropna()
            counts[m] = int(len(both))
            if not len(both):
                overall[m] = float("nan")
                reasons[m] = "no perturbation has a value for the model, the baseline and the replicate"
                continue
            v, b, r = both.mean().to_numpy()
            overall[m] = scale(v, b, r, m)
            if not np.isfinite(overall[m]):
                reasons[m] = why_undefined(b, r, m, baseline=baseline)
        out[name] = Scaled(model=name, overall=overall, per_condition=per, reasons=reasons,
                           n_conditions=counts)
    return out


def scaled_from_metrics(metrics: pd.DataFrame | None, metric: str = "pearson_delta", *,
                        baseline: str = BASELINE) -> pd.DataFrame:
    """Scaled scores from a model's long per-condition metrics (``metrics.csv``): rows
    models (not the replicate, nor the baseline itself), columns ``scaled`` (overall),
    ``n`` and one column per condition. Empty when the table has no replicate rows (a model
    trained before they were stored)."""
    if metrics is None or not len(metrics) or metric not in metrics or "model" not in metrics:
        return pd.DataFrame()
    tables = {str(name): part.set_index("condition")[[metric]]
              for name, part in metrics.groupby("model", sort=False)}
    found = scaled_scores(tables, baseline=baseline, metrics=[metric])
    rows = {}
    for name, s in found.items():
        if name == baseline:
            continue
        rows[name] = {"scaled": s.overall.get(metric, np.nan),
                      "n": s.n_conditions.get(metric, 0),
                      "why": s.reasons.get(metric, ""),
                      **s.per_condition[metric].to_dict()}
    return pd.DataFrame.from_dict(rows, orient="index")


@dataclass(frozen=True)
class ConditionScaled:
    """One held-out perturbation's scaled score (:func:`condition_scaled`)."""

    condition: str
    metric: str
    model: str
    value: float
    """The scaled score; NaN when undefined (see ``reason``)."""
    model_value: float
    baseline_value: float
    reference_value: float
    reason: str = ""


def condition_scaled(metrics: pd.DataFrame | None, condition: str, *, model: str = "grape",
                     metric: str = "pearson_delta",
                     baseline: str = BASELINE) -> ConditionScaled | None:
    """How close ``model`` came to repeating the experiment on one held-out perturbation,
    from a model's long per-condition metrics (``metrics.csv``).

    Returns
    -------
    ``None`` when the table has no replicate row for ``condition`` (the perturbation was
    not held out, or the model was trained before replicates were stored) or no row of
    ``model`` or ``baseline``.
    """
    if metrics is None or not len(metrics) or metric not in metrics or "model" not in metrics:
        return None
    rows = metrics[metrics["condition"] == condition].set_index("model")[metric]
    if not {model, baseline, REFERENCE} <= set(rows.index):
        return None
    m, b, r = (float(rows[k]) for k in (model, baseline, REFERENCE))
    value = scale(m, b, r, metric)
    reason = "" if np.isfinite(value) else why_undefined(b, r, metric, baseline=baseline)
    return ConditionScaled(condition=condition, metric=metric, model=model, value=value,
                           model_value=m, baseline_value=b, reference_value=r, reason=reason)


def has_replicate(metrics: pd.DataFrame | None) -> bool:
    """Whether a model's ``metrics.csv`` holds the replicate's rows."""
    return metrics is not None and "model" in metrics and bool((metrics["model"] == REFERENCE).any())
