"""Genetic-interaction (GI) scores and types for a pair A+B (GEARS / Norman et al. 2019).

The shift of the double is regressed on the shifts of the two singles, over genes,

    shift_AB ≈ c1 · shift_A + c2 · shift_B        (Theil-Sen, no intercept),

and the pair is described by the scores of GEARS ``gears/utils.py:get_coeffs``:

- ``c1``, ``c2``: the Theil-Sen coefficients; ``mag = sqrt(c1² + c2²)``;
- ``dcor``: distance correlation of ``[shift_A, shift_B]`` (2-D) with ``shift_AB``;
- ``dcor_singles``, ``dcor_first``, ``dcor_second``: distance correlations A~B, A~AB, B~AB;
- ``corr_fit``: Pearson correlation of the fitted ``c1·A + c2·B`` with ``shift_AB``;
- ``dominance = |log10(|c1| / |c2|)|``; ``eq_contr = min(dcor_first, dcor_second) /
  max(dcor_first, dcor_second)``.

The fit and the distance correlations are GEARS' own libraries: scikit-learn's
``TheilSenRegressor(fit_intercept=False, max_subpopulation=max_subsets, max_iter=1000)`` and
``dcor.distance_correlation``. Differences from GEARS, all in degenerate corners:
``dominance`` uses ``|c1|/|c2|`` (GEARS takes the log of ``c1/c2`` and returns NaN whenever
the signs differ; identical otherwise); NaN and inf are returned instead of warnings (see
:func:`interaction_scores`); the random subsets of the Theil-Sen fit are drawn with
``random_state=seed`` (GEARS: 1000). With ``n_genes * (n_genes - 1) / 2 <= max_subsets`` (up
to 447 genes at the default) every pair is used and the fit is deterministic.

Interaction types
-----------------
:func:`classify_interaction` applies a decision list (first match wins) to the scores, with
``rel_mag = mag / sqrt(2)``, the magnitude relative to the additive expectation
(``c1 = c2 = 1`` gives ``mag = sqrt(2)``, so ``rel_mag = 1`` is exactly additive):

1. neomorphic: ``corr_fit < NEOMORPHIC_MAX_FIT`` (0.83) or ``dcor < NEOMORPHIC_MAX_DCOR``
   (0.65): the singles explain the double poorly;
2. redundant: ``dcor_singles >= REDUNDANT_MIN_DCOR_SINGLES`` (0.60) and
   ``rel_mag <= REDUNDANT_MAX_REL_MAG`` (1.0): the singles look alike and the double is no
   larger than their sum;
3. epistasis: ``dominance >= EPISTASIS_MIN_DOMINANCE`` (0.40, one coefficient 2.5x the
   other) or ``eq_contr <= EPISTASIS_MAX_EQ_CONTR`` (0.30): one single dominates;
4. synergy: ``rel_mag > SYNERGY_MIN_REL_MAG`` (1.05);
5. suppressor: ``rel_mag < SUPPRESSOR_MAX_REL_MAG`` (0.80);
6. additive: otherwise (``0.80 <= rel_mag <= 1.05`` with a good, balanced fit).

A NaN score never triggers its rule. An exact sum ``shift_AB = shift_A + shift_B`` gives
``c1 = c2 = 1``, ``rel_mag = 1``, ``corr_fit = 1``, ``dominance = 0`` and is additive.

Calibration on Norman et al. (``norman_GI_scores_truth.csv``: 72 labelled doubles with
GEARS-computed scores, no additive row; majority class synergy = 30/72 = 41.7 %). All
thresholds but ``SYNERGY_MIN_REL_MAG`` were picked on a grid as the point nearest the centre
of the plateau of best agreement. Agreement: 58/72 = 80.6 %; leave-one-out (re-running the
same grid choice without the held-out pair): 53/72 = 73.6 %::

    truth \\ rule  synergy suppressor neomorphic redundant epistasis additive
    synergy          24          0          0         2         0        4
    suppressor        0         12          0         0         0        0
    neomorphic        0          3          5         0         3        2
    redundant         0          0          0         8         0        0
    epistasis         0          0          0         0         9        0

Measured doubles have a shrunken magnitude scale: every labelled suppressor has
``rel_mag <= 0.72`` and labelled synergies start at ``rel_mag = 0.87`` (several sit between
0.97 and 1.05), so the data alone put the synergy threshold near 0.8 (62/72 = 86.1 %
with otherwise the same rules; 1.02 gives 60/72), which would call every exact sum a
synergy. ``SYNERGY_MIN_REL_MAG = 1.05`` ("clearly above the sum": 5 % above, beyond the
Theil-Sen noise of a few hundred genes) keeps exact and near-exact sums additive and costs
the 4 synergies above with ``rel_mag`` in [0.87, 1.05]. Neomorphic doubles are the weak spot
(5/13): their fit and distance correlations overlap those of suppressors and epistatic
pairs. ``NEOMORPHIC_MAX_FIT`` sits in a narrow gap of the data (0.828 vs 0.833), one reason
the leave-one-out figure is lower.

Shapes
------
``shift_a``, ``shift_b``, ``shift_ab``: ``(n_genes,)`` shifts (perturbed − control mean);
``genes``: indices or a boolean mask over ``n_genes`` selecting ``n_sel`` genes (GEARS uses
high-mean genes). Distance correlations use ``O(n_sel²)`` memory (four ``n_sel x n_sel``
float64 matrices at most); callers usually pass a few hundred genes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np

GIType = Literal["synergy", "suppressor", "neomorphic", "redundant", "epistasis", "additive"]
GI_TYPES: tuple[str, ...] = ("synergy", "suppressor", "neomorphic", "redundant", "epistasis",
                             "additive")
SCORE_KEYS: tuple[str, ...] = ("c1", "c2", "mag", "dcor", "dcor_singles", "dcor_first",
                               "dcor_second", "corr_fit", "dominance", "eq_contr")

#: ``mag`` of an exactly additive pair (``c1 = c2 = 1``).
ADDITIVE_MAG = math.sqrt(2.0)

# Decision-list thresholds (see the module docstring for the calibration).
NEOMORPHIC_MAX_FIT = 0.83
NEOMORPHIC_MAX_DCOR = 0.65
REDUNDANT_MIN_DCOR_SINGLES = 0.60
REDUNDANT_MAX_REL_MAG = 1.0
EPISTASIS_MIN_DOMINANCE = 0.40
EPISTASIS_MAX_EQ_CONTR = 0.30
SYNERGY_MIN_REL_MAG = 1.05
SUPPRESSOR_MAX_REL_MAG = 0.80

#: Above this condition number of ``[shift_A, shift_B]`` the split of the pair's effect
#: into ``c1`` and ``c2`` is not identifiable (two nearly identical singles, or one that
#: barely moves any gene): the report names no type and says why.
CONDITION_MAX = 30.0
#: A single whose shift is below this share of the pair's does not explain any of it.
WEAK_SINGLE = 0.05
UNRESOLVED = "unresolved"

# Theil-Sen settings used by GEARS (sklearn TheilSenRegressor(max_iter=1000), tol 1e-3).
_MAX_ITER = 1000


# --------------------------------------------------------------------------- Theil-Sen
def theil_sen(
    x: np.ndarray, y: np.ndarray, *, seed: int = 0, max_subsets: int = 100_000
) -> np.ndarray:
    """Theil-Sen regression without intercept: scikit-learn's ``TheilSenRegressor``.

    Each subset of ``n_features`` rows gives an exact least-squares solution; the estimate is
    the spatial median of these solutions.

    Parameters
    ----------
    x
        ``(n_genes, n_features)`` predictors (here ``n_features = 2``: shift A, shift B).
    y
        ``(n_genes,)`` response.
    seed
        ``random_state`` of the subsets, used only when there are more than ``max_subsets``.
    max_subsets
        Cap on the number of subsets (GEARS: 1e5).

    Returns
    -------
    numpy.ndarray
        ``(n_features,)`` coefficients.

    Raises
    ------
    ValueError
        If ``x`` is not ``(n_genes, 2)``, shapes disagree, or ``n_genes < 2``.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import TheilSenRegressor

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (n_genes, 2), got {x.shape}")
    if len(y) != len(x):
        raise ValueError(f"y has {len(y)} genes, x has {len(x)}")
    if len(x) < 2:
        raise ValueError(f"need at least 2 genes for the fit, got {len(x)}")
    if max_subsets < 1:
        raise ValueError(f"max_subsets must be >= 1, got {max_subsets}")
    fit = TheilSenRegressor(fit_intercept=False, max_subpopulation=max_subsets,
                            max_iter=_MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit.fit(x, y)
    return np.asarray(fit.coef_, dtype=np.float64)


# --------------------------------------------------------------- distance correlation
def distance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Székely distance correlation (biased V-statistic): ``dcor.distance_correlation``.

    Parameters
    ----------
    x, y
        ``(n,)`` or ``(n, p)`` samples, rows paired.

    Returns
    -------
    float
        In [0, 1]; 1 for ``y = x``, 0 when either sample is constant (Székely's convention).

    Raises
    ------
    ValueError
        If ``x`` and ``y`` have different numbers of rows.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"x and y need the same number of rows, got {len(x)} and {len(y)}")
    if np.ptp(x.reshape(len(x), -1), axis=0).max(initial=0.0) == 0 or \
            np.ptp(y.reshape(len(y), -1), axis=0).max(initial=0.0) == 0:
        return 0.0
    if len(x) > _DCOR_DIRECT_MAX:
        import dcor

        value = float(dcor.distance_correlation(x, y))
    else:
        value = _distance_correlation(x, y)
    return min(1.0, max(0.0, value)) if np.isfinite(value) else 0.0


_DCOR_DIRECT_MAX = 4000
"""Up to this many rows :func:`distance_correlation` uses the definition itself (two
``n x n`` distance matrices: 256 MB at 4,000); above, ``dcor``'s O(n log n) algorithm.
A pair's analysis reads 500 genes. Importing ``dcor`` compiles its numba code, 5 s or more
the first time in a process (the app's first pair); the two agree to 1e-12 (tested)."""


def _distance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Székely's biased distance correlation from its definition: the double-centred
    Euclidean distance matrices ``A``, ``B`` of the rows, ``dcor = sqrt(mean(A B) /
    sqrt(mean(A A) mean(B B)))`` (what ``dcor.distance_correlation`` computes)."""

    def centred(values: np.ndarray) -> np.ndarray:
        rows = values.reshape(len(values), -1)
        diff = rows[:, None, :] - rows[None, :, :]
        dist = np.sqrt((diff * diff).sum(axis=-1)) if rows.shape[1] > 1 else np.abs(diff[..., 0])
        return dist - dist.mean(axis=0)[None, :] - dist.mean(axis=1)[:, None] + dist.mean()

    a, b = centred(x), centred(y)
    cov = float((a * b).mean())
    var = float((a * a).mean()) * float((b * b).mean())
    if var <= 0:
        return 0.0
    return float(np.sqrt(max(cov, 0.0) / np.sqrt(var)))


# ----------------------------------------------------------------------- GI scores
def _checked(name: str, v: np.ndarray, n: int | None) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_genes,), got shape {v.shape}")
    if n is not None and len(v) != n:
        raise ValueError(f"{name} has {len(v)} genes, shift_a has {n}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or inf; drop or impute those genes first")
    return v


def _select(genes: np.ndarray | None, n: int) -> np.ndarray:
    if genes is None:
        return np.arange(n)
    g = np.asarray(genes)
    if g.dtype == bool:
        if g.shape != (n,):
            raise ValueError(f"boolean genes mask must have shape ({n},), got {g.shape}")
        return np.flatnonzero(g)
    if g.ndim != 1 or not np.issubdtype(g.dtype, np.integer):
        raise ValueError("genes must be 1-D integer indices or a boolean mask")
    if len(g) and (g.min() < -n or g.max() >= n):
        raise ValueError(f"genes indices must lie in [0, {n}), got {g.min()}..{g.max()}")
    return g


def _pearson_or_nan(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((xc * xc).sum()) * float((yc * yc).sum()))
    if denom == 0.0:
        return math.nan
    return float(np.clip((xc * yc).sum() / denom, -1.0, 1.0))


def _dominance(c1: float, c2: float) -> float:
    a1, a2 = abs(c1), abs(c2)
    if a1 == 0.0 and a2 == 0.0:
        return math.nan
    if a1 == 0.0 or a2 == 0.0:
        return math.inf
    return abs(math.log10(a1 / a2))


def interaction_scores(
    shift_a: np.ndarray,
    shift_b: np.ndarray,
    shift_ab: np.ndarray,
    *,
    genes: np.ndarray | None = None,
    seed: int = 0,
    max_subsets: int = 100_000,
) -> dict[str, float]:
    """GEARS genetic-interaction scores of a pair (``gears.utils.get_coeffs``).

    Parameters
    ----------
    shift_a, shift_b, shift_ab
        ``(n_genes,)`` shifts (prediction − control mean) of single A, single B and double AB.
    genes
        Optional ``(n_sel,)`` integer indices or ``(n_genes,)`` boolean mask of the genes to
        use (GEARS: high-mean genes). Default: all genes. Genes whose shift is exactly 0 in
        all three are left out of the fit (they carry no information).
    seed
        Seed for the Theil-Sen subsets (used only beyond ``max_subsets`` gene pairs).
    max_subsets
        Cap on the number of gene pairs in the Theil-Sen fit.

    Returns
    -------
    dict of str to float
        ``c1``, ``c2``, ``mag``, ``dcor``, ``dcor_singles``, ``dcor_first``, ``dcor_second``,
        ``corr_fit``, ``dominance``, ``eq_contr`` (see the module docstring). Degenerate
        inputs: a constant vector has distance correlation 0 with anything; ``corr_fit`` is
        NaN when the fitted values or ``shift_ab`` are constant; ``dominance`` is inf when
        exactly one of ``c1``, ``c2`` is 0 and NaN when both are; ``eq_contr`` is NaN when
        ``dcor_first = dcor_second = 0``.

    Raises
    ------
    ValueError
        On shape mismatch, non-finite values, bad ``genes`` or fewer than 2 selected genes.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=300), rng.normal(size=300)
    >>> s = interaction_scores(a, b, a + b)
    >>> round(s["c1"], 6), round(s["c2"], 6), classify_interaction(s)
    (1.0, 1.0, 'additive')
    """
    a = _checked("shift_a", shift_a, None)
    b = _checked("shift_b", shift_b, len(a))
    ab = _checked("shift_ab", shift_ab, len(a))
    idx = _select(genes, len(a))
    a, b, ab = a[idx], b[idx], ab[idx]
    if len(a) < 2:
        raise ValueError(f"need at least 2 selected genes, got {len(a)}")
    # a gene that no condition moves is uninformative, and in sparse screens such genes make
    # most Theil-Sen subsets degenerate (their median collapses to c1 = c2 = 0)
    moved = (a != 0) | (b != 0) | (ab != 0)
    if 2 <= moved.sum() < len(a):
        a, b, ab = a[moved], b[moved], ab[moved]

    singles = np.stack([a, b], axis=1)
    c1, c2 = (float(c) for c in theil_sen(singles, ab, seed=seed, max_subsets=max_subsets))
    fitted = singles @ np.array([c1, c2])

    dcor = distance_correlation(singles, ab)
    dcor_first = distance_correlation(a, ab)
    dcor_second = distance_correlation(b, ab)
    dcor_singles = distance_correlation(a, b)
    hi = max(dcor_first, dcor_second)
    return {
        "c1": c1,
        "c2": c2,
        "mag": math.hypot(c1, c2),
        "dcor": dcor,
        "dcor_singles": dcor_singles,
        "dcor_first": dcor_first,
        "dcor_second": dcor_second,
        "corr_fit": _pearson_or_nan(fitted, ab),
        "dominance": _dominance(c1, c2),
        "eq_contr": min(dcor_first, dcor_second) / hi if hi > 0 else math.nan,
    }


# ------------------------------------------------------------------ classification
def relative_magnitude(scores: Mapping[str, float]) -> float:
    """``mag / sqrt(2)``: the double's size relative to the additive expectation (1 = sum)."""
    return float(scores["mag"]) / ADDITIVE_MAG


