"""Baselines on synthetic screens whose right answer is known, and on the real slices."""

from __future__ import annotations

import numpy as np
import pytest

from grape_core.data import PseudoBulk, pseudobulk
from grape_core.data.splits import simulation_split
from grape_core.evaluation.baselines import (
    AdditiveBaseline,
    AdditiveMeanBaseline,
    ControlBaseline,
    EmbeddingRidgeBaseline,
    LinearBaseline,
    TrainMeanBaseline,
    fit_baselines,
)


def make_pb(shifts: dict[str, np.ndarray], control: np.ndarray, genes=None) -> PseudoBulk:
    """A PseudoBulk whose condition means are exactly control + shift."""
    conditions = sorted(shifts)
    n_genes = len(control)
    return PseudoBulk(
        genes=tuple(genes or (f"G{i}" for i in range(n_genes))),
        conditions=tuple(conditions),
        means=np.stack([control + shifts[c] for c in conditions]).astype(np.float32),
        control_mean=control.astype(np.float32),
        n_cells=np.full(len(conditions), 50),
        n_control=200,
        de_idx=np.tile(np.arange(min(20, n_genes)), (len(conditions), 1)),
    )


@pytest.fixture
def additive_screen():
    """Singles A..E with random shifts; every pair's shift is exactly the sum of its singles."""
    rng = np.random.default_rng(0)
    control = rng.uniform(0.5, 3.0, 30)
    single = {g: rng.normal(0, 0.5, 30) for g in "ABCDE"}
    shifts = {f"{g}+ctrl": s for g, s in single.items()}
    for a, b in [("A", "B"), ("A", "C"), ("B", "D"), ("C", "E"), ("D", "E")]:
        shifts[f"{a}+{b}"] = single[a] + single[b]
    return make_pb(shifts, control), single, control


def test_control_baseline_predicts_the_control_mean(additive_screen):
    pb, _, control = additive_screen
    pred = ControlBaseline().fit(pb, ["A+ctrl", "B+ctrl"]).predict(["C+ctrl", "A+B", "Z+ctrl"])
    assert pred.shape == (3, 30)
    np.testing.assert_allclose(pred, np.tile(control, (3, 1)), rtol=1e-6)


def test_train_mean_is_control_plus_mean_training_shift(additive_screen):
    pb, single, control = additive_screen
    train = ["ctrl", "A+ctrl", "B+ctrl", "A+B"]  # ctrl in train is ignored
    expected = control + (single["A"] + single["B"] + (single["A"] + single["B"])) / 3
    pred = TrainMeanBaseline().fit(pb, train).predict(["C+ctrl", "D+E"])
    np.testing.assert_allclose(pred, np.tile(expected, (2, 1)), rtol=1e-5, atol=1e-6)


def test_train_mean_ignores_training_conditions_that_are_not_measured(additive_screen):
    pb, single, control = additive_screen
    pred = TrainMeanBaseline().fit(pb, ["A+ctrl", "NOPE+ctrl"]).predict(["C+ctrl"])
    np.testing.assert_allclose(pred[0], control + single["A"], rtol=1e-5, atol=1e-6)


