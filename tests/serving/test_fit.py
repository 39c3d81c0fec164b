"""The scverse-style API: ``gc.fit(adata)`` on an AnnData in pertpy's layout, and
``model.predict`` returning AnnData; the example script in docs/ runs as documented."""

from __future__ import annotations

import runpy

import anndata
import numpy as np
import pytest
from conftest import ADAMSON, ROOT, make_adata

import grape_core as gc
from grape_core.errors import DataFormatError


@pytest.mark.slow
def test_the_docs_example_runs(tmp_path, capsys):
    script = runpy.run_path(str(ROOT / "docs" / "python_api.py"))
    assert script["main"]([str(ADAMSON), "--quick", "--out", str(tmp_path / "model")]) == 0
    printed = capsys.readouterr().out
    for needed in ("control cells", "held out:", "AnnData object", "cell-eval on GRAPE",
                   "between the mean response (0) and the replicate (1)",
                   "the same predictions: True"):
        assert needed in printed, needed
    model = gc.load(tmp_path / "model")  # a folder the app and the command line open
    assert "replicate" in model.bundle.manifest.metrics.test


def test_fit_takes_pertpys_layout_and_predict_returns_anndata():
    shifts = {"G1": np.array([-1.0, 0, 0, 0.5, 0, 0]), "G2": np.array([0, -1.0, 0.3, 0, 0, 0]),
              "G3": np.array([0, 0, -1.0, 0, 0.4, 0]), "G4": np.array([0, 0, 0, -1.0, 0, 0.2]),
              "G1+G2": np.array([-1.0, -1.0, 0.3, 0.5, 0, 0])}
    adata = make_adata({"control": 60, **{k: 30 for k in shifts}}, shifts=shifts,
                       control_label="control", condition_key="perturbation")
    adata.var_names = adata.var["gene_name"].to_numpy()
    before = adata.copy()
    model = gc.fit(adata, split=gc.split([gc.canonical(c) for c in shifts]), ensemble=1,
                   max_steps=20, progress=False)
    assert (adata.X != before.X).nnz == 0 and list(adata.obs) == list(before.obs)  # unchanged
    out = model.predict(["G1", "G1+G3"])
    assert isinstance(out, anndata.AnnData) and out.shape == (3, 6)
    assert out.obs["perturbation"].tolist() == ["G1", "G1+G3", "control"]
    assert out.uns["log1p"] == {"base": None}
    np.testing.assert_allclose(out.X[0], gc.predict(model, "G1").predicted, atol=1e-5)
    report = model.evaluate(adata)
    assert "replicate" in report.tables and report.test_conditions


def test_an_anndata_in_memory_is_checked_like_a_file():
    adata = make_adata({"ctrl": 20, "G1+ctrl": 10})
    adata.obs = adata.obs.rename(columns={"condition": "treatment"})
    with pytest.raises(DataFormatError, match="the AnnData given"):
        gc.read_perturbseq(adata)
    read = gc.read_perturbseq(adata, condition_key="treatment")
    assert set(read.obs["condition"]) == {"ctrl", "G1+ctrl"}
    assert read.uns["grape_source"]["path"] == "" and read.uns["grape_source"]["sha256"] == ""