def classify_interaction(scores: Mapping[str, float]) -> GIType:
    """Name the interaction type of a pair from its scores (decision list, first match wins).

    Parameters
    ----------
    scores
        Mapping with at least ``mag``, ``dcor``, ``dcor_singles``, ``corr_fit``,
        ``dominance``, ``eq_contr`` (as from :func:`interaction_scores`, or a row of
        ``norman_GI_scores_truth.csv``).

    Returns
    -------
    str
        One of ``synergy``, ``suppressor``, ``neomorphic``, ``redundant``, ``epistasis``,
        ``additive``. Rules and thresholds: module docstring. A NaN score never fires a rule.
    """
    missing = [k for k in ("mag", "dcor", "dcor_singles", "corr_fit", "dominance", "eq_contr")
               if k not in scores]
    if missing:
        raise ValueError(f"scores lacks {missing}; pass the output of interaction_scores")
    rel = relative_magnitude(scores)
    s = {k: float(scores[k]) for k in ("dcor", "dcor_singles", "corr_fit", "dominance",
                                       "eq_contr")}
    if s["corr_fit"] < NEOMORPHIC_MAX_FIT or s["dcor"] < NEOMORPHIC_MAX_DCOR:
        return "neomorphic"
    if s["dcor_singles"] >= REDUNDANT_MIN_DCOR_SINGLES and rel <= REDUNDANT_MAX_REL_MAG:
        return "redundant"
    if s["dominance"] >= EPISTASIS_MIN_DOMINANCE or s["eq_contr"] <= EPISTASIS_MAX_EQ_CONTR:
        return "epistasis"
    if rel > SYNERGY_MIN_REL_MAG:
        return "synergy"
    if rel < SUPPRESSOR_MAX_REL_MAG:
        return "suppressor"
    return "additive"


