"""Shared fixtures. Real data is read from the shared data folder beside the project
(``../shared/data``; override with ``GRAPE_SHARED_DATA``), never copied into the repo."""

from __future__ import annotations

import os
import shutil
import tempfile
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
MODEL = ROOT / "assets" / "models" / "adamson"
"""The bundled Adamson model (read-only: copy it before changing anything)."""


def pytest_configure(config):
    # one private cache, data and models folder per test session (never the user's)
    private = Path(tempfile.mkdtemp(prefix="grape-tests-"))
    config._grape_private = private
    for name, sub in (("GRAPE_CACHE_DIR", "cache"), ("GRAPE_DATA_DIR", "data"),
                      ("GRAPE_MODELS_DIR", "models")):
        os.environ[name] = str(private / sub)
    os.environ.setdefault("GRAPE_GENE_SOURCES", str(GENE_SOURCES))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")


def pytest_unconfigure(config):
    private = getattr(config, "_grape_private", None)
    if private is not None:
        shutil.rmtree(private, ignore_errors=True)


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


def _train_small(adata, split, name, tmp_path_factory, **train):
    from grape_core.config import TrainConfig
    from grape_core.training.recipe import train_bundle

    config = TrainConfig(ensemble=2, max_steps=100, threads=1, **train)
    bundle = train_bundle(adata, split, train_config=config, progress=False, name=name)
    folder = tmp_path_factory.mktemp("models") / name
    bundle.save(folder)
    return folder


@pytest.fixture(scope="session")
def adamson_model(adamson, tmp_path_factory):
    """A small ensemble trained on the real Adamson slice with the published GEARS split."""
    from grape_core import Split, pseudobulk

    split = Split.load(ADAMSON_SPLIT).restrict(pseudobulk(adamson).conditions)
    return _train_small(adamson, split, "adamson-test", tmp_path_factory)


@pytest.fixture(scope="session")
def norman_model(norman, tmp_path_factory):
    """A small ensemble trained on the real Norman singles and pairs."""
    from grape_core import pseudobulk, simulation_split

    split = simulation_split(pseudobulk(norman).conditions, seed=1)
    return _train_small(norman, split, "norman-test", tmp_path_factory)


# ----------------------------------------------------------------------------------------
# broken model folders: copies of a bundled model, edited
# ----------------------------------------------------------------------------------------
BUNDLED = ROOT / "assets" / "models"


def copy_model(parent: Path, name: str = "model", source: str = "adamson") -> Path:
    """A copy of a bundled model folder under ``parent``."""
    folder = Path(parent) / name
    shutil.copytree(BUNDLED / source, folder)
    return folder


def read_manifest(folder: Path) -> dict:
    import json

    return json.loads((Path(folder) / "manifest.json").read_text())


def write_manifest(folder: Path, data, *, sign: bool = True) -> None:
    """Write an edited manifest; with ``sign``, its own checksum (``manifest_sha256``,
    format 3) is updated as someone who edits it on purpose would, so that the checks
    behind it are reached."""
    import json

    from grape_core.bundle import manifest_digest

    if sign and isinstance(data, dict) and "manifest_sha256" in data:
        try:
            data = {**data, "manifest_sha256": manifest_digest(data)}
        except ValueError:  # an infinity in it: left for the checks to find
            pass
    (Path(folder) / "manifest.json").write_text(json.dumps(data, indent=1))


def rehash(folder: Path) -> None:
    """Make the manifest's checksums match the (edited) files again."""
    import hashlib

    from grape_core.bundle import FILES, OPTIONAL_FILES

    manifest = read_manifest(folder)
    names = {**FILES, **OPTIONAL_FILES}
    for key in list(manifest.get("files", {})):
        manifest["files"][key] = hashlib.sha256((Path(folder) / names[key]).read_bytes()).hexdigest()
    write_manifest(folder, manifest)


def edit_tensors(folder: Path, file: str, change) -> None:
    """Apply ``change(tensors)`` (a dict of numpy arrays) to a safetensors file, then rehash."""
    from safetensors.numpy import load_file, save_file

    path = Path(folder) / file
    tensors = dict(load_file(str(path)))
    change(tensors)
    save_file(tensors, str(path))
    rehash(folder)


