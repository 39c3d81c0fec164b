"""Prediction intervals: calibrated on validation perturbations, reported on held-out ones,
carried by every prediction and export; and the warm start they depend on is reproducible."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from grape_core.bundle import Bundle, CalibrationInfo, IntervalFit
from grape_core.evaluation.calibration import (
    FLOORS,
    conformal_quantile,
    fit_calibration,
    half_width,
    interval_check,
    largest,
)


def _screen(rng: np.random.Generator, n: int, genes: int = 200, *, floor: float = 0.5,
            top_factor: float = 4.0):
    """Predicted shifts and spreads, and measured shifts whose errors are normal with
    variance ``spread**2 + (floor * scale)**2``, ``top_factor`` times larger at each row's
    20 largest predicted shifts (as on real screens: the genes that move are the genes that
    are wrong)."""
    scale = rng.uniform(0.05, 1.0, genes)
    shift = rng.normal(0.0, 1.0, (n, genes)) * scale
    std = rng.uniform(0.0, 0.05, (n, genes))
    sd = np.sqrt(std ** 2 + (floor * scale) ** 2) * np.where(largest(shift, 20), top_factor, 1.0)
    measured = shift + rng.normal(0.0, 1.0, (n, genes)) * sd
    control = rng.uniform(0.0, 3.0, genes)
    return shift, std, measured, scale, control


def test_intervals_hold_their_level_on_new_perturbations_in_both_groups():
    rng = np.random.default_rng(0)
    shift, std, measured, scale, control = _screen(rng, 60)
    calibration = fit_calibration(shift, std, measured, scale, control)
    assert calibration is not None and calibration.level == 0.9 and calibration.conditions == 60
    assert calibration.largest.values == 60 * 20
    # where the spread is small the half width is q * κ * scale; normal errors of sd
    # 0.5 * scale need 1.645 * 0.5 * scale for 90 %, and the genes that move 4 times that
    rest, top = (fit.scale * fit.floor for fit in (calibration.rest, calibration.largest))
    assert rest == pytest.approx(1.645 * 0.5, rel=0.15) and calibration.rest.floor in FLOORS
    assert top == pytest.approx(4 * rest, rel=0.25)

    shift, std, measured, scale, control = _screen(rng, 400)
    de_idx = np.argsort(-np.abs(measured), axis=1)[:, :20]
    check = interval_check(calibration, shift, std, measured, scale, control, de_idx)
    assert check["within_interval_top"] == pytest.approx(0.9, abs=0.03)
    assert check["within_interval_rest"] == pytest.approx(0.9, abs=0.03)
    assert check["median_interval_half_width_top"] > check["median_error_top"]

    # the other genes' interval would hold far fewer of the shown genes: what groups buy
    one = dataclasses.replace(calibration, largest=calibration.rest)
    inside = np.abs(shift - measured) <= half_width(one, shift, std, scale)
    assert inside[largest(shift, 20)].mean() < 0.6

    # a screen of no more genes than a chart shows: one group
    few = fit_calibration(shift[:, :20], std[:, :20], measured[:, :20], scale[:20], control[:20])
    assert few is not None and few.largest == few.rest


def test_too_few_validation_values_give_no_interval():
    rng = np.random.default_rng(1)
    shift, std, measured, scale, control = _screen(rng, 1)
    # 20 values cannot hold 99 %: the 21st-smallest of 20 does not exist
    assert fit_calibration(shift, std, measured, scale, control, level=0.99) is None
    assert fit_calibration(shift, std, measured, scale, control, level=0.9) is not None
    with pytest.raises(ValueError, match="level"):
        fit_calibration(shift, std, measured, scale, control, level=1.0)


def test_conformal_quantile_and_half_width_shapes():
    scores = np.arange(1.0, 11.0)  # 1..10
    assert conformal_quantile(scores, 0.5) == 6.0  # ceil(11 * 0.5) = 6th smallest
    assert conformal_quantile(scores, 0.95) == np.inf
    calibration = CalibrationInfo(level=0.9, top=2, largest=IntervalFit(2.0, 0.0, 1),
                                  rest=IntervalFit(1.0, 1.0, 1), conditions=1)
    shift = np.array([0.1, -3.0, 2.0, 0.0])
    std = np.full(4, 0.5)
    scale = np.array([1.0, 1.0, 1.0, 0.0])
    width = half_width(calibration, shift, std, scale)
    assert width.shape == (4,)
    np.testing.assert_allclose(width, [np.sqrt(0.25 + 1.0), 1.0, 1.0, 0.5])
    assert half_width(calibration, np.stack([shift, shift]), np.stack([std, std]), scale).shape == (2, 4)


def test_a_trained_model_carries_its_calibration_into_every_prediction(adamson_model, tmp_path):
    import grape_core as gc

    model = gc.load(adamson_model)
    manifest = model.bundle.manifest
    calibration = manifest.calibration
    # one validation perturbation is too few: every training perturbation was predicted by a
    # member trained without its gene (cross-conformal), and the interval set on them all
    assert calibration is not None and calibration.method == "cross"
    assert calibration.conditions == len(manifest.training.train_conditions)
    for key in ("within_interval_top", "within_interval_rest", "within_interval_de"):
        assert 0.0 <= manifest.uncertainty[key] <= 1.0

    pred = gc.predict(model, "TARS")
    assert pred.interval_level == calibration.level
    np.testing.assert_array_equal(pred.interval, model.interval(pred.shift, pred.std))
    assert (pred.interval >= 0).all() and pred.interval.max() > 0
    frame = pred.to_frame(top=20)
    np.testing.assert_array_equal(frame["interval"].to_numpy(), pred.interval[pred.order()[:20]])
    adata = pred.to_anndata()
    np.testing.assert_allclose(adata.layers["interval"][0], pred.interval, rtol=1e-6)
    assert adata.uns["grape"]["interval_level"] == calibration.level

    # saved and loaded again: the same calibration, and a list predicts the same intervals
    Bundle.load(adamson_model).save(tmp_path / "again")
    assert Bundle.load(tmp_path / "again").manifest.calibration == calibration
    many = gc.predict_many(model, ["TARS", "IER3IP1"], baselines=False)
    np.testing.assert_array_equal(many[0].interval, pred.interval)


def test_a_model_without_calibration_falls_back_to_the_spread(adamson_model):
    import grape_core as gc

    bundle = Bundle.load(adamson_model)
    bundle = bundle.replace(manifest=bundle.manifest.replace(calibration=None))
    pred = gc.predict(gc.Model(bundle), "TARS")
    assert pred.interval is None and pred.interval_level is None
    assert "interval" not in pred.to_frame() and "interval" not in pred.to_anndata().layers


def test_the_warm_start_is_reproducible(adamson_graph):  # noqa: F811
    """torch.linalg.lstsq on the CPU gave last bits that depended on where its arrays lay in
    memory, and a last bit changed which learned edges won: a bundled model could not be
    rebuilt bit for bit. The warm start solves the normal equations in numpy instead."""
    from grape_core.config import ArchitectureConfig
    from grape_core.training.warm import new_member, warm_start

    knowledge, pb, graph, node_index = adamson_graph
    train = [c for c in pb.conditions if c not in ("TARS+ctrl", "ctrl")]
    model = new_member(pb, graph, node_index, train, model_config=ArchitectureConfig(),
                       encoder_args=knowledge.encoder_args, encoder_state=knowledge.encoder_state,
                       seed=0)
    found, kept = set(), []
    for size in range(1, 13):
        kept.append(torch.empty(size))  # so that each call's arrays land somewhere else
        found.add(tuple(warm_start(model, graph, pb, train, node_index).values()))
    assert len(found) == 1


def test_the_gene_scale_leaves_out_the_perturbations_the_interval_was_calibrated_on():
    """After a refit the validation perturbation is among the training ones; its own shift
    in the scale would narrow the interval fitted on it."""
    from conftest import BUNDLED

    import grape_core as gc
    from grape_core.evaluation.calibration import gene_scale

    model = gc.load(BUNDLED / "adamson")
    training = model.bundle.manifest.training
    assert model.bundle.manifest.split.val_carved_from_train
    assert set(training.val_conditions) < set(training.train_conditions)
    pb = model.bundle.pseudobulk
    fitted = [c for c in training.train_conditions if c not in training.val_conditions]
    np.testing.assert_array_equal(model.gene_scale(), gene_scale(pb, fitted))
    assert not np.array_equal(model.gene_scale(), gene_scale(pb, training.train_conditions))


def test_a_tie_is_called_a_tie():
    from grape_core.evaluation.verdicts import Comparison

    tie = Comparison("grape", "propagation", "pearson_delta", 2, 0.64479, 0.64451, False)
    assert "GRAPE and the propagation (prior graph) baseline tie (0.645)" in tie.sentence
    win = Comparison("grape", "propagation", "pearson_delta", 2, 0.650, 0.645, False)
    assert "GRAPE beats" in win.sentence
