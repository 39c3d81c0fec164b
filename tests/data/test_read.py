"""Reading, validating and summarising Perturb-seq files: real slices and synthetic AnnData."""

from __future__ import annotations

import gzip
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import (
    ADAMSON,
    NORMAN_DEVEL,
    NORMAN_GEARS_MINI,
    make_adata,
    raw_adamson,
    synthetic,
)
from scipy import stats

from grape_core import keys
from grape_core.config import DataConfig
from grape_core.data import PseudoBulk, describe, pseudobulk, read_perturbseq
from grape_core.errors import DataFormatError
from grape_core.io import sha256_file

ADAMSON_SHA256 = "3be979d693012f9a42e48659559a75da1d61584e74fede0c161c477b08103c77"
NORMAN19_SINGLES = {"FOXO4", "HK2", "IER5L", "KLF1", "KMT2A", "MAP2K3", "MAP2K6", "MAP3K21",
                    "MAP4K3", "MAP4K5", "MAPK1", "MIDN", "NIT1", "PLK4", "SGK1", "SLC38A2",
                    "TGFBR2", "TMSB4X"}
NORMAN19_PAIRS = {"BPGM+SAMD1", "CBL+CNN1", "CEBPE+RUNX1T1", "CNN1+MAPK1", "FOXL2+HOXB9",
                  "KLF1+MAP2K6", "KLF1+TGFBR2", "MAP2K3+MAP2K6", "MAP2K3+SLC38A2",
                  "MAPK1+TGFBR2", "PTPN12+PTPN9", "SAMD1+PTPN12", "SET+KLF1", "SGK1+TBX3",
                  "ZBTB10+PTPN12"}


def expect_error(path, *phrases, **kwargs) -> str:
    with pytest.raises(DataFormatError) as info:
        read_perturbseq(path, **kwargs)
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    assert "\n" not in message  # one line for the CLI
    return message


# ----------------------------------------------------------------------------------------
# not an AnnData file
# ----------------------------------------------------------------------------------------
def test_csv_renamed_to_h5ad(tmp_path):
    path = tmp_path / "screen.h5ad"
    path.write_text("cell,condition,GAPDH\nAAAC-1,ctrl,1.2\nAAAG-1,KLF1+ctrl,0.4\n")
    msg = expect_error(path, "is not an AnnData .h5ad file", "text/CSV")
    assert str(path) in msg


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.h5ad"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    expect_error(path, "is not an AnnData .h5ad file", "written by anndata")


def test_zip_and_gzip_are_named(tmp_path):
    inner = tmp_path / "inner.h5ad"
    synthetic().write_h5ad(inner)
    zipped = tmp_path / "adamson.h5ad"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(inner, "adamson/perturb_processed.h5ad")
    expect_error(zipped, "zip archive", "unpack it first")
    gz = tmp_path / "adamson.h5ad.gz"
    gz.write_bytes(gzip.compress(inner.read_bytes()))
    expect_error(gz, "gzip-compressed", "decompress it first")


