"""Model + perturbation -> predicted expression: what the app and the command line call.

.. math::
    \\hat x_{P,g} = \\bar x_{\\mathrm{ctrl},g} + \\frac{1}{M} \\sum_{m=1}^{M} \\hat\\Delta^{(m)}_{P,g}

(the ensemble's one forward pass, :meth:`~grape_core.serving.model.Model.expression`), with
the baselines beside it, a pair's additive expectation and genetic-interaction analysis.

Shapes: predictions ``(n_perts, n_measured)``; a
:class:`~grape_core.serving.results.Prediction` holds one perturbation, every array
``(n_measured,)`` in the order of the model's measured genes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..data.conditions import format_condition, genes_of
from ..errors import ConditionError, GrapeError, UnknownGeneError
from .loaded import LoadedModel, as_model
from .resolve import resolve_perturbation
from .results import Prediction


# ----------------------------------------------------------------------------- prediction
def predict_conditions(model: LoadedModel | Bundle, conditions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and standard deviation of predicted expression
    (:meth:`~grape_core.serving.model.Model.expression`: the one forward pass).

    Parameters
    ----------
    model
        A loaded model (or a bundle).
    conditions
        Condition labels (``A+ctrl``, ``A+B``) of the model's genes.

    Returns
    -------
    mean, std
        ``(n_perts, n_measured)`` predicted mean log-expression and the per-gene standard
        deviation across ensemble members.

    Raises
    ------
    BundleError
        The model predicts non-finite values (damaged weights).
    """
    return as_model(model).expression(conditions)


def baseline_predictions(model: LoadedModel | Bundle, conditions: Sequence[str]) -> dict[str, np.ndarray]:
    """Every baseline fitted on the model's training conditions.

    Parameters
    ----------
    model
        A loaded model (or a bundle).
    conditions
        Condition labels.

    Returns
    -------
    dict
        ``{name: (n_perts, n_measured)}`` predicted expression.
    """
    return {name: b.predict(list(conditions)) for name, b in as_model(model).baselines().items()}


def predict(model: LoadedModel | Bundle, perturbation: str | Sequence[str], *,
            baselines: bool = True, interactions: bool = True) -> Prediction:
    """Predicted response of every measured gene to one gene or a pair.

    Parameters
    ----------
    model
        A loaded model (:func:`load`).
    perturbation
        ``"A"``, ``"A+B"`` (also ``A+ctrl``, any case, known aliases) or ``["A", "B"]``.
    baselines
        Also give every baseline's shift and, for a pair, the additive expectation.
    interactions
        A pair's genetic-interaction analysis (about a second, and the first one of a process
        imports its libraries); ``False`` leaves it out (:func:`with_interaction` adds it).

    Returns
    -------
    Prediction
        Shifts, spread, measured values (when the screen has the condition), baselines,
        part of the split, warnings and, for a pair, the genetic-interaction analysis.

    Raises
    ------
    UnknownGeneError, ConditionError
        A gene the model does not know (with suggestions), a bad perturbation string.

    Examples
    --------
    >>> import grape_core as gc
    >>> model = gc.load("assets/models/norman")
    >>> pred = gc.predict(model, "KLF1+MAP2K6")
    >>> pred.condition, pred.interaction["predicted"]["gi_type"] in gc.evaluation.interactions.GI_TYPES
    ('KLF1+MAP2K6', True)
    """
    model = as_model(model)
    condition = resolve_perturbation(model, perturbation)
    mean, std = predict_conditions(model, _with_singles(condition))  # a pair's singles in one pass
    return _prediction(model, condition, mean, std, baselines=baselines, analyse_pair=interactions)


def with_interaction(model: LoadedModel | Bundle, pred: Prediction) -> Prediction:
    """``pred`` with a pair's genetic-interaction analysis (:attr:`Prediction.interaction`),
    for a prediction made without it; a single, or a pair that has it, as it is. The app
    shows a pair's chart first and this below it."""
    if pred.interaction is not None or len(pred.perturbed) != 2:
        return pred
    from dataclasses import replace

    # the prediction already holds the singles it was built from: no second ensemble pass
    return replace(pred, interaction=_interaction(as_model(model), pred.perturbed, pred.condition,
                                                  pred.singles, pred.single_sources, pred.shift))


def _with_singles(condition: str) -> list[str]:
    """What a prediction of ``condition`` needs: a pair's two singles, then the condition."""
    perturbed = genes_of(condition)
    singles = [format_condition((g,)) for g in perturbed] if len(perturbed) == 2 else []
    return [*singles, condition]


