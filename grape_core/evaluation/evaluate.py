"""Run models and baselines on the held-out conditions of a split; collect GEARS metrics.

The report's JSON layout (shared by ``benchmark`` and ``evaluate``)::

    {"dataset", "split", "seed", "test_conditions": [...],
     "models": {name: {metric: value, "n_conditions": n}},
     "per_condition": {name: {condition: {metric: value}}},
     "subgroups": {name: {subgroup: {metric: value, "n_conditions": n}}}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import keys
from .baselines import Baseline, fit_baselines
from ..data.pseudobulk import PseudoBulk
from ..data.splits import Split
from ..errors import SplitError
from .metrics import metrics_table, summarize
from .verdicts import Verdict, verdict

Predictor = Callable[[Sequence[str]], np.ndarray]
"""conditions -> predicted mean expression ``(n_conds, n_genes)`` (NaN rows: abstains)."""

HEADLINE = ("mse", "pearson", "pearson_de", "pearson_delta", "pearson_delta_de",
            "frac_correct_direction_20")


@dataclass
class Report:
    dataset: str
    split: str
    seed: int
    test_conditions: list[str]
    tables: dict[str, pd.DataFrame]
    subgroups: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> dict[str, dict[str, float]]:
        return {name: summarize(t) for name, t in self.tables.items()}

    def subgroup_summary(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for name, table in self.tables.items():
            out[name] = {}
            for group, members in self.subgroups.items():
                rows = table.loc[table.index.intersection(members)]
                if len(rows):
                    out[name][group] = summarize(rows)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "seed": self.seed,
            "test_conditions": list(self.test_conditions),
            "models": self.models,
            "per_condition": {
                name: {c: {m: float(v) for m, v in row.items()} for c, row in t.iterrows()}
                for name, t in self.tables.items()
            },
            "subgroups": self.subgroup_summary(),
            **self.extra,
        }

    def table(self, metrics: Sequence[str] = keys.METRICS) -> pd.DataFrame:
        """Rows: models; columns: ``n`` and the metrics."""
        frame = pd.DataFrame(self.models).T
        return frame[["n_conditions", *metrics]].rename(columns={"n_conditions": "n"})

    def format(self, metrics: Sequence[str] = keys.METRICS) -> str:
        frame = self.table(metrics)
        frame["n"] = frame["n"].astype(int)
        return frame.to_string(float_format=lambda v: f"{v:.4f}")

    def verdict(self, model: str = "grape") -> str:
        """Honest sentences: which baselines beat ``model`` on the same conditions, overall
        (on both pearson_delta and mse) and per subgroup (on pearson_delta); the data
        behind them is :meth:`verdict_data`."""
        found = self.verdict_data(model)
        return found.text if found is not None else ""

    def verdict_data(self, model: str = "grape") -> Verdict | None:
        """:func:`~.verdicts.verdict` of this report."""
        return verdict(self.tables, self.subgroups, model=model)

    def long_frame(self, split: Split) -> pd.DataFrame:
        """Per-condition metrics in long format: ``model``, ``condition``, ``subgroup`` and
        one column per metric (a bundle's ``metrics.csv``)."""
        rows = []
        for name, table in self.tables.items():
            for cond, row in table.iterrows():
                rows.append({"model": name, "condition": cond,
                             "subgroup": split.subgroup_of(cond) or "", **row.to_dict()})
        return pd.DataFrame(rows)


def evaluate_models(
    pb: PseudoBulk,
    split: Split,
    predictors: Mapping[str, Predictor] | None = None,
    *,
    part: str = "test",
    include_baselines: bool = True,
    baselines: Mapping[str, Baseline] | None = None,
    prior: pd.DataFrame | None = None,
    genes: Sequence[str] | None = None,
) -> Report:
    """Metrics of every model and baseline on the split's held-out conditions.

    Parameters
    ----------
    pb
        Pseudo-bulk of the screen (truth, control mean, DE genes).
    split
        The split; baselines are fitted on its ``train`` conditions.
    predictors
        Extra models by name (e.g. ``{"grape": ...}``), evaluated before the baselines.
    part
        ``"test"`` or ``"val"``.
    baselines
        Baselines already fitted (e.g. on exactly the conditions a model was fitted on);
        else they are fitted here on ``split.train``.
    prior, genes
        A prior graph (edges with gene symbols) and its nodes, for the ``propagation``
        baseline (:func:`~grape_core.evaluation.baselines.fit_baselines`).
    """
    held_out = [c for c in getattr(split, part) if c in pb and c != keys.CTRL]
    data = f" of {pb.dataset}" if pb.dataset else ""
    if not held_out:
        raise SplitError(f"no measured {part} conditions in split {split.name!r}{data} "
                         f"({len(pb.conditions)} perturbation(s) in the data); give data with "
                         "more perturbations or another split")
    if include_baselines and not any(c in pb and c != keys.CTRL for c in split.train):
        raise SplitError(f"split {split.name!r}{data} leaves no measured training condition "
                         f"({len(pb.conditions)} perturbation(s) in the data, {len(held_out)} held "
                         "out): the baselines have nothing to learn from; give data with more "
                         "perturbations")
    models: dict[str, Predictor] = dict(predictors or {})
    if include_baselines:
        fitted = baselines if baselines is not None else fit_baselines(
            pb, split.train, prior=prior, genes=genes)
        for name, baseline in fitted.items():
            models.setdefault(name, baseline.predict)
    rows = pb.rows(held_out)
    truth = pb.means[rows].astype(np.float64)
    de = pb.de_idx[rows]
    tables = {
        name: metrics_table(np.asarray(fn(held_out), dtype=np.float64), truth,
                            pb.control_mean.astype(np.float64), de, held_out)
        for name, fn in models.items()
    }
    subgroups = {g: [c for c in members if c in held_out]
                 for g, members in split.subgroups.get(part, {}).items()}
    return Report(
        dataset=pb.dataset, split=split.name, seed=split.seed, test_conditions=held_out,
        tables=tables, subgroups={g: m for g, m in subgroups.items() if m},
    )


def expressed(control: np.ndarray) -> np.ndarray:
    """Genes expressed above the median control level: the genes every uncertainty figure is
    computed on. Silent genes have neither error nor spread, and would make any model's
    uncertainty look right. Strictly above: where most genes are silent in control cells
    (CRISPRa screens of lowly expressed genes) the median is 0, and every gene is not."""
    return control > np.median(control)


def uncertainty_check(mean: np.ndarray, std: np.ndarray, truth: np.ndarray,
                      control: np.ndarray) -> dict[str, float]:
    """Does a larger ensemble spread go with a larger error, over held-out (condition, gene)?

    Only genes expressed above the median control level count: silent genes have both no
    error and no spread, which would make any model look calibrated.
    """
    from scipy.stats import spearmanr

    genes = expressed(control)
    err = np.abs(mean - truth)[:, genes].ravel()
    spread = std[:, genes].ravel()
    if spread.size < 3 or np.ptp(spread) == 0:
        return {"spearman_std_vs_error": float("nan"), "n": int(spread.size)}
    q = np.quantile(spread, [0.1, 0.9])
    return {
        "spearman_std_vs_error": float(spearmanr(spread, err).statistic),
        "mean_error_top_decile_std": float(err[spread >= q[1]].mean()),
        "mean_error_bottom_decile_std": float(err[spread <= q[0]].mean()),
        "within_2_std": float(np.mean(err <= 2 * spread)),
        "n": int(spread.size),
        "genes": "expressed above the median control level",
    }
