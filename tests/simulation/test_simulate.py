"""Planted-truth screens: ``simulate`` and ``python -m grape_core simulate``.

Small configs (a second or less each); the answer is known because the screen is built from
a known network."""

from __future__ import annotations

import hashlib
import json
import math

import anndata
import numpy as np
import pandas as pd
import pytest
from conftest import one_error

from grape_core.cli import main
from grape_core.errors import GrapeError
from grape_core.simulation import (
    ADDITIVE,
    FILES,
    RELATIONS,
    PlantedScreen,
    SimulationConfig,
    read_truth,
    simulate,
)

SMALL = SimulationConfig(seed=3, n_genes=120, n_singles=30, n_pairs=16, cells_per_condition=20,
                         n_control_cells=200, interaction_fraction=0.5)


@pytest.fixture(scope="module")
def small() -> PlantedScreen:
    return simulate(SMALL)


@pytest.fixture(scope="module")
def small_folder(small, tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted") / "screen"
    small.write(folder)
    return folder


def _u(screen: PlantedScreen) -> np.ndarray:
    """Direct change u per condition, ``(n_conditions, n_genes)``."""
    index = {g: i for i, g in enumerate(screen.genes["gene"])}
    eff = screen.genes["efficiency"].to_numpy()
    sign = -1.0 if screen.config.mode == "knockdown" else 1.0
    u = np.zeros((len(screen.conditions), len(index)))
    for p, cond in enumerate(screen.conditions):
        for gene in cond.split("+"):
            if gene != "ctrl":
                u[p, index[gene]] = sign * eff[index[gene]]
    return u


def _row(screen: PlantedScreen, condition: str) -> int:
    return screen.conditions.index(condition)


# ----------------------------------------------------------------------------------------
# determinism
# ----------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_other_screen(small, small_folder, tmp_path):
    again = simulate(SMALL)
    again.write(tmp_path / "again")
    for name in FILES + ("simulation.json",):
        assert (small_folder / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    a, b = (anndata.read_h5ad(f / "screen.h5ad") for f in (small_folder, tmp_path / "again"))
    np.testing.assert_array_equal(a.X, b.X)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    other = simulate(SMALL.replace(seed=4))
    assert not other.edges.equals(small.edges)
    assert other.genes["gene"].tolist() != small.genes["gene"].tolist()


def test_cells_do_not_change_the_network(small):
    fewer = simulate(SMALL.replace(cells_per_condition=11, n_control_cells=30))
    pd.testing.assert_frame_equal(fewer.edges, small.edges)
    np.testing.assert_array_equal(fewer.shifts, small.shifts)
    assert fewer.adata.n_obs == 30 + 11 * len(small.conditions)


# ----------------------------------------------------------------------------------------
# steady state
# ----------------------------------------------------------------------------------------
def test_linear_truth_is_the_exact_inverse(small):
    W = small.W.toarray()
    n = W.shape[0]
    inverse = np.linalg.inv(np.eye(n) - W)  # dense is fine at 120 genes
    u = _u(small)
    expected = u @ inverse.T
    additive = small.interactions.set_index("pair")["type"] == ADDITIVE
    rows = [i for i, c in enumerate(small.conditions) if c.endswith("+ctrl") or additive[c]]
    np.testing.assert_allclose(small.network_shifts[rows], expected[rows], atol=2e-6)
    r = small.genes["shared_response"].to_numpy()
    np.testing.assert_allclose(small.shifts, small.network_shifts
                               + small.shared_scale[:, None] * r[None, :], atol=2e-6)
    # a knock-down lowers its own gene
    singles = [i for i, c in enumerate(small.conditions) if c.endswith("+ctrl")]
    own = [small.network_shifts[i, small.genes.index[small.genes["gene"] == c.split("+")[0]][0]]
           for i, c in enumerate(small.conditions) if i in singles]
    assert np.all(np.asarray(own) < 0)


def test_pseudobulk_mean_is_the_truth_within_noise(small_folder, small):
    from grape_core import pseudobulk, read_perturbseq

    pb = pseudobulk(read_perturbseq(small_folder / "screen.h5ad"))
    assert pb.genes == tuple(small.genes["gene"])
    order = [small.conditions.index(c) for c in pb.conditions]
    truth = small.shifts[order]
    sigma = small.config.cell_noise
    se = sigma * math.sqrt(1 / small.config.cells_per_condition + 1 / small.config.n_control_cells)
    error = pb.shifts - truth
    assert np.abs(error).max() < 6 * se
    assert error.std() == pytest.approx(se, rel=0.1)
    np.testing.assert_allclose(pb.control_mean, small.genes["control_mean"], atol=6 * sigma
                               / math.sqrt(small.config.n_control_cells))


def test_saturating_is_bounded_solves_its_fixed_point_and_differs(small):
    sat = simulate(SMALL.replace(propagation="saturating", interaction_fraction=0.0))
    lin = simulate(SMALL.replace(interaction_fraction=0.0))
    pd.testing.assert_frame_equal(sat.edges, lin.edges)
    c = sat.config.saturation
    W = sat.W.toarray()
    u = _u(sat)
    s = sat.network_shifts.astype(np.float64)
    np.testing.assert_allclose(s, c * np.tanh(s / c) @ W.T + u, atol=1e-5)  # s = W phi(s) + u
    bound = c * np.abs(W).sum(axis=1)  # |W phi(s)| <= c * sum_j |W_ij|
    assert np.all(np.abs(s - u) <= bound[None, :] + 1e-5)
    assert np.abs(sat.network_shifts - lin.network_shifts).max() > 0.05
    # saturation shrinks what passes through the network
    assert np.abs(s - u).sum() < np.abs(lin.network_shifts - u).sum()


def test_activation_raises_the_perturbed_gene():
    screen = simulate(SMALL.replace(mode="activation", n_pairs=0))
    genes = screen.genes.set_index("gene")
    for p, cond in enumerate(screen.conditions):
        gene = cond.split("+")[0]
        assert screen.network_shifts[p, genes.index.get_loc(gene)] > 0


def test_bounded_saturates_every_gene_the_perturbed_ones_too(small):
    """``bounded``: s = c tanh((W s + u) / c), so no change reaches c, the direct one neither."""
    bounded = simulate(SMALL.replace(propagation="bounded", interaction_fraction=0.0))
    c = bounded.config.saturation
    W, u = bounded.W.toarray(), _u(bounded)
    s = bounded.network_shifts.astype(np.float64)
    np.testing.assert_allclose(s, c * np.tanh((s @ W.T + u) / c), atol=1e-5)
    assert np.abs(s).max() < c
    own = np.abs(u) > 0
    assert np.all(np.abs(s[own]) < np.abs(u[own]))  # the knock-down itself saturates


def test_hill_passes_small_changes_on_linearly_and_large_ones_by_each_regulators_level():
    """``hill``: s = W g(s) + u with g a Hill function of the regulator's level, normalised so
    that g'(0) = 1: a weak knock-down propagates as in ``linear``, a strong one does not."""
    from grape_core.simulation.dynamics import _Propagator

    config = SMALL.replace(propagation="hill", interaction_fraction=0.0, n_pairs=0)
    hill = simulate(config)
    genes = hill.genes
    assert genes["hill_level"].notna().sum() == genes["regulator"].sum()
    W, u = hill.W, _u(hill)
    level = genes["hill_level"].fillna(0.5).to_numpy()
    solver = _Propagator(W, kind="hill", hill_level=level, hill_coefficient=config.hill_coefficient)
    linear = _Propagator(W)
    weak = solver.solve(1e-4 * u.T).T
    np.testing.assert_allclose(weak, linear.solve(1e-4 * u.T).T, rtol=1e-2, atol=1e-9)
    s = hill.network_shifts.astype(np.float64)
    h, n = level[None, :], config.hill_coefficient
    y = h / (1 - h) * np.exp(n * s)
    g = np.where(genes["regulator"].to_numpy()[None, :], (y / (1 + y) - h) / (n * h * (1 - h)), 0.0)
    np.testing.assert_allclose(s, g @ W.toarray().T + u, atol=1e-5)  # its fixed point
    assert np.abs(s - linear.solve(u.T).T).max() > 0.02  # and not the linear one


def test_guides_and_escape_average_their_units_and_mark_the_cells():
    config = SMALL.replace(guides_per_gene=2, escape_fraction=0.2, interaction_fraction=0.0,
                           propagation="bounded")
    screen = simulate(config)
    obs = screen.adata.obs
    pair = next(c for c in screen.conditions if "ctrl" not in c)
    cells = obs[obs["condition"] == pair]
    assert set(cells["guide"]) == {"g1+g1", "g1+g2", "g2+g1", "g2+g2", ""}
    assert cells["escaped"].sum() == round(0.2 * config.cells_per_condition)
    assert not obs.loc[obs["condition"] == "ctrl", "escaped"].any()
    # a gene's efficiency is the mean of its guides'; escaped cells scale the network part
    single = simulate(config.replace(escape_fraction=0.0))
    np.testing.assert_allclose(screen.network_shifts, 0.8 * single.network_shifts, rtol=1e-5,
                               atol=1e-7)
    with pytest.raises(GrapeError, match="interaction_fraction"):
        SimulationConfig(guides_per_gene=2, interaction_fraction=0.3)


def test_counts_are_normalised_log1p_umis():
    """``counts``: each cell is log1p(UMIs / total * target), so expm1 of a cell's values is a
    multiple of whole numbers, and its total is the control cells' total."""
    screen = simulate(SMALL.replace(cell_model="counts", library_size=500.0, dispersion=5.0))
    X = screen.adata.X.toarray() if hasattr(screen.adata.X, "toarray") else screen.adata.X
    values = np.expm1(X.astype(np.float64))
    target = float(np.exp(screen.genes["control_mean"].to_numpy()).sum())
    np.testing.assert_allclose(values.sum(axis=1), target, rtol=1e-4)
    row = values[0]
    unit = row[row > 0].min()  # one UMI
    np.testing.assert_allclose(row / unit, np.round(row / unit), atol=1e-2)
    assert (X == 0).mean() > 0.01  # counts have zeros, Gaussian cells around mu = 1.5.. do not


@pytest.mark.slow
def test_harissa_screen_is_seeded_and_a_knock_down_lowers_its_gene():
    """A simulator the project did not write (harissa's bursting model), on the planted
    network: the same seed gives the same cells, and a knocked-down gene is lower."""
    config = SimulationConfig(simulator="harissa", seed=2, n_genes=30, n_singles=6, n_pairs=2,
                              interaction_fraction=0.0, cells_per_condition=12,
                              n_control_cells=40, harissa_hours=60.0)
    a, b = simulate(config), simulate(config)
    np.testing.assert_array_equal(np.asarray(a.adata.X.todense() if hasattr(a.adata.X, "todense")
                                             else a.adata.X),
                                  np.asarray(b.adata.X.todense() if hasattr(b.adata.X, "todense")
                                             else b.adata.X))
    assert a.summary["simulator"] == "harissa" and a.adata.n_obs == 40 + 8 * 12
    genes = list(a.genes["gene"])
    own = [a.shifts[p, genes.index(c.split("+")[0])] for p, c in enumerate(a.conditions[:6])]
    assert np.mean(own) < -0.2  # the mean-field truth: knock-downs lower their gene
    with pytest.raises(GrapeError, match="knockdown"):
        SimulationConfig(simulator="harissa", mode="activation", interaction_fraction=0.0)


def test_every_setting_of_the_family_is_valid():
    from grape_core.simulation.config import FAMILY

    assert len(FAMILY) >= 8
    for name, changes in FAMILY.items():
        SimulationConfig(**changes)  # raises on a bad preset


# ----------------------------------------------------------------------------------------
# genes and network
# ----------------------------------------------------------------------------------------
def test_genes_are_real_resolved_and_noncoding_share_holds(small):
    from grape_core.knowledge.genes import gene_table

    screen = simulate(SMALL.replace(n_genes=77, noncoding_fraction=0.3, n_singles=20, n_pairs=5))
    genes = screen.genes
    assert (~genes["is_coding"]).sum() >= 0.3 * 77
    assert set(genes["biotype"]) == {"protein_coding", "lncRNA"}
    table = gene_table(genes["gene"].tolist(), sequences="none")
    assert (table["match"] == "symbol").all()
    assert table["biotype"].tolist() == genes["biotype"].tolist()
    assert table["is_coding"].tolist() == genes["is_coding"].tolist()
    assert genes["gene"].tolist() == sorted(genes["gene"])
    assert genes["has_go"].mean() > 0.9  # GO-annotated genes are drawn first
    # perturbed genes: efficiencies in range, 90 % regulators
    pert = genes[genes["perturbed"]]
    assert len(pert) == 20 and pert["efficiency"].between(0.6, 1.0).all()
    assert genes.loc[~genes["perturbed"], "efficiency"].isna().all()
    assert pert["regulator"].sum() == 18


def test_relations_follow_their_settings():
    config = SMALL.replace(relation_activating=(1.0, 0.0, 0.0, 1.0),
                           relation_strength=(1.0, 1.0, 2.0, 1.0), go_bias=0.0)
    screen = simulate(config)
    edges = screen.edges
    coding = dict(zip(screen.genes["gene"], screen.genes["is_coding"]))
    expected = [f"{'coding' if coding[s] else 'noncoding'}->{'coding' if coding[t] else 'noncoding'}"
                for s, t in zip(edges["source"], edges["target"])]
    assert edges["relation"].tolist() == expected
    sign = edges.groupby("relation")["weight"].agg(lambda w: set(np.sign(w)))
    assert sign["coding->coding"] == {1.0} and sign["noncoding->noncoding"] == {1.0}
    assert sign["coding->noncoding"] == {-1.0} and sign["noncoding->coding"] == {-1.0}
    size = edges.assign(a=edges["weight"].abs()).groupby("relation")["a"]
    assert size.min()["noncoding->coding"] > 1.5 * size.min()["coding->coding"]
    counts = screen.summary["network"]["relations"]
    assert {k: v["edges"] for k, v in counts.items()} == edges["relation"].value_counts().reindex(
        list(RELATIONS), fill_value=0).to_dict()
    # out-degrees, no self-loops, spectral radius
    degree = edges.groupby("source").size()
    assert degree.between(*config.targets).all()
    assert (edges["source"] != edges["target"]).all()
    assert np.abs(np.linalg.eigvals(screen.W.toarray())).max() == pytest.approx(0.8, abs=1e-9)

    # a relation with no propensity gets no edge
    none = simulate(SMALL.replace(relation_propensity=(1.0, 0.0, 1.0, 0.0)))
    assert not none.edges["relation"].str.endswith("->noncoding").any()


def test_go_bias_enriches_edges_between_genes_sharing_terms():
    biased = simulate(SMALL.replace(go_bias=20.0)).summary["network"]
    flat = simulate(SMALL.replace(go_bias=0.0)).summary["network"]
    assert biased["go_shared_fraction_edges"] > 3 * biased["go_shared_fraction_background"]
    assert flat["go_shared_fraction_edges"] < biased["go_shared_fraction_edges"]


def test_network_noise_makes_control_coexpression_follow_edges():
    screen = simulate(SMALL.replace(network_noise=0.3, n_control_cells=400, n_pairs=0))
    X = screen.adata.X[screen.adata.obs["condition"].to_numpy() == "ctrl"]
    corr = np.corrcoef(np.asarray(X).T)
    index = {g: i for i, g in enumerate(screen.genes["gene"])}
    on_edges = [abs(corr[index[s], index[t]]) for s, t in zip(screen.edges["source"],
                                                              screen.edges["target"])]
    assert np.mean(on_edges) > 3 * np.mean(np.abs(corr[np.triu_indices_from(corr, 1)]))


# ----------------------------------------------------------------------------------------
# priors
# ----------------------------------------------------------------------------------------
def _pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["source"], frame["target"]))


