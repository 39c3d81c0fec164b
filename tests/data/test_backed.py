"""Screens larger than memory: X left in the file and read in chunks.

The streamed pseudo-bulk, DE genes, checks and control cells must equal the in-memory ones
on the real slices and on GENERATED files (the benchmark's chunked writer, small), for
chunks smaller than one condition; the backed reader gives the in-memory reader's errors.
"""

from __future__ import annotations

import json
import os
import sys

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import (
    ADAMSON,
    NORMAN_DEVEL,
    NORMAN_GEARS_MINI,
    ROOT,
    make_adata,
    raw_adamson,
    synthetic,
)

from grape_core import keys
from grape_core.cli import main
from grape_core.data import control_cells, is_backed, pseudobulk, read_perturbseq
from grape_core.data.backed import STREAM_ENV
from grape_core.errors import DataFormatError, GrapeError

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_streaming  # noqa: E402  (the benchmark's generator, at a small size)

REAL = {"adamson": (ADAMSON, {}, 7),  # 24 cells per condition, chunks of 7
        "norman19": (NORMAN_DEVEL, {"subset": ["dataset=norman19"]}, 13),  # 80 to 105
        "norman_gears_mini": (NORMAN_GEARS_MINI, {}, 1)}  # 1 or 2 cells per condition


def reference_moments(adata, groups):
    """The pseudo-bulk's moments as first written (an indicator-matrix product over the
    whole X in memory): an independent reference for the chunked sums."""
    codes = pd.Categorical(adata.obs[keys.CONDITION].astype(str), categories=groups).codes
    keep = codes >= 0
    indicator = sp.csr_matrix((np.ones(keep.sum()), (codes[keep], np.flatnonzero(keep))),
                              shape=(len(groups), adata.n_obs))
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    X = X.astype(np.float64)
    n = np.asarray(indicator.sum(axis=1)).ravel()
    mean = (indicator @ X) / n[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):  # one-cell groups
        var = ((indicator @ (X * X)) - n[:, None] * mean**2) / (n[:, None] - 1)
    return n, mean, np.where(np.isfinite(var), np.maximum(var, 0.0), 0.0)


