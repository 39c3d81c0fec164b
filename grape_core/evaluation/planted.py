"""The planted-truth benchmark's results as tables (``benchmarks/bench_planted.py`` writes
them; the README and the app's Benchmark page show them). GENERATED screens, not biology:
they say whether the model can use a graph, and whether it wins on dynamics it was not
built from (:data:`~grape_core.simulation.config.FAMILY`), not how well it predicts a cell.

The checks a model must pass on every screen of the grid (:func:`checks`): GRAPE's held-out
``pearson_delta`` at least ``propagation``'s and its ``mse`` no higher, overall and on the
pairs with one or two seen singles; better than ``additive`` and ``additive_mean`` on the
pairs whose singles were both seen; better than ``embedding_ridge`` everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .verdicts import better

RESULTS = Path("benchmarks") / "results" / "planted.json"
"""Where the benchmark writes its results, relative to the project root."""

GROUPS = ("all", "unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")
"""Held-out groups of GEARS' simulation split, ``all`` first."""

RIVALS: dict[str, tuple[str, ...]] = {
    "all": ("propagation", "embedding_ridge"),
    "unseen_single": ("embedding_ridge",),
    "combo_seen0": ("embedding_ridge",),
    "combo_seen1": ("propagation", "embedding_ridge"),
    "combo_seen2": ("propagation", "additive", "additive_mean", "embedding_ridge"),
}
"""The baselines GRAPE must match or beat, on both metrics, in each group."""

@dataclass(frozen=True)
class Check:
    """One comparison of :data:`RIVALS`: GRAPE against a baseline on one metric."""

    screen: str
    group: str
    baseline: str
    metric: str
    grape: float
    rival: float

    @property
    def passed(self) -> bool:
        """GRAPE ties or beats the baseline, by the project's one tie rule
        (:func:`~grape_core.evaluation.verdicts.tied`)."""
        return bool(np.isfinite(self.grape)) and not better(self.rival, self.grape, self.metric)


def metric_of(record: dict[str, Any], model: str, group: str, metric: str) -> float | None:
    """A model's metric in a group of one screen's record (``None``: not predicted there)."""
    if group == "all":
        value = record["models"].get(model, {}).get(metric)
    else:
        value = record.get("groups", {}).get(group, {}).get(model, {}).get(metric)
    return None if value is None or not np.isfinite(value) else float(value)


def checks(screen: str, record: dict[str, Any]) -> list[Check]:
    """Every comparison of :data:`RIVALS` that the screen's held-out groups allow."""
    out = []
    for group, rivals in RIVALS.items():
        for rival in rivals:
            for metric in ("pearson_delta", "mse"):
                ours = metric_of(record, "grape", group, metric)
                theirs = metric_of(record, rival, group, metric)
                if ours is not None and theirs is not None:
                    out.append(Check(screen, group, rival, metric, ours, theirs))
    return out


@dataclass(frozen=True)
class PlantedBenchmark:
    """One run of the planted-truth benchmark (``screens``: one record per screen)."""

    screens: tuple[dict[str, Any], ...]
    ensemble: int = 1
    data: str = ""

    @classmethod
    def read(cls, path: str | Path) -> "PlantedBenchmark | None":
        """The results file, or ``None`` when there is none (or it is not one)."""
        try:
            raw = json.loads(Path(path).read_text())
            return cls(screens=tuple(raw["screens"]), ensemble=int(raw.get("ensemble", 1)),
                       data=str(raw.get("data", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def checks(self) -> list[Check]:
        """Every check of every screen (:func:`checks`)."""
        return [c for r in self.screens for c in checks(r["screen"], r["informative"])]

    def failures(self) -> pd.DataFrame:
        """The checks GRAPE failed: screen, group, baseline, metric and both values."""
        rows = [{"screen": c.screen, "group": c.group, "baseline": c.baseline,
                 "metric": c.metric, "GRAPE": c.grape, "baseline value": c.rival}
                for c in self.checks() if not c.passed]
        return pd.DataFrame(rows, columns=["screen", "group", "baseline", "metric", "GRAPE",
                                           "baseline value"])

    def grid(self, metric: str = "pearson_delta", group: str = "all") -> pd.DataFrame:
        """One row per setting (mean over its seeds), one column per model: ``metric`` on the
        held-out ``group``; ``seeds`` and, last, how many of the setting's checks passed."""
        rows: dict[str, dict[str, list[float]]] = {}
        passed: dict[str, list[bool]] = {}
        for r in self.screens:
            setting = r.get("setting", r["screen"])
            row = rows.setdefault(setting, {})
            for model in r["informative"]["models"]:
                if model == "control":
                    continue
                value = metric_of(r["informative"], model, group, metric)
                if value is not None:
                    row.setdefault(model, []).append(value)
            passed.setdefault(setting, []).extend(c.passed for c in checks(r["screen"], r["informative"]))
        frame = pd.DataFrame({s: {m: float(np.mean(v)) for m, v in row.items()}
                              for s, row in rows.items()}).T
        order = ["grape", "propagation", "additive_mean", "additive", "embedding_ridge", "linear",
                 "train_mean", "replicate"]
        frame = frame[[m for m in order if m in frame] + [m for m in frame if m not in order]]
        frame["seeds"] = [sum(r.get("setting", r["screen"]) == s for r in self.screens)
                          for s in frame.index]
        frame["checks passed"] = [f"{sum(passed[s])}/{len(passed[s])}" for s in frame.index]
        return frame

    def summary(self) -> pd.DataFrame:
        """One row per screen: GRAPE with the informative and the random prior, the best
        single-perturbation baseline, structure-learning AUPRC, own-gene sign, screen
        enrichment and how many of the shown genes' held-out shifts fell inside the
        calibrated interval."""
        rows = []
        for r in self.screens:
            inf, rnd = r["informative"], r.get("random")
            base = {m: v for m, v in inf["models"].items()  # the replicate is the data, no model
                    if m not in ("grape", "control", "additive", "additive_mean", "replicate")}
            best = max(base, key=lambda m: base[m]["pearson_delta"])
            grape = inf["models"]["grape"]
            rows.append({
                "screen": r["screen"],
                "GRAPE, informative prior": grape["pearson_delta"],
                "GRAPE, random prior": rnd["models"]["grape"]["pearson_delta"] if rnd else None,
                "gain from the prior": (grape["pearson_delta"] - rnd["models"]["grape"]["pearson_delta"]
                                        if rnd else None),
                "best baseline": best,
                "its pearson_delta": base[best]["pearson_delta"],
                "GRAPE mse": grape["mse"],
                "its mse": base[best]["mse"],
                "edge AUPRC": inf.get("auprc"),
                "AUPRC by chance": inf.get("auprc_chance"),
                "own-gene sign right": inf.get("own_sign"),
                "regulators in top 10 (x chance)": (inf.get("screen") or {}).get("fold_over_chance"),
                "shown shifts inside the 90 % interval": (inf.get("intervals") or {}).get(
                    "within_interval_top"),
            })
        return pd.DataFrame(rows)

    def ablations(self) -> pd.DataFrame:
        """pearson_delta of every ablation (rows) on every screen that ran them (columns),
        one member each."""
        table: dict[str, dict[str, float]] = {}
        for r in self.screens:
            for row in r.get("ablations", []):
                table.setdefault(row["variant"], {})[r["screen"]] = row["pearson_delta"]
        return pd.DataFrame.from_dict(table, orient="index")