def rename_gene(folder: Path, old: str, new: str) -> None:
    """Rename a gene everywhere in a model folder (manifest, genes.csv, edge tables), then
    rehash: a model of data where the gene had that name."""
    manifest = read_manifest(folder)

    def swap(items):
        return [new if g == old else g for g in items]

    manifest["genes"]["nodes"] = swap(manifest["genes"]["nodes"])
    manifest["pseudobulk"]["genes"] = swap(manifest["pseudobulk"]["genes"])
    write_manifest(folder, manifest)
    table = pd.read_csv(Path(folder) / "genes.csv", keep_default_na=False, dtype={"symbol": str})
    table["symbol"] = swap(table["symbol"])
    table.to_csv(Path(folder) / "genes.csv", index=False)
    for name in ("prior_edges.parquet", "learned_edges.parquet"):
        edges = pd.read_parquet(Path(folder) / name)
        for column in ("source", "target"):
            edges[column] = swap(edges[column])
        edges.to_parquet(Path(folder) / name, index=False)
    rehash(folder)


def unperturbed_measured_genes(folder: Path) -> list[str]:
    """Measured genes of a model that no condition perturbs (safe to rename)."""
    manifest = read_manifest(folder)
    perturbed = {g for c in manifest["pseudobulk"]["conditions"] for g in c.split("+")}
    return [g for g in manifest["pseudobulk"]["genes"] if g not in perturbed]


# ----------------------------------------------------------------------------- shared helpers
def raw_adamson():
    """The real Adamson slice exactly as stored (a fresh copy to modify)."""
    import anndata

    return anndata.read_h5ad(ADAMSON)


def synthetic(**kwargs):
    return make_adata({"ctrl": 30, "G1+ctrl": 12, "ctrl+G2": 12, "G1+G2": 12}, n_genes=25, **kwargs)


def write_adata(adata, path):
    adata.write_h5ad(path)
    return path


def one_error(capsys, argv, code: int = 1) -> str:
    """Run the CLI; the single ``error:`` line it prints (no traceback, nothing unexpected)."""
    from grape_core.cli import main

    assert main(argv) == code, argv
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and not lines[0].startswith("error: unexpected"), err
    return lines[0]


def predict_error(capsys, folder, *extra) -> str:
    """The one error line of ``predict --model FOLDER --perturbation HSPA5``."""
    return one_error(capsys, ["predict", "--model", str(folder), "--perturbation", "HSPA5",
                              *extra])


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def run_and_kill(code: str) -> None:
    """Run ``code`` in a new interpreter until it prints ``writing``, then kill it (-9)."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a command starts training."""
    import grape_core.training.recipe

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(grape_core.training.recipe, "train_bundle", refuse)


@pytest.fixture(scope="module")
def adamson_graph(adamson):
    """Gene knowledge, pseudo-bulk, graph tensors and node index of the Adamson slice."""
    from grape_core.data.pseudobulk import pseudobulk
    from grape_core.knowledge.build import knowledge_for_adata
    from grape_core.nn.inputs import graph_inputs

    knowledge = knowledge_for_adata(adamson, progress=False)
    pb = pseudobulk(adamson)
    graph, node_index, _ = graph_inputs(knowledge, pb.genes, knowledge.priors["union"])
    return knowledge, pb, graph, node_index


def make_model(adamson_graph, **changes):
    """A new member on the Adamson slice (``changes``: architecture settings)."""
    from grape_core.config import ArchitectureConfig
    from grape_core.training.warm import new_member

    knowledge, pb, graph, node_index = adamson_graph
    train = [c for c in pb.conditions if c != "TARS+ctrl"]
    model = new_member(pb, graph, node_index, train, model_config=ArchitectureConfig(**changes),
                       encoder_args=knowledge.encoder_args, encoder_state=knowledge.encoder_state,
                       seed=0)
    model.refresh_structure(graph)
    return model


def scramble(model, std: float = 0.1):
    """Every parameter moved away from its initial value (zero biases and gains included),
    as after training."""
    import torch

    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()