def assert_same_pseudobulk(a, b) -> None:
    """Identical pseudo-bulk: same labels, and the same numbers bit for bit."""
    assert a.conditions == b.conditions and a.n_control == b.n_control
    assert a.de_source == b.de_source
    for name in ("means", "control_mean", "n_cells", "de_idx"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def generated(tmp_path, *, cells=3000, genes=120, singles=30, pairs=6, control_cells=400,
              seed=3) -> tuple:
    """A small GENERATED screen written in chunks by the benchmark's writer."""
    path = tmp_path / "generated.h5ad"
    info = bench_streaming.generate(path, cells=cells, genes=genes, singles=singles,
                                    pairs=pairs, control_cells=control_cells, density=0.15,
                                    seed=seed)
    return path, info


# ----------------------------------------------------------------------------------------
# pseudo-bulk and DE: streamed == in memory
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REAL))
def test_streamed_pseudobulk_equals_in_memory_on_real_slices(name):
    path, kwargs, chunk = REAL[name]
    memory = read_perturbseq(path, **kwargs)
    backed = read_perturbseq(path, backed=True, **kwargs)
    assert backed.X is None and is_backed(backed) and not is_backed(memory)
    assert backed.shape == memory.shape
    assert list(backed.var_names) == list(memory.var_names)
    pd.testing.assert_frame_equal(backed.obs.drop(columns=keys.FILE_ROW), memory.obs)
    expected = pseudobulk(memory)
    assert_same_pseudobulk(pseudobulk(backed, chunk_size=chunk), expected)
    assert_same_pseudobulk(pseudobulk(backed), expected)
    # the in-memory path is chunked too: any chunk gives the same numbers
    assert_same_pseudobulk(pseudobulk(memory, chunk_size=chunk), expected)
    # and they are the moments of the whole matrix at once
    groups = [keys.CTRL, *expected.conditions]
    n, mean, _ = reference_moments(memory, groups)
    np.testing.assert_array_equal(expected.n_cells, n[1:])
    np.testing.assert_allclose(expected.means, mean[1:], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(expected.control_mean, mean[0], rtol=1e-6, atol=1e-7)


def test_streamed_welch_t_ranking_equals_the_reference():
    """DE20 from the chunked moments = DE20 from the whole-matrix moments."""
    from grape_core.data.pseudobulk import rank_de_genes

    memory = read_perturbseq(NORMAN_DEVEL, subset=["dataset=norman19"])
    pb = pseudobulk(read_perturbseq(NORMAN_DEVEL, subset=["dataset=norman19"], backed=True),
                    chunk_size=13)
    n, mean, var = reference_moments(memory, [keys.CTRL, *pb.conditions])
    expected = rank_de_genes(mean[1:], var[1:], n[1:], mean[0], var[0], int(n[0]))
    np.testing.assert_array_equal(pb.de_idx, expected)


@pytest.mark.parametrize("layout", ["csr_chunked", "dense", "csc"])
def test_generated_file_streamed_equals_in_memory(tmp_path, layout):
    """A GENERATED screen (cells of ~60 conditions interleaved), written chunk by chunk by the
    benchmark's writer, then as dense and as CSC: chunks of 16 cells (or genes) give the
    in-memory pseudo-bulk exactly."""
    path, info = generated(tmp_path)
    memory = read_perturbseq(path)
    assert info["data"] == bench_streaming.DATA_LABEL and "GENERATED" in info["data"]
    assert memory.shape == (3000, 120) and sp.issparse(memory.X)
    assert memory.X.nnz == info["nnz"]
    if layout != "csr_chunked":
        other = anndata.read_h5ad(path)
        other.X = other.X.toarray() if layout == "dense" else sp.csc_matrix(other.X)
        path = tmp_path / f"{layout}.h5ad"
        other.write_h5ad(path)
    backed = read_perturbseq(path, backed=True)
    assert backed.uns[keys.UNS_BACKED]["layout"] == {"csr_chunked": "csr", "dense": "dense",
                                                     "csc": "csc"}[layout]
    expected = pseudobulk(memory)
    assert len(expected.conditions) == 36 and expected.n_control == 400
    assert expected.n_cells.max() < 100  # so 16-cell chunks split every condition
    assert_same_pseudobulk(pseudobulk(backed, chunk_size=16), expected)
    assert_same_pseudobulk(pseudobulk(backed), expected)
    # control cells (all, and a sample) read from this layout
    full = memory.X[(memory.obs[keys.CONDITION] == keys.CTRL).to_numpy()].toarray()
    sample = control_cells(backed, max_cells=25, seed=2)
    keep = np.sort(np.random.default_rng(2).choice(400, 25, replace=False))
    assert sample.shape == (25, 120) and sample.dtype == np.float32
    np.testing.assert_array_equal(sample.toarray() if sp.issparse(sample) else sample, full[keep])
    every = control_cells(backed)
    np.testing.assert_array_equal(every.toarray() if sp.issparse(every) else every, full)
    # the planted knock-downs are found
    own = [c for c in expected.conditions if c.endswith("+ctrl")]
    hits = [list(expected.genes).index(c.split("+")[0]) in expected.de_idx[expected.index(c)]
            for c in own]
    assert np.mean(hits) > 0.7  # some knocked-down genes are rarely detected at all


def test_subset_and_unlabelled_cells_stay_aligned(write_h5ad):
    """Cells left out (subset, no label) are skipped in the file, not shifted."""
    adata = synthetic(seed=5)
    labels = adata.obs["condition"].astype(object).to_numpy().copy()
    labels[[0, 31, 45]] = None
    adata.obs["condition"] = pd.Categorical(labels)
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 3 == 0, "b1", "b2")
    path = write_h5ad(adata)
    for kwargs in ({}, {"subset": ["batch=b2"]}):
        memory = read_perturbseq(path, **kwargs)
        backed = read_perturbseq(path, backed=True, **kwargs)
        assert backed.n_obs == memory.n_obs < adata.n_obs
        assert backed.uns[keys.UNS_SOURCE]["warnings"] == memory.uns[keys.UNS_SOURCE]["warnings"]
        assert_same_pseudobulk(pseudobulk(backed, chunk_size=5), pseudobulk(memory))
        # a subset of the backed AnnData still reads the right rows
        part = backed[backed.obs[keys.CONDITION] != "G1+G2"].copy()
        assert_same_pseudobulk(pseudobulk(part, chunk_size=4),
                               pseudobulk(memory[memory.obs[keys.CONDITION] != "G1+G2"].copy()))


def test_stored_gears_de_genes_still_win_when_backed(write_h5ad):
    adata = make_adata({"ctrl": 30, "G1+ctrl": 10, "ctrl+G2": 10, "G1+G2": 10}, n_genes=25)
    ids = adata.var_names.to_numpy()
    order = np.random.default_rng(1).permutation(25)
    adata.uns[keys.DE_KEY] = {f"K562_{name}_1": ids[order] for name in ("G1+ctrl", "ctrl+G2", "G1+G2")}
    path = write_h5ad(adata)
    backed = pseudobulk(read_perturbseq(path, backed=True), chunk_size=3)
    assert backed.de_source == "stored"
    np.testing.assert_array_equal(backed.de_idx[backed.index("G2+ctrl")], order[:20])
    assert_same_pseudobulk(backed, pseudobulk(read_perturbseq(path)))


