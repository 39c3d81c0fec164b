"""Prediction intervals for measured shifts, calibrated on perturbations the weights never saw.

The ensemble's spread alone is no interval: members that start from the same warm start
agree with each other far more closely than with the screen (on the Adamson and Norman
slices 2 to 3 % of held-out errors of expressed genes fall within two spreads). A measured
shift also carries what no member can know: sampling noise and the model's own bias, both
larger for genes that move more. So the interval's half width at gene ``g`` for perturbation
``P`` is

.. math::
    w_{P,g} = q \\sqrt{\\sigma_{P,g}^2 + (\\kappa\\, s_g)^2}

with :math:`\\sigma_{P,g}` the ensemble's spread and :math:`s_g` how much gene ``g`` moved
over the training perturbations (:func:`gene_scale`). ``q`` and ``κ`` are fitted by
conformal prediction on perturbations the predicting weights never saw: by default
cross-conformal, every training perturbation predicted by a member trained without its
genes (five folds), plus the validation perturbations (:func:`grape_core.training.plan.calibration_set`);
``κ`` gives the narrowest intervals, and ``q`` is the conformal quantile of the normalised
errors at the chosen level, so that that share of those errors fall inside
(:func:`fit_calibration`). A few validation perturbations alone (split conformal, the
``calibration_folds=0`` setting) made a level that moved by 40 points with the one chosen.

The genes a chart shows, a perturbation's largest predicted shifts, are wrong by far more
than the rest, so they get their own ``q`` and ``κ`` (conformal prediction by group): one
fit over all genes would be too narrow for them and too wide for the others. The other
genes' fit is made on expressed genes; genes silent in control cells take it too, without
being calibrated on (they barely move: on the Norman slice 97 % of theirs held).

Validation chose the training step, and a few perturbations' genes are not independent
draws, so the level is a target, not a guarantee: every bundle reports the share of
held-out (test) measured shifts that fell inside (:func:`interval_check`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..bundle.schema import CalibrationInfo, IntervalFit
from ..data.pseudobulk import PseudoBulk
from .benchmark import expressed

LEVEL = 0.9
"""Share of measured shifts an interval is calibrated to hold."""

TOP = 20
"""A perturbation's largest predicted shifts that get their own interval (the chart's)."""

COVERAGE_KEYS = ("within_interval_top", "within_interval_rest", "within_interval_de")
"""The shares :func:`interval_check` reports (in ``manifest.uncertainty``): of the shown
genes, of the other expressed genes and of the genes that moved most."""

FLOORS = (0.0, *np.round(np.logspace(-2, 2, 25), 4).tolist())
"""Candidate ``κ``: from the spread alone (0) to a width set by the gene's scale alone."""


def gene_scale(pb: PseudoBulk, train: Sequence[str], val: Sequence[str] = ()) -> np.ndarray:
    """Root-mean-square measured shift of every gene over the training perturbations
    ``train``, leaving out the validation ones ``val`` (after a refit they are among the
    training perturbations, and the interval is calibrated on them): how far a gene moves
    when genes are perturbed. ``(n_genes,)``."""
    conditions = [c for c in train if c not in set(val)]
    if not conditions:
        return np.zeros(len(pb.genes))
    shifts = pb.shifts_of(conditions).astype(np.float64)
    return np.sqrt(np.mean(shifts ** 2, axis=0))


