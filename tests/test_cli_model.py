"""train / evaluate / predict through ``cli.main`` on the real slices."""

from __future__ import annotations

import json

from conftest import ADAMSON, ADAMSON_SPLIT, NORMAN_DEVEL

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