def test_anndata_backed_mode_is_read_in_chunks_too():
    memory = pseudobulk(read_perturbseq(ADAMSON))
    opened = anndata.read_h5ad(ADAMSON, backed="r")
    try:
        assert is_backed(opened)
        pb = pseudobulk(opened, chunk_size=10)
        with pytest.raises(ValueError, match="view of an AnnData opened in backed mode"):
            pseudobulk(opened[:100])
    finally:
        opened.file.close()
    assert pb.conditions == memory.conditions
    np.testing.assert_array_equal(pb.means, memory.means)
    np.testing.assert_array_equal(pb.de_idx, memory.de_idx)


def test_a_changed_file_is_refused(tmp_path):
    path = tmp_path / "screen.h5ad"
    raw_adamson().write_h5ad(path)
    backed = read_perturbseq(path, backed=True)
    os.utime(path, ns=(0, 0))
    with pytest.raises(DataFormatError, match="changed since it was read; read it again"):
        pseudobulk(backed)
    path.unlink()
    with pytest.raises(DataFormatError, match="is gone since it was read"):
        control_cells(backed)


# ----------------------------------------------------------------------------------------
# control cells for the gene knowledge
# ----------------------------------------------------------------------------------------
def test_control_cells_are_the_knowledge_sample_without_loading_x(tmp_path):
    """The bounded, seeded sample equals what build_gene_knowledge draws from the full
    control matrix, in memory and on disk (so the knowledge cache key is the same)."""
    from grape_core.knowledge.build import data_priors

    path, _ = generated(tmp_path)
    memory = read_perturbseq(path)
    backed = read_perturbseq(path, backed=True)
    ctrl = (memory.obs[keys.CONDITION] == keys.CTRL).to_numpy()
    full = memory.X[ctrl]
    keep = np.sort(np.random.default_rng(4).choice(full.shape[0], 50, replace=False))
    expected = full[keep].toarray()
    for adata in (memory, backed):
        sample = control_cells(adata, max_cells=50, seed=4)
        assert sp.isspmatrix_csr(sample) and sample.dtype == np.float32
        np.testing.assert_array_equal(sample.toarray(), expected)
        np.testing.assert_array_equal(control_cells(adata).toarray(), full.toarray())
    # the priors that need no embeddings (the benchmark's propagation baseline) agree
    _, a = data_priors(memory)
    _, b = data_priors(backed)
    pd.testing.assert_frame_equal(a["coexpression"], b["coexpression"])
    assert len(a["coexpression"]) > 0


def test_gene_knowledge_reads_only_the_control_sample(adamson, monkeypatch):
    """knowledge_for_adata hands build_gene_knowledge the same control matrix for a backed
    screen as for one in memory (bounded by max_control_cells)."""
    from grape_core.config import GraphConfig
    from grape_core.knowledge import build

    seen = []
    monkeypatch.setattr(build, "build_gene_knowledge",
                        lambda symbols, *, control_X, **kw: seen.append((symbols, control_X)))
    config = GraphConfig(max_control_cells=30)
    build.knowledge_for_adata(adamson, graph_config=config)
    build.knowledge_for_adata(read_perturbseq(ADAMSON, backed=True), graph_config=config)
    (s1, x1), (s2, x2) = seen
    assert s1 == s2 and x1.shape == x2.shape == (30, 160)
    np.testing.assert_array_equal(x1.toarray(), x2.toarray())


