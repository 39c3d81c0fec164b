"""Model folders: round trip, verification, and the prediction API on real data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from grape_core import BundleError, ConditionError, UnknownGeneError
from grape_core.bundle import FILES, Bundle, list_bundles
from grape_core.serving.predict import predict, predict_conditions
from grape_core.serving.resolve import resolve_perturbation


@pytest.fixture
def model_copy(adamson_model, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(adamson_model, folder)
    return folder


def test_round_trip_gives_identical_predictions(adamson_model, tmp_path):
    bundle = Bundle.load(adamson_model)
    again = tmp_path / "again"
    bundle.save(again)
    reloaded = Bundle.load(again)
    conditions = list(bundle.pseudobulk.conditions)
    a, sa = predict_conditions(bundle, conditions)
    b, sb = predict_conditions(reloaded, conditions)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    assert reloaded.genes == bundle.genes and reloaded.split == bundle.split


def test_manifest_is_readable_and_complete(adamson_model):
    manifest = json.loads((adamson_model / FILES["manifest"]).read_text())
    assert manifest["dataset"]["sha256"] == \
        "3be979d693012f9a42e48659559a75da1d61584e74fede0c161c477b08103c77"
    assert manifest["dataset"]["file"] == "adamson_gears_mini.h5ad"  # a name, not a path
    assert set(manifest["metrics"]["test"]) >= {"grape", "control", "train_mean", "linear"}
    assert manifest["split"]["name"] == "adamson_simulation_1_0.75"
    assert manifest["ensemble"] == 2 and len(manifest["genes"]["nodes"]) == 160
    from grape_core.bundle import OPTIONAL_FILES

    assert set(FILES) - {"manifest"} <= set(manifest["files"]) <= set(FILES) | set(OPTIONAL_FILES)
    assert "singles" in manifest["files"]  # a small model stores every single's prediction
    assert "spearman_std_vs_error" in manifest["uncertainty"]


def test_save_refuses_to_overwrite(adamson_model):
    bundle = Bundle.load(adamson_model)
    with pytest.raises(BundleError, match="already exists"):
        bundle.save(adamson_model)


def test_missing_file_is_named(model_copy):
    (model_copy / FILES["weights"]).unlink()
    with pytest.raises(BundleError, match="missing weights.safetensors"):
        Bundle.load(model_copy)


def test_corrupted_weights_are_refused(model_copy):
    weights = model_copy / FILES["weights"]
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="weights.safetensors is corrupted"):
        Bundle.load(model_copy)


def test_other_format_version_is_refused(model_copy):
    manifest_file = model_copy / FILES["manifest"]
    manifest = json.loads(manifest_file.read_text())
    manifest["format_version"] = 99
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format 99"):
        Bundle.load(model_copy)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        Bundle.load(tmp_path / "nothing")
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Bundle.load(tmp_path)


def test_data_with_other_genes_is_refused(adamson_model, norman):
    from grape_core import pseudobulk

    bundle = Bundle.load(adamson_model)
    with pytest.raises(BundleError, match=r"other genes .* 160 genes are missing"):
        bundle.check_genes(pseudobulk(norman).genes)


def test_list_bundles(adamson_model):
    assert list_bundles(adamson_model.parent) == {adamson_model.name: adamson_model}


def test_predict_single(adamson_model):
    bundle = Bundle.load(adamson_model)
    pred = predict(bundle, "hspa5")  # case-insensitive
    assert pred.condition == "HSPA5+ctrl" and pred.part == "train"
    frame = pred.to_frame()
    assert list(frame.columns[:7]) == ["gene", "biotype", "is_coding", "control", "predicted",
                                       "shift", "std"]
    assert len(frame) == 160 and (np.diff(np.abs(frame["shift"])) <= 1e-9).all()
    np.testing.assert_allclose(frame["predicted"] - frame["control"], frame["shift"], atol=1e-6)
    pb = bundle.pseudobulk
    by_gene = frame.set_index("gene")
    np.testing.assert_allclose(by_gene.loc[list(pb.genes), "measured"],
                               pb.means[pb.index("HSPA5+ctrl")], atol=1e-6)
    assert (frame["std"] >= 0).all() and frame["std"].max() > 0


def test_predict_unknown_and_bad_inputs(adamson_model):
    bundle = Bundle.load(adamson_model)
    with pytest.raises(UnknownGeneError, match="did you mean HSPA5"):
        predict(bundle, "HSPA55")
    with pytest.raises(UnknownGeneError, match="known human gene but not in model"):
        predict(bundle, "TP53")
    with pytest.raises(ConditionError, match="3 genes"):
        predict(bundle, "HSPA5+TARS+GBF1")
    with pytest.raises(ConditionError, match="same gene twice"):
        resolve_perturbation(bundle, "HSPA5+hspa5")


def test_unseen_pair_is_flagged(adamson_model):
    bundle = Bundle.load(adamson_model)
    pred = predict(bundle, "TARS+IER3IP1")
    assert len(pred.to_frame(top=5)) == 5
    assert "neither TARS nor IER3IP1 was perturbed in training" in pred.warnings[0]
    assert pred.interaction["predicted"]["gi_type"] in {
        "synergy", "suppressor", "neomorphic", "redundant", "epistasis", "additive"}


def test_predict_measured_pair_reports_measured_interaction(norman_model):
    bundle = Bundle.load(norman_model)
    pred = predict(bundle, "MAP2K6+KLF1")  # measured as KLF1+MAP2K6
    assert pred.condition == "KLF1+MAP2K6"
    assert "measured" in pred.to_frame().columns
    gi = pred.interaction
    assert set(gi) == {"predicted", "measured"}
    assert np.isfinite(gi["measured"]["mag"])