def _prediction(model: LoadedModel, condition: str, mean: np.ndarray, std: np.ndarray, *,
                baselines: bool, analyse_pair: bool = True) -> Prediction:
    """The :class:`Prediction` of ``condition`` from the predicted expression (ensemble mean
    and spread) of :func:`_with_singles`'s conditions; ``analyse_pair``: a pair's
    genetic-interaction analysis."""
    bundle = model.bundle
    calibration = bundle.manifest.calibration
    perturbed = genes_of(condition)
    singles = _with_singles(condition)[:-1]
    pb = bundle.pseudobulk
    control = pb.control_mean.astype(np.float64)
    shift = mean[-1] - control
    table = bundle.table.loc[list(pb.genes)]
    warnings = []
    unseen = [g for g in perturbed if g not in bundle.trained_genes]
    if len(perturbed) == 2 and len(unseen) == 2:
        warnings.append(f"neither {perturbed[0]} nor {perturbed[1]} was perturbed in training: "
                        "this pair is an extrapolation (GEARS' combo_seen0)")
    elif unseen:
        warnings.append(f"{', '.join(unseen)} was not perturbed in training: the prediction "
                        "comes from its gene knowledge and graph neighbours")
    found: dict[str, np.ndarray] = {}
    additive, additive_from, single_shifts, sources = None, "", None, ()
    if baselines:
        for name, values in baseline_predictions(model, [condition]).items():
            values = np.asarray(values, dtype=np.float64).reshape(-1) - control
            if name != "control" and not np.isnan(values).all():
                found[name] = values
    if singles:
        single_shifts, sources = pair_singles(model, perturbed, mean[:2] - control[None, :])
        additive = single_shifts.sum(axis=0)
        additive_from = sources[0] if sources[0] == sources[1] else "mixed"
    interaction = None
    if singles and analyse_pair:
        interaction = _interaction(model, perturbed, condition, single_shifts, sources, shift)
    return Prediction(
        model=bundle.name, condition=condition, perturbed=perturbed,
        part=bundle.split.part_of(condition) or ("measured" if condition in pb else "unmeasured"),
        genes=tuple(pb.genes), biotype=table["biotype"].to_numpy(),
        is_coding=table["is_coding"].astype(bool).to_numpy(), control=control, shift=shift,
        std=std[-1], interval=model.interval(shift, std[-1]),
        interval_level=calibration.level if calibration is not None else None,
        measured_shift=(pb.means[pb.index(condition)].astype(np.float64) - control
                        if condition in pb else None),
        baselines=found, additive=additive, additive_from=additive_from,
        singles=single_shifts, single_sources=sources,
        warnings=tuple(warnings), interaction=interaction,
    )


def predict_many(model: LoadedModel | Bundle, perturbations: Sequence[str | Sequence[str]], *,
                 where: Sequence[str] | None = None, baselines: bool = True,
                 interactions: bool = True, progress: bool = False,
                 chunk: int = 256) -> list[Prediction]:
    """:func:`predict` for several perturbations, in their order; every one is checked
    before any is predicted, and the ensemble runs over all of them (and the singles of
    their pairs) in passes of ``chunk`` conditions, each condition once.

    Parameters
    ----------
    perturbations
        A list of what :func:`predict` takes (``["KLF1", "KLF1+MAP2K6"]``).
    where
        Where each perturbation came from (e.g. ``"list.txt, line 3"``), named in errors;
        default ``perturbation 1``, ``perturbation 2``... (nothing for a list of one).
    baselines
        As for :func:`predict`.
    interactions
        The genetic-interaction analysis of each pair (:attr:`Prediction.interaction`), as
        :func:`predict` gives; about a second per pair on a laptop CPU. ``False``: none.
    progress
        A progress bar over the perturbations.

    Raises
    ------
    UnknownGeneError, ConditionError
        As :func:`predict`, naming where the perturbation came from; also a perturbation
        given twice (``KLF1`` and ``klf1+ctrl``, ``A+B`` and ``B+A``, are the same one).

    Returns
    -------
    list of Prediction
        One per perturbation, in the order given.
    """
    from tqdm.auto import tqdm

    if isinstance(perturbations, str):
        raise TypeError("perturbations: a list of perturbations, not one string; for one, "
                        "call predict")
    if chunk < 1:
        raise ValueError(f"chunk must be 1 or more, not {chunk}")
    model = as_model(model)
    if where is None:
        where = ([""] if len(perturbations) == 1 else
                 [f"perturbation {i + 1}" for i in range(len(perturbations))])
    if len(where) != len(perturbations):
        raise ValueError(f"where: {len(where)} places for {len(perturbations)} perturbations")
    conditions: list[str] = []
    seen: dict[frozenset, str] = {}  # the perturbed genes -> where they were given
    for text, place in zip(perturbations, where):
        prefix = f"{place}: " if place else ""
        try:
            condition = resolve_perturbation(model, text)
        except UnknownGeneError as exc:
            raise UnknownGeneError(f"{prefix}{exc}", gene=exc.gene,
                                   suggestions=exc.suggestions) from exc
        except GrapeError as exc:
            raise type(exc)(f"{prefix}{exc}") from exc
        genes = frozenset(genes_of(condition))
        if genes in seen:
            raise ConditionError(f"{prefix}{condition} was given already ({seen[genes]}); give "
                                 "each perturbation once")
        seen[genes] = place or "above"
        conditions.append(condition)
    needed = list(dict.fromkeys(c for condition in conditions for c in _with_singles(condition)))
    row = {c: i for i, c in enumerate(needed)}
    parts = [predict_conditions(model, needed[i:i + chunk]) for i in range(0, len(needed), chunk)]
    mean = np.concatenate([m for m, _ in parts]) if parts else np.zeros((0, 0))
    std = np.concatenate([s for _, s in parts]) if parts else np.zeros((0, 0))
    out = []
    for condition in tqdm(conditions, desc="predictions", unit="perturbation",
                          disable=not progress or len(conditions) < 2):
        rows = [row[c] for c in _with_singles(condition)]
        out.append(_prediction(model, condition, mean[rows], std[rows], baselines=baselines,
                               analyse_pair=interactions))
    return out