# ----------------------------------------------------------------------------------------
# the backed reader: same checks, same errors
# ----------------------------------------------------------------------------------------
def _broken_files(tmp_path) -> dict:
    """name -> (path, read_perturbseq keyword arguments) of files the reader must refuse."""
    cases = {}

    def put(name, adata, **kwargs):
        path = tmp_path / f"{name}.h5ad"
        adata.write_h5ad(path)
        cases[name] = (path, kwargs)

    a = raw_adamson()
    a.obs = a.obs.rename(columns={"condition": "guide_identity"})
    put("no_condition_column", a)
    put("unknown_condition_key", synthetic(), condition_key="nope")
    a = raw_adamson()
    put("no_control", a[a.obs["condition"].astype(str) != "ctrl"].copy())
    put("unknown_control_label", synthetic(), control_label="NT")
    a = synthetic()
    put("only_control", a[a.obs["condition"].astype(str) == "ctrl"].copy())
    for name, bad in (("nan", np.nan), ("inf", np.inf), ("minus_inf", -np.inf)):
        a = raw_adamson()
        X = a.X.copy()
        X.data[[7, 9000, 30000]] = bad
        a.X = X
        put(f"non_finite_{name}", a)
    a = synthetic(sparse=False)
    a.X[3, 4], a.X[5, 1] = np.nan, np.inf
    put("non_finite_dense", a)
    a = raw_adamson()
    a.X = sp.csr_matrix(np.rint(np.expm1(a.X.toarray()) * 5).astype(np.float32))
    put("raw_counts", a)
    a = synthetic(sparse=False)
    a.X = np.random.default_rng(0).poisson(0.8, a.shape).astype(np.float32)
    put("small_raw_counts_dense", a)
    a = raw_adamson()
    dense = a.X.toarray()
    a.X = dense - dense.mean(axis=0)
    put("negative_dense", a)
    a = synthetic()
    a.X = sp.csc_matrix(a.X.toarray() - 1.0)
    put("negative_csc", a)
    a = synthetic()
    X = a.X.astype(np.float64)
    X.data[3] = 1e39  # finite in float64, not in float32
    a.X = X
    put("huge_float64", a)
    a = synthetic()
    a.X = sp.csr_matrix(a.shape, dtype=np.float32)
    put("empty_matrix", a)
    a = synthetic()
    a.X = None
    put("no_matrix", a)
    a = raw_adamson()
    names = a.var["gene_name"].astype(str).to_numpy().copy()
    names[5] = names[2]
    a.var["gene_name"] = names
    put("duplicated_gene_names", a)
    put("unknown_gene_name_key", synthetic(), gene_name_key="symbol")
    put("bad_condition_label", make_adata({"ctrl": 10, "G1,G2": 10}, n_genes=8))
    a = synthetic()
    a.obs["condition"] = pd.Categorical([None] * a.n_obs, categories=["ctrl"])
    put("no_label_at_all", a)
    cases["mixed_studies"] = (NORMAN_DEVEL, {})
    cases["unknown_subset_column"] = (NORMAN_DEVEL, {"subset": ["study_name=norman19"]})
    cases["no_cell_in_subset"] = (NORMAN_DEVEL, {"subset": ["dataset=norman2019"]})
    cases["empty_after_subsets"] = (NORMAN_DEVEL, {"subset": ["dataset=norman19", "cell_type=A172"]})
    cases["missing_file"] = (tmp_path / "nowhere.h5ad", {})
    text = tmp_path / "text.h5ad"
    text.write_text("cell,condition,GAPDH\nAAAC-1,ctrl,1.2\n")
    cases["csv_renamed"] = (text, {})
    return cases


def _error(path, **kwargs) -> str:
    with pytest.raises(DataFormatError) as info:
        read_perturbseq(path, **kwargs)
    return str(info.value)


def test_backed_reader_gives_the_same_errors(tmp_path):
    cases = _broken_files(tmp_path)
    for name, (path, kwargs) in cases.items():
        in_memory = _error(path, **kwargs)
        assert _error(path, backed=True, **kwargs) == in_memory, name
        assert "\n" not in in_memory
    # a few of them, spelled out
    assert "3 non-finite value(s)" in _error(cases["non_finite_nan"][0], backed=True)
    assert "negative values" in _error(cases["negative_csc"][0], backed=True)
    assert "looks like raw counts" in _error(cases["huge_float64"][0], backed=True)
    assert "100% whole numbers" in _error(cases["small_raw_counts_dense"][0], backed=True)
    assert "is empty" in _error(cases["empty_matrix"][0], backed=True)
    assert "has no expression matrix X" in _error(cases["no_matrix"][0], backed=True)


def test_backed_reader_on_damaged_files(tmp_path):
    """Unreadable files: the same one-line message (the reason in brackets comes from the
    layer that failed)."""
    import h5py

    full = tmp_path / "full.h5ad"
    raw_adamson().write_h5ad(full)
    cut = tmp_path / "cut.h5ad"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    plain = tmp_path / "plain.h5ad"
    with h5py.File(plain, "w") as fh:
        fh["matrix"] = np.arange(6).reshape(2, 3)
    odd = tmp_path / "odd.h5ad"
    raw_adamson().write_h5ad(odd)
    with h5py.File(odd, "a") as fh:
        del fh["X"]
        fh.create_group("X").attrs["encoding-type"] = "awkward-array"
    for path in (cut, plain, odd):
        message = _error(path, backed=True)
        assert message.startswith(f"could not read {path} as AnnData (")
        assert message.endswith("the file may be truncated or corrupted: download or export it again")
    assert "not a dense, CSR or CSC matrix" in _error(odd, backed=True)