@pytest.mark.parametrize("fraction,false", [(0.5, None), (0.25, 17)])
def test_priors_hold_the_requested_share_of_true_edges(fraction, false):
    screen = simulate(SMALL.replace(prior_true_fraction=fraction, prior_false_edges=false))
    true = _pairs(screen.edges)
    informative, random = screen.priors["informative"], screen.priors["random"]
    k = round(fraction * len(true))
    n_false = k if false is None else false
    assert len(informative) == k + n_false == len(_pairs(informative))
    assert len(_pairs(informative) & true) == k
    assert len(random) == len(informative) == len(_pairs(random))
    assert not _pairs(random) & true
    for frame in (informative, random):
        assert list(frame.columns) == ["source", "target", "weight"]
        assert (frame["weight"] == 1.0).all() and (frame["source"] != frame["target"]).all()
    summary = screen.summary["priors"]["informative"]
    assert (summary["true"], summary["false"]) == (k, n_false)


def test_a_signed_prior_has_the_true_signs_but_the_wrong_share(small):
    """``prior_signed``: the same edges as the unsigned prior (the screen itself unchanged),
    each true edge with its own sign except exactly the requested share, flipped, and the
    false edges of both priors with signs of both kinds."""
    screen = simulate(SMALL.replace(prior_signed=True, prior_wrong_signs=0.25))
    np.testing.assert_array_equal(screen.adata.X, small.adata.X)
    for name in ("informative", "random"):
        assert (screen.priors[name][["source", "target"]]
                .equals(small.priors[name][["source", "target"]]))
        assert set(screen.priors[name]["weight"]) == {-1.0, 1.0}
    truth = screen.edges.set_index(["source", "target"])["weight"]
    informative = screen.priors["informative"]
    is_true = [(a, b) in truth.index for a, b in zip(informative["source"], informative["target"])]
    true_rows = informative[is_true]
    wrong = int((np.sign(true_rows["weight"].to_numpy())
                 != np.sign(truth.loc[list(zip(true_rows["source"], true_rows["target"]))]
                            .to_numpy())).sum())
    assert wrong == round(0.25 * len(true_rows)) == screen.summary["priors"]["informative"]["wrong_signs"]
    from grape_core.simulation.folder import format_summary

    assert "true edges with the wrong sign" in format_summary(screen)


