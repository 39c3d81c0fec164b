"""Genetic-interaction scores and types: constructed pairs whose answer is known, GEARS
reference values, and the agreement with the Norman et al. labels (shared data folder)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grape_core.evaluation import interactions as gi
from grape_core.evaluation.interactions import (
    GI_TYPES,
    SCORE_KEYS,
    classify_interaction,
    distance_correlation,
    interaction_report,
    interaction_scores,
    theil_sen,
)

SHARED = Path(os.environ.get("GRAPE_SHARED_DATA",
                             Path(__file__).resolve().parents[2].parent / "shared" / "data"))
TRUTH_CSV = SHARED / "norman_GI_scores_truth.csv"
N_GENES = 300


def _singles(seed: int, n: int = N_GENES) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(size=n), rng


# ------------------------------------------------------------- constructed pairs
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_sum_is_additive(seed):
    a, b, _ = _singles(seed)
    s = interaction_scores(a, b, a + b)
    assert set(s) == set(SCORE_KEYS)
    assert s["c1"] == pytest.approx(1.0, abs=1e-9)
    assert s["c2"] == pytest.approx(1.0, abs=1e-9)
    assert s["mag"] == pytest.approx(math.sqrt(2), abs=1e-9)  # additive is mag = sqrt(2)
    assert s["corr_fit"] == pytest.approx(1.0)
    assert s["dominance"] == pytest.approx(0.0, abs=1e-9)
    assert classify_interaction(s) == "additive"


@pytest.mark.parametrize(("factor", "expected"), [(2.0, "synergy"), (0.3, "suppressor")])
def test_scaled_sum_is_synergy_or_suppressor(factor, expected):
    a, b, _ = _singles(3)
    s = interaction_scores(a, b, factor * (a + b))
    assert s["c1"] == pytest.approx(factor, abs=1e-9)
    assert s["c2"] == pytest.approx(factor, abs=1e-9)
    assert classify_interaction(s) == expected


def test_one_single_dominates_is_epistasis():
    a, b, rng = _singles(4)
    s = interaction_scores(a, b, a + 0.05 * rng.normal(size=N_GENES))
    assert s["c1"] == pytest.approx(1.0, abs=0.03)
    assert s["c2"] == pytest.approx(0.0, abs=0.03)
    assert s["dominance"] > 1.0 and s["eq_contr"] < 0.2
    assert classify_interaction(s) == "epistasis"


def test_similar_singles_is_redundant():
    a, _, rng = _singles(5)
    b = a + 0.15 * rng.normal(size=N_GENES)  # the two singles do nearly the same thing
    s = interaction_scores(a, b, a + 0.1 * rng.normal(size=N_GENES))
    assert s["dcor_singles"] > 0.9
    assert classify_interaction(s) == "redundant"


def test_unrelated_double_is_neomorphic():
    a, b, rng = _singles(6)
    s = interaction_scores(a, b, rng.normal(size=N_GENES))
    assert s["corr_fit"] < 0.3 and s["dcor"] < 0.3
    assert classify_interaction(s) == "neomorphic"


def test_coefficients_recovered_under_noise():
    a, b, rng = _singles(7)
    s = interaction_scores(a, b, 1.4 * a + 0.6 * b + 0.2 * rng.normal(size=N_GENES))
    assert s["c1"] == pytest.approx(1.4, abs=0.05)
    assert s["c2"] == pytest.approx(0.6, abs=0.05)


def test_theil_sen_robust_to_outlier_genes():
    a, b, rng = _singles(8)
    ab = 1.2 * a + 0.8 * b + 0.05 * rng.normal(size=N_GENES)
    bad = rng.choice(N_GENES, size=N_GENES // 20, replace=False)  # 5 % of genes
    ab[bad] = -20.0 * a[bad]  # huge, sign-flipped responses
    x = np.stack([a, b], axis=1)
    ts = theil_sen(x, ab)
    ls = np.linalg.lstsq(x, ab, rcond=None)[0]
    assert np.abs(ts - [1.2, 0.8]).max() < 0.1
    assert np.abs(ls - [1.2, 0.8]).max() > 0.3


def test_matches_gears_reference():
    """Values from scikit-learn 1.9.1 TheilSenRegressor + dcor 0.7 as GEARS calls them
    (every gene pair is used at 200 genes, so the fit is deterministic)."""
    rng = np.random.default_rng(2024)
    a = rng.normal(size=200)
    b = 0.4 * a + rng.normal(size=200)
    ab = 1.3 * a + 0.5 * b + 0.3 * rng.standard_t(3, size=200)
    expected = {"c1": 1.34070676591, "c2": 0.439013370256, "mag": 1.41075418533,
                "dcor": 0.834815261202, "dcor_singles": 0.288801468785,
                "dcor_first": 0.877212331969, "dcor_second": 0.511123073961,
                "corr_fit": 0.956695339752, "dominance": 0.484856054077,
                "eq_contr": 0.582667451578}
    got = interaction_scores(a, b, ab)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-8), key


def test_random_subsets_are_seeded_and_close_to_all_pairs():
    a, b, rng = _singles(9, n=150)
    ab = 0.9 * a + 1.1 * b + 0.3 * rng.normal(size=150)
    full = interaction_scores(a, b, ab)  # 11,175 pairs: all used
    sub = interaction_scores(a, b, ab, max_subsets=3000, seed=1)
    assert sub == interaction_scores(a, b, ab, max_subsets=3000, seed=1)
    assert sub["c1"] != full["c1"]
    assert sub["c1"] == pytest.approx(full["c1"], abs=0.05)
    assert sub["c2"] == pytest.approx(full["c2"], abs=0.05)


def test_gene_selection_equals_slicing():
    a, b, rng = _singles(10, n=120)
    ab = a - 0.5 * b + 0.2 * rng.normal(size=120)
    idx = np.arange(0, 120, 2)
    mask = np.zeros(120, dtype=bool)
    mask[idx] = True
    sliced = interaction_scores(a[idx], b[idx], ab[idx])
    assert interaction_scores(a, b, ab, genes=idx) == sliced
    assert interaction_scores(a, b, ab, genes=mask) == sliced


# --------------------------------------------------------- distance correlation
def test_distance_correlation_properties():
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=N_GENES), rng.normal(size=N_GENES)
    assert distance_correlation(x, x) == pytest.approx(1.0)
    assert distance_correlation(x, 3 * x - 2) == pytest.approx(1.0)
    assert distance_correlation(x, y) < 0.15
    assert distance_correlation(x, y) == pytest.approx(distance_correlation(y, x))
    assert distance_correlation(x, np.zeros(N_GENES)) == 0.0
    assert distance_correlation(x, x**2) > 0.3  # non-linear dependence, Pearson ~ 0


def test_distance_correlation_equals_dcor():
    """Computed from its definition (no numba compile in the app's first pair): the same as
    the dcor package, for 1-D and 2-D samples, with ties."""
    import dcor

    rng = np.random.default_rng(3)
    for n in (5, 120, 500):
        x = rng.normal(size=n)
        y = np.round(0.5 * x + rng.normal(size=n), 1)
        xy = np.column_stack([x, rng.normal(size=n)])
        for a, b in ((x, y), (xy, y), (xy, xy[:, ::-1] ** 2)):
            assert distance_correlation(a, b) == pytest.approx(
                float(dcor.distance_correlation(a, b)), abs=1e-12)


def test_distance_correlation_matches_bivariate_normal_formula():
    """Székely et al. (2007), population dCor of a bivariate normal with correlation rho."""
    rho, n = 0.5, 1000
    rng = np.random.default_rng(12)
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)
    num = (rho * math.asin(rho) + math.sqrt(1 - rho**2) - rho * math.asin(rho / 2)
           - math.sqrt(4 - rho**2) + 1)
    population = math.sqrt(num / (1 + math.pi / 3 - math.sqrt(3)))
    assert distance_correlation(x, y) == pytest.approx(population, abs=0.03)


# ------------------------------------------------------------- degenerate input
def test_degenerate_inputs_do_not_crash():
    a, b, _ = _singles(13, n=50)
    zero = interaction_scores(a, b, np.zeros(50))
    assert zero["c1"] == 0.0 and zero["c2"] == 0.0 and zero["mag"] == 0.0
    assert math.isnan(zero["corr_fit"]) and math.isnan(zero["dominance"])
    assert zero["dcor"] == 0.0 and math.isnan(zero["eq_contr"])
    assert classify_interaction(zero) in GI_TYPES

    only_a = interaction_scores(a, b, a)  # c2 == 0 exactly
    assert only_a["c2"] == pytest.approx(0.0, abs=1e-12)
    assert only_a["dominance"] > 10 or math.isinf(only_a["dominance"])

    dead_b = interaction_scores(a, np.zeros(50), 2 * a)  # B has no effect at all
    assert dead_b["c1"] == pytest.approx(2.0) and dead_b["c2"] == 0.0
    assert math.isinf(dead_b["dominance"]) and dead_b["dcor_singles"] == 0.0
    assert classify_interaction(dead_b) == "epistasis"


@pytest.mark.parametrize("bad", [
    dict(shift_b=np.zeros(9)),
    dict(shift_ab=np.r_[np.zeros(9), np.nan]),
    dict(shift_a=np.zeros((10, 1))),
    dict(genes=np.array([3])),
    dict(genes=np.array([0, 10])),
    dict(genes=np.ones(9, dtype=bool)),
])
def test_bad_arguments_raise(bad):
    args = dict(shift_a=np.arange(10.0), shift_b=np.ones(10), shift_ab=np.arange(10.0))
    args.update(bad)
    with pytest.raises(ValueError):
        interaction_scores(args.pop("shift_a"), args.pop("shift_b"), args.pop("shift_ab"),
                           **args)


# --------------------------------------------------------------- decision list
_GOOD = dict(mag=math.sqrt(2), dcor=0.9, dcor_singles=0.2, corr_fit=0.95, dominance=0.05,
             eq_contr=0.9)


@pytest.mark.parametrize(("change", "expected"), [
    ({}, "additive"),
    (dict(mag=1.2 * math.sqrt(2)), "synergy"),
    (dict(mag=0.6 * math.sqrt(2)), "suppressor"),
    (dict(corr_fit=0.7), "neomorphic"),
    (dict(dcor=0.5, dcor_singles=0.95), "neomorphic"),  # poor fit wins over redundancy
    (dict(dcor_singles=0.9, mag=0.7 * math.sqrt(2)), "redundant"),
    (dict(dcor_singles=0.9, dominance=1.0), "redundant"),  # redundancy wins over dominance
    (dict(dominance=0.6, mag=2.0), "epistasis"),
    (dict(eq_contr=0.2), "epistasis"),
    (dict(dominance=math.nan, eq_contr=math.nan), "additive"),  # NaN never fires a rule
])
def test_decision_list(change, expected):
    assert classify_interaction({**_GOOD, **change}) == expected


def test_classify_rejects_incomplete_scores():
    with pytest.raises(ValueError, match="dominance"):
        classify_interaction({k: v for k, v in _GOOD.items() if k != "dominance"})


# ------------------------------------------------------------------ calibration
@pytest.mark.skipif(not TRUTH_CSV.exists(), reason=f"{TRUTH_CSV.name} not in the shared data")
def test_agreement_with_norman_labels():
    """Regression guard on the documented agreement (58/72, module docstring)."""
    truth = pd.read_csv(TRUTH_CSV)
    pred = np.array([classify_interaction(row) for row in truth.to_dict("records")])
    labels = truth["gi_type"].to_numpy()
    assert len(truth) == 72
    assert (pred == labels).sum() >= 58
    for gi_type in ("suppressor", "redundant", "epistasis"):
        assert (pred[labels == gi_type] == gi_type).all(), gi_type
    assert (pred[labels == "synergy"] == "synergy").sum() >= 24


# ----------------------------------------------------------------------- report
def test_report_for_wet_lab_users():
    a, b, _ = _singles(14)
    rep = interaction_report(a, b, 1.6 * (a + b), names=("CBL", "CNN1"))
    assert set(rep) == set(SCORE_KEYS) | {"rel_mag", "condition", "gi_type", "explanation"}
    assert rep["gi_type"] == "synergy" and rep["rel_mag"] == pytest.approx(1.6)
    assert rep["explanation"].startswith("The pair's effect is 1.60x the sum")
    assert "synergy" in rep["explanation"] and "CBL" in rep["explanation"]
    epi = interaction_report(a, b, b, names=("CBL", "CNN1"))
    assert epi["gi_type"] == "epistasis" and "CNN1 masks CBL" in epi["explanation"]
    for shift_ab in (a + b, 0.3 * (a + b)):
        text = interaction_report(a, b, shift_ab)["explanation"]
        assert text.count(".") >= 1 and "\n" not in text


def test_thresholds_are_named_constants():
    assert gi.SUPPRESSOR_MAX_REL_MAG < 1.0 < gi.SYNERGY_MIN_REL_MAG
    assert gi.ADDITIVE_MAG == pytest.approx(math.sqrt(2))


def test_ill_conditioned_fit_is_reported_in_words_not_as_a_ratio():
    """Nearly identical singles: c1 and c2 can take any split (HSPA5+GBF1 on the first
    Adamson model was called "synergy, 1016.72x ... c1=1017.54, c2=-1015.89")."""
    from grape_core.evaluation.interactions import interaction_report

    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    b = a + rng.normal(scale=1e-3, size=300)
    rep = interaction_report(a, b, 1.3 * (a + b), names=("HSPA5", "GBF1"))
    assert rep["gi_type"] == "unresolved" and rep["condition"] > 30
    assert "nearly the same effect" in rep["explanation"] and "x the sum" not in rep["explanation"]
    weak = interaction_report(a, 1e-4 * rng.normal(size=300), a, names=("KLF1", "MAP2K6"))
    assert weak["gi_type"] == "unresolved" and "MAP2K6 alone barely changes" in weak["explanation"]
    none = interaction_report(1e-4 * a, 1e-4 * b, rng.normal(size=300), names=("A", "B"))
    assert none["gi_type"] == "unresolved" and "neither A nor B" in none["explanation"]
    fine = interaction_report(a, rng.normal(size=300), a + rng.normal(size=300))
    assert fine["gi_type"] in GI_TYPES and fine["condition"] < 30


def test_genes_that_no_condition_moves_do_not_collapse_the_fit():
    """Sparse screens: genes with exactly zero shift in A, B and AB carry no information, and
    left in, they drag the Theil-Sen median of pairwise solutions to c1 = c2 = 0."""
    rng = np.random.default_rng(1)
    a, b = np.zeros(500), np.zeros(500)
    a[:40], b[20:60] = rng.normal(size=40), rng.normal(size=40)
    s = interaction_scores(a, b, a + b)
    assert s["c1"] == pytest.approx(1.0, abs=0.01) and s["c2"] == pytest.approx(1.0, abs=0.01)


def test_a_pair_of_measured_singles_gets_a_verdict_that_fits_them():
    """The bundled Norman model composes MAPK1+TGFBR2 from the two measured singles (no
    training pair said otherwise): the verdict compares the pair with those singles, on the
    genes expressed in control cells, and finds it additive."""
    import grape_core as gc
    from conftest import ROOT

    model = gc.load(ROOT / "assets" / "models" / "norman")
    pred = gc.predict(model, "MAPK1+TGFBR2")
    report = pred.interaction["predicted"]
    assert report["singles"] == ["measured", "measured"]
    assert report["gi_type"] == "additive"
    assert report["rel_mag"] == pytest.approx(1.0, abs=0.05) and report["corr_fit"] > 0.99
    pb = model.bundle.pseudobulk
    np.testing.assert_allclose(pred.additive, pb.shifts_of(["MAPK1+ctrl", "TGFBR2+ctrl"]).sum(0),
                               atol=1e-6)
