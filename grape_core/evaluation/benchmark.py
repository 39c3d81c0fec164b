"""Run models and baselines on the held-out conditions of a split; collect GEARS' metrics,
cell-eval's (:mod:`.celleval`) and the data's own replicate (:mod:`.replicate`).

The report's JSON layout (shared by ``benchmark`` and ``evaluate``)::

    {"dataset", "split", "seed", "test_conditions": [...],
     "models": {name: {metric: value, "n_conditions": n}},          # GEARS' names
     "per_condition": {name: {condition: {metric: value}}},
     "subgroups": {name: {subgroup: {metric: value, "n_conditions": n}}},
     "scaled": {"baseline": "train_mean", "reference": "replicate",
                "models": {name: {metric: value}}, "per_condition": {...},
                "undefined": {name: {metric: why}}},
     "cell_eval": {"version", "pert_col", "control_pert", ...,       # cell-eval's names
                   "models": {...}, "per_condition": {...}, "scaled": {...}},
     "replicate": {"seed", "split", "dropped": [...]},
     "notes": [...]}

``replicate`` is a row of ``models`` (and of ``cell_eval.models``) but not a model: half of
each held-out perturbation's cells scored against the other half. Undefined values are
``null``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import keys
from . import celleval
from .baselines import Baseline, fit_baselines
from ..data.pseudobulk import PseudoBulk
from ..data.splits import Split
from ..errors import SplitError
from .metrics import metrics_table, summarize
from .replicate import BASELINE, REFERENCE, SEED, CellSample, Scaled, replicate_table, \
    scaled_scores, split_halves
from .verdicts import Verdict, verdict

Predictor = Callable[[Sequence[str]], np.ndarray]
"""conditions -> predicted mean expression ``(n_conds, n_genes)`` (NaN rows: abstains)."""

HEADLINE = ("mse", "pearson", "pearson_de", "pearson_delta", "pearson_delta_de",
            "frac_correct_direction_20")


def _gears(values: Mapping[str, Any]) -> dict[str, Any]:
    """GEARS' metrics (and ``n_conditions``) of a flat dict."""
    return {m: v for m, v in values.items() if celleval.unflat(m) is None}


def _cell_eval(values: Mapping[str, Any]) -> dict[str, Any]:
    """cell-eval's metrics of a flat dict, under their own names."""
    return {celleval.unflat(m): v for m, v in values.items() if celleval.unflat(m) is not None}


