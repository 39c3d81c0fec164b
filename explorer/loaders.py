"""Every cached function of the app, keyed by plain values.

- Loaded models are ``st.cache_resource`` singletons shared by all sessions: a
  :class:`grape_core.serving.model.Model` (a read-only bundle plus its thread-safe caches).
- Predictions, networks and tables are ``st.cache_data`` (each caller gets a copy), keyed by
  the model folder, a stamp of its files, and the inputs.
- Nothing heavy at import: torch is imported when a model is first loaded, never by the
  first page (which only reads manifests).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from grape_core.bundle import Manifest, list_bundles, verify_bundle
from grape_core.settings import settings
from grape_core.evaluation.planted import RESULTS, PlantedBenchmark
from grape_core.errors import GrapeError

from .state import ModelEntry

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The app's source checkout (the planted benchmark's results are read from it)."""


def _stamp(folder: Path) -> str:
    digest = hashlib.sha1()
    for item in sorted(folder.iterdir()):
        if item.is_file():
            info = item.stat()
            digest.update(f"{item.name}:{info.st_size}:{info.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def file_stamp(path: str | Path) -> str:
    info = Path(path).stat()
    return f"{info.st_size}:{info.st_mtime_ns}"


@st.cache_data(max_entries=64, show_spinner=False)
def verified(folder: str, stamp: str) -> tuple[Manifest | None, str]:
    """The folder's manifest (checked: SHA-256 of every file), or ``None`` and why not
    (never an exception: a broken folder is listed with its reason)."""
    try:
        return verify_bundle(folder), ""
    except GrapeError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - e.g. a folder that cannot be read
        return None, f"cannot be checked ({type(exc).__name__}: {exc}); restore the model folder"


def model_entries(models_dir: str) -> list[ModelEntry]:
    """Every model folder in ``assets/models`` and in ``models_dir``, verified but not
    loaded; cached per folder stamp."""
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for source, root in (("bundled", settings.bundled_models), ("yours", Path(models_dir).expanduser())):
        try:
            found = list_bundles(root)
        except OSError:
            continue
        for name, folder in found.items():
            label = name if name not in seen else f"{name} (yours)"
            seen.add(label)
            try:
                stamp = _stamp(folder)
            except OSError as exc:
                entries.append(ModelEntry(label, str(folder), source, "", f"cannot read {folder}: {exc}"))
                continue
            manifest, error = verified(str(folder), stamp)
            entries.append(ModelEntry(label, str(folder), source, stamp, error, manifest))
    return entries


@st.cache_data(max_entries=16, show_spinner=False)
def held_out_metrics(folder: str, stamp: str) -> pd.DataFrame:
    """A model's per-condition held-out metrics (``metrics.csv``; no torch)."""
    from grape_core.bundle import FILES

    path = Path(folder) / FILES["metrics"]
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def torch_threads() -> None:
    """One torch thread per computation by default (``GRAPE_APP_THREADS``): the app serves
    sessions concurrently, and on a busy laptop more threads than free cores make every
    prediction many times slower (measured: 0.25 s vs up to 8 s per gene on 2 busy cores)."""
    import torch

    threads = settings.app_threads
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@st.cache_resource(show_spinner=False)
def warm_up():
    """Import torch, the graph library and the model code, then the interaction code, in a
    background thread, once per process: called by the first page that runs, whichever it
    is, so that the first prediction waits less (torch and the graph library take 3 to 6 s
    on a laptop). A page that needs a module this thread is importing waits for it (Python
    imports a module once), so nothing is done twice."""
    import threading

    def work() -> None:
        try:
            from grape_core import nn  # noqa: F401
            from grape_core.nn import inputs  # noqa: F401
            import sklearn.linear_model  # noqa: F401
        except Exception:  # noqa: BLE001 - a failure shows later, where it matters
            pass

    thread = threading.Thread(target=work, name="grape-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource(max_entries=4, show_spinner=False)
def load_model(folder: str, stamp: str):
    """A loaded model, shared by every session: its bundle is read-only (members in eval
    mode) and its caches are thread-safe."""
    from grape_core.serving.model import load

    torch_threads()
    return load(folder)


@st.cache_data(max_entries=2, show_spinner=False)  # 500 predictions at 5,000 genes: ~70 MB
def predictions(folder: str, stamp: str, perturbations: tuple[str, ...], where: tuple[str, ...]):
    """:func:`grape_core.serving.predict.predict_many` (every perturbation checked first; errors
    name ``where`` it was), without baselines or the pairs' interaction analysis (about a
    second per pair: a long list would take minutes)."""
    from grape_core.serving.predict import predict_many

    return predict_many(load_model(folder, stamp), list(perturbations), where=list(where),
                        baselines=False, interactions=False)


@st.cache_data(max_entries=8, show_spinner=False)
def predictions_table(folder: str, stamp: str, perturbations: tuple[str, ...],
                      where: tuple[str, ...], *, top: int) -> pd.DataFrame:
    """Their long table (:func:`grape_core.serving.export.predictions_frame`), each perturbation's
    ``top`` largest shifts (cached: a rerun of the page reads this small table, not every
    prediction of the list again)."""
    from grape_core.serving.export import predictions_frame

    return predictions_frame(predictions(folder, stamp, perturbations, where), top=top)


def predictions_file(folder: str, stamp: str, perturbations: tuple[str, ...],
                     where: tuple[str, ...], *, kind: str) -> bytes:
    """Their file to download: ``h5ad`` (:func:`grape_core.serving.export.to_anndata`) or ``csv``,
    the predicted shifts as a perturbation x gene matrix (compact: a long table of a few
    hundred perturbations x 5,000 genes would be millions of rows)."""
    from grape_core.serving.export import h5ad_bytes, to_anndata

    found = predictions(folder, stamp, perturbations, where)
    if kind == "h5ad":  # with the control row (pertpy, cell-eval)
        return h5ad_bytes(to_anndata(found))
    shifts = to_anndata(found, control=False).to_df(layer="shift")  # control's shift is 0
    return shifts.to_csv(index_label="perturbation").encode()


@st.cache_data(max_entries=512, show_spinner=False)
def prediction(folder: str, stamp: str, genes: tuple[str, ...], interaction: bool = True):
    """:func:`grape_core.serving.predict.predict` with the baselines and, for a pair, the additive
    expectation (cached per model and perturbation); ``interaction``: a pair's
    genetic-interaction analysis too (about a second, and the first of the process imports
    its libraries: the page draws the chart before asking for it)."""
    from grape_core.serving.predict import predict, with_interaction

    model = load_model(folder, stamp)
    if interaction:  # the cached prediction without it, completed
        return with_interaction(model, prediction(folder, stamp, genes, False))
    return predict(model, list(genes), interactions=False)


@st.cache_data(max_entries=64, show_spinner=False)
def network_view(folder: str, stamp: str, focus: tuple[str, ...], hops: int, top_k: int) -> tuple[str, pd.DataFrame]:
    """Self-contained pyvis HTML of the neighbourhood of ``focus`` and its edge table."""
    from grape_core.viz.network_view import network_html

    b = load_model(folder, stamp).bundle
    edges = learned_network(folder, stamp).neighbourhood(focus, hops=hops, top_k=top_k)
    return network_html(edges, b.table, list(focus)), edges


@st.cache_resource(max_entries=8, show_spinner=False)  # read-only: shared, not copied per rerun
def learned_network(folder: str, stamp: str):
    """:func:`grape_core.serving.network.learned_network`: every edge with each member's weight,
    their agreement, and what changed against the prior."""
    from grape_core.serving.network import learned_network as read

    return read(load_model(folder, stamp))


@st.cache_data(max_entries=8, show_spinner=False)
def network_file(folder: str, stamp: str, fmt: str) -> bytes:
    """The learned network as a GraphML, CSV or CX2 file
    (:func:`grape_core.serving.network_export.network_bytes`)."""
    from grape_core.serving.network_export import network_bytes

    return network_bytes(learned_network(folder, stamp), fmt)


@st.cache_data(max_entries=128, show_spinner=False)
def explanation(folder: str, stamp: str, genes: tuple[str, ...], gene: str, top: int = 10):
    """:func:`grape_core.serving.explain.explain`: why perturbing ``genes`` moves ``gene``."""
    from grape_core.serving.explain import explain

    return explain(load_model(folder, stamp), list(genes), gene, top=top)


@st.cache_data(max_entries=8, show_spinner=False)
def structure_summary(folder: str, stamp: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from grape_core.serving.network import degrees, structure_changes

    b = load_model(folder, stamp).bundle
    return structure_changes(b.prior_edges, b.learned_edges), degrees(b.prior_edges, b.learned_edges, b.genes)


@st.cache_data(max_entries=8, show_spinner=False)
def gene_overview(folder: str, stamp: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The gene table of a model and the 2-D map of its fused embeddings."""
    from grape_core.serving.network import embedding_coords, model_gene_overview

    b = load_model(folder, stamp).bundle
    return model_gene_overview(b), embedding_coords(b.fused)


@st.cache_data(max_entries=32, show_spinner=False)
def screen_result(folder: str, stamp: str, targets: tuple[tuple[str, float], ...], direction: str,
                  pairs: bool, top: int):
    from grape_core.serving.screen import screen

    return screen(load_model(folder, stamp), dict(targets), direction=direction, pairs=pairs, top=top)


@st.cache_data(max_entries=8, show_spinner=False)
def screen_check(folder: str, stamp: str) -> pd.DataFrame:
    from grape_core.serving.evaluate import screen_check as check

    return check(load_model(folder, stamp))


@st.cache_data(max_entries=8, show_spinner=False)
def decomposition(folder: str, stamp: str) -> pd.DataFrame | None:
    """What each part of the model adds on its held-out perturbations
    (:func:`grape_core.serving.decomposition.decompose`); ``None`` without any."""
    from grape_core.serving.decomposition import decompose

    model = load_model(folder, stamp)
    bundle = model.bundle
    held_out = [c for c in bundle.split.test if c in bundle.pseudobulk]
    return decompose(model, held_out).table() if held_out else None


@st.cache_resource(max_entries=2, show_spinner=False)
def screen_data(path: str, stamp: str) -> tuple[Any, dict, Any]:
    """A Perturb-seq file read and checked once: ``(adata, describe(), pseudobulk)``."""
    from grape_core.data.pseudobulk import pseudobulk
    from grape_core.data.read import describe, read_perturbseq

    adata = read_perturbseq(path)
    return adata, describe(adata), pseudobulk(adata)


@st.cache_data(max_entries=16, show_spinner=False)
def evaluation(folder: str, stamp: str, path: str, data_stamp: str) -> tuple[pd.DataFrame, str]:
    """Held-out metrics of a model on a file with the same genes, and the verdict."""
    from grape_core.serving.evaluate import evaluate

    _, _, pb = screen_data(path, data_stamp)
    report = evaluate(load_model(folder, stamp), pb)
    return report.table(), report.verdict("grape")


@st.cache_data(show_spinner=False, max_entries=2)
def planted_benchmark(stamp: str):
    """The planted-truth benchmark's results (``None`` when the file is not there); ``stamp``
    of the file keys the cache."""
    return PlantedBenchmark.read(PROJECT_ROOT / RESULTS)


def planted_stamp() -> str:
    path = PROJECT_ROOT / RESULTS
    return file_stamp(path) if path.is_file() else ""
