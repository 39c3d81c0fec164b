"""Shared fixtures. Real data is read from the shared data folder beside the project
(``../shared/data``; override with ``GRAPE_SHARED_DATA``), never copied into the repo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GRAPE_SHARED_DATA", ROOT.parent / "shared" / "data"))

ADAMSON = SHARED / "adamson_gears_mini.h5ad"
NORMAN_DEVEL = SHARED / "norman_perturbench_devel.h5ad"
NORMAN_GEARS_MINI = SHARED / "norman_gears_style_mini.h5ad"
ADAMSON_SPLIT = SHARED / "adamson_simulation_1_0.75.json"
GENE_SOURCES = SHARED / "genes"


def pytest_configure(config):
    os.environ.setdefault("GRAPE_GENE_SOURCES", str(GENE_SOURCES))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache and data folders (never the user's)."""
    root = tmp_path_factory.getbasetemp() / "grape-cache"
    monkeypatch.setenv("GRAPE_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("GRAPE_DATA_DIR", str(root / "data"))


@pytest.fixture(scope="session")
def adamson():
    from grape_core import read_perturbseq

    return read_perturbseq(ADAMSON)


@pytest.fixture(scope="session")
def norman():
    from grape_core import read_perturbseq

    return read_perturbseq(NORMAN_DEVEL, subset=["dataset=norman19"])


def make_adata(
    conditions: dict[str, int],
    n_genes: int = 6,
    *,
    seed: int = 0,
    shifts: dict[str, np.ndarray] | None = None,
    sparse: bool = True,
    control_label: str = "ctrl",
    condition_key: str = "condition",
    gene_key: str = "gene_name",
):
    """Small synthetic log-normalised AnnData with known per-condition shifts."""
    import anndata

    rng = np.random.default_rng(seed)
    base = np.linspace(0.5, 2.0, n_genes)
    rows, labels = [], []
    for cond, n in conditions.items():
        shift = (shifts or {}).get(cond, np.zeros(n_genes))
        rows.append(np.clip(base + shift + rng.normal(0, 0.05, (n, n_genes)), 0, None))
        labels += [cond] * n
    X = np.vstack(rows).astype(np.float32)
    obs = pd.DataFrame({condition_key: labels, "cell_type": "K562"},
                       index=[f"cell{i}" for i in range(len(labels))])
    var = pd.DataFrame({gene_key: [f"G{i}" for i in range(n_genes)]},
                       index=[f"ENSG{i:011d}" for i in range(n_genes)])
    return anndata.AnnData(X=sp.csr_matrix(X) if sparse else X, obs=obs, var=var)


@pytest.fixture
def write_h5ad(tmp_path):
    def _write(adata, name="data.h5ad"):
        path = tmp_path / name
        adata.write_h5ad(path)
        return path

    return _write