@dataclass
class Report:
    """Per-condition metrics of every model, baseline and the replicate on held-out
    conditions.

    Attributes
    ----------
    tables
        Row name (model, baseline or ``replicate``) -> DataFrame indexed by condition: GEARS'
        :data:`~grape_core.keys.METRICS`, then cell-eval's as ``cell_eval.<name>``.
    notes
        What could not be computed, and why (e.g. no cells: no replicate).
    replicate
        How the replicate was drawn (seed, dropped conditions); empty without one.
    """

    dataset: str
    split: str
    seed: int
    test_conditions: list[str]
    tables: dict[str, pd.DataFrame]
    subgroups: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    replicate: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """Model -> predicted mean expression of ``test_conditions`` ``(n_conditions, n_genes)``
    (NaN rows: the model abstains); what :func:`~grape_core.serving.export.write_cell_eval` writes."""

    @property
    def models(self) -> dict[str, dict[str, float]]:
        """Mean of every metric per row (GEARS' and ``cell_eval.*``), and ``n_conditions``."""
        return {name: summarize(t) for name, t in self.tables.items()}

    def subgroup_summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per model, per GEARS subgroup: the number of held-out conditions and the metrics.

        Returns
        -------
        dict
            ``{model: {subgroup: {"n_conditions": n, metric: value}}}``.
        """
        out: dict[str, dict[str, dict[str, float]]] = {}
        for name, table in self.tables.items():
            out[name] = {}
            for group, members in self.subgroups.items():
                rows = table.loc[table.index.intersection(members)]
                if len(rows):
                    out[name][group] = summarize(rows)
        return out

    def scaled(self) -> dict[str, Scaled]:
        """Every model between the mean response (0) and the replicate (1)
        (:func:`~.replicate.scaled_scores`); empty without a replicate.

        Returns
        -------
        dict
            Model name -> :class:`~.replicate.Scaled`.
        """
        return scaled_scores(self.tables)

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout of the module docstring.

        Returns
        -------
        dict
            Strict-JSON-able (undefined values ``None``).
        """
        models = self.models
        per_condition = {name: {c: {m: float(v) for m, v in row.items()} for c, row in t.iterrows()}
                         for name, t in self.tables.items()}
        subgroups = self.subgroup_summary()
        scaled = self.scaled()

        def scaled_part(pick) -> dict[str, Any]:
            return {"baseline": BASELINE, "reference": REFERENCE,
                    "models": {n: pick(s.overall) for n, s in scaled.items()},
                    "per_condition": {n: {c: pick(row.to_dict())
                                          for c, row in s.per_condition.iterrows()}
                                      for n, s in scaled.items()},
                    "undefined": {n: pick(s.reasons) for n, s in scaled.items() if pick(s.reasons)}}

        return {
            "dataset": self.dataset,
            "split": self.split,
            "seed": self.seed,
            "test_conditions": list(self.test_conditions),
            "models": {n: _gears(v) for n, v in models.items()},
            "per_condition": {n: {c: _gears(v) for c, v in t.items()} for n, t in per_condition.items()},
            "subgroups": {n: {g: _gears(v) for g, v in t.items()} for n, t in subgroups.items()},
            "scaled": scaled_part(_gears),
            "cell_eval": {
                **celleval.describe(),
                "models": {n: {**_cell_eval(v), "n_conditions": v["n_conditions"]}
                           for n, v in models.items() if _cell_eval(v)},
                "per_condition": {n: {c: _cell_eval(v) for c, v in t.items()}
                                  for n, t in per_condition.items()
                                  if any(_cell_eval(v) for v in t.values())},
                "scaled": scaled_part(_cell_eval),
                "ceiling": (celleval.full_depth_ceiling(_cell_eval(models[REFERENCE]))
                            if REFERENCE in models else {}),
                "ceiling_note": "cell-eval's data ceiling: the replicate's mean mapped to the "
                                "full depth of the screen by the Spearman-Brown formula 2r/(1+r) "
                                "(correlation-type metrics, r > 0); the scaled scores use the "
                                "replicate as measured",
            },
            "replicate": dict(self.replicate),
            "notes": list(self.notes),
            **self.extra,
        }

    def table(self, metrics: Sequence[str] = keys.METRICS) -> pd.DataFrame:
        """Rows: models (and ``replicate``); columns: ``n`` and the metrics (flat names).

        Parameters
        ----------
        metrics
            GEARS' metrics to include.

        Returns
        -------
        pd.DataFrame
        """
        frame = pd.DataFrame(self.models).T
        for m in metrics:
            if m not in frame:
                frame[m] = np.nan
        return frame[["n_conditions", *metrics]].rename(columns={"n_conditions": "n"})

    def format(self, metrics: Sequence[str] = keys.METRICS) -> str:
        """GEARS' metrics per row; then cell-eval's headline metrics and the scaled
        ``pearson_delta`` when there are any.

        Parameters
        ----------
        metrics
            GEARS' metrics to show.

        Returns
        -------
        str
            A plain-text table (what ``benchmark`` and ``evaluate`` print).
        """
        frame = self.table(metrics)
        frame["n"] = frame["n"].astype(int)
        text = frame.to_string(float_format=lambda v: f"{v:.4f}", na_rep="n/a")
        columns = [celleval.flat(m) for m in celleval.HEADLINE]
        found = self.table(columns)
        if found[columns].notna().any().any():
            found = found.rename(columns={c: celleval.unflat(c) for c in columns})
            found["n"] = found["n"].astype(int)
            text += (f"\n\ncell-eval {celleval.VERSION} metrics (its names; the JSON report has "
                     "all of them):\n"
                     + found.to_string(float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
        scaled = self.scaled()
        if scaled:
            lines = []
            for name, s in scaled.items():
                if name == BASELINE:
                    continue
                value = s.overall.get("pearson_delta", np.nan)
                shown = f"{value:.3f}" if np.isfinite(value) else f"undefined: {s.reasons.get('pearson_delta', '')}"
                lines.append(f"  {name}: {shown}")
            text += ("\n\npearson_delta scaled between the train mean (0) and the replicate (1):\n"
                     + "\n".join(lines))
        return text

    def verdict(self, model: str = "grape") -> str:
        """Honest sentences: which baselines beat ``model`` on the same conditions, overall
        (on both pearson_delta and mse) and per subgroup (on pearson_delta); the data
        behind them is :meth:`verdict_data`.

        Parameters
        ----------
        model
            The row judged.

        Returns
        -------
        str
        """
        found = self.verdict_data(model)
        return found.text if found is not None else ""

    def verdict_data(self, model: str = "grape") -> Verdict | None:
        """:func:`~.verdicts.verdict` of this report.

        Parameters
        ----------
        model
            The row judged.

        Returns
        -------
        Verdict or None
            ``None`` when the report holds no such row.
        """
        return verdict(self.tables, self.subgroups, model=model)

    def long_frame(self, split: Split) -> pd.DataFrame:
        """Per-condition metrics in long format: ``model``, ``condition``, ``subgroup`` and
        one column per metric (a bundle's ``metrics.csv``).

        Parameters
        ----------
        split
            The split (each condition's subgroup).

        Returns
        -------
        pd.DataFrame
        """
        rows = []
        for name, table in self.tables.items():
            for cond, row in table.iterrows():
                rows.append({"model": name, "condition": cond,
                             "subgroup": split.subgroup_of(cond) or "", **row.to_dict()})
        return pd.DataFrame(rows)


def predicted_already(predicted: np.ndarray) -> Callable[[Sequence[str]], np.ndarray]:
    """A model for :func:`benchmark` that answers with predictions made already.

    Parameters
    ----------
    predicted
        Predicted expression of the part's measured conditions, in the split's order
        ``(n_conditions, n_measured)``.

    Returns
    -------
    callable
        ``conditions -> predicted``; a ``ValueError`` when the counts differ.
    """
    def model(conditions: Sequence[str]) -> np.ndarray:
        if len(predicted) != len(conditions):
            raise ValueError(f"predicted: {len(predicted)} rows for {len(conditions)} held-out "
                             "conditions")
        return predicted

    return model


def benchmark(
    pb: PseudoBulk,
    split: Split,
    predictors: Mapping[str, Predictor] | None = None,
    *,
    part: str = "test",
    include_baselines: bool = True,
    baselines: Mapping[str, Baseline] | None = None,
    prior: pd.DataFrame | None = None,
    genes: Sequence[str] | None = None,
    cells: Any = None,
    cell_eval: bool = True,
    seed: int = SEED,
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
    cells
        The screen's cells (the AnnData ``pb`` was made from, or a
        :class:`~.replicate.CellSample`): with them, cell-eval's DE metrics and the
        ``replicate`` row (:mod:`.replicate`). Without them, cell-eval's metrics of the means
        only, and a note.
    cell_eval
        Compute cell-eval's metrics (``cell_eval.*`` columns).
    seed
        Seed of the replicate's split.

    Returns
    -------
    Report
        Every predictor and baseline on the held-out conditions of ``part``.
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
    predictions = {name: np.asarray(fn(held_out), dtype=np.float64) for name, fn in models.items()}
    tables = {
        name: metrics_table(pred, truth, pb.control_mean.astype(np.float64), de, held_out)
        for name, pred in predictions.items()
    }
    sample = None
    if cells is not None:
        sample = cells if isinstance(cells, CellSample) else CellSample.from_adata(cells, held_out)
        if tuple(sample.genes) != tuple(pb.genes):
            raise ValueError("cells: other genes (or another order) than the pseudo-bulk")
        if set(held_out) - set(sample.conditions):
            raise ValueError("cells: some held-out conditions have no cells")
    notes = []
    if cell_eval:
        for name, table in _cell_eval_tables(pb, held_out, predictions, sample).items():
            tables[name] = tables[name].join(table.rename(columns=celleval.flat))
        if sample is None:
            notes.append("cell-eval's DE metrics (overlap_at_N, de_direction_match, ...) need the "
                         "cells: give the data (--data)")
    replicate: dict[str, Any] = {}
    if sample is not None:
        halves = split_halves(sample, seed=seed)
        if halves is None:
            notes.append("no replicate: fewer than 2 control cells")
        else:
            de_of = {c: pb.de_idx[pb.index(c)] for c in held_out}
            tables[REFERENCE] = replicate_table(halves, de_of, cell_eval=cell_eval)
            replicate = {"seed": seed, "dropped": list(halves.dropped),
                         "split": "each perturbation's cells and the control cells shuffled (one "
                                  "seeded generator, groups in sorted label order) and cut into "
                                  "two disjoint halves of floor(n/2) cells, each with its own half "
                                  "of the control cells; the second half scored as a prediction "
                                  "of the first (cell-eval's data ceiling, before its "
                                  "Spearman-Brown correction)"}
    else:
        notes.append("no replicate row: it splits each perturbation's cells in two; give the "
                     "data (--data)")
    subgroups = {g: [c for c in members if c in held_out]
                 for g, members in split.subgroups.get(part, {}).items()}
    return Report(
        dataset=pb.dataset, split=split.name, seed=split.seed, test_conditions=held_out,
        tables=tables, subgroups={g: m for g, m in subgroups.items() if m}, notes=notes,
        replicate=replicate, predictions=predictions,
    )


def _cell_eval_tables(pb: PseudoBulk, held_out: Sequence[str], predictions: Mapping[str, np.ndarray],
                      sample: CellSample | None) -> dict[str, pd.DataFrame]:
    """cell-eval's metrics of each model's predictions (:func:`.celleval.compute`), on the
    conditions it predicts; the DE ones only with ``sample``."""
    rows = pb.rows(held_out)
    truth = pb.means[rows].astype(np.float64)
    control = pb.control_mean.astype(np.float64)
    held = np.asarray(held_out, dtype=object)
    labels = np.asarray(celleval.labels_for(held_out), dtype=object)
    de_real = None
    if sample is not None:
        de_real = celleval.de_against_control([sample.cells[c] for c in held_out], sample.control)
    out = {}
    for name, pred in predictions.items():
        keep = ~np.all(np.isnan(pred), axis=1)
        if not keep.any():
            continue
        cells = celleval.as_predicted_cells(pred[keep])
        de_pred = de_sub = None
        if de_real is not None:
            de_pred = celleval.de_against_control(
                [celleval.Constant(cells[j], sample.n_cells(c)) for j, c in enumerate(held[keep])],
                sample.control)
            de_sub = celleval.DETable(lfc=de_real.lfc[keep], fdr=de_real.fdr[keep])
        table = celleval.compute(cells, truth[keep], control, list(labels[keep]), pb.genes,
                                 de_real=de_sub, de_pred=de_pred)
        table.index = list(held[keep])
        out[name] = table
    return out


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
