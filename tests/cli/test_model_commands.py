"""train / evaluate / predict through ``cli.main`` on the real slices."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ADAMSON, ADAMSON_SPLIT, NORMAN_DEVEL, copy_model, one_error

from grape_core.cli import main


def test_train_evaluate_predict_adamson(tmp_path, capsys):
    out = tmp_path / "model"
    code = main(["--quiet", "train", "--data", str(ADAMSON), "--split-file", str(ADAMSON_SPLIT),
                 "--seed", "1", "--out", str(out), "--ensemble", "2", "--max-steps", "50",
                 "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "trained 2 member(s)" in printed and "train_mean" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"].startswith("python -m grape_core --quiet train --data adamson_gears_mini.h5ad")
    assert set(manifest["training"]["train_conditions"]) | set(manifest["training"]["val_conditions"]) \
        == {"GBF1+ctrl", "HSPA5+ctrl", "HSPA9+ctrl", "IARS2+ctrl", "SAMM50+ctrl", "SCYL1+ctrl",
            "SEC61A1+ctrl", "YIPF5+ctrl"}

    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(out), "--data", str(ADAMSON), "--json", str(report)]) == 0
    first = json.loads(report.read_text())
    assert first["test_conditions"] == ["IER3IP1+ctrl", "TARS+ctrl"]
    assert {"grape", "control", "train_mean", "linear"} <= set(first["models"])
    assert set(first["per_condition"]["grape"]) == {"IER3IP1+ctrl", "TARS+ctrl"}
    # reproducible run to run
    assert main(["evaluate", "--model", str(out), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["models"] == first["models"]
    # the figures saved at training (from the one prediction that also gave the uncertainty)
    assert manifest["metrics"]["test"] == first["models"]
    assert manifest["uncertainty"]["n"] > 0
    capsys.readouterr()

    assert main(["predict", "--model", str(out), "--perturbation", "TARS", "--top", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("TARS+ctrl (test)") and len(lines) == 2 + 5


def test_predict_pair_json(norman_model, tmp_path, capsys):
    out = tmp_path / "pred.json"
    assert main(["predict", "--model", str(norman_model), "--perturbation", "KLF1+MAP2K6",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["condition"] == "KLF1+MAP2K6" and len(data["genes"]) == 20
    assert data["interaction"]["predicted"]["gi_type"]


@pytest.mark.slow
def test_predict_many_equals_one_at_a_time(norman_model):
    """Several perturbations in passes of a few conditions (a pair's singles shared) give
    each one's own prediction, exactly."""
    import numpy as np

    from grape_core import load, predict, predict_many

    model = load(norman_model)
    wanted = ["KLF1+MAP2K6", "MAP2K6", "KLF1", "CEBPE+KLF1", "SET"]
    many = predict_many(model, wanted, chunk=2)
    assert [p.condition for p in many] == [predict(model, w).condition for w in wanted]
    for pred, text in zip(many, wanted):
        one = predict(model, text)
        np.testing.assert_array_equal(pred.shift, one.shift)
        np.testing.assert_array_equal(pred.std, one.std)
        assert pred.warnings == one.warnings and pred.interaction == one.interaction
        assert pred.baselines.keys() == one.baselines.keys()
        for name in one.baselines:
            np.testing.assert_array_equal(pred.baselines[name], one.baselines[name])
        assert (pred.additive is None) == (one.additive is None)
    quick = predict_many(model, wanted[:1], baselines=False, interactions=False)[0]
    assert not quick.baselines and quick.interaction is None
    np.testing.assert_array_equal(quick.shift, many[0].shift)


@pytest.mark.parametrize("wanted, where, error", [
    (["PERM1+RNF223", "rnf223+perm1"], None,
     "perturbation 2: RNF223+PERM1 was given already (perturbation 1)"),  # an unmeasured pair
    (["KLFF1"], None, "unknown gene 'KLFF1'"),  # one perturbation: no place to name
    (["KLF1", "KLFF1"], ["a.txt, line 1", "a.txt, line 7"], "a.txt, line 7: unknown gene 'KLFF1'"),
])
def test_predict_many_names_where_a_bad_perturbation_was(norman_model, wanted, where, error):
    from grape_core import GrapeError, load, predict_many

    with pytest.raises(GrapeError) as caught:
        predict_many(load(norman_model), wanted, where=where)
    assert str(caught.value).startswith(error), str(caught.value)


def test_predict_many_refuses_a_string_and_an_empty_chunk(norman_model):
    from grape_core import load, predict_many

    model = load(norman_model)
    with pytest.raises(TypeError, match="not one string"):
        predict_many(model, "KLF1")
    with pytest.raises(ValueError, match="chunk must be 1 or more"):
        predict_many(model, ["KLF1"], chunk=0)


def test_a_list_as_one_table_and_one_anndata_file(norman_model, tmp_path):
    """What the app's list downloads hold: every measured gene of every perturbation."""
    import anndata

    from grape_core import load, predict_many
    from grape_core.serving.export import h5ad_bytes, predictions_frame, to_anndata

    model = load(norman_model)
    preds = predict_many(model, ["SET", "KLF1+MAP2K6"])
    table = predictions_frame(preds)
    assert len(table) == 2 * len(model.measured) and list(table.columns[:3]) == \
        ["perturbation", "part", "gene"]
    assert table["measured_shift"].isna().sum() == len(model.measured)  # SET was not measured
    (tmp_path / "p.h5ad").write_bytes(h5ad_bytes(to_anndata(preds)))
    adata = anndata.read_h5ad(tmp_path / "p.h5ad")
    assert list(adata.obs_names) == ["SET+ctrl", "KLF1+MAP2K6", "ctrl"]
    assert adata.n_vars == len(model.measured)


@pytest.mark.slow
def test_predict_a_list_of_perturbations(norman_model, tmp_path, capsys):
    import anndata
    import numpy as np

    from grape_core import load, predict

    listed = tmp_path / "perturbations.csv"
    listed.write_text("condition,why\n# candidates\nKLF1+MAP2K6,pair\n\nCEBPE # a note\n")
    out = tmp_path / "many.h5ad"
    assert main(["--quiet", "predict", "--model", str(norman_model), "--perturbation", "SET",
                 "--perturbations", str(listed), "--top", "3", "--h5ad", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("3 perturbations") and len(printed) == 2 + 3 * 3
    adata = anndata.read_h5ad(out)
    assert list(adata.obs_names) == ["SET+ctrl", "KLF1+MAP2K6", "CEBPE+ctrl", "ctrl"]
    assert list(adata.obs["perturbation"]) == ["SET", "KLF1+MAP2K6", "CEBPE", "control"]
    model = load(norman_model)
    shift = adata.layers["shift"]  # as stored (float32)
    np.testing.assert_array_equal(shift[1], predict(model, "KLF1+MAP2K6").shift.astype(shift.dtype))
    assert adata.obs.loc["KLF1+MAP2K6", "gi_type"]

    report = tmp_path / "many.json"
    assert main(["--quiet", "predict", "--model", str(norman_model), "--perturbations", str(listed),
                 "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert [p["condition"] for p in data["predictions"]] == ["KLF1+MAP2K6", "CEBPE+ctrl"]
    assert data["predictions"][0]["interaction"]["predicted"]["gi_type"]
    assert main(["--quiet", "predict", "--model", str(norman_model), "--perturbations", str(listed),
                 "--no-interactions", "--json", str(report)]) == 0
    assert not json.loads(report.read_text())["predictions"][0].get("interaction")


@pytest.mark.parametrize("lines, extra, message", [
    ("KLF1\nKLFF1\n", [], "perturbations.txt, line 2: unknown gene 'KLFF1' for model "
                          "'norman-test'; did you mean KLF1"),
    ("KLF1\nklf1+ctrl\n", [], "perturbations.txt, line 2: KLF1+ctrl was given already "
                               "(", ),
    ("# nothing\n\n", [], "perturbations.txt names no perturbation"),
    ("KLF1\n", ["--report", "r.html"], "--report writes one perturbation's report; give one "
                                       "--perturbation"),
    (None, [], "give a perturbation with --perturbation"),
])
def test_a_bad_list_of_perturbations_is_one_error(norman_model, tmp_path, capsys, lines, extra,
                                                  message):
    args = ["predict", "--model", str(norman_model), *extra]
    if lines is not None:
        listed = tmp_path / "perturbations.txt"
        listed.write_text(lines)
        args += ["--perturbations", str(listed)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_errors_are_one_line(tmp_path, capsys, adamson_model):
    assert main(["predict", "--model", str(tmp_path / "nope"), "--perturbation", "A"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: model folder not found") and "Traceback" not in err
    assert main(["predict", "--model", str(adamson_model), "--perturbation", "NOTAGENE"]) == 1
    assert "unknown gene 'NOTAGENE'" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(adamson_model), "--data", str(NORMAN_DEVEL),
                 "--subset", "dataset=norman19"]) == 1
    assert "trained on other genes" in capsys.readouterr().err
    assert main(["train", "--data", str(ADAMSON), "--out", str(adamson_model)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_train_with_a_user_prior_file_and_a_builtin_one(tmp_path, capsys):
    import pandas as pd

    prior = tmp_path / "upr.tsv"
    pd.DataFrame({"source": ["HSPA5", "GBF1", "NOTAGENE1", "SEC61A1"],
                  "target": ["DDIT3", "HSPA5", "HSPA5", "HSPA5"],
                  "weight": [1.0, 2.0, 1.0, 0.5]}).to_csv(prior, sep="\t", index=False)
    out = tmp_path / "model"
    code = main(["--quiet", "train", "--data", str(ADAMSON), "--split-file", str(ADAMSON_SPLIT),
                 "--out", str(out), "--ensemble", "1", "--max-steps", "30", "--threads", "1",
                 "--prior", str(prior), "--prior", "go"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    graph = manifest["graph"]
    assert graph["prior"] == ["upr.tsv", "go"]
    user = graph["prior_sources"][0]
    assert user["kind"] == "file" and len(user["sha256"]) == 64 and user["edges"] >= 2
    members = manifest["training"]["members"]
    assert len(members) == 1 and {"seed", "best_step", "steps"} <= set(members[0])
    edges = pd.read_parquet(out / "prior_edges.parquet")
    assert {("GBF1", "HSPA5"), ("SEC61A1", "HSPA5")} <= set(zip(edges["source"], edges["target"]))
    assert user["unknown_genes"] == 1 and user["unknown_examples"] == ["NOTAGENE1"]


def test_a_bad_prior_file_stops_training_with_one_line(tmp_path, capsys):
    prior = tmp_path / "loops.csv"
    prior.write_text("source,target\nHSPA5,HSPA5\n")
    code = main(["train", "--data", str(ADAMSON), "--split-file", str(ADAMSON_SPLIT),
                 "--out", str(tmp_path / "m"), "--prior", str(prior)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "self-loop" in err[0] and "loops.csv" in err[0]
    assert not (tmp_path / "m").exists()


def test_the_api_takes_a_prior_as_a_dataframe(adamson):
    import pandas as pd

    from grape_core import Split, pseudobulk
    from grape_core.config import TrainConfig
    from grape_core.training.recipe import train_bundle

    split = Split.load(ADAMSON_SPLIT).restrict(pseudobulk(adamson).conditions)
    table = pd.DataFrame({"source": ["HSPA5", "GBF1"], "target": ["DDIT3", "HSPA5"]})
    table.attrs["name"] = "my_prior"
    bundle = train_bundle(adamson, split, priors=[table],
                          train_config=TrainConfig(ensemble=1, max_steps=20, threads=1),
                          progress=False)
    assert bundle.manifest.graph.prior == ("my_prior",)
    assert bundle.manifest.graph.prior_sources[0]["kind"] == "table"
    assert len(bundle.prior_edges) == 2


def _read_only(monkeypatch, folder: Path) -> None:
    """``folder`` read-only (for root too, whom permissions do not stop)."""
    import os

    folder.chmod(0o555)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False
                        if Path(p) == folder and mode & os.W_OK else real(p, mode, *a, **k))


def test_outputs_are_checked_before_training(tmp_path, capsys, monkeypatch, no_training):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(a_file / "model")])
    assert f"{a_file} is a file, not a folder" in line and "choose another --out" in line
    locked = tmp_path / "locked"
    locked.mkdir()
    _read_only(monkeypatch, locked)
    try:
        line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(locked / "m")])
        assert f"the folder {locked} is read-only" in line
        line = one_error(capsys, ["benchmark", "--data", str(ADAMSON), "--json",
                                  str(locked / "b.json")])
        assert "cannot write --json" in line and "read-only" in line
    finally:
        locked.chmod(0o755)


def test_a_second_run_for_the_same_out_stops_before_training(tmp_path, capsys,
                                                                   monkeypatch, no_training):
    import json
    import os

    from grape_core.io import lock_path, reserve

    out = tmp_path / "model"
    lock = lock_path(out)
    lock.write_text(json.dumps({"pid": 1, "host": socket.gethostname()}))  # alive
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(out)])
    assert "is being written by another run (process 1" in line and "--overwrite" in line
    with pytest.raises(AssertionError, match="training started"):  # --overwrite: goes ahead
        main(["--debug", "train", "--data", str(ADAMSON), "--out", str(out), "--overwrite"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with reserve(out):  # a lock left by a killed run is taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_train_overwrite_keeps_a_folder_of_the_users(tmp_path, capsys, no_training):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years")
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(mine), "--overwrite"])
    assert "is not a model folder (it holds thesis.txt)" in line and "refusing" in line
    assert (mine / "thesis.txt").read_text() == "four years"

    model = copy_model(tmp_path, "model")  # a model folder with a file of the user's in it
    (model / "notes.md").write_text("why this model")
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(model), "--overwrite"])
    assert "holds notes.md, which is not part of a model folder" in line
    fake = tmp_path / "web"  # another tool's manifest.json
    fake.mkdir()
    (fake / "manifest.json").write_text('{"name": "my extension"}')
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(fake), "--overwrite"])
    assert "is not a model folder" in line and (fake / "manifest.json").exists()
    link = tmp_path / "link"
    link.symlink_to(copy_model(tmp_path, "real"))
    line = one_error(capsys, ["train", "--data", str(ADAMSON), "--out", str(link), "--overwrite"])
    assert "is a symbolic link" in line and link.is_symlink()
    # the data inside --out: refused before it is read
    data_in = tmp_path / "empty"
    data_in.mkdir()
    (data_in / "data.h5ad").write_bytes(ADAMSON.read_bytes())
    line = one_error(capsys, ["train", "--data", str(data_in / "data.h5ad"), "--out",
                              str(data_in), "--overwrite"])
    assert "not a model folder" in line or "which this command reads" in line
    # a previous model, or an empty folder, goes ahead
    empty = tmp_path / "new"
    empty.mkdir()
    for out in (copy_model(tmp_path, "previous"), empty):
        with pytest.raises(AssertionError, match="training started"):
            main(["--debug", "train", "--data", str(ADAMSON), "--out", str(out), "--overwrite"])
