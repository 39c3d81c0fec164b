"""The planted-truth benchmark's results as tables (what the README and the app show)."""

from __future__ import annotations

import json

import pytest

from grape_core.evaluation.planted import PlantedBenchmark


def _screen(name, grape, random, pairs=True):
    models = {"grape": {"pearson_delta": grape, "mse": 0.01}, "control": {"pearson_delta": 0.0, "mse": 0.03},
              "train_mean": {"pearson_delta": 0.7, "mse": 0.015}, "linear": {"pearson_delta": 0.74, "mse": 0.012},
              "propagation": {"pearson_delta": 0.8, "mse": 0.011}}
    if pairs:
        models["additive"] = {"pearson_delta": 0.9, "mse": 0.02}
    inf = {"models": models, "auprc": 0.88, "auprc_chance": 0.5, "own_sign": 1.0,
           "screen": {"fold_over_chance": 14.0}, "intervals": {"within_interval_top": 0.88},
           "subgroups": {"combo_seen2": {"grape": 0.91, "additive": 0.9 if pairs else None}},
           "subgroups_mse": {"combo_seen2": {"grape": 0.01, "additive": 0.02 if pairs else None}},
           "ablations": [{"variant": "grape", "pearson_delta": grape}, {"variant": "no_graph", "pearson_delta": 0.79}]}
    rnd = {"models": {"grape": {"pearson_delta": random, "mse": 0.011}}}
    return {"screen": name, "informative": inf, "random": rnd}


def test_summary_pairs_and_ablations(tmp_path):
    path = tmp_path / "planted.json"
    path.write_text(json.dumps({"ensemble": 3, "results": [_screen("a", 0.83, 0.79, pairs=False),
                                                           _screen("b", 0.82, 0.78)]}))
    bench = PlantedBenchmark.read(path)
    summary = bench.summary()
    assert summary["screen"].tolist() == ["a", "b"]
    assert summary["gain from the prior"].tolist() == pytest.approx([0.04, 0.04])
    assert summary["best baseline"].tolist() == ["propagation", "propagation"]  # additive: pairs only
    assert summary["shown shifts inside the 90 % interval"].tolist() == [0.88, 0.88]
    pairs = bench.pairs()
    assert pairs["screen"].tolist() == ["b"] and pairs["GRAPE"].tolist() == [0.91]
    assert bench.ablations().loc["no_graph"].tolist() == [0.79, 0.79]


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
    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_planted import own_sign

    model = gc.load(adamson_model)
    expected = []
    for condition in ("IER3IP1+ctrl", "TARS+ctrl"):
        pred = gc.predict(model, condition, baselines=False)
        gene = pred.genes.index(pred.perturbed[0])
        expected.append(np.sign(pred.shift[gene]) == np.sign(pred.measured_shift[gene]))
    assert own_sign(model.bundle) == pytest.approx(np.mean(expected))
