"""GEARS-named metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from grape_core import keys
from grape_core.evaluation.metrics import (
    condition_metrics,
    frac_correct_direction,
    metrics_table,
    mse,
    pearson,
    summarize,
)


def test_issue_example_by_hand():
    # pred=[1,2,3], truth=[1,2,4], ctrl=[1,1,1], DE = all three genes.
    # errors 0,0,-1 -> mse 1/3. Centred pred [-1,0,1], centred truth [-4/3,-1/3,5/3]:
    # covariance sum 3, squares 2 and 42/9 -> r = 3 / sqrt(2 * 42/9) = sqrt(27/28).
    # Shifts [0,1,2] vs [0,1,3] centre to the same vectors, so pearson_delta is the same.
    # Signs of shifts: (0,+,+) vs (0,+,+) -> all three agree.
    m = condition_metrics(np.array([1.0, 2, 3]), np.array([1.0, 2, 4]), np.ones(3), np.arange(3))
    r = math.sqrt(27 / 28)
    expected = {
        "mse": 1 / 3, "rmse": math.sqrt(1 / 3), "pearson": r, "mse_de": 1 / 3, "pearson_de": r,
        "pearson_delta": r, "pearson_delta_de": r,
        "frac_correct_direction_all": 1.0, "frac_correct_direction_20": 1.0,
    }
    assert set(m) == set(keys.METRICS)
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, abs=1e-12), name


def test_every_metric_by_hand_with_a_de_subset():
    pred = np.array([1.0, 2, 3, 0, 2])
    truth = np.array([1.0, 2, 4, 1, 1])
    ctrl = np.array([1.0, 1, 1, 1, 2])
    de = np.array([2, 3, 4])
    m = condition_metrics(pred, truth, ctrl, de)
    # all genes: errors 0,0,-1,-1,1 -> 3/5
    assert m["mse"] == pytest.approx(0.6)
    assert m["rmse"] == pytest.approx(math.sqrt(0.6))
    # centred pred [-.6,.4,1.4,-1.6,.4], centred truth [-.8,.2,2.2,-.8,-.8]:
    # sum of products 4.6, squares 5.2 and 6.8
    assert m["pearson"] == pytest.approx(4.6 / math.sqrt(5.2 * 6.8))
    # DE genes: pred [3,0,2] truth [4,1,1] -> errors -1,-1,1 -> 1; centred
    # [4/3,-5/3,1/3] and [2,-1,-1]: products 4, squares 42/9 and 6 -> 2/sqrt(7)
    assert m["mse_de"] == pytest.approx(1.0)
    assert m["pearson_de"] == pytest.approx(2 / math.sqrt(7))
    # shifts: pred-ctrl [0,1,2,-1,0], truth-ctrl [0,1,3,0,-1]; centred
    # [-.4,.6,1.6,-1.4,-.4] and [-.6,.4,2.4,-.6,-1.6]: products 5.8, squares 5.2 and 9.2
    assert m["pearson_delta"] == pytest.approx(5.8 / math.sqrt(5.2 * 9.2))
    # DE shifts [2,-1,0] vs [3,0,-1]; centred [5/3,-4/3,-1/3] and [7/3,-2/3,-5/3]:
    # products 48/9, squares 42/9 and 78/9 -> 48 / sqrt(42 * 78)
    assert m["pearson_delta_de"] == pytest.approx(48 / math.sqrt(42 * 78))
    # signs (0,+,+,-,0) vs (0,+,+,0,-): genes 0,1,2 agree -> 3/5; DE (+,-,0) vs (+,0,-) -> 1/3
    assert m["frac_correct_direction_all"] == pytest.approx(0.6)
    assert m["frac_correct_direction_20"] == pytest.approx(1 / 3)
    # pearson_delta differs from pearson because ctrl is not constant
    assert m["pearson_delta"] != pytest.approx(m["pearson"])


def test_pearson_of_a_constant_vector_is_zero():
    assert pearson(np.array([2.0, 2, 2]), np.array([1.0, 2, 3])) == 0.0
    assert pearson(np.array([1.0, 2, 3]), np.zeros(3)) == 0.0
    # the control baseline predicts no shift: pearson_delta is 0, not NaN
    m = condition_metrics(np.ones(4), np.array([1.0, 2, 0, 3]), np.ones(4), np.array([1, 2]))
    assert m["pearson_delta"] == 0.0 and m["pearson_delta_de"] == 0.0


def test_pearson_perfect_and_anti_correlation():
    x = np.array([0.0, 1, 5, 2])
    assert pearson(x, 3 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)


def test_mse_and_direction_helpers():
    assert mse(np.array([0.0, 0]), np.array([3.0, 4])) == pytest.approx(12.5)
    assert frac_correct_direction(np.array([1.0, -1, 0, 2]), np.array([2.0, 1, 0, -1])) == 0.5


def test_metrics_table_skips_abstentions_and_summarize_averages():
    truth = np.array([[1.0, 2, 4], [2.0, 2, 2]])
    pred = np.array([[1.0, 2, 3], [np.nan, np.nan, np.nan]])
    ctrl = np.ones(3)
    de = np.array([[0, 1, 2], [0, 1, 2]])
    table = metrics_table(pred, truth, ctrl, de, ["A+ctrl", "B+ctrl"])
    assert list(table.index) == ["A+ctrl"]  # an all-NaN row means "no prediction"
    assert list(table.columns) == list(keys.METRICS)
    assert table.loc["A+ctrl", "mse"] == pytest.approx(1 / 3)

    both = metrics_table(np.array([[1.0, 2, 3], [2.0, 2, 3]]), truth, ctrl, de,
                         ["A+ctrl", "B+ctrl"])
    summary = summarize(both)
    # mse per condition: 1/3 and 1/3 -> mean 1/3; n_conditions 2
    assert summary["mse"] == pytest.approx(1 / 3)
    assert summary["n_conditions"] == 2
    # pearson of B: truth constant -> 0; mean (sqrt(27/28) + 0) / 2
    assert summary["pearson"] == pytest.approx(math.sqrt(27 / 28) / 2)


def test_summarize_empty_table_is_nan():
    empty = metrics_table(np.full((1, 3), np.nan), np.ones((1, 3)), np.ones(3),
                          np.array([[0, 1, 2]]), ["A+ctrl"])
    out = summarize(empty)
    assert out["n_conditions"] == 0 and math.isnan(out["mse"])
