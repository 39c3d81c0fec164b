"""The planted-truth benchmark's results as tables (what the README and the app show)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ROOT

from grape_core.evaluation.planted import PlantedBenchmark


def _screen(name, setting, seed, grape, random, pairs=True):
    models = {"grape": {"pearson_delta": grape, "mse": 0.01}, "control": {"pearson_delta": 0.0, "mse": 0.03},
              "train_mean": {"pearson_delta": 0.7, "mse": 0.015}, "linear": {"pearson_delta": 0.74, "mse": 0.012},
              "propagation": {"pearson_delta": 0.8, "mse": 0.011},
              "embedding_ridge": {"pearson_delta": 0.72, "mse": 0.014}}
    groups = {"unseen_single": {"grape": {"pearson_delta": grape, "mse": 0.01},
                                "propagation": {"pearson_delta": 0.79, "mse": 0.011}}}
    if pairs:
        models["additive"] = {"pearson_delta": 0.9, "mse": 0.02}
        groups["combo_seen2"] = {"grape": {"pearson_delta": 0.89, "mse": 0.012},
                                 "additive": {"pearson_delta": 0.9, "mse": 0.02},
                                 "propagation": {"pearson_delta": 0.7, "mse": 0.013}}
    inf = {"models": models, "groups": groups, "auprc": 0.88, "auprc_chance": 0.5, "own_sign": 1.0,
           "screen": {"fold_over_chance": 14.0}, "intervals": {"within_interval_top": 0.88}}
    rnd = {"models": {"grape": {"pearson_delta": random, "mse": 0.011}}}
    out = {"screen": name, "setting": setting, "seed": seed, "informative": inf, "random": rnd}
    if seed == 0:
        out["ablations"] = [{"variant": "grape", "pearson_delta": grape},
                            {"variant": "no_graph", "pearson_delta": 0.79}]
    return out


def test_grid_checks_summary_and_ablations(tmp_path):
    path = tmp_path / "planted.json"
    path.write_text(json.dumps({"ensemble": 3, "screens": [
        _screen("a 0", "a", 0, 0.83, 0.79, pairs=False), _screen("a 1", "a", 1, 0.81, 0.78, pairs=False),
        _screen("b 0", "b", 0, 0.82, 0.78)]}))
    bench = PlantedBenchmark.read(path)
    grid = bench.grid("pearson_delta", "all")
    assert list(grid.index) == ["a", "b"] and grid.loc["a", "grape"] == pytest.approx(0.82)
    assert grid.loc["a", "seeds"] == 2
    pairs = bench.grid("pearson_delta", "combo_seen2")
    assert pairs.loc["b", "additive"] == 0.9 and np.isnan(pairs.loc["a", "grape"])  # a: no pairs
    failed = bench.failures()  # only additive beats GRAPE, on the pairs of screen b, by 0.01
    assert failed[["screen", "group", "baseline", "metric"]].values.tolist() == [
        ["b 0", "combo_seen2", "additive", "pearson_delta"]]
    assert grid.loc["b", "checks passed"] == f"{len([c for c in bench.checks() if c.screen == 'b 0']) - 1}/" \
        f"{len([c for c in bench.checks() if c.screen == 'b 0'])}"
    summary = bench.summary()
    assert summary["gain from the prior"].tolist() == pytest.approx([0.04, 0.03, 0.04])
    assert summary["best baseline"].tolist() == ["propagation"] * 3  # not additive: pairs only
    assert bench.ablations().loc["no_graph"].tolist() == [0.79, 0.79]


def test_a_tie_is_not_a_loss():
    from grape_core.evaluation.planted import Check

    assert Check("s", "all", "propagation", "pearson_delta", 0.8000, 0.8005).passed
    assert not Check("s", "all", "propagation", "pearson_delta", 0.798, 0.8005).passed
    assert Check("s", "all", "propagation", "mse", 0.01001, 0.01).passed
    assert not Check("s", "all", "propagation", "mse", 0.0102, 0.01).passed


def test_no_results_file_is_none(tmp_path):
    assert PlantedBenchmark.read(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert PlantedBenchmark.read(tmp_path / "bad.json") is None


def test_own_sign_compares_each_perturbed_gene_with_its_own_measurement(adamson_model):
    """The benchmark's own-gene sign: one (prediction, measurement) pair per held-out single,
    the perturbed gene's own shift in both."""
    import sys

    import numpy as np

    import grape_core as gc

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_planted import own_sign

    model = gc.load(adamson_model)
    expected = []
    for condition in ("IER3IP1+ctrl", "TARS+ctrl"):
        pred = gc.predict(model, condition, baselines=False)
        gene = pred.genes.index(pred.perturbed[0])
        expected.append(np.sign(pred.shift[gene]) == np.sign(pred.measured_shift[gene]))
    assert own_sign(model.bundle) == pytest.approx(np.mean(expected))
