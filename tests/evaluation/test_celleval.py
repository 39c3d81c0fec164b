"""cell-eval's metrics, the split-half replicate, the scaled score and the tie rule.

Hand-computed cases for each definition, then the package itself (cell-eval, pinned in
requirements.txt) run on the AnnData files ``evaluate --h5ad`` writes for the bundled Adamson
model: every number must equal ours.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import ADAMSON, NORMAN_DEVEL, ROOT

from grape_core.evaluation import celleval
from grape_core.evaluation.celleval import Constant, DETable
from grape_core.evaluation.replicate import (
    CellSample,
    scale,
    scaled_scores,
    split_halves,
)
from grape_core.evaluation.verdicts import better, tied

BUNDLED = ROOT / "assets" / "models"


# ----------------------------------------------------------------------------- by hand
def test_discrimination_ranks_the_own_shift_and_leaves_a_singles_gene_out():
    genes = ["A", "x", "y"]
    real = np.array([[5.0, 0.0, 0.0],   # A: its own gene moves most
                     [0.0, 1.0, 0.0],   # B
                     [0.0, 0.0, 1.0]])  # C
    pred = np.array([[0.0, 0.9, 0.0],   # A
                     [4.0, 0.5, 0.0],   # B: nearer A's measured shift than its own
                     [0.0, 0.0, 0.8]])  # C: right
    scores = celleval.discrimination_scores(pred, real, ["A", "B", "C"], genes, metric="l1")
    # A, column A left out: distances to A (0, 0) 0.9, B (1, 0) 0.1, C (0, 1) 1.9 -> 1 closer
    # B, every column: A 1 + 0.5 = 1.5, B 4 + 0.5 = 4.5, C 4 + 0.5 + 1 = 5.5 -> 1 closer
    # C: A 5.8, B 1.8, C 0.2 -> none closer
    assert scores.tolist() == pytest.approx([1 - 1 / 3, 1 - 1 / 3, 1.0])
    # a pair's label names no gene, so nothing is left out: A 5.9, B 0.1, C 1.9 -> 2 closer
    both = celleval.discrimination_scores(pred, real, ["A+B", "B", "C"], genes, metric="l1")
    assert both[0] == pytest.approx(1 - 2 / 3)


def test_means_metrics_and_an_undefined_pearson():
    control = np.array([1.0, 1.0, 2.0, 0.0])
    real = np.array([[2.0, 1.0, 1.0, 0.5]])
    pred = np.array([[1.5, 1.0, 2.0, 0.0]])
    table = celleval.anndata_metrics(pred, real, control, ["G"], ["g0", "g1", "g2", "g3"])
    row = table.loc["G"]
    # shifts: predicted (0.5, 0, 0, 0), measured (1, 0, -1, 0.5); errors (-0.5, 0, 1, -0.5)
    assert row["mse"] == pytest.approx(1.5 / 4) and row["mae"] == pytest.approx(2.0 / 4)
    assert row["mse_delta"] == row["mse"] and row["mae_delta"] == row["mae"]
    x, y = np.array([0.5, 0, 0, 0]), np.array([1, 0, -1, 0.5])
    assert row["pearson_delta"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    flat = celleval.anndata_metrics(control[None, :], real, control, ["G"], ["a", "b", "c", "d"])
    assert np.isnan(flat.loc["G", "pearson_delta"])  # a constant shift: NaN, as scipy's pearsonr


def test_de_metrics_by_hand():
    # genes 0..4; real: 0, 1, 2 significant with |lfc| 3, 2, 1; predicted: 1, 3 significant
    real = DETable(lfc=np.array([[3.0, -2.0, 1.0, 0.1, 0.0]], dtype=np.float32),
                   fdr=np.array([[0.001, 0.01, 0.02, 0.5, 0.9]], dtype=np.float32))
    pred = DETable(lfc=np.array([[-0.5, -4.0, 0.2, 2.0, 0.0]], dtype=np.float32),
                   fdr=np.array([[0.2, 0.001, 0.3, 0.01, 0.9]], dtype=np.float32))
    row = celleval.de_metrics(real, pred, ["P"]).loc["P"]
    # real top 3: [0, 1, 2]; predicted top 3 of its 2: [1, 3] -> 1 shared of 3
    assert row["overlap_at_N"] == pytest.approx(1 / 3)
    assert row["overlap_at_50"] == pytest.approx(1 / 3)  # k = min(50, 3)
    # precision: k = 2 predicted: real[:2] = [0, 1], pred[:2] = [1, 3] -> 1/2
    assert row["precision_at_N"] == pytest.approx(1 / 2)
    # directions over the real significant genes 0, 1, 2: (+,-), (-,-), (+,+) -> 2/3
    assert row["de_direction_match"] == pytest.approx(2 / 3)
    assert row["de_spearman_lfc_sig"] == pytest.approx(
        np.corrcoef([3, 1, 2], [1, 0, 2])[0, 1])  # ranks of (3,-2,1) and (-0.5,-4,0.2)
    assert row["de_sig_genes_recall"] == pytest.approx(1 / 3)
    assert (row["de_nsig_counts_real"], row["de_nsig_counts_pred"]) == (3, 2)
    assert np.isnan(row["de_spearman_sig"])  # one perturbation: no rank correlation
    nothing = DETable(lfc=real.lfc, fdr=np.ones_like(real.fdr))
    empty = celleval.de_metrics(nothing, pred, ["P"]).loc["P"]
    assert empty["overlap_at_N"] == 0.0 and empty["de_spearman_sig"] == 1.0  # cell-eval's rules
    assert np.isnan(empty["de_direction_match"]) and np.isnan(empty["pr_auc"])


def test_rank_test_equals_scipy_with_ties_sparse_input_and_constant_groups():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(0)

    def cells(n, g):
        x = np.where(rng.random((n, g)) < 0.6, 0, rng.gamma(2, 0.5, (n, g))).astype(np.float32)
        x[:, 1] = np.round(x[:, 1], 1)  # many ties
        x[:, 0] = 0  # every value equal: p = 1
        return x

    control, group = cells(300, 40), cells(25, 40)
    value = np.round(cells(1, 40)[0], 2)
    value[5] = control[3, 5]  # the constant ties with control cells
    found = celleval._mwu_pvalues([group, sp.csr_matrix(group), Constant(value, 30)],
                                  sp.csr_matrix(control), 40)
    for row, cells_of in zip(found, (group, group, np.broadcast_to(value, (30, 40)))):
        with np.errstate(all="ignore"):
            expected = mannwhitneyu(cells_of.astype(np.float64), control.astype(np.float64),
                                    axis=0, method="asymptotic").pvalue
        expected = np.where(np.isfinite(expected), np.clip(expected, 0, 1), 1.0)
        np.testing.assert_allclose(row, expected, rtol=1e-12, atol=1e-15)
    assert found[0, 0] == 1.0


# ----------------------------------------------------------------------------- replicate
def _sample(sizes: dict[str, int], n_control: int = 7, n_genes: int = 4) -> CellSample:
    rng = np.random.default_rng(1)
    cells = {c: rng.random((n, n_genes)).astype(np.float32) for c, n in sizes.items()}
    return CellSample(genes=tuple(f"g{i}" for i in range(n_genes)), conditions=tuple(sizes),
                      cells=cells, control=rng.random((n_control, n_genes)).astype(np.float32))


def test_split_halves_are_disjoint_seeded_and_drop_a_single_cell():
    sample = _sample({"A+ctrl": 9, "B+C": 4, "D+ctrl": 1})
    halves = split_halves(sample, seed=0)
    assert halves.dropped == ("D+ctrl",) and halves.measured.conditions == ("A+ctrl", "B+C")
    for c, n in (("A+ctrl", 9), ("B+C", 4)):
        first, second = halves.measured.cells[c], halves.predicted.cells[c]
        assert len(first) == len(second) == n // 2
        rows = {tuple(r) for r in first} | {tuple(r) for r in second}
        assert len(rows) == 2 * (n // 2)  # no cell in both halves
    assert len(halves.measured.control) == len(halves.predicted.control) == 3
    again = split_halves(sample, seed=0)
    np.testing.assert_array_equal(again.predicted.cells["A+ctrl"], halves.predicted.cells["A+ctrl"])
    other = split_halves(sample, seed=1)
    assert not np.array_equal(other.predicted.cells["A+ctrl"], halves.predicted.cells["A+ctrl"])
    assert split_halves(_sample({"A+ctrl": 4}, n_control=1)) is None  # control cannot be split


def test_scaled_score_by_hand_and_when_the_data_cannot_tell():
    assert scale(0.5, 0.3, 0.7, "pearson_delta") == pytest.approx(0.5)
    assert scale(0.8, 0.3, 0.7, "pearson_delta") == pytest.approx(1.25)  # beyond the replicate
    assert scale(0.02, 0.04, 0.01, "mse") == pytest.approx(2 / 3)  # errors: lower is better
    assert np.isnan(scale(0.5, 0.6, 0.55, "pearson_delta"))  # the replicate is worse
    assert np.isnan(scale(0.5, 0.6, 0.6005, "pearson_delta"))  # a tie: no number
    tables = {name: pd.DataFrame({"pearson_delta": values}, index=["P", "Q"])
              for name, values in {"grape": [0.5, 0.2], "train_mean": [0.3, 0.4],
                                   "replicate": [0.7, 0.4005]}.items()}
    found = scaled_scores(tables)
    assert set(found) == {"grape", "train_mean"}
    per = found["grape"].per_condition["pearson_delta"]
    assert per["P"] == pytest.approx(0.5) and np.isnan(per["Q"])
    # overall: means 0.35, 0.35, 0.55025 -> (0.35 - 0.35) / 0.20025 = 0
    assert found["grape"].overall["pearson_delta"] == pytest.approx(0.0)
    tables["replicate"]["pearson_delta"] = [0.3, 0.4]
    assert "cannot tell" in scaled_scores(tables)["grape"].reasons["pearson_delta"]


def test_one_tie_rule():
    assert tied(0.946, 0.945, "pearson_delta") and not better(0.946, 0.945, "pearson_delta")
    assert tied(0.9459, 0.9455, "pearson_delta")
    assert better(0.9465, 0.9450, "pearson_delta") and not tied(0.9465, 0.9450, "pearson_delta")
    assert tied(0.00055, 0.000553, "mse") and better(0.0560, 0.0571, "mse")
    assert better(0.05, 0.06, "cell_eval.mae_delta") and not better(0.06, 0.05, "cell_eval.mae")
    assert not tied(float("nan"), 0.5, "pearson_delta")


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def adamson_eval(tmp_path_factory):
    """``evaluate --data --json --h5ad`` on the bundled Adamson model."""
    from grape_core.cli import main

    folder = tmp_path_factory.mktemp("celleval")
    out = folder / "eval.json"
    assert main(["--quiet", "evaluate", "--model", str(BUNDLED / "adamson"), "--data", str(ADAMSON),
                 "--json", str(out), "--h5ad", str(folder / "files")]) == 0
    return json.loads(out.read_text()), folder / "files"


@pytest.mark.parametrize("name, data", [("adamson", ADAMSON), ("norman", NORMAN_DEVEL)])
def test_evaluate_json_has_cell_evals_names_and_a_replicate_row(name, data, tmp_path, capsys):
    from grape_core.cli import main

    out = tmp_path / "eval.json"
    subset = ["--subset", "dataset=norman19"] if name == "norman" else []
    assert main(["--quiet", "evaluate", "--model", str(BUNDLED / name), "--data", str(data),
                 *subset, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert "replicate" in report["models"] and "replicate" in report["cell_eval"]["models"]
    for metric in ("pearson_delta", "mse_delta", "discrimination_score_l1", "discrimination_score_l2",
                   "discrimination_score_cosine", "overlap_at_N", "de_direction_match",
                   "de_spearman_lfc_sig"):
        assert metric in report["cell_eval"]["models"]["grape"], metric
    held = len(report["test_conditions"])
    assert report["models"]["replicate"]["n_conditions"] == held
    assert set(report["per_condition"]["replicate"]) == set(report["test_conditions"])
    scaled = report["scaled"]["models"]["grape"]["pearson_delta"]
    if scaled is None:
        assert "cannot tell" in report["scaled"]["undefined"]["grape"]["pearson_delta"]
    else:  # (model - train mean) / (replicate - train mean)
        m, b, r = (report["models"][k]["pearson_delta"] for k in ("grape", "train_mean", "replicate"))
        assert scaled == pytest.approx((m - b) / (r - b))
    assert "replicate" in printed and "cell-eval 0.8.2 metrics" in printed


def test_without_cells_the_stored_replicate_and_a_note(capsys):
    from grape_core.cli import main

    assert main(["--quiet", "evaluate", "--model", str(BUNDLED / "adamson")]) == 0
    captured = capsys.readouterr()
    # the bundled model stores its replicate from training; cell-eval's DE metrics need cells
    assert "replicate row: stored in the model" in captured.err and "need the cells" in captured.err
    assert "note: no replicate row" not in captured.err
    assert main(["evaluate", "--model", str(BUNDLED / "adamson"), "--h5ad", "x"]) == 1
    assert "error: --h5ad writes the measured cells" in capsys.readouterr().err


def test_a_trained_model_stores_its_replicate(adamson_model):
    """Training evaluates with the cells: the replicate and cell-eval's DE metrics are in the
    model folder, and evaluate() without the data uses the stored replicate."""
    import grape_core as gc

    model = gc.load(adamson_model)
    metrics = model.bundle.metrics
    assert set(metrics["model"]) >= {"grape", "train_mean", "replicate"}
    assert metrics["cell_eval.de_direction_match"].notna().any()
    assert "replicate" in model.bundle.manifest.metrics.test
    cell_eval = model.bundle.manifest.metrics.extra["cell_eval"]  # under cell-eval's own names
    assert {"grape", "replicate"} <= set(cell_eval) and "de_direction_match" in cell_eval["grape"]
    assert model.bundle.manifest.metrics.extra["replicate"]["seed"] == 0
    report = gc.evaluate(model)
    assert "replicate" in report.tables and any("stored in the model" in n for n in report.notes)
    stored = metrics[metrics["model"] == "replicate"].set_index("condition")["pearson_delta"]
    fresh = report.tables["replicate"]["pearson_delta"]
    np.testing.assert_allclose(fresh.loc[stored.index], stored)


def test_the_written_files_follow_pertpy_and_cell_eval(adamson_eval):
    import anndata

    report, files = adamson_eval
    index = json.loads((files / "cell_eval.json").read_text())
    assert {p["model"] for p in index["pairs"]} >= {"grape", "train_mean", "replicate"}
    real = anndata.read_h5ad(files / "real.h5ad")
    pred = anndata.read_h5ad(files / "pred_grape.h5ad")
    for adata in (real, pred):
        assert adata.uns["log1p"] == {"base": None} and adata.X.min() >= 0
        labels = adata.obs["perturbation"].astype(str)
        assert set(labels) == {"control", "TARS", "IER3IP1"}
        assert list(adata.obs["perturbation"].cat.categories) == sorted(set(labels))
    # the prediction: as many cells as measured, each the predicted mean, and the real controls
    assert (pred.obs["perturbation"].value_counts() == real.obs["perturbation"].value_counts()).all()
    control = np.asarray(real[real.obs["perturbation"] == "control"].X.todense())
    np.testing.assert_array_equal(np.asarray(pred[pred.obs["perturbation"] == "control"].X), control)
    tars = np.asarray(pred[pred.obs["perturbation"] == "TARS"].X)
    assert (tars == tars[0]).all()


@pytest.mark.slow
def test_the_package_itself_gives_the_same_numbers(adamson_eval, tmp_path):
    """cell-eval 0.8.2 on the files we wrote: every metric we compute, for every model, the
    replicate, and cell-eval's own data ceiling of real.h5ad."""
    pytest.importorskip("cell_eval", reason="cell-eval is pinned in requirements.txt")
    from cell_eval import MetricsEvaluator

    from grape_core.data.conditions import perturbation_label

    report, files = adamson_eval
    compared = 0
    for pair in json.loads((files / "cell_eval.json").read_text())["pairs"]:
        evaluator = MetricsEvaluator(adata_pred=str(files / pair["pred"]),
                                     adata_real=str(files / pair["real"]), control_pert="control",
                                     pert_col="perturbation", num_threads=1,
                                     outdir=str(tmp_path / "out"))
        results, _ = evaluator.compute(profile="full", write_csv=False)
        theirs = results.to_pandas().set_index("perturbation")
        ours = {perturbation_label(c): v
                for c, v in report["cell_eval"]["per_condition"][pair["model"]].items()}
        # the control baseline predicts the control mean: its fold changes are 0 but for the
        # last float32 bit, whose sign (cell-eval's expm1f rounding) decides these
        noise = {"de_direction_match", "de_spearman_lfc_sig"} if pair["model"] == "control" else set()
        for pert, row in theirs.iterrows():
            for metric in set(celleval.METRICS) - noise:
                want, got = row[metric], ours[pert][metric]
                want = np.nan if want is None else float(want)
                got = np.nan if got is None else got
                assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=1e-5), \
                    (pair["model"], pert, metric, got, want)
                compared += 1
    assert compared > 200
    ceiling = MetricsEvaluator(adata_pred=None, adata_real=str(files / "real.h5ad"),
                               control_pert="control", pert_col="perturbation", num_threads=1,
                               outdir=str(tmp_path / "out"))
    raw, agg = ceiling.compute_ceiling(seed=0, write_csv=False)
    raw = raw.to_pandas().set_index("perturbation")
    ours = {perturbation_label(c): v
            for c, v in report["cell_eval"]["per_condition"]["replicate"].items()}
    for pert, row in raw.iterrows():  # our replicate is its self-split, cell for cell
        for metric in celleval.METRICS:
            want, got = row[metric], ours[pert][metric]
            want = np.nan if want is None else float(want)
            got = np.nan if got is None else got
            assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=1e-5)
    agg = agg.to_pandas().iloc[0]
    for metric, value in report["cell_eval"]["ceiling"].items():
        assert (value is None and np.isnan(agg[metric])) or value == pytest.approx(agg[metric],
                                                                                   abs=1e-6)
