"""What drives a prediction: the parts a trained model adds up, on the real slices."""

from __future__ import annotations

import numpy as np
import pytest

import grape_core as gc
from grape_core.serving.decomposition import PARTS, decompose
from grape_core.serving.predict import predict_conditions


@pytest.mark.parametrize("fixture", ["adamson_model", "norman_model"])
def test_parts_add_up_to_the_prediction(fixture, request):
    model = gc.load(request.getfixturevalue(fixture))
    pb = model.bundle.pseudobulk
    held_out = [c for c in model.bundle.split.test if c in pb]
    found = decompose(model, held_out)
    mean, _ = predict_conditions(model, held_out)
    np.testing.assert_allclose(found.prediction, mean - pb.control_mean, atol=1e-5)
    table = found.table()
    assert list(table.index) == list(PARTS)
    # built up part by part, the last row is the model's own held-out score
    report = gc.evaluate(model, predicted=mean).models["grape"]
    assert table["pearson_delta up to it"].iloc[-1] == pytest.approx(report["pearson_delta"], abs=1e-6)
    assert table["mse up to it"].iloc[-1] == pytest.approx(report["mse"], rel=1e-5)
    singles = [c for c in held_out if "ctrl" in c]
    assert np.abs(decompose(model, singles).parts["pair composition"]).max() < 1e-6


def test_the_self_effect_is_the_perturbed_gene_alone(adamson_model):
    model = gc.load(adamson_model)
    found = decompose(model, ["TARS+ctrl"])
    own = found.parts["self-effect"][0]
    gene = model.bundle.pseudobulk.genes.index("TARS")
    assert own[gene] < 0 and np.count_nonzero(own) == 1  # a knock-down lowers its own gene
