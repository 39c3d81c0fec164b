"""The planted-truth benchmark's results as tables (``benchmarks/bench_planted.py`` writes
them; the README and the app's Benchmark page show them). GENERATED screens, not biology:
they say whether the model can use a graph, not how well it predicts a cell."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS = Path("benchmarks") / "results" / "planted.json"
"""Where the benchmark writes its results, relative to the project root."""


@dataclass(frozen=True)
class PlantedBenchmark:
    """One run of the planted-truth benchmark (``results``: one record per screen)."""

    results: tuple[dict[str, Any], ...]
    ensemble: int = 1
    data: str = ""

    @classmethod
    def read(cls, path: str | Path) -> "PlantedBenchmark | None":
        """The results file, or ``None`` when there is none (or it is not one)."""
        try:
            raw = json.loads(Path(path).read_text())
            return cls(results=tuple(raw["results"]), ensemble=int(raw.get("ensemble", 1)),
                       data=str(raw.get("data", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def summary(self) -> pd.DataFrame:
        """One row per screen: GRAPE with the informative and the random prior, the best
        baseline, structure-learning AUPRC, own-gene sign, screen enrichment and how many of
        the shown genes' held-out shifts fell inside the calibrated interval."""
        rows = []
        for r in self.results:
            inf, rnd = r["informative"], r["random"]
            base = {m: v for m, v in inf["models"].items() if m not in ("grape", "control")}
            singles = {m: v for m, v in base.items() if m != "additive"}
            best = max(singles, key=lambda m: singles[m]["pearson_delta"])
            rows.append({
                "screen": r["screen"],
                "GRAPE, informative prior": inf["models"]["grape"]["pearson_delta"],
                "GRAPE, random prior": rnd["models"]["grape"]["pearson_delta"],
                "gain from the prior": (inf["models"]["grape"]["pearson_delta"]
                                        - rnd["models"]["grape"]["pearson_delta"]),
                "best baseline": best,
                "its pearson_delta": singles[best]["pearson_delta"],
                "GRAPE mse": inf["models"]["grape"]["mse"],
                "its mse": singles[best]["mse"],
                "edge AUPRC": inf["auprc"],
                "AUPRC by chance": inf["auprc_chance"],
                "own-gene sign right": inf["own_sign"],
                "regulators in top 10 (x chance)": inf["screen"]["fold_over_chance"],
                # results written before the intervals existed have none
                "shown shifts inside the 90 % interval": inf.get("intervals", {}).get(
                    "within_interval_top"),
            })
        return pd.DataFrame(rows)

    def pairs(self) -> pd.DataFrame:
        """GRAPE against ``additive`` on the pairs whose singles were measured in training
        (the only ones ``additive`` predicts), per screen with pairs."""
        rows = []
        for r in self.results:
            part = r["informative"].get("subgroups", {}).get("combo_seen2", {})
            mse = r["informative"].get("subgroups_mse", {}).get("combo_seen2", {})
            if part.get("additive") is not None:
                rows.append({"screen": r["screen"], "GRAPE": part.get("grape"),
                             "additive": part["additive"], "GRAPE mse": mse.get("grape"),
                             "additive mse": mse.get("additive")})
        return pd.DataFrame(rows)

    def ablations(self) -> pd.DataFrame:
        """pearson_delta of every ablation (rows) on every screen (columns), one member each."""
        table = {}
        for r in self.results:
            for row in r["informative"].get("ablations", []):
                table.setdefault(row["variant"], {})[r["screen"]] = row["pearson_delta"]
        return pd.DataFrame.from_dict(table, orient="index")