def largest(shift: np.ndarray, top: int) -> np.ndarray:
    """Boolean mask of each row's ``top`` largest |shift| (ties: the first gene)."""
    shift = np.atleast_2d(shift)
    order = np.argsort(-np.abs(shift), axis=1, kind="stable")[:, :top]
    mask = np.zeros(shift.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest score (split conformal); infinite when ``n``
    is too small for the level."""
    n = scores.size
    k = int(np.ceil((n + 1) * level))
    return float(np.sort(scores)[k - 1]) if 0 < k <= n else float("inf")


def _widths(std: np.ndarray, scale: np.ndarray, floor: float) -> np.ndarray:
    return np.sqrt(std ** 2 + (floor * scale) ** 2)


def _fit(error: np.ndarray, std: np.ndarray, scale: np.ndarray, level: float) -> IntervalFit | None:
    """The ``κ`` of :data:`FLOORS` with the narrowest mean interval, and its ``q``; flat
    arrays of one group's values."""
    best: tuple[float, float, float] | None = None
    for floor in FLOORS:
        width = _widths(std, scale, floor)
        with np.errstate(divide="ignore", invalid="ignore"):  # no finite q holds an error
            scores = np.where(width > 0, error / np.where(width > 0, width, 1.0),  # at width 0
                              np.where(error > 0, np.inf, 0.0))
        q = conformal_quantile(scores, level)
        mean_width = q * float(width.mean()) if np.isfinite(q) else np.inf
        if np.isfinite(mean_width) and (best is None or mean_width < best[0]):
            best = (mean_width, floor, q)
    return None if best is None else IntervalFit(scale=best[2], floor=best[1], values=error.size)


def fit_calibration(shift: np.ndarray, std: np.ndarray, measured: np.ndarray,
                    scale: np.ndarray, control: np.ndarray, *, level: float = LEVEL,
                    top: int = TOP, method: str = "split") -> CalibrationInfo | None:
    """Fit each group's ``q`` and ``κ`` on perturbations the predicting weights never saw
    (``method``: ``split``, validation ones; ``cross``, also cross-fitted training ones,
    :func:`~grape_core.training.plan.calibration_set`): each perturbation's ``top`` largest
    predicted shifts, and its other :func:`~.evaluate.expressed` genes.

    Parameters
    ----------
    shift, std, measured
        ``(n_val, n_genes)``: predicted shift, ensemble spread, measured shift.
    scale
        :func:`gene_scale` ``(n_genes,)`` of the training perturbations.
    control
        Control mean ``(n_genes,)``.

    Returns
    -------
    CalibrationInfo or None
        ``None`` when a group has too few validation values for any finite interval to hold
        the level.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    error = np.abs(shift - measured)
    std = np.broadcast_to(std, shift.shape)
    scale = np.broadcast_to(scale, shift.shape)
    shown = largest(shift, top)
    rest = ~shown & expressed(control)[None, :]
    shown_fit = _fit(error[shown], std[shown], scale[shown], level)
    # a screen of at most `top` expressed genes has no others: they share the one interval
    rest_fit = _fit(error[rest], std[rest], scale[rest], level) if rest.any() else shown_fit
    if shown_fit is None or rest_fit is None:
        return None
    return CalibrationInfo(level=float(level), top=int(top), largest=shown_fit, rest=rest_fit,
                           conditions=int(shift.shape[0]), method=method)


def half_width(calibration: CalibrationInfo, shift: np.ndarray, std: np.ndarray,
               scale: np.ndarray) -> np.ndarray:
    """The interval's half width for predicted shifts ``shift`` and spreads ``std``
    (``(n_genes,)`` or ``(n, n_genes)``, the shape returned)."""
    shown = largest(shift, calibration.top).reshape(np.shape(shift))
    std = np.asarray(std, dtype=np.float64)
    return np.where(shown, calibration.largest.scale * _widths(std, scale, calibration.largest.floor),
                    calibration.rest.scale * _widths(std, scale, calibration.rest.floor))


def interval_check(calibration: CalibrationInfo, shift: np.ndarray, std: np.ndarray,
                   measured: np.ndarray, scale: np.ndarray, control: np.ndarray,
                   de_idx: np.ndarray) -> dict[str, float | int]:
    """Share of held-out measured shifts inside their interval: over each perturbation's
    largest predicted shifts (``within_interval_top``, the genes a chart shows), its other
    :func:`~.evaluate.expressed` genes (``within_interval_rest``) and its differentially
    expressed genes (``within_interval_de``, ``de_idx`` ``(n, k)``: lower where the model
    missed a gene that moved); with the median half width against the median |error| of
    the shown genes."""
    width = half_width(calibration, shift, std, scale)
    error = np.abs(shift - measured)
    inside = error <= width
    shown = largest(shift, calibration.top)
    rest = ~shown & expressed(control)[None, :]
    return {
        "interval_level": calibration.level,
        "within_interval_top": float(inside[shown].mean()),
        "within_interval_rest": float(inside[rest].mean()) if rest.any() else float("nan"),
        "within_interval_de": float(np.take_along_axis(inside, de_idx, axis=1).mean()),
        "median_interval_half_width_top": float(np.median(width[shown])),
        "median_error_top": float(np.median(error[shown])),
    }