def test_truncated_h5ad(tmp_path):
    full = tmp_path / "full.h5ad"
    raw_adamson().write_h5ad(full)
    data = full.read_bytes()
    cut = tmp_path / "cut.h5ad"
    cut.write_bytes(data[: len(data) // 2])
    expect_error(cut, "could not read", "as AnnData", "truncated or corrupted")


@pytest.mark.filterwarnings("ignore::anndata.OldFormatWarning")
def test_hdf5_that_is_not_anndata(tmp_path):
    import h5py

    path = tmp_path / "plain.h5ad"
    with h5py.File(path, "w") as fh:
        fh["matrix"] = np.arange(6).reshape(2, 3)
    expect_error(path, "could not read", "as AnnData")


def test_missing_file_and_folder(tmp_path):
    expect_error(tmp_path / "nowhere.h5ad", "file not found", "nowhere.h5ad")
    expect_error(tmp_path, "is a folder")


# ----------------------------------------------------------------------------------------
# content errors, each on the real slice and on synthetic data
# ----------------------------------------------------------------------------------------
SOURCES = {"real": raw_adamson, "synthetic": synthetic}


@pytest.fixture(params=sorted(SOURCES))
def source(request):
    return SOURCES[request.param]


def test_no_condition_column(source, write_h5ad):
    adata = source()
    adata.obs = adata.obs.rename(columns={"condition": "guide_identity"})
    path = write_h5ad(adata)
    expect_error(path, "no condition column", "obs['condition']", "guide_identity",
                 "--condition-key")
    # naming the column fixes it
    assert read_perturbseq(path, condition_key="guide_identity").obs[keys.CONDITION].nunique() > 1
    expect_error(path, "condition column 'nope' is not in obs", condition_key="nope")


def test_no_control_cells(source, write_h5ad):
    adata = source()
    adata = adata[adata.obs["condition"].astype(str) != "ctrl"].copy()
    path = write_h5ad(adata)
    expect_error(path, "no control cells", "most frequent labels", "--control-label")
    expect_error(path, "no control cells labelled 'NT'", control_label="NT")


def test_only_control_cells(source, write_h5ad):
    adata = source()
    adata = adata[adata.obs["condition"].astype(str) == "ctrl"].copy()
    expect_error(write_h5ad(adata), "only control cells", "perturbed cells")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(source, write_h5ad, bad):
    adata = source()
    X = adata.X.copy()
    X.data[7] = bad
    adata.X = X
    expect_error(write_h5ad(adata), "1 non-finite value", "NaN or infinite")


def test_non_finite_values_dense(write_h5ad):
    adata = synthetic(sparse=False)
    adata.X[3, 4] = np.nan
    adata.X[5, 1] = np.inf
    expect_error(write_h5ad(adata), "2 non-finite value")


def test_raw_counts(source, write_h5ad):
    adata = source()
    dense = adata.X.toarray()
    adata.X = sp.csr_matrix(np.rint(np.expm1(dense) * 5).astype(np.float32))
    expect_error(write_h5ad(adata), "looks like raw counts", "not log-normalised",
                 "sc.pp.normalize_total", "sc.pp.log1p")


def test_small_raw_counts_are_recognised(write_h5ad):
    """Counts whose maximum is small (lowly expressed panel) are still counts."""
    adata = synthetic(sparse=False)
    adata.X = np.random.default_rng(0).poisson(0.8, adata.shape).astype(np.float32)
    expect_error(write_h5ad(adata), "looks like raw counts", "100% whole numbers")


def test_negative_values(source, write_h5ad):
    adata = source()
    dense = adata.X.toarray()
    adata.X = dense - dense.mean(axis=0)  # scaled / centred data
    expect_error(write_h5ad(adata), "negative values", "scaled or centred", "log-normalised")


def test_duplicated_gene_names(source, write_h5ad):
    adata = source()
    names = adata.var["gene_name"].astype(str).to_numpy().copy()
    names[5] = names[2]
    adata.var["gene_name"] = names
    expect_error(write_h5ad(adata), "1 duplicated gene name", names[2], "var['gene_name']",
                 "var_names_make_unique", "--gene-name-key")


def test_bad_condition_label_in_file(write_h5ad):
    adata = make_adata({"ctrl": 10, "G1,G2": 10}, n_genes=8)
    expect_error(write_h5ad(adata), "obs['condition']", "'G1,G2'", "separate the genes")


def test_cells_without_a_label_are_left_out(write_h5ad):
    """Unassigned cells (NaN condition) are dropped with a warning, never a gene 'nan'."""
    adata = synthetic()
    labels = adata.obs["condition"].astype(object).to_numpy().copy()
    labels[[31, 45]] = None
    adata.obs["condition"] = pd.Categorical(labels)
    out = read_perturbseq(write_h5ad(adata))
    assert out.n_obs == adata.n_obs - 2
    assert set(out.obs[keys.CONDITION]) == {"ctrl", "G1+ctrl", "G2+ctrl", "G1+G2"}
    assert any("2 cell(s) without a label" in w for w in out.uns[keys.UNS_SOURCE]["warnings"])
    adata.obs["condition"] = pd.Categorical([None] * adata.n_obs, categories=["ctrl"])
    expect_error(write_h5ad(adata, "empty.h5ad"), "obs['condition']", "no cell has a label")


def test_unknown_gene_name_key(write_h5ad):
    expect_error(write_h5ad(synthetic()), "gene name column 'symbol' is not in var",
                 gene_name_key="symbol")


# ----------------------------------------------------------------------------------------
# several studies in one file (PerturBench devel) and subsets
# ----------------------------------------------------------------------------------------
def test_mixed_studies_need_a_subset():
    expect_error(NORMAN_DEVEL, "mixes several studies", "obs['dataset']", "mcfaline23",
                 "norman19", "--subset dataset=")


def test_subset_errors():
    expect_error(NORMAN_DEVEL, "subset column 'study_name' is not in obs", "dataset",
                 subset=["study_name=norman19"])
    expect_error(NORMAN_DEVEL, "no cell has dataset='norman2019'", "mcfaline23, norman19",
                 subset=["dataset=norman2019"])
    expect_error(NORMAN_DEVEL, "must be written column=value", subset=["norman19"])


def test_empty_after_subsetting():
    # both values exist, but no cell has both
    expect_error(NORMAN_DEVEL, "no cells left", "dataset=norman19, cell_type=A172",
                 subset=["dataset=norman19", "cell_type=A172"])


def test_synthetic_study_column(write_h5ad):
    adata = synthetic()
    adata.obs["study"] = ["s1"] * 40 + ["s2"] * (adata.n_obs - 40)
    path = write_h5ad(adata)
    expect_error(path, "mixes several studies", "obs['study']", "--subset study=")
    assert read_perturbseq(path, subset=["study=s1"]).n_obs == 40
    # a subset on another column that leaves both studies is still a mix
    expect_error(path, "mixes several studies", subset=["cell_type=K562"])


# ----------------------------------------------------------------------------------------
# layouts and quirks
# ----------------------------------------------------------------------------------------
def test_real_adamson_slice(adamson):
    assert adamson.shape == (320, 160)
    assert sp.issparse(adamson.X) and adamson.X.dtype == np.float32
    counts = adamson.obs[keys.CONDITION].value_counts()
    assert counts["ctrl"] == 80
    assert len(counts) == 11 and (counts.drop("ctrl") == 24).all()
    assert all(c == "ctrl" or c.endswith("+ctrl") for c in counts.index)
    assert adamson.var_names[0] == "GBF1"  # symbols from var['gene_name']
    assert adamson.var["gene_id"].iloc[0] == "ENSG00000107862"
    source = adamson.uns[keys.UNS_SOURCE]
    assert source["sha256"] == ADAMSON_SHA256 == sha256_file(ADAMSON)
    assert source["condition_key"] == "condition" and source["control_label"] == "ctrl"
    assert source["gene_name_key"] == "gene_name" and source["warnings"] == []


def test_perturbench_layout_real_norman19(norman):
    """control labelled 'control', singles as GENE, pairs as A+B, symbols in the index."""
    labels = norman.obs[keys.CONDITION].astype(str)
    counts = labels.value_counts()
    assert counts["ctrl"] == 100
    singles = {c.split("+")[0] for c in counts.index if c.endswith("+ctrl")}
    pairs = {c for c in counts.index if c != "ctrl" and not c.endswith("+ctrl")}
    assert singles == NORMAN19_SINGLES
    assert pairs == NORMAN19_PAIRS
    assert norman.n_obs == 3375 and norman.n_vars == 500
    raw = norman.obs[keys.CONDITION_RAW].astype(str)
    assert set(raw[labels == "ctrl"]) == {"control"}
    assert set(raw[labels == "KLF1+ctrl"]) == {"KLF1"}
    assert norman.X.dtype == np.float32  # float64 in the file
    source = norman.uns[keys.UNS_SOURCE]
    assert source["control_label"] == "control" and source["gene_name_key"] == "index"
    assert source["subset"] == ["dataset=norman19"]


def test_perturbed_genes_not_measured_are_reported(norman):
    info = describe(norman)
    missing = info["perturbed_genes_not_measured"]
    assert info["perturbed_genes"] == 31
    assert len(missing) == 30 and "TMSB4X" not in missing and "KLF1" in missing
    assert any("30 of 31 perturbed genes are not measured" in w for w in info["warnings"])
    # they remain conditions of the screen (a graph node is made for them later)
    assert "KLF1+ctrl" in set(norman.obs[keys.CONDITION])


def test_condition_key_option_on_real_file():
    adata = read_perturbseq(NORMAN_DEVEL, subset=["dataset=norman19"],
                            condition_key="perturbation_raw", checksum=False)
    conds = set(adata.obs[keys.CONDITION].astype(str))
    assert "KIAA1804+ctrl" in conds and "MAP3K21+ctrl" not in conds  # the old symbol
    assert adata.uns[keys.UNS_SOURCE]["sha256"] == ""


def test_config_object_and_keyword_override():
    config = DataConfig(subset=("dataset=norman19",), control_label="control")
    adata = read_perturbseq(NORMAN_DEVEL, config=config, checksum=False)
    assert adata.obs[keys.CONDITION].nunique() == 34
    # keyword arguments win over the config
    other = read_perturbseq(NORMAN_DEVEL, config=config, subset=["dataset=mcfaline23"],
                            checksum=False)
    assert set(other.obs["dataset"]) == {"mcfaline23"}


def test_gears_style_norman_mini():
    """Real GEARS Norman cells: singles in both orders, pairs, symbols in feature_name."""
    adata = read_perturbseq(NORMAN_GEARS_MINI)
    raw = adata.obs[keys.CONDITION_RAW].astype(str)
    cond = adata.obs[keys.CONDITION].astype(str)
    assert (raw == "ctrl+ETS2").any() and (raw == "COL1A1+ctrl").any()  # both orders present
    for r, c in zip(raw, cond):
        if r.startswith("ctrl+"):
            assert c == r[len("ctrl+"):] + "+ctrl"
        else:
            assert c == r  # GENE+ctrl, ctrl and pairs unchanged
    info = describe(adata)
    assert info["control_cells"] == 6
    assert info["singles"] == 31 and info["pairs"] == 10
    assert "FOXL2+HOXB9" in set(cond) and "MAP2K6+ELMSAN1" in set(cond)
    assert info["gene_name_key"] == "feature_name"
    assert adata.var_names[0] == "RP4-633I8.4"
    assert adata.var["gene_id"].iloc[0] == "ENSG00000228423"


def test_both_single_orders_are_one_condition(write_h5ad):
    adata = make_adata({"ctrl": 20, "G1+ctrl": 10, "ctrl+G1": 10, "G2+G3": 10, "G3+G2": 10},
                       n_genes=8)
    out = read_perturbseq(write_h5ad(adata))
    counts = out.obs[keys.CONDITION].value_counts()
    assert counts["G1+ctrl"] == 20 and counts["G2+G3"] == 20
    assert set(counts.index) == {"ctrl", "G1+ctrl", "G2+G3"}
    assert any("two orders" in w for w in out.uns[keys.UNS_SOURCE]["warnings"])


def test_feature_name_and_index_symbols(write_h5ad):
    feat = make_adata({"ctrl": 10, "G1+ctrl": 10}, n_genes=6, gene_key="feature_name")
    out = read_perturbseq(write_h5ad(feat, "feat.h5ad"))
    assert list(out.var_names) == [f"G{i}" for i in range(6)]
    assert out.var[keys.GENE_NAME].tolist() == list(out.var_names)

    idx = make_adata({"ctrl": 10, "G1+ctrl": 10}, n_genes=6)
    idx.var_names = idx.var["gene_name"].to_numpy()
    idx.var = idx.var.drop(columns="gene_name")
    out = read_perturbseq(write_h5ad(idx, "index.h5ad"))
    assert list(out.var_names) == [f"G{i}" for i in range(6)]
    assert out.uns[keys.UNS_SOURCE]["gene_name_key"] == "index"

    # gene_name wins over feature_name; 'index' can be forced
    both = make_adata({"ctrl": 10, "G1+ctrl": 10}, n_genes=6)
    both.var["feature_name"] = [f"F{i}" for i in range(6)]
    path = write_h5ad(both, "both.h5ad")
    assert read_perturbseq(path).var_names[0] == "G0"
    assert read_perturbseq(path, gene_name_key="feature_name").var_names[0] == "F0"
    assert read_perturbseq(path, gene_name_key="index").var_names[0] == "ENSG00000000000"


def test_custom_control_label_and_plain_singles(write_h5ad):
    adata = make_adata({"NoGuide": 20, "G1": 10, "G1+G2": 10}, n_genes=6,
                       control_label="NoGuide", condition_key="perturbation")
    path = write_h5ad(adata)
    expect_error(path, "no control cells", "'NoGuide' (20 cells)")
    out = read_perturbseq(path, control_label="NoGuide")
    assert set(out.obs[keys.CONDITION]) == {"ctrl", "G1+ctrl", "G1+G2"}
    assert out.uns[keys.UNS_SOURCE]["condition_key"] == "perturbation"


def test_missing_cell_type_and_mixed_cell_types(write_h5ad):
    adata = synthetic()
    adata.obs = adata.obs.drop(columns="cell_type")
    out = read_perturbseq(write_h5ad(adata, "noct.h5ad"))
    assert set(out.obs[keys.CELL_TYPE]) == {"unknown"}
    mixed = synthetic()
    mixed.obs["cell_type"] = ["K562", "RPE1"] * (mixed.n_obs // 2)
    out = read_perturbseq(write_h5ad(mixed, "mixed.h5ad"))
    assert any("2 cell types mixed" in w for w in out.uns[keys.UNS_SOURCE]["warnings"])


def test_dense_and_sparse_give_the_same_result(write_h5ad):
    sparse = read_perturbseq(write_h5ad(synthetic(seed=3), "sparse.h5ad"))
    dense = read_perturbseq(write_h5ad(synthetic(seed=3, sparse=False), "dense.h5ad"))
    assert sp.issparse(sparse.X) and isinstance(dense.X, np.ndarray)
    assert dense.X.dtype == np.float32
    np.testing.assert_allclose(sparse.X.toarray(), dense.X)
    csc = synthetic(seed=3)
    csc.X = sp.csc_matrix(csc.X)
    csc = read_perturbseq(write_h5ad(csc, "csc.h5ad"))
    assert sp.isspmatrix_csr(csc.X)
    a, b, c = pseudobulk(sparse), pseudobulk(dense), pseudobulk(csc)
    assert a.conditions == b.conditions == c.conditions == ("G1+G2", "G1+ctrl", "G2+ctrl")
    np.testing.assert_allclose(a.means, b.means, rtol=1e-6)
    np.testing.assert_allclose(a.means, c.means, rtol=1e-6)
    np.testing.assert_array_equal(a.de_idx, b.de_idx)
    np.testing.assert_array_equal(a.de_idx, c.de_idx)


def test_few_cells_warning(write_h5ad):
    out = read_perturbseq(write_h5ad(make_adata({"ctrl": 20, "G1+ctrl": 3, "G2+ctrl": 15})))
    assert any("1 condition(s) have fewer than 10 cells" in w
               for w in out.uns[keys.UNS_SOURCE]["warnings"])


# ----------------------------------------------------------------------------------------
# pseudo-bulk and DE genes
# ----------------------------------------------------------------------------------------
def test_pseudobulk_means_equal_numpy_on_real_slice(adamson):
    pb = pseudobulk(adamson)
    X = adamson.X.toarray().astype(np.float64)
    labels = adamson.obs[keys.CONDITION].astype(str).to_numpy()
    assert pb.genes == tuple(adamson.var_names)
    assert len(pb.conditions) == 10 and "ctrl" not in pb.conditions
    assert list(pb.conditions) == sorted(pb.conditions)
    assert pb.n_control == 80
    np.testing.assert_allclose(pb.control_mean, X[labels == "ctrl"].mean(axis=0), atol=1e-6)
    for i, cond in enumerate(pb.conditions):
        cells = X[labels == cond]
        assert pb.n_cells[i] == len(cells) == 24
        np.testing.assert_allclose(pb.means[i], cells.mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(pb.shifts[i], cells.mean(axis=0) - X[labels == "ctrl"].mean(0),
                                   atol=1e-5)
    assert pb.de_idx.shape == (10, 20)
    assert pb.dataset == "adamson_gears_mini" and pb.sha256 == ADAMSON_SHA256
    assert pb.de_source == "computed"


def test_computed_de_equals_welch_t_ranking(adamson):
    """DE20 = top 20 genes by |Welch t| against control (scanpy's default t-test)."""
    pb = pseudobulk(adamson)
    X = adamson.X.toarray().astype(np.float64)
    labels = adamson.obs[keys.CONDITION].astype(str).to_numpy()
    control = X[labels == "ctrl"]
    for i, cond in enumerate(pb.conditions):
        with np.errstate(invalid="ignore", divide="ignore"):
            t = stats.ttest_ind(X[labels == cond], control, equal_var=False).statistic
        score = np.abs(np.nan_to_num(t, nan=0.0))  # scanpy scores undefined t as 0
        expected = np.argsort(-score, kind="stable")[:20]
        assert set(pb.de_idx[i]) == set(expected), cond
        chosen = score[pb.de_idx[i]]
        assert np.all(np.diff(chosen) <= 1e-9)  # strongest first


def test_de_finds_the_genes_that_move(write_h5ad):
    shifts = {"G1+ctrl": np.zeros(30), "G2+ctrl": np.zeros(30)}
    shifts["G1+ctrl"][[4, 11]] = [2.0, -1.5]
    shifts["G2+ctrl"][[7]] = [1.0]
    adata = make_adata({"ctrl": 40, "G1+ctrl": 30, "G2+ctrl": 30}, n_genes=30, shifts=shifts)
    pb = pseudobulk(read_perturbseq(write_h5ad(adata)), n_de=5)
    assert pb.de_idx.shape == (2, 5)
    assert set(pb.de_idx[pb.index("G1+ctrl")][:2]) == {4, 11}
    assert pb.de_idx[pb.index("G2+ctrl")][0] == 7


def test_de_taken_from_gears_uns(write_h5ad):
    """uns['rank_genes_groups_cov_all'] keyed GEARS-style ('K562_G1+ctrl_1') by gene ids."""
    adata = make_adata({"ctrl": 30, "G1+ctrl": 10, "ctrl+G2": 10, "G1+G2": 10}, n_genes=25)
    ids = adata.var_names.to_numpy()
    rng = np.random.default_rng(1)
    orders = {name: rng.permutation(25) for name in ("G1+ctrl", "ctrl+G2", "G1+G2")}
    adata.uns[keys.DE_KEY] = {f"K562_{name}_1": ids[order] for name, order in orders.items()}
    pb = pseudobulk(read_perturbseq(write_h5ad(adata)))
    assert pb.de_source == "stored"
    np.testing.assert_array_equal(pb.de_idx[pb.index("G1+ctrl")], orders["G1+ctrl"][:20])
    np.testing.assert_array_equal(pb.de_idx[pb.index("G2+ctrl")], orders["ctrl+G2"][:20])
    np.testing.assert_array_equal(pb.de_idx[pb.index("G1+G2")], orders["G1+G2"][:20])
    computed = pseudobulk(read_perturbseq(write_h5ad(synthetic_without_uns(adata), "plain.h5ad")))
    assert computed.de_source == "computed"
    assert not np.array_equal(computed.de_idx, pb.de_idx)


def synthetic_without_uns(adata):
    out = adata.copy()
    out.uns = {}
    return out


def test_de_from_uns_by_condition_name_on_real_slice(write_h5ad):
    """The real GEARS layout: keys are obs['condition_name'], values Ensembl ids."""
    adata = raw_adamson()
    names = adata.obs[["condition", "condition_name"]].astype(str).drop_duplicates()
    reverse = adata.var_names.to_numpy()[::-1]
    stored = {n: reverse for c, n in names.itertuples(index=False) if c != "ctrl"}
    first = sorted(stored)[0]
    del stored[first]  # one condition without stored genes -> computed for it
    adata.uns[keys.DE_KEY] = stored
    pb = pseudobulk(read_perturbseq(write_h5ad(adata)))
    assert pb.de_source == "mixed"
    missing = names.set_index("condition_name").loc[first, "condition"]
    for i, cond in enumerate(pb.conditions):
        if cond == missing:
            assert list(pb.de_idx[i]) != list(range(159, 139, -1))
        else:
            assert list(pb.de_idx[i]) == list(range(159, 139, -1))
    again = read_perturbseq(write_h5ad(adata, "again.h5ad"))
    assert describe(again)["de_genes"] == "stored (GEARS)"


def test_pseudobulk_array_round_trip(norman):
    pb = pseudobulk(norman)
    arrays, meta = pb.to_arrays()
    back = PseudoBulk.from_arrays(arrays, meta)
    assert back.conditions == pb.conditions and back.genes == pb.genes
    np.testing.assert_array_equal(back.means, pb.means)
    np.testing.assert_array_equal(back.de_idx, pb.de_idx)
    assert back.n_control == 100 and back.index("KLF1+MAP2K6") == pb.index("KLF1+MAP2K6")
    assert "KLF1+MAP2K6" in back and "NOPE+ctrl" not in back
    assert len(pb.perturbed_genes) == 31


# ----------------------------------------------------------------------------------------
# describe
# ----------------------------------------------------------------------------------------
def test_describe_real_adamson(adamson):
    info = describe(adamson)
    assert info["cells"] == 320 and info["genes"] == 160 and info["control_cells"] == 80
    assert info["conditions"] == 10 and info["singles"] == 10 and info["pairs"] == 0
    assert info["perturbed_genes"] == 10 and info["perturbed_genes_not_measured"] == []
    assert info["cells_per_condition"] == {"min": 24, "median": 24.0, "max": 24}
    assert info["cell_types"] == ["K562(?)"]
    assert info["de_genes"] == "computed (t-test)"
    assert info["cells_by_condition"]["ctrl"] == 80
    assert info["sha256"] == ADAMSON_SHA256


def test_describe_real_norman19(norman):
    info = describe(norman)
    assert (info["cells"], info["genes"], info["control_cells"]) == (3375, 500, 100)
    assert (info["singles"], info["pairs"]) == (18, 15)
    assert info["cells_per_condition"]["min"] == 80  # FOXL2+HOXB9
    assert info["cells_by_condition"]["PLK4+ctrl"] == 95
    assert info["control_label"] == "control"
    assert pd.Series(info["cells_by_condition"]).sum() == 3375


def test_pseudobulk_finds_a_condition_by_its_genes(tmp_path):
    path = tmp_path / "s.h5ad"
    synthetic().write_h5ad(path)
    pb = pseudobulk(read_perturbseq(path))
    assert set(pb.conditions) == {"G1+ctrl", "G2+ctrl", "G1+G2"}
    assert pb.find("ctrl+G1") == "G1+ctrl" and pb.find("G2") == "G2+ctrl"
    assert pb.find("G2+G1") == "G1+G2"  # pair order does not matter
    assert pb.find("G3+ctrl") is None and pb.find("G1+G3") is None
