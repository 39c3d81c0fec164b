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

from . import keys
from .baselines import fit_baselines
from .data import PseudoBulk
from .metrics import metrics_table, summarize
from .splits import Split

Predictor = Callable[[Sequence[str]], np.ndarray]
"""conditions -> predicted mean expression ``(n_conds, n_genes)`` (NaN rows: abstains)."""

HEADLINE = ("mse", "pearson", "pearson_de", "pearson_delta", "pearson_delta_de",
            "frac_correct_direction_20")
LOWER_IS_BETTER = {"mse", "rmse", "mse_de"}


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
        (on both pearson_delta and mse) and per subgroup (on pearson_delta)."""
        if model not in self.tables:
            return ""
        mine = self.tables[model]
        better = []
        for name, table in self.tables.items():
            if name == model:
                continue
            common = mine.index.intersection(table.index)
            if not len(common):
                continue
            ours, theirs = mine.loc[common], table.loc[common]
            if theirs["pearson_delta"].mean() > ours["pearson_delta"].mean() and \
                    theirs["mse"].mean() < ours["mse"].mean():
                better.append(
                    f"{name} (pearson_delta {theirs['pearson_delta'].mean():.3f} vs "
                    f"{ours['pearson_delta'].mean():.3f}, mse {theirs['mse'].mean():.4f} vs "
                    f"{ours['mse'].mean():.4f}, {len(common)} conditions)")
        if better:
            text = f"Baselines that beat {model} on both pearson_delta and mse: " + "; ".join(better) + "."
        else:
            text = f"No baseline beats {model} on both pearson_delta and mse over all held-out conditions."
        groups = []
        for group, members in self.subgroups.items():
            rows = mine.index.intersection(members)
            best = None  # (margin, text) of the rival that wins by most, on its own conditions
            for name, table in self.tables.items():
                common = rows.intersection(table.index)
                if name == model or not len(common):
                    continue
                ours = mine.loc[common, "pearson_delta"].mean()
                theirs = table.loc[common, "pearson_delta"].mean()
                if theirs > ours and (best is None or theirs - ours > best[0]):
                    best = (theirs - ours, f"{group} ({len(common)} of {len(rows)}): "
                                           f"{name} {theirs:.3f} vs {ours:.3f}")
            if best is not None:
                groups.append(best[1])
        if groups:
            text += " Subgroups where a baseline has the higher pearson_delta: " + "; ".join(groups) + "."
        return text


def evaluate_models(
    pb: PseudoBulk,
    split: Split,
    predictors: Mapping[str, Predictor] | None = None,
    *,
    part: str = "test",
    include_baselines: bool = True,
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
    """
    held_out = [c for c in getattr(split, part) if c in pb and c != keys.CTRL]
    if not held_out:
        raise ValueError(f"no measured {part} conditions in split {split.name!r}")
    models: dict[str, Predictor] = dict(predictors or {})
    if include_baselines:
        for name, baseline in fit_baselines(pb, split.train).items():
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
