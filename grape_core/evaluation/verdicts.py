"""The honest comparison with the baselines, as data.

A :class:`Comparison` says, for one metric, whether GRAPE or a baseline is better on the
held-out conditions both predict; a :class:`Verdict` says which baselines beat GRAPE on
both ``pearson_delta`` and ``mse`` (overall) and where a baseline has the higher
``pearson_delta`` (per subgroup). Each has a ``sentence``/``text`` for people; pages and the
command line branch on the fields (``baseline_wins``, ``beaten``), never on the words.

Input: per-condition metrics in long format (``model``, ``condition``, ``subgroup``, one
column per metric; a bundle's ``metrics.csv``), or a :class:`~.evaluate.Report`'s tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MODEL_LABELS = {"grape": "GRAPE", "control": "control (no change)", "train_mean": "train mean",
                "linear": "linear (PCA + ridge)", "additive": "additive (A + B)",
                "propagation": "propagation (prior graph)",
                "replicate": "replicate (half the cells vs the other half)"}
REFERENCES = frozenset({"replicate"})
"""Rows of a report that are not models: the data's own replicate (the ceiling,
:mod:`.replicate`). They are never a baseline that "beats" a model."""
METRIC_LABELS = {
    "pearson_delta": "Pearson of shifts, all genes",
    "pearson_delta_de": "Pearson of shifts, top-20 DE genes",
    "mse": "MSE, all genes",
    "rmse": "RMSE, all genes",
    "mse_de": "MSE, top-20 DE genes",
    "pearson": "Pearson of expression, all genes",
    "pearson_de": "Pearson of expression, top-20 DE genes",
    "frac_correct_direction_all": "right direction, all genes",
    "frac_correct_direction_20": "right direction, top-20 DE genes",
}
LOWER_IS_BETTER = frozenset({"mse", "rmse", "mse_de"})

TIE = 0.001
"""Two scores on a 0-1 scale (correlations, shares, ranks) that differ by no more than this
tie. The one rule for "tie" wherever two figures are compared: verdicts, the Benchmark page,
the trust text, the README (:func:`tied`)."""
TIE_RELATIVE = 0.01
"""Two errors (MSE, MAE: on the data's own scale) that differ by no more than this share of
the larger tie."""


def lower_is_better(metric: str) -> bool:
    """Errors: GEARS' ``mse``, ``rmse``, ``mse_de`` and cell-eval's ``mse``, ``mae``,
    ``mse_delta``, ``mae_delta`` (flat name ``cell_eval.*``)."""
    from .celleval import LOWER_IS_BETTER as CELL_EVAL_ERRORS, unflat

    inner = unflat(metric)
    return metric in LOWER_IS_BETTER if inner is None else inner in CELL_EVAL_ERRORS


def is_score(metric: str) -> bool:
    """A metric with a better direction (not a count such as ``de_nsig_counts_real``)."""
    from .celleval import COUNTS, unflat

    return (unflat(metric) or metric) not in COUNTS


def tied(a: float, b: float, metric: str) -> bool:
    """Whether ``a`` and ``b`` tie on ``metric``: within :data:`TIE` on a score, within
    :data:`TIE_RELATIVE` of the larger on an error."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return False
    if lower_is_better(metric):
        return abs(a - b) <= TIE_RELATIVE * max(abs(a), abs(b))
    return abs(a - b) <= TIE + 1e-9  # 0.001 itself ties, whatever its last binary digit


def better(a: float, b: float, metric: str) -> bool:
    """``a`` is better than ``b`` on ``metric``, beyond a tie (:func:`tied`)."""
    if not (np.isfinite(a) and np.isfinite(b)) or tied(a, b, metric):
        return False
    return a < b if lower_is_better(metric) else a > b


def model_label(name: str) -> str:
    """``grape`` -> ``GRAPE``, ``train_mean`` -> ``train mean``..."""
    return MODEL_LABELS.get(name, name.replace("_", " "))


def metric_label(metric: str) -> str:
    from .celleval import unflat

    arrow = "lower is better" if lower_is_better(metric) else "higher is better"
    inner = unflat(metric)
    name = METRIC_LABELS.get(metric, metric) if inner is None else f"cell-eval {inner}"
    return f"{name} ({arrow})" if is_score(metric) else name


@dataclass(frozen=True)
class Comparison:
    """``model`` against one baseline on one metric, over the conditions both predict."""

    model: str
    baseline: str
    metric: str
    n_conditions: int
    model_value: float
    baseline_value: float
    pairs_only: bool
    """The additive baseline predicts only pairs whose singles were measured in training."""

    @property
    def baseline_wins(self) -> bool:
        """The baseline is better beyond a tie (:func:`better`)."""
        return better(self.baseline_value, self.model_value, self.metric)

    @property
    def tie(self) -> bool:
        return tied(self.baseline_value, self.model_value, self.metric)

    @property
    def sentence(self) -> str:
        n = self.n_conditions
        where = f"On {n} held-out perturbation{'s' if n > 1 else ''}"
        if self.pairs_only:
            where += f" (pair{'s' if n > 1 else ''} whose singles were measured in training)"
        if self.tie:
            values = (f"{self.model_value:.3f}" if f"{self.model_value:.3f}" == f"{self.baseline_value:.3f}"
                      else f"{self.model_value:.3f} and {self.baseline_value:.3f}")
            return (f"{where}, {model_label(self.model)} and the {model_label(self.baseline)} "
                    f"baseline tie ({values}): a difference of {TIE} or less counts as a tie.")
        if self.baseline_wins:
            return (f"{where}, the {model_label(self.baseline)} baseline beats "
                    f"{model_label(self.model)} ({self.baseline_value:.3f} vs {self.model_value:.3f}).")
        return (f"{where}, {model_label(self.model)} beats the {model_label(self.baseline)} "
                f"baseline ({self.model_value:.3f} vs {self.baseline_value:.3f}).")


def compare(metrics: pd.DataFrame | None, metric: str, *, model: str = "grape") -> list[Comparison]:
    """``model`` against every baseline but ``control`` on ``metric``, each on the held-out
    conditions both predict; those a baseline wins first.

    Parameters
    ----------
    metrics
        Long per-condition metrics: ``model``, ``condition``, ``metric`` columns.
    """
    if metrics is None or not len(metrics) or metric not in metrics:
        return []
    wide = metrics.pivot_table(index="condition", columns="model", values=metric, aggfunc="mean")
    if model not in wide:
        return []
    out = []
    for name in wide.columns:
        if name in (model, "control") or name in REFERENCES:
            continue
        common = wide[[model, name]].dropna()
        if not len(common):
            continue
        out.append(Comparison(model=model, baseline=str(name), metric=metric,
                              n_conditions=len(common), model_value=float(common[model].mean()),
                              baseline_value=float(common[name].mean()),
                              pairs_only=name == "additive"))
    return sorted(out, key=lambda c: not c.baseline_wins)


@dataclass(frozen=True)
class Win:
    """A baseline better than the model: on both headline metrics overall (``subgroup`` empty),
    or on ``pearson_delta`` within a subgroup."""

    baseline: str
    n_conditions: int
    pearson_delta: tuple[float, float]
    """(baseline, model)."""
    mse: tuple[float, float] | None = None
    subgroup: str = ""
    n_subgroup: int = 0


@dataclass(frozen=True)
class Verdict:
    """Which baselines beat ``model`` (see the module docstring)."""

    model: str
    beaten_by: tuple[Win, ...]
    subgroups: tuple[Win, ...]

    @property
    def beaten(self) -> bool:
        """Some baseline beats the model on both ``pearson_delta`` and ``mse``."""
        return bool(self.beaten_by)

    @property
    def text(self) -> str:
        model = self.model
        if self.beaten_by:
            text = (f"Baselines that beat {model} on both pearson_delta and mse: "
                    + "; ".join(f"{w.baseline} (pearson_delta {w.pearson_delta[0]:.3f} vs "
                                f"{w.pearson_delta[1]:.3f}, mse {w.mse[0]:.4f} vs {w.mse[1]:.4f}, "
                                f"{w.n_conditions} conditions)" for w in self.beaten_by) + ".")
        else:
            text = f"No baseline beats {model} on both pearson_delta and mse over all held-out conditions."
        if self.subgroups:
            text += (" Subgroups where a baseline has the higher pearson_delta: "
                     + "; ".join(f"{w.subgroup} ({w.n_conditions} of {w.n_subgroup}): {w.baseline} "
                                 f"{w.pearson_delta[0]:.3f} vs {w.pearson_delta[1]:.3f}"
                                 for w in self.subgroups) + ".")
        return text


def verdict(tables: Mapping[str, pd.DataFrame], subgroups: Mapping[str, Sequence[str]], *,
            model: str = "grape") -> Verdict | None:
    """Which baselines beat ``model`` on the same conditions, overall (on both
    ``pearson_delta`` and ``mse``) and per subgroup (on ``pearson_delta``; the rival that
    wins by most, on its own conditions). ``None`` when ``model`` has no table.

    Parameters
    ----------
    tables
        Per model, metrics indexed by condition (:attr:`Report.tables`).
    subgroups
        Subgroup name -> its held-out conditions.
    """
    if model not in tables:
        return None
    mine = tables[model]
    beaten = []
    for name, table in tables.items():
        if name == model or name in REFERENCES:
            continue
        common = mine.index.intersection(table.index)
        if not len(common):
            continue
        ours, theirs = mine.loc[common], table.loc[common]
        if better(theirs["pearson_delta"].mean(), ours["pearson_delta"].mean(), "pearson_delta") \
                and better(theirs["mse"].mean(), ours["mse"].mean(), "mse"):
            beaten.append(Win(baseline=name, n_conditions=len(common),
                              pearson_delta=(float(theirs["pearson_delta"].mean()),
                                             float(ours["pearson_delta"].mean())),
                              mse=(float(theirs["mse"].mean()), float(ours["mse"].mean()))))
    groups = []
    for group, members in subgroups.items():
        rows = mine.index.intersection(members)
        best: tuple[float, Win] | None = None
        for name, table in tables.items():
            common = rows.intersection(table.index)
            if name == model or name in REFERENCES or not len(common):
                continue
            ours = float(mine.loc[common, "pearson_delta"].mean())
            theirs = float(table.loc[common, "pearson_delta"].mean())
            if better(theirs, ours, "pearson_delta") and (best is None or theirs - ours > best[0]):
                best = (theirs - ours, Win(baseline=name, n_conditions=len(common),
                                           pearson_delta=(theirs, ours), subgroup=group,
                                           n_subgroup=len(rows)))
        if best is not None:
            groups.append(best[1])
    return Verdict(model=model, beaten_by=tuple(beaten), subgroups=tuple(groups))


def verdict_of_metrics(metrics: pd.DataFrame | None, *, model: str = "grape") -> Verdict | None:
    """:func:`verdict` from long per-condition metrics (a bundle's ``metrics.csv``)."""
    if metrics is None or not len(metrics) or "model" not in metrics:
        return None
    tables = {str(name): part.set_index("condition")
              for name, part in metrics.groupby("model", sort=False)}
    subgroups: dict[str, list[str]] = {}
    if "subgroup" in metrics and model in tables:
        own = metrics[metrics["model"] == model]
        for cond, group in zip(own["condition"], own["subgroup"].fillna("").astype(str)):
            if group:
                subgroups.setdefault(group, []).append(cond)
    return verdict(tables, subgroups, model=model)


def subgroup_table(subgroups: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str) -> pd.DataFrame:
    """Rows subgroups (``unseen_single``, ``combo_seen0``...), columns models (labels)."""
    table = {model_label(m): {g: v.get(metric, np.nan) for g, v in groups.items()}
             for m, groups in subgroups.items()}
    return pd.DataFrame(table)


def metrics_overview(test_metrics: Mapping[str, Mapping[str, float]],
                     metrics: Sequence[str] = ("pearson_delta", "pearson_delta_de", "mse",
                                               "frac_correct_direction_20")) -> pd.DataFrame:
    """Held-out metrics from a manifest (``metrics.test``): rows models, ``n`` conditions."""
    rows = []
    for name, values in test_metrics.items():
        rows.append({"model": model_label(name), "key": name,
                     "held-out conditions": int(values.get("n_conditions", 0)),
                     **{m: float(values.get(m, np.nan)) for m in metrics}})
    return pd.DataFrame(rows)
