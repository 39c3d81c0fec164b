"""``python -m grape_core describe | benchmark | split`` through ``cli.main([...])``."""

from __future__ import annotations

import json
from pathlib import Path

import anndata
import numpy as np
import pytest
from conftest import (
    ADAMSON,
    ADAMSON_SPLIT,
    NORMAN_DEVEL,
    NORMAN_GEARS_MINI,
    make_adata,
    one_error,
    write_adata,
)

from grape_core import keys
from grape_core.cli import main
from grape_core.data.splits import simulation_split


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *phrases: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in lines[0]


# ----------------------------------------------------------------------------------------
# describe
# ----------------------------------------------------------------------------------------
def test_describe_text(capsys):
    code, out, _ = run(capsys, "describe", ADAMSON)
    assert code == 0
    assert "cells             320" in out
    assert "genes             160" in out
    assert "control cells     80" in out
    assert "(10 singles, 0 pairs)" in out
    assert "min 24, median 24, max 24" in out
    assert "computed (t-test)" in out


def test_describe_json(capsys):
    code, out, _ = run(capsys, "describe", ADAMSON, "--json")
    assert code == 0
    info = json.loads(out)
    assert (info["cells"], info["genes"], info["control_cells"]) == (320, 160, 80)
    assert (info["singles"], info["pairs"]) == (10, 0)
    assert info["cells_by_condition"]["HSPA5+ctrl"] == 24
    assert info["warnings"] == []


def test_describe_perturbench_subset_with_warnings(capsys):
    code, out, _ = run(capsys, "describe", NORMAN_DEVEL, "--subset", "dataset=norman19",
                       "--conditions")
    assert code == 0
    assert "cells             3,375" in out
    assert "control cells     100  (label 'control' in obs['condition'])" in out
    assert "(18 singles, 15 pairs)" in out
    assert "warning           30 of 31 perturbed genes are not measured" in out
    table = out.split("condition\tcells\n", 1)[1].splitlines()
    assert "ctrl\t100" in table and "FOXL2+HOXB9\t80" in table and len(table) == 34


def test_describe_gears_style_norman_mini(capsys):
    code, out, _ = run(capsys, "describe", NORMAN_GEARS_MINI, "--json")
    assert code == 0
    info = json.loads(out)
    assert (info["singles"], info["pairs"], info["control_cells"]) == (31, 10, 6)
    assert info["gene_name_key"] == "feature_name"
    assert "ETS2+ctrl" in info["cells_by_condition"]  # from ctrl+ETS2


