"""How good is a loaded model: GRAPE, every baseline and the data's replicate on its
held-out perturbations (:func:`evaluate`, the one ``evaluate``), and whether its screen
ranks held-out perturbations the way the measurements do (:func:`screen_check`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..bundle import Bundle
from ..errors import GrapeError
from ..evaluation.baselines import fit_baselines
from ..evaluation.benchmark import Report, benchmark, predicted_already
from .loaded import LoadedModel, as_model
from .predict import baseline_predictions, predict_conditions


# ----------------------------------------------------------------------------- evaluation
def evaluate(model: LoadedModel | Bundle, pb=None, *, part: str = "test",
             predicted: np.ndarray | None = None, cells=None) -> Report:
    """GRAPE (row ``grape``), every baseline and the data's replicate on the model's
    held-out conditions, with GEARS' and cell-eval's metrics.

    Parameters
    ----------
    model
        A loaded model.
    pb
        The pseudo-bulk of other data with the same measured genes (default: the model's
        own training data).
    part
        ``test`` or ``val``.
    predicted
        GRAPE's predicted expression of the model's own held-out conditions of ``part``
        (:func:`predict_conditions`, in the split's order) when the caller has it already.
    cells
        The screen's cells (the AnnData ``pb`` comes from; for the model's own data, the
        training file read by :func:`~grape_core.data.read.read_perturbseq`): cell-eval's
        DE metrics and the ``replicate`` row are computed from them. Without them, the
        replicate rows stored in the model at training time are used, when it has them, and
        cell-eval's DE metrics are left out (``Report.notes`` says so).

    Raises
    ------
    BundleError
        ``pb`` measures other genes than the model.

    Returns
    -------
    Report
        Per model and baseline: GEARS' metrics (``models``, per condition, per subgroup),
        cell-eval's, the replicate and each model scaled between the mean response and it;
        ``extra["verdict"]``: the comparison in one sentence.
    """
    model = as_model(model)
    bundle = model.bundle
    pb = pb if pb is not None else bundle.pseudobulk
    bundle.check_genes(pb.genes)
    baselines = model.baselines() if pb is bundle.pseudobulk else None
    if predicted is not None and pb is not bundle.pseudobulk:
        raise ValueError("predicted: only for the model's own data")

    def grape(conditions: Sequence[str]) -> np.ndarray:
        return predict_conditions(model, conditions)[0]

    report = benchmark(pb, bundle.split,
                       {"grape": grape if predicted is None else predicted_already(predicted)},
                       part=part, baselines=baselines or fit_baselines(
                           pb, model.fitted_on, prior=bundle.prior_edges,
                           genes=bundle.genes, features=bundle.fused), cells=cells)
    if cells is None and pb is bundle.pseudobulk and part == "test":
        _stored_replicate(bundle, report)
    report.extra["verdict"] = report.verdict("grape")
    return report


def _stored_replicate(bundle: Bundle, report: Report) -> None:
    """The ``replicate`` rows a model stored at training time (they depend on the data and
    the split only), into ``report`` when it has none."""
    from ..evaluation.replicate import REFERENCE

    metrics = bundle.metrics
    if REFERENCE in report.tables or "model" not in metrics:
        return
    rows = metrics[metrics["model"] == REFERENCE].set_index("condition")
    rows = rows.loc[rows.index.intersection(report.test_conditions)]
    if not len(rows):
        return
    report.tables[REFERENCE] = rows.drop(columns=["model", "subgroup"], errors="ignore")
    report.notes[:] = [n for n in report.notes if not n.startswith("no replicate row")]
    report.notes.append("replicate row: stored in the model at training time (computed from "
                        "the training data's cells)")
    report.replicate = dict(bundle.manifest.metrics.extra.get("replicate", {})) \
        if bundle.manifest.metrics is not None else {}


def screen_check(model: LoadedModel | Bundle, *, n_targets: int = 20, part: str = "test") -> pd.DataFrame:
    """Does the screen rank held-out perturbations the way the measurements do?

    For each of the ``n_targets`` genes that vary most across held-out conditions, the
    Spearman correlation between predicted and measured shift of that gene across the
    held-out conditions; averaged per model (GRAPE and every baseline).

    Returns
    -------
    DataFrame indexed by model: ``spearman`` (mean over targets), ``n_targets``,
    ``n_conditions``.
    """
    from scipy.stats import spearmanr

    model = as_model(model)
    bundle = model.bundle
    pb = bundle.pseudobulk
    held = [c for c in getattr(bundle.split, part) if c in pb]
    if len(held) < 3:
        raise GrapeError(f"the screen check needs at least 3 measured {part} conditions; "
                         f"model {bundle.name!r} has {len(held)}")
    truth = pb.shifts_of(held)
    targets = np.argsort(-truth.std(0), kind="stable")[:n_targets]
    predictions = {"grape": predict_conditions(model, held)[0]}
    predictions.update(baseline_predictions(model, held))
    rows = {}
    for name, pred in predictions.items():
        shift = pred - pb.control_mean
        ok = ~np.isnan(shift).any(1)
        if ok.sum() < 3:
            continue
        rhos = []
        for g in targets:
            p, t = shift[ok, g], truth[ok, g]
            rho = 0.0 if np.ptp(p) == 0 or np.ptp(t) == 0 else float(spearmanr(p, t).statistic)
            rhos.append(rho)
        rows[name] = {"spearman": float(np.mean(rhos)), "n_targets": len(targets),
                      "n_conditions": int(ok.sum())}
    return pd.DataFrame.from_dict(rows, orient="index")