# ----------------------------------------------------------------------------------------
# pairs and interactions
# ----------------------------------------------------------------------------------------
def test_pairs_and_planted_interactions_follow_their_formulas(small):
    table = small.interactions
    pairs = [c for c in small.conditions if not c.endswith("+ctrl")]
    assert table["pair"].tolist() == pairs and len(pairs) == 16
    planted = table[table["type"] != ADDITIVE]
    assert len(planted) == 8  # 0.5 of 16, types in equal numbers
    assert planted["type"].value_counts().to_dict() == {t: 2 for t in
                                                        ("synergy", "suppression", "epistasis", "neomorphic")}
    u = _u(small)
    D = small.network_shifts - u  # the part that went through the network
    genes = {g: i for i, g in enumerate(small.genes["gene"])}
    for row in table.itertuples():
        a, b = row.pair.split("+")
        d_a, d_b = D[_row(small, f"{a}+ctrl")], D[_row(small, f"{b}+ctrl")]
        d_ab = D[_row(small, row.pair)]
        if row.type == ADDITIVE:
            expected = d_a + d_b
        elif row.type in ("synergy", "suppression"):
            assert (row.strength > 1) == (row.type == "synergy")
            expected = row.strength * (d_a + d_b)
        elif row.type == "epistasis":
            assert row.dominant in (a, b)
            d_x, d_y = (d_a, d_b) if row.dominant == a else (d_b, d_a)
            expected = d_x + (1 - row.strength) * d_y
        else:
            expected = d_a + d_b
            for gene, sign in zip(row.genes.split(";"), row.signs.split(";")):
                expected[genes[gene]] += row.strength * (1 if sign == "+" else -1)
            assert a not in row.genes.split(";") and b not in row.genes.split(";")
        np.testing.assert_allclose(d_ab, expected, atol=5e-6, err_msg=row.pair)
        # the knock-downs themselves are untouched
        np.testing.assert_allclose(u[_row(small, row.pair)][[genes[a], genes[b]]],
                                   [u[_row(small, f"{a}+ctrl"), genes[a]],
                                    u[_row(small, f"{b}+ctrl"), genes[b]]])


