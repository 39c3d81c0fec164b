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
    from grape_core.train import train_bundle

    split = Split.load(ADAMSON_SPLIT).restrict(pseudobulk(adamson).conditions)
    table = pd.DataFrame({"source": ["HSPA5", "GBF1"], "target": ["DDIT3", "HSPA5"]})
    table.attrs["name"] = "my_prior"
    bundle = train_bundle(adamson, split, priors=[table],
                          train_config=TrainConfig(ensemble=1, max_steps=20, threads=1),
                          progress=False)
    assert bundle.manifest.graph.prior == ("my_prior",)
    assert bundle.manifest.graph.prior_sources[0]["kind"] == "table"
    assert len(bundle.prior_edges) == 2