def test_additive_recovers_pairs_exactly_and_abstains_otherwise(additive_screen):
    pb, single, control = additive_screen
    train = ["A+ctrl", "B+ctrl", "C+ctrl", "D+ctrl", "A+C"]  # E unseen
    model = AdditiveBaseline().fit(pb, train)
    pred = model.predict(["A+B", "B+D", "C+E", "D+E", "A+ctrl", "E+ctrl"])
    np.testing.assert_allclose(pred[0], control + single["A"] + single["B"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred[0], pb.means[pb.index("A+B")], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pred[1], pb.means[pb.index("B+D")], rtol=1e-5, atol=1e-5)
    # a pair with a single not measured in training, and singles: no prediction (NaN rows)
    assert np.isnan(pred[2]).all() and np.isnan(pred[3]).all()
    assert np.isnan(pred[4]).all() and np.isnan(pred[5]).all()


def test_additive_uses_only_training_singles(additive_screen):
    """A single that is held out must not leak into the additive prediction of a pair."""
    pb, _, _ = additive_screen
    pred = AdditiveBaseline().fit(pb, ["A+ctrl", "C+ctrl"]).predict(["A+B"])
    assert np.isnan(pred).all()


def test_baseline_needs_training_conditions(additive_screen):
    pb, _, _ = additive_screen
    with pytest.raises(ValueError, match="at least one"):
        TrainMeanBaseline().fit(pb, ["ctrl", "UNKNOWN+ctrl"])


@pytest.fixture
def low_rank_screen():
    """Perturbing gene j shifts expression by L M L[j]: a rank-3 response.

    ``L`` is centred over the training genes, so the response is exactly representable by
    the linear model (gene embedding = PCA of the training responses).
    """
    rng = np.random.default_rng(0)
    n_genes, rank, n_train = 60, 3, 32
    L = rng.normal(size=(n_genes, rank))
    L -= L[:n_train].mean(axis=0)
    M = np.diag([1.0, 0.8, 0.6]) + 0.1 * rng.normal(size=(rank, rank))
    control = rng.uniform(1.0, 3.0, n_genes)
    shifts = {f"G{j}+ctrl": 0.5 * L @ M @ L[j] + 0.3 for j in range(40)}
    pb = make_pb(shifts, control)
    train = [f"G{j}+ctrl" for j in range(n_train)]
    test = [f"G{j}+ctrl" for j in range(n_train, 40)]
    return pb, train, test


def test_linear_recovers_a_low_rank_response_on_held_out_genes(low_rank_screen):
    pb, train, test = low_rank_screen
    truth = pb.means[pb.rows(test)].astype(np.float64)
    linear = LinearBaseline().fit(pb, train)  # defaults: K = 10, ridge 0.1
    assert linear.n_components == 10 and linear.ridge == 0.1
    err_linear = np.mean((linear.predict(test) - truth) ** 2)
    err_mean = np.mean((TrainMeanBaseline().fit(pb, train).predict(test) - truth) ** 2)
    assert err_linear < 0.01 * err_mean
    # with (almost) no ridge the bilinear fit is exact
    tiny = LinearBaseline(ridge=1e-8).fit(pb, train).predict(test)
    np.testing.assert_allclose(tiny, truth, atol=1e-4)


def test_linear_falls_back_to_train_mean_for_unmeasured_genes(low_rank_screen):
    pb, train, _ = low_rank_screen
    linear = LinearBaseline().fit(pb, train)
    mean = TrainMeanBaseline().fit(pb, train)
    conds = ["NOTMEASURED+ctrl", "NOTMEASURED+OTHER"]
    np.testing.assert_allclose(linear.predict(conds), mean.predict(conds), rtol=1e-6, atol=1e-6)
    # a measured gene does move the prediction away from the train mean
    assert not np.allclose(linear.predict(["G35+ctrl"]), mean.predict(["G35+ctrl"]))


def test_linear_pair_embedding_is_the_sum_of_its_genes(low_rank_screen):
    pb, train, _ = low_rank_screen
    linear = LinearBaseline().fit(pb, train)
    base = linear.predict(["NOTMEASURED+ctrl"])[0]
    a, b, ab = linear.predict(["G33+ctrl", "G34+ctrl", "G33+G34"])
    np.testing.assert_allclose(ab - base, (a - base) + (b - base), atol=1e-8)


def test_fit_baselines_adds_additive_only_with_pairs(additive_screen, low_rank_screen):
    pb, _, _ = additive_screen
    assert list(fit_baselines(pb, ["A+ctrl", "B+ctrl"])) == ["control", "train_mean", "linear",
                                                               "additive", "additive_mean"]
    singles_pb, train, _ = low_rank_screen
    assert list(fit_baselines(singles_pb, train)) == ["control", "train_mean", "linear"]
    assert "additive" in fit_baselines(singles_pb, train, pairs=True)


def test_baselines_on_the_real_norman_subset(norman):
    """Real norman19 cells: additive predicts exactly the pairs whose singles were trained."""
    pb = pseudobulk(norman)
    split = simulation_split(pb.conditions, seed=1)
    models = fit_baselines(pb, split.train)
    assert set(models) == {"control", "train_mean", "linear", "additive", "additive_mean"}
    train_singles = {c.split("+")[0] for c in split.train if c.endswith("+ctrl")}
    pred = models["additive"].predict(list(split.test))
    for cond, row in zip(split.test, pred):
        genes = cond.split("+")
        covered = "ctrl" not in genes and all(g in train_singles for g in genes)
        assert np.isfinite(row).all() == covered, cond
        if covered:
            a, b = (pb.shifts[pb.index(f"{g}+ctrl")] for g in genes)
            np.testing.assert_allclose(row, pb.control_mean + a + b, rtol=1e-5, atol=1e-5)
    # only TMSB4X of the perturbed genes is measured: linear = train_mean for the others
    pred_lin = models["linear"].predict(["MAP2K6+ctrl"])
    np.testing.assert_allclose(pred_lin, models["train_mean"].predict(["MAP2K6+ctrl"]), atol=1e-5)


def test_verdict_compares_each_baseline_on_the_conditions_it_predicts():
    import pandas as pd

    from grape_core.evaluation.benchmark import Report

    def table(values):
        return pd.DataFrame({"pearson_delta": list(values.values()), "mse": 0.01}, index=list(values))

    report = Report(
        dataset="d", split="simulation", seed=1, test_conditions=["A+B", "C+D", "E+F"],
        tables={"grape": table({"A+B": 0.95, "C+D": 0.1, "E+F": 0.1}),
                # the additive baseline predicts only A+B, where it is worse than grape
                "additive": table({"A+B": 0.90}),
                "train_mean": table({"A+B": 0.2, "C+D": 0.2, "E+F": 0.2})},
        subgroups={"combo_seen2": ["A+B", "C+D", "E+F"]})
    text = report.verdict()
    # over 3 conditions grape averages 0.383 and additive 0.90 on its one: not a fair win
    assert "additive" not in text
    assert "combo_seen2 (3 of 3): train_mean 0.200 vs 0.383" not in text  # grape is better
    report.tables["grape"].loc["A+B", "pearson_delta"] = 0.5
    text = report.verdict()
    assert "combo_seen2 (1 of 3): additive 0.900 vs 0.500" in text


@pytest.mark.parametrize("signed", [False, True])
def test_propagation_recovers_a_planted_diffusion_and_predicts_held_out_genes(signed):
    """Shifts made exactly as the baseline models them: a * mean + b * e + c1 * A e + c2 * A^2 e
    over a known prior (signed: a third of its edges repress, each row normalised by its
    sizes); fitted on some genes, it predicts the others exactly."""
    import pandas as pd
    import scipy.sparse as sp_

    from grape_core.evaluation.baselines import PropagationBaseline

    rng = np.random.default_rng(0)
    n = 30
    genes = [f"G{i}" for i in range(n)]
    src, dst = rng.integers(0, n, 90), rng.integers(0, n, 90)
    keep = src != dst
    prior = pd.DataFrame({"source": np.array(genes)[src[keep]], "target": np.array(genes)[dst[keep]],
                          "weight": rng.uniform(0.5, 1.5, keep.sum())
                          * np.where(signed & (rng.random(keep.sum()) < 1 / 3), -1.0, 1.0)}
                         ).drop_duplicates(["source", "target"])
    s = pd.Series(prior["source"]).map({g: i for i, g in enumerate(genes)}).to_numpy()
    t = pd.Series(prior["target"]).map({g: i for i, g in enumerate(genes)}).to_numpy()
    adj = sp_.csr_matrix((prior["weight"], (t, s)), shape=(n, n)).toarray()
    size = np.abs(adj).sum(1, keepdims=True)
    adj = adj / np.where(size > 0, size, 1)
    b, c1, c2 = -1.2, 0.6, -0.3
    own = {}
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1
        own[f"G{i}+ctrl"] = b * e + c1 * adj @ e + c2 * adj @ adj @ e
    train = [f"G{i}+ctrl" for i in range(20)]
    # + m0 makes the training mean 2 m0, so the shared term is exactly 0.5 x training mean
    m0 = np.mean([own[c] for c in train], axis=0)
    shifts = {k: v + m0 for k, v in own.items()}
    pb = make_pb(shifts, np.full(n, 2.0), genes=genes)
    model = PropagationBaseline(prior).fit(pb, train)
    test = [f"G{i}+ctrl" for i in range(20, n)]
    np.testing.assert_allclose(model.predict(test) - pb.control_mean, pb.shifts[pb.rows(test)], atol=1e-5)


def test_propagation_joins_the_baselines_when_a_prior_is_given(additive_screen):
    import pandas as pd

    pb, _, _ = additive_screen
    prior = pd.DataFrame({"source": [pb.genes[0]], "target": [pb.genes[1]]})
    assert "propagation" in fit_baselines(pb, ["A+ctrl", "B+ctrl"], prior=prior)
    assert "propagation" not in fit_baselines(pb, ["A+ctrl", "B+ctrl"])


def test_additive_mean_composes_measured_singles_and_falls_back_to_the_training_mean(additive_screen):
    pb, single, control = additive_screen
    model = AdditiveMeanBaseline().fit(pb, ["A+ctrl", "B+ctrl", "C+ctrl", "A+C"])
    pred = model.predict(["A+B", "B+D", "D+ctrl", "A+C"])
    np.testing.assert_allclose(pred[0], control + single["A"] + single["B"], atol=1e-6)
    mean = np.mean([single["A"], single["B"], single["C"], single["A"] + single["C"]], axis=0)
    np.testing.assert_allclose(pred[1], control + mean, atol=1e-6)  # D never measured
    np.testing.assert_allclose(pred[2], control + mean, atol=1e-6)
    np.testing.assert_allclose(pred[3], pb.means[pb.index("A+C")], atol=1e-12)  # measured itself


def test_embedding_ridge_learns_a_response_its_features_carry():
    """Each gene's shift is a fixed linear map of its feature vector: the ridge recovers it
    on genes it never saw; features that carry nothing give the training mean."""
    rng = np.random.default_rng(0)
    n_genes, d = 30, 6
    features = rng.normal(size=(n_genes, d))
    mapping = rng.normal(size=(d, 20))
    control = rng.uniform(1.0, 3.0, 20)
    shifts = {f"G{j}+ctrl": features[j] @ mapping * 0.2 + 0.1 for j in range(n_genes)}
    pb = make_pb(shifts, control)
    genes = [f"G{j}" for j in range(n_genes)]
    train, test = [f"G{j}+ctrl" for j in range(24)], [f"G{j}+ctrl" for j in range(24, 30)]
    model = EmbeddingRidgeBaseline(features, genes).fit(pb, train)
    truth = pb.means[pb.rows(test)]
    assert np.abs(model.predict(test) - truth).max() < 0.05
    noise = EmbeddingRidgeBaseline(rng.normal(size=(n_genes, d)), genes).fit(pb, train)
    mean = TrainMeanBaseline().fit(pb, train).predict(test)
    assert np.mean((noise.predict(test) - truth) ** 2) < 1.5 * np.mean((mean - truth) ** 2)
    assert noise.alpha > model.alpha  # the folds chose more shrinkage for useless features