# ----------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------
def test_files_read_back_with_the_project_reader(small, small_folder, caplog):
    from grape_core import describe, read_perturbseq

    with caplog.at_level("WARNING"):
        adata = read_perturbseq(small_folder / "screen.h5ad")
    assert adata.uns["grape_source"]["warnings"] == [] and not caplog.records
    info = describe(adata)
    assert (info["singles"], info["pairs"]) == (30, 16)
    assert info["control_cells"] == 200 and info["cell_types"] == ["synthetic"]
    assert adata.X.dtype == np.float32
    genes = pd.read_csv(small_folder / "genes.csv")
    assert genes["gene"].tolist() == list(adata.var_names)
    assert list(genes.columns) == ["gene", "biotype", "is_coding", "has_go", "regulator",
                                   "perturbed", "efficiency", "control_mean", "shared_response"]
    edges = pd.read_csv(small_folder / "true_edges.csv", float_precision="round_trip")
    assert list(edges.columns) == ["source", "target", "weight", "relation"]
    np.testing.assert_array_equal(edges["weight"], small.edges["weight"])  # shortest repr, exact
    truth = read_truth(small_folder)
    assert truth["genes"] == genes["gene"].tolist()
    assert truth["conditions"] == list(small.conditions)
    np.testing.assert_array_equal(truth["shifts"], small.shifts)
    record = json.loads((small_folder / "simulation.json").read_text())
    assert SimulationConfig.from_dict(record["config"]) == SMALL
    assert record["seed"] == 3 and set(record["files"]) == set(FILES)
    for name, digest in record["files"].items():
        assert hashlib.sha256((small_folder / name).read_bytes()).hexdigest() == digest
    assert not list(small_folder.parent.glob(".screen.*"))  # no temporary folder left