# ----------------------------------------------------------------------------------------
# when X is streamed: the flag, the threshold, progress
# ----------------------------------------------------------------------------------------
def test_threshold_setting(monkeypatch):
    monkeypatch.setenv(STREAM_ENV, "0")
    assert is_backed(read_perturbseq(ADAMSON, checksum=False))
    assert not is_backed(read_perturbseq(ADAMSON, backed=False, checksum=False))
    monkeypatch.setenv(STREAM_ENV, "0.0001")  # 107 kB: the 320 x 160 slice takes ~330 kB
    assert is_backed(read_perturbseq(ADAMSON, checksum=False))
    monkeypatch.setenv(STREAM_ENV, "2.5")
    assert not is_backed(read_perturbseq(ADAMSON, checksum=False))
    monkeypatch.delenv(STREAM_ENV)  # default: a quarter of the available memory
    assert not is_backed(read_perturbseq(ADAMSON, checksum=False))
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv(STREAM_ENV, bad)
        with pytest.raises(GrapeError, match=f"{STREAM_ENV}='{bad}' is not a size in GB"):
            read_perturbseq(ADAMSON)


def test_progress_bars_only_when_asked(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    backed = read_perturbseq(ADAMSON, backed=True, progress=True)
    assert "checking X" in capsys.readouterr().err
    pseudobulk(backed, progress=True, chunk_size=10)
    assert "pseudo-bulk" in capsys.readouterr().err
    read_perturbseq(ADAMSON, backed=True)
    pseudobulk(backed, chunk_size=10)
    assert capsys.readouterr().err == ""


def test_cli_progress_follows_quiet_and_the_terminal(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["describe", str(ADAMSON), "--backed"]) == 0
    assert "checking X" in capsys.readouterr().err
    try:
        assert main(["--quiet", "describe", str(ADAMSON), "--backed"]) == 0
        assert capsys.readouterr().err == ""
    finally:
        os.environ.pop("TQDM_DISABLE", None)  # --quiet sets it for the process
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert main(["describe", str(ADAMSON), "--backed"]) == 0
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------
def test_cli_benchmark_streams_a_file(tmp_path, capsys, monkeypatch):
    path, _ = generated(tmp_path, cells=1500, genes=80, singles=20, pairs=4, control_cells=300)
    reports = {}
    for mode, argv in (("memory", []), ("flag", ["--backed"]), ("threshold", [])):
        if mode == "threshold":
            monkeypatch.setenv(STREAM_ENV, "0")
        out = tmp_path / f"{mode}.json"
        assert main(["benchmark", "--data", str(path), *argv, "--json", str(out)]) == 0
        reports[mode] = json.loads(out.read_text())
    capsys.readouterr()
    assert reports["flag"] == reports["memory"] == reports["threshold"]
    assert main(["describe", str(path), "--json"]) == 0  # the threshold still says 0
    assert json.loads(capsys.readouterr().out)["backed"] is True
    monkeypatch.delenv(STREAM_ENV)
    assert main(["describe", str(path)]) == 0
    assert "read in chunks" not in capsys.readouterr().out
    assert main(["describe", str(path), "--backed"]) == 0
    assert "expression        read in chunks from the file (backed)" in capsys.readouterr().out


def test_cli_train_on_a_backed_file(tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["--quiet", "train", "--data", str(ADAMSON), "--backed", "--out", str(out),
                 "--ensemble", "1", "--max-steps", "10", "--threads", "1"]) == 0
    assert "trained 1 member(s)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"]["cells"] == 320 and manifest["dataset"]["genes"] == 160


def test_out_of_memory_points_to_backed(monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        try:
            raise MemoryError("Unable to allocate 2.22 GiB for an array")
        except MemoryError as exc:  # anndata re-raises with the key being read
            raise RuntimeError("error while reading key 'X'") from exc

    monkeypatch.setattr(anndata, "read_h5ad", no_memory)
    with pytest.raises(GrapeError, match="not enough memory to read .* pass --backed"):
        read_perturbseq(ADAMSON, backed=False)
    assert main(["describe", str(ADAMSON)]) == 1
    assert "pass --backed" in capsys.readouterr().err
    assert is_backed(read_perturbseq(ADAMSON, backed=True))  # never calls read_h5ad