def _explain(gi_type: str, s: Mapping[str, float], rel: float, names: tuple[str, str]) -> str:
    a, b = names
    times = f"{rel:.2f}x the sum of its single effects (c1={s['c1']:.2f}, c2={s['c2']:.2f})"
    if gi_type == "synergy":
        return f"The pair's effect is {times}: synergy, {a} and {b} amplify each other."
    if gi_type == "suppressor":
        return f"The pair's effect is only {times}: suppressor, {a} and {b} dampen each other."
    if gi_type == "additive":
        return (f"The pair's effect is {times} and the sum fits well (r={s['corr_fit']:.2f}): "
                f"additive, {a} and {b} act independently.")
    if gi_type == "neomorphic":
        return (f"The single effects explain the pair poorly (fit r={s['corr_fit']:.2f}, "
                f"distance correlation {s['dcor']:.2f}): neomorphic, {a}+{b} produces a new "
                "expression program.")
    if gi_type == "redundant":
        return (f"{a} and {b} have very similar effects (distance correlation "
                f"{s['dcor_singles']:.2f}) and together do no more than their sum "
                f"({rel:.2f}x): redundant.")
    first = s["dcor_first"] >= s["dcor_second"]
    lead, other = (a, b) if first else (b, a)
    return (f"The pair's effect looks mostly like {lead}'s alone (c1={s['c1']:.2f}, "
            f"c2={s['c2']:.2f}): epistasis, {lead} masks {other}.")