# ----------------------------------------------------------------------------------------
# benchmark
# ----------------------------------------------------------------------------------------
def test_benchmark_real_adamson(capsys, tmp_path):
    out_json = tmp_path / "out.json"
    code, out, err = run(capsys, "benchmark", "--data", ADAMSON, "--split", "simulation",
                         "--seed", 1, "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert {"dataset", "split", "seed", "test_conditions", "models", "per_condition"} <= set(report)
    assert report["dataset"] == "adamson_gears_mini"
    assert report["split"] == "simulation" and report["seed"] == 1
    # no pairs: no additive; the propagation baseline over the default prior (GO + co-expression)
    assert set(report["models"]) == {"control", "train_mean", "linear", "propagation"}
    # the held-out conditions are those of the GEARS simulation split of the slice
    expected = simulation_split(_conditions(ADAMSON), seed=1)
    assert report["test_conditions"] == [c for c in expected.test]
    for name, summary in report["models"].items():
        assert set(keys.METRICS) <= set(summary)
        assert summary["n_conditions"] == len(report["test_conditions"])
        assert set(report["per_condition"][name]) == set(report["test_conditions"])
        for row in report["per_condition"][name].values():
            assert set(keys.METRICS) <= set(row)
    assert report["models"]["control"]["pearson_delta"] == 0.0
    # the printed table: one row per model, the metric names as columns
    lines = out.splitlines()
    header = next(line for line in lines if "pearson_delta" in line)
    assert "mse" in header and "pearson" in header
    for name in ("control", "train_mean", "linear"):
        assert any(line.split()[:1] == [name] for line in lines)


def _conditions(path):
    labels = anndata.read_h5ad(path).obs["condition"].astype(str)
    return sorted(set(labels) - {"ctrl"})


def test_benchmark_numbers_match_an_independent_computation(capsys, tmp_path):
    """train_mean mse / pearson_delta recomputed from the raw cells with numpy."""
    out_json = tmp_path / "out.json"
    assert main(["benchmark", "--data", str(ADAMSON), "--json", str(out_json)]) == 0
    capsys.readouterr()
    report = json.loads(out_json.read_text())
    raw = anndata.read_h5ad(ADAMSON)
    X = raw.X.toarray().astype(np.float64)
    labels = raw.obs["condition"].astype(str).to_numpy()
    ctrl = X[labels == "ctrl"].mean(axis=0)
    split = simulation_split(_conditions(ADAMSON), seed=1)
    train = [c for c in split.train if c != "ctrl"]
    shift = np.mean([X[labels == c].mean(axis=0) - ctrl for c in train], axis=0)
    pred = ctrl + shift
    for cond in report["test_conditions"]:
        truth = X[labels == cond].mean(axis=0)
        row = report["per_condition"]["train_mean"][cond]
        assert row["mse"] == pytest.approx(np.mean((pred - truth) ** 2), rel=1e-4)
        assert row["pearson_delta"] == pytest.approx(np.corrcoef(shift, truth - ctrl)[0, 1],
                                                     abs=1e-5)
        assert report["per_condition"]["control"][cond]["mse"] == pytest.approx(
            np.mean((ctrl - truth) ** 2), rel=1e-4)


def test_benchmark_real_norman19_has_pairs_and_additive(capsys, tmp_path):
    out_json = tmp_path / "norman.json"
    code, out, err = run(capsys, "benchmark", "--data", NORMAN_DEVEL, "--subset",
                         "dataset=norman19", "--split", "simulation", "--seed", 1,
                         "--json", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert set(report["models"]) == {"control", "train_mean", "linear", "additive", "additive_mean",
                                     "propagation"}
    test = report["test_conditions"]
    pairs = [c for c in test if not c.endswith("+ctrl")]
    assert pairs and any(c.endswith("+ctrl") for c in test)
    # additive predicts only pairs both of whose singles were trained
    additive = report["per_condition"]["additive"]
    assert additive and set(additive) <= set(pairs)
    assert report["models"]["additive"]["n_conditions"] == len(additive)
    assert any(line.startswith("additive") for line in out.splitlines())
    assert "subgroups" in report
    assert "combo_seen1" in report["subgroups"]["train_mean"]


def test_benchmark_with_published_split_and_grape_split(capsys, tmp_path):
    out_json = tmp_path / "gears.json"
    code, _, err = run(capsys, "benchmark", "--data", ADAMSON, "--split-file", ADAMSON_SPLIT,
                       "--json", out_json)
    assert code == 0, err
    assert set(json.loads(out_json.read_text())["test_conditions"]) == {"TARS+ctrl", "IER3IP1+ctrl"}
    grape_json = tmp_path / "grape.json"
    code, _, err = run(capsys, "benchmark", "--data", ADAMSON, "--split", "grape", "--seed", 3,
                       "--json", grape_json)
    assert code == 0, err
    report = json.loads(grape_json.read_text())
    assert report["split"] == "grape" and report["seed"] == 3
    assert len(report["test_conditions"]) == 3  # 10 * 0.25 = 2.5, halves round up


# ----------------------------------------------------------------------------------------
# split
# ----------------------------------------------------------------------------------------
def test_split_reproduces_gears_file(capsys, tmp_path):
    gears = json.loads(ADAMSON_SPLIT.read_text())
    conditions = gears["train"] + gears["val"] + gears["test"]
    as_lines = tmp_path / "conditions.txt"
    as_lines.write_text("\n".join(conditions) + "\n")
    as_json = tmp_path / "conditions.json"
    as_json.write_text(json.dumps(conditions))
    for source in (as_lines, as_json, ADAMSON_SPLIT):
        code, out, err = run(capsys, "split", "--conditions", source, "--split", "simulation",
                             "--seed", 1, "--train-gene-set-size", 0.75)
        assert code == 0, err
        split = json.loads(out)
        assert {"train", "val", "test", "subgroups"} <= set(split)
        for part in ("train", "val", "test"):
            assert set(split[part]) == set(gears[part]), (source, part)
        assert set(split["subgroups"]["test"]["unseen_single"]) == set(gears["test"])


def test_split_out_file_and_other_seed(capsys, tmp_path):
    out_file = tmp_path / "split.json"
    code, out, _ = run(capsys, "split", "--conditions", ADAMSON_SPLIT, "--seed", 2,
                       "--out", out_file)
    assert code == 0 and out == ""
    split = json.loads(out_file.read_text())
    assert split["seed"] == 2
    assert set(split["test"]) != set(json.loads(ADAMSON_SPLIT.read_text())["test"])


# ----------------------------------------------------------------------------------------
# errors: one line, no traceback, exit 1 (usage: exit 2)
# ----------------------------------------------------------------------------------------
def test_bad_file_is_one_error_line(capsys, tmp_path):
    bad = tmp_path / "table.h5ad"
    bad.write_text("gene,value\nA,1\n")
    code, out, err = run(capsys, "describe", bad)
    assert code == 1 and out == ""
    assert_one_error_line(err, "is not an AnnData .h5ad file", str(bad))
    code, _, err = run(capsys, "benchmark", "--data", bad)
    assert code == 1
    assert_one_error_line(err, "is not an AnnData .h5ad file")


def test_data_errors_through_the_cli(capsys, tmp_path):
    code, _, err = run(capsys, "benchmark", "--data", NORMAN_DEVEL)
    assert code == 1
    assert_one_error_line(err, "mixes several studies", "--subset dataset=<name>")
    code, _, err = run(capsys, "describe", tmp_path / "missing.h5ad")
    assert code == 1
    assert_one_error_line(err, "file not found")
    code, _, err = run(capsys, "describe", NORMAN_DEVEL, "--subset", "dataset=norman2019")
    assert code == 1
    assert_one_error_line(err, "no cell has dataset='norman2019'")
    code, _, err = run(capsys, "split", "--conditions", tmp_path / "none.txt")
    assert code == 1
    assert_one_error_line(err, "conditions file not found")
    bad_conditions = tmp_path / "bad.txt"
    bad_conditions.write_text("ctrl\nA,B\n")
    code, _, err = run(capsys, "split", "--conditions", bad_conditions)
    assert code == 1
    assert_one_error_line(err, "'A,B'")


def test_usage_errors_exit_2(capsys):
    assert main(["benchmark"]) == 2  # --data is required
    assert main(["split", "--conditions", "x", "--split", "random"]) == 2
    assert main([]) == 2
    capsys.readouterr()


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "table.h5ad"
    bad.write_text("gene,value\nA,1\n")
    from grape_core.errors import DataFormatError

    with pytest.raises(DataFormatError):
        main(["--debug", "describe", str(bad)])


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    base = dict(ctrl=20, **{"G1+ctrl": 10, "G2+ctrl": 10})
    cases: dict[str, tuple[Path, str]] = {}
    cases["missing file"] = (tmp / "nope.h5ad", "file not found")
    csv = tmp / "table.h5ad"
    csv.write_text("cell,gene,value\nc1,G1,0.5\n")
    cases["csv renamed"] = (csv, "not an AnnData .h5ad file (it looks like a text/CSV file)")
    noise = tmp / "noise.h5ad"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    cases["random bytes"] = (noise, "is not an AnnData .h5ad file")
    good = write_adata(make_adata(base), tmp / "good.h5ad")
    cut = tmp / "cut.h5ad"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated"] = (cut, "truncated or corrupted")
    a = make_adata(base)
    a.obs = a.obs.rename(columns={"condition": "guide"})
    cases["no condition column"] = (write_adata(a, tmp / "nocond.h5ad"), "no condition column")
    a = make_adata({"G1+ctrl": 10, "G2+ctrl": 10})
    cases["no control cells"] = (write_adata(a, tmp / "noctrl.h5ad"), "no control cells")
    cases["only control"] = (write_adata(make_adata({"ctrl": 10}), tmp / "onlyctrl.h5ad"),
                             "holds only control cells")
    cases["unknown separator"] = (write_adata(make_adata({"ctrl": 10, "G1,G2": 5}), tmp / "sep.h5ad"),
                                  "unexpected ',' in 'G1,G2'")
    cases["triple"] = (write_adata(make_adata({"ctrl": 10, "G1+G2+G3": 5}), tmp / "triple.h5ad"),
                       "perturbs 3 genes")
    a = make_adata(base)
    a.var["gene_name"] = ["G0", "G0", "G2", "G3", "G4", "G5"]
    cases["duplicated genes"] = (write_adata(a, tmp / "dup.h5ad"), "duplicated gene name")
    a = make_adata(base, sparse=False)
    a.X[3, 2] = np.nan
    cases["nan"] = (write_adata(a, tmp / "nan.h5ad"), "non-finite value")
    a = make_adata(base, sparse=False)
    a.X = np.round(a.X * 30)
    cases["raw counts"] = (write_adata(a, tmp / "counts.h5ad"), "looks like raw counts")
    return cases


def test_bad_inputs_give_one_line_and_exit_1(tmp_path, capsys):
    for name, (path, phrase) in _bad_files(tmp_path).items():
        code = main(["describe", str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1, name
        assert len(err) == 1 and err[0].startswith("error: ") and phrase in err[0], (name, err)
        assert "Traceback" not in err[0]


def test_debug_shows_the_traceback_of_a_bad_screen(tmp_path):
    from grape_core import DataFormatError

    with pytest.raises(DataFormatError):
        main(["--debug", "describe", str(tmp_path / "nope.h5ad")])


def test_empty_after_subsetting(tmp_path, capsys):
    a = make_adata(dict(ctrl=20, **{"G1+ctrl": 10}))
    a.obs["batch"] = ["b1"] * 20 + ["b2"] * 10
    a.obs["donor"] = ["d1"] * 20 + ["d2"] * 10
    path = write_adata(a, tmp_path / "batches.h5ad")
    assert main(["describe", str(path), "--subset", "batch=b1", "--subset", "donor=d2"]) == 1
    assert "no cells left" in capsys.readouterr().err


def test_condition_spaces_and_lower_case_are_read(tmp_path, capsys):
    a = make_adata({"ctrl": 10, " G1 + ctrl": 5, "g2+G3": 5, "CONTROL": 4})
    assert main(["describe", str(write_adata(a, tmp_path / "quirks.h5ad")), "--json"]) == 0
    info = __import__("json").loads(capsys.readouterr().out)
    assert info["control_cells"] == 14 and info["singles"] == 1 and info["pairs"] == 1
    assert set(info["cells_by_condition"]) == {"ctrl", "G1+ctrl", "g2+G3"}


def test_zero_cells(tmp_path, capsys):
    a = make_adata({"ctrl": 3, "G1+ctrl": 3})[:0].copy()
    line = one_error(capsys, ["describe", str(write_adata(a, tmp_path / "zero.h5ad"))])
    assert "holds no cells (0 rows in obs)" in line and "subsetting" not in line


def test_huge_finite_value_is_not_called_non_finite(tmp_path, capsys):
    a = make_adata({"ctrl": 10, "G1+ctrl": 5}, sparse=False)
    a.X = a.X.astype(np.float64)
    a.X[0, 0] = 1e39
    line = one_error(capsys, ["describe", str(write_adata(a, tmp_path / "big.h5ad"))])
    assert "non-finite" not in line and "1e+39" in line and "log1p" in line


def test_two_control_labels(tmp_path, capsys):
    a = make_adata({"ctrl": 10, "CTRL": 5, "G1+ctrl": 5, "ctrl+G2": 5, "G2+ctrl": 5})
    assert main(["describe", str(write_adata(a, tmp_path / "ctrl.h5ad")), "--json"]) == 0
    import json

    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("control cells are labelled in 2 ways" in w and "'CTRL', 'ctrl'" in w for w in warnings)
    orders = [w for w in warnings if "two orders" in w]
    assert len(orders) == 1 and "G2+ctrl and ctrl+G2" in orders[0]  # only the real case


def test_benchmark_on_two_cells(tmp_path, capsys):
    path = write_adata(make_adata({"ctrl": 1, "G1+ctrl": 1}), tmp_path / "two.h5ad")
    line = one_error(capsys, ["benchmark", "--data", str(path)])
    assert "leaves no measured training condition" in line and "more perturbations" in line


def test_genes_never_writes_into_a_folder_of_the_users(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "genes.csv").write_text("my,own,table\n")
    for extra in ([], ["--overwrite"]):
        line = one_error(capsys, ["genes", "--data", str(ADAMSON), "--out", str(mine), *extra])
        assert "is not a gene-knowledge folder" in line
    assert (mine / "genes.csv").read_text() == "my,own,table\n"