def pair_singles(model: LoadedModel, perturbed: Sequence[str],
                 predicted: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """The two singles a pair's prediction is built from, ``(2, n_measured)``
    (:meth:`~grape_core.serving.loaded.LoadedModel.single_shifts_composed`), and where each
    came from (``measured`` / ``predicted``)."""
    return model.single_shifts_composed(list(perturbed), predicted)


def _interaction(model: LoadedModel, perturbed: tuple[str, ...], condition: str,
                 singles: np.ndarray, sources: Sequence[str], shift: np.ndarray) -> dict[str, dict[str, Any]]:
    """Genetic-interaction analysis of a pair: of its predicted ``shift`` against the
    ``singles`` it is built from (:func:`pair_singles`: measured where the model composes
    the pair from a measured single, else the predicted ones; ``sources`` says which), so
    that the verdict describes the prediction's own parts; and of the measured pair
    against its measured singles when the screen has all three."""
    from ..evaluation.interactions import interaction_report

    a, b = perturbed
    genes = _interaction_genes(model.bundle)
    report = interaction_report(singles[0], singles[1], shift, genes=genes, names=(a, b))
    out = {"predicted": {**report, "singles": list(sources)}}
    pb = model.bundle.pseudobulk
    conds = [pb.find(c) for c in (format_condition((a,)), format_condition((b,)), condition)]
    if all(conds):
        measured = pb.shifts_of(conds)
        out["measured"] = interaction_report(measured[0], measured[1], measured[2], genes=genes,
                                             names=(a, b))
    return out


def _interaction_genes(bundle: Bundle, n: int = 500) -> np.ndarray:
    """The genes GEARS fits interactions on: the highest control expression, among the genes
    expressed in control cells. A silent gene moves in no single, and a Theil-Sen fit over
    many such genes (79 % of the Norman slice's) returns slopes near 0 for a pair that is
    exactly the sum of its singles."""
    ctrl = bundle.pseudobulk.control_mean
    expressed = np.flatnonzero(ctrl > 0)
    order = expressed[np.argsort(-ctrl[expressed], kind="stable")]
    return order[: min(n, order.size)] if order.size else np.arange(ctrl.size)


def example_condition(model: LoadedModel | Bundle) -> str | None:
    """A perturbation to open on: held out (measured by the screen, never seen in training),
    the one of median held-out accuracy (``pearson_delta`` in ``metrics.csv``), so neither
    the model's best nor its worst. ``None`` when nothing was held out.

    Examples
    --------
    >>> import grape_core as gc
    >>> from grape_core.serving.predict import example_condition
    >>> model = gc.load("assets/models/norman")
    >>> example_condition(model) in model.bundle.split.test
    True
    """
    bundle = as_model(model).bundle
    pb = bundle.pseudobulk
    held = sorted(c for c in bundle.split.test if c in pb and genes_of(c))
    if not held:
        return None
    metrics = bundle.metrics
    if {"model", "condition", "pearson_delta"} <= set(metrics.columns):
        rows = metrics[(metrics["model"] == "grape") & metrics["condition"].isin(held)]
        rows = rows.dropna(subset=["pearson_delta"]).sort_values(["pearson_delta", "condition"],
                                                                 kind="stable")
        if len(rows):
            return str(rows["condition"].iloc[(len(rows) - 1) // 2])
    return held[0]