def fit_problem(shift_a: np.ndarray, shift_b: np.ndarray, shift_ab: np.ndarray, *,
                genes: np.ndarray | None = None, names: tuple[str, str] = ("A", "B")
                ) -> tuple[float, str]:
    """Is the fit ``shift_AB ≈ c1 shift_A + c2 shift_B`` well posed?

    Returns
    -------
    condition, problem
        The condition number of ``[shift_A, shift_B]`` over the selected genes and, when the
        fit cannot be trusted, a plain-language reason (else ``""``): the pair moves no gene,
        neither single moves the genes the pair moves, one single is close to zero, or the
        two singles are nearly the same (then any split of the pair between them fits).
    """
    idx = _select(genes, len(shift_a))
    a, b, ab = (np.asarray(v, dtype=np.float64)[idx] for v in (shift_a, shift_b, shift_ab))
    na, nb, nab = (float(np.linalg.norm(v)) for v in (a, b, ab))
    gram = np.array([[a @ a, a @ b], [a @ b, b @ b]])
    low, high = np.linalg.eigvalsh(gram)
    condition = math.sqrt(high / low) if low > 1e-12 * max(high, 1e-300) else math.inf
    first, second = names
    if nab == 0.0:
        return condition, "the pair changes none of these genes"
    if max(na, nb) < WEAK_SINGLE * nab:
        return condition, (f"neither {first} nor {second} alone moves the genes the pair moves "
                           "(each single's shift is under 5 % of the pair's)")
    if condition > CONDITION_MAX:
        if min(na, nb) < WEAK_SINGLE * max(na, nb):
            weak = first if na < nb else second
            return condition, (f"{weak} alone barely changes expression, so its share of the "
                               "pair's effect cannot be measured")
        r = _pearson_or_nan(a, b)
        return condition, (f"{first} and {second} alone have nearly the same effect (r = {r:.2f}), "
                           "so the pair's effect cannot be split between them: any mix of the "
                           "two fits equally well")
    return condition, ""