def test_existing_folder_is_refused_unless_overwrite(small, tmp_path, capsys):
    folder = tmp_path / "screen"
    small.write(folder)
    with pytest.raises(GrapeError, match="already exists"):
        small.write(folder)
    small.write(folder, overwrite=True)
    assert (folder / "simulation.json").is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(GrapeError, match="not a planted-screen folder"):
        small.write(other, overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"
    assert main(["simulate", "--out", str(folder), "--genes", "40", "--singles", "5",
                 "--pairs", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--overwrite" in err


# ----------------------------------------------------------------------------------------
# settings and CLI
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes,phrase", [
    ({"noncoding_fraction": 1.5}, "noncoding_fraction"),
    ({"n_singles": 10, "n_pairs": 46}, "45 pairs possible"),
    ({"spectral_radius": 1.0}, "spectral_radius"),
    ({"n_singles": 400}, "n_singles"),
    ({"relation_activating": (1.0, 2.0, 0.5, 0.5)}, "relation_activating"),
    ({"efficiency": (0.9, 0.5)}, "efficiency"),
    ({"prior_wrong_signs": 0.2}, r"prior_wrong_signs \(0.2, --prior-wrong-signs\) needs prior_signed"),
    ({"prior_signed": True, "prior_wrong_signs": 1.5}, "prior_wrong_signs"),
])
def test_bad_settings_raise_one_clear_error(changes, phrase):
    with pytest.raises(GrapeError, match=phrase):
        SimulationConfig(**changes)


def test_config_round_trip_rejects_unknown_keys():
    assert SimulationConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(GrapeError, match="unknown SimulationConfig"):
        SimulationConfig.from_dict({"n_gens": 3})


@pytest.mark.parametrize("argv,code,phrase", [
    (["--noncoding", "1.5"], 1, "--noncoding"),
    (["--singles", "5", "--pairs", "11"], 1, "10 pairs possible"),
    (["--spectral-radius", "1"], 1, "--spectral-radius"),
    (["--propensity", "1,2"], 1, "4 comma-separated"),
    (["--mode", "crispr"], 2, "invalid choice"),
])
def test_cli_bad_options(argv, code, phrase, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["simulate", "--out", str(out), *argv]) == code
    err = capsys.readouterr().err
    assert phrase in err and "Traceback" not in err
    if code == 1:
        assert err.count("\n") == 1 and err.startswith("error: ")
    assert not out.exists()


def test_cli_config_file_reproduces_a_screen(small_folder, tmp_path, capsys):
    out = tmp_path / "copy"
    assert main(["--quiet", "simulate", "--out", str(out), "--config",
                 str(small_folder / "simulation.json")]) == 0
    stdout = capsys.readouterr().out
    assert "120 (90 protein-coding, 30 lncRNA" in stdout
    for name in FILES:
        assert (out / name).read_bytes() == (small_folder / name).read_bytes(), name


def test_default_screen_is_neither_trivial_nor_noise(tmp_path, capsys):
    """The default 300-gene screen through ``benchmark``: train_mean is good, not perfect."""
    out = tmp_path / "default"
    assert main(["--quiet", "simulate", "--out", str(out), "--seed", "0"]) == 0
    stdout = capsys.readouterr().out
    assert "300 (225 protein-coding, 75 lncRNA" in stdout and "100 singles" in stdout
    report = tmp_path / "report.json"
    assert main(["--quiet", "benchmark", "--data", str(out / "screen.h5ad"), "--split",
                 "simulation", "--seed", "1", "--json", str(report)]) == 0
    models = json.loads(report.read_text())["models"]
    assert 0.5 <= models["train_mean"]["pearson_delta"] <= 0.85
    assert models["additive"]["n_conditions"] > 0


@pytest.mark.parametrize("flags, phrase", [
    (["--noise", "1e300"], "cell_noise (1e+300, --noise) must be a number between 0 and 100"),
    (["--shared-std", "1e300"], "shared_std (1e+300, --shared-std) must be a number between"),
    (["--network-noise", "inf"], "network_noise (inf, --network-noise) must be a number"),
    (["--strength", "nan,1,1,1"], "relation_strength ((nan, 1.0, 1.0, 1.0), --strength) must be "
                                  "4 numbers in [0, 1000]"),
    (["--propensity", "1,1,1,1e300"], "relation_propensity"),
    (["--efficiency", "1.5,2"], "efficiency ((1.5, 2.0), --efficiency) must be two numbers "
                                "(low, high) with 0 <= low <= high <= 1"),
    (["--saturation", "inf"], "saturation (inf, --saturation) must be a number > 0"),
    (["--cells", "100000000"], "of memory (15,000,000,500 cells x 300 genes), more than"),
])
def test_simulate_settings_are_bounded(tmp_path, capsys, flags, phrase):
    out = tmp_path / "screen"
    line = one_error(capsys, ["simulate", "--out", str(out), *flags])
    assert phrase in line, line
    assert not out.exists()


def test_simulate_config_files(tmp_path, capsys):
    out = tmp_path / "screen"
    for content, phrase in ((b"\xff\xfe{}", "is not text (byte 0 is not UTF-8"),
                            (b'{"config": 5}', "must hold a JSON object of settings"),
                            (b'{"cell_noise": NaN}', "cell_noise (nan, --noise)"),
                            (b'{"n_genes": "many"}', "n_genes ('many', --genes) must be a whole"),
                            (b"[[[[" * 10, "not JSON")):
        config = tmp_path / "config.json"
        config.write_bytes(content)
        line = one_error(capsys, ["simulate", "--out", str(out), "--config", str(config)])
        assert phrase in line, line
    assert not out.exists()


def test_the_memory_limit_is_a_setting(tmp_path, capsys, monkeypatch):
    from grape_core.simulation import SimulationConfig, simulate

    monkeypatch.setenv("GRAPE_SIMULATE_MEMORY_GB", "0.01")
    line = one_error(capsys, ["simulate", "--out", str(tmp_path / "s"), "--genes", "40",
                              "--singles", "5", "--pairs", "2"])
    assert "more than the 0.0 GB allowed (GRAPE_SIMULATE_MEMORY_GB" in line
    with pytest.raises(GrapeError, match="raise GRAPE_SIMULATE_MEMORY_GB"):
        simulate(SimulationConfig(n_genes=40, n_singles=5, n_pairs=2))
    monkeypatch.setenv("GRAPE_SIMULATE_MEMORY_GB", "lots")
    line = one_error(capsys, ["simulate", "--out", str(tmp_path / "s")])
    assert "GRAPE_SIMULATE_MEMORY_GB='lots' is not a size in GB" in line
    config = SimulationConfig(n_genes=20_000, n_singles=2_000, n_pairs=300,
                              cells_per_condition=3, n_control_cells=100)
    assert 1.4 * 2**30 < config.memory_bytes() < 2.0 * 2**30  # measured peak: 1.4 GB


def test_every_flag_an_error_names_exists():
    """A SimulationConfig error names the setting's flag only where `simulate` has one."""
    from grape_core.cli.parser import build_parser
    from grape_core.simulation.config import _FLAGS

    simulate = build_parser()._subparsers._group_actions[0].choices["simulate"]
    flags = {s for action in simulate._actions for s in action.option_strings}
    assert set(_FLAGS.values()) <= flags, set(_FLAGS.values()) - flags


def test_a_config_file_keeps_the_kind(tmp_path):
    """--kind saturating with a --config that sets other settings: still saturating."""
    import json

    from grape_core.cli.commands_data import cmd_simulate
    from grape_core.cli.parser import build_parser

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"n_genes": 40, "n_singles": 5, "n_pairs": 2,
                                  "cells_per_condition": 5, "n_control_cells": 20}))
    out = tmp_path / "s"
    args = build_parser().parse_args(["--quiet", "simulate", "--out", str(out), "--kind",
                                      "saturating", "--config", str(config)])
    assert cmd_simulate(args) == 0
    written = json.loads((out / "simulation.json").read_text())["config"]
    assert written["propagation"] == "saturating" and written["n_genes"] == 40