def interaction_report(
    shift_a: np.ndarray,
    shift_b: np.ndarray,
    shift_ab: np.ndarray,
    *,
    genes: np.ndarray | None = None,
    names: tuple[str, str] = ("A", "B"),
    seed: int = 0,
    max_subsets: int = 100_000,
) -> dict[str, float | str]:
    """Scores, interaction type and a one-sentence explanation for a pair, for wet-lab users.

    Parameters
    ----------
    shift_a, shift_b, shift_ab, genes, seed, max_subsets
        As in :func:`interaction_scores`.
    names
        Display names of the two perturbed genes (A, B) used in the sentence.

    Returns
    -------
    dict
        The ten scores of :func:`interaction_scores` plus ``rel_mag`` (float,
        ``mag / sqrt(2)``), ``condition`` (float, see :func:`fit_problem`), ``gi_type`` (str,
        :func:`classify_interaction`, or ``"unresolved"`` when the fit is not well posed) and
        ``explanation`` (str, one sentence; for an unresolved fit it says why, in plain words,
        and reports no ratio).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=300), rng.normal(size=300)
    >>> rep = interaction_report(a, b, 1.6 * (a + b), names=("CBL", "CNN1"))
    >>> rep["gi_type"], round(rep["rel_mag"], 2)
    ('synergy', 1.6)
    >>> rep["explanation"][:47]
    "The pair's effect is 1.60x the sum of its singl"
    """
    scores = interaction_scores(shift_a, shift_b, shift_ab, genes=genes, seed=seed,
                                max_subsets=max_subsets)
    rel = relative_magnitude(scores)
    condition, problem = fit_problem(shift_a, shift_b, shift_ab, genes=genes, names=tuple(names))
    if problem:
        explanation = (f"No interaction type: {problem}. Compare the pair with the additive "
                       "expectation gene by gene instead.")
        return {**scores, "rel_mag": rel, "condition": condition, "gi_type": UNRESOLVED,
                "explanation": explanation}
    gi_type = classify_interaction(scores)
    return {**scores, "rel_mag": rel, "condition": condition, "gi_type": gi_type,
            "explanation": _explain(gi_type, scores, rel, tuple(names))}
