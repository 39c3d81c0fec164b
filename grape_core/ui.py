"""What every page of the app shares: the page header and sidebar, cached loaders, messages.

The only module that imports Streamlit (imported by ``app.py`` and ``pages/`` alone).

- :func:`page` sets the page up and draws the sidebar (model picker and model card). Every
  page calls it first, so a page also works when run on its own (``AppTest`` does that).
- Choices live in ``st.session_state`` only (widget keys ``model``, ``genes``,
  ``models_dir``, each remembered under ``_<key>`` so it survives page switches), so no
  session sees another's. ``model`` and ``genes`` are mirrored in the URL
  (``?model=norman&genes=KLF1``): links between pages, and shared links, carry them.
- Loaded bundles are ``st.cache_resource`` singletons shared by all sessions and treated as
  read-only; predictions, networks and tables are ``st.cache_data`` (each caller gets a copy),
  keyed by the model folder, a stamp of its files, and the inputs.
- A :class:`~grape_core.errors.GrapeError` becomes one ``st.error`` line saying what to do.
- Nothing heavy at import: torch is imported when a model is first loaded, never by the
  first page (which only reads manifests).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from . import viz
from .config import BUNDLED_MODELS, Paths
from .errors import GrapeError, UnknownGeneError
from .io import write_bytes

_STOP_JOBS = threading.Event()
_JOBS: list[threading.Thread] = []
"""Background work (warm-up, screen pre-computation), stopped and joined at exit: the
interpreter must not tear a thread down inside torch."""
_UPLOAD_FOLDERS: set[str] = set()


@atexit.register
def _at_exit() -> None:
    _STOP_JOBS.set()
    for job in _JOBS:
        job.join(timeout=30)
    for folder in list(_UPLOAD_FOLDERS):
        shutil.rmtree(folder, ignore_errors=True)


APP_TITLE = "GRAPE Explorer"
APP_ICON = ":material/hub:"
FAVICON = "\N{GRAPES}"
"""Browser tab icon: an emoji becomes an inline SVG (a ``:material/...:`` icon would make
the browser fetch it from a font server)."""
HOME = ("Home", ":material/home:")
PAGES = (
    ("pages/1_Predict.py", "Predict", ":material/bar_chart:"),
    ("pages/2_Network.py", "Network", ":material/share:"),
    ("pages/3_Benchmark.py", "Benchmark", ":material/leaderboard:"),
    ("pages/4_Genes.py", "Genes", ":material/genetics:"),
    ("pages/5_Screen.py", "Screen", ":material/manage_search:"),
)
DEFAULT_MODEL = "norman"
UPLOAD_LIMIT_ENV = "GRAPE_MAX_UPLOAD_MB"
THREADS_ENV = "GRAPE_APP_THREADS"
SHIFT_SENTENCE = ("A **shift** is how much a gene's expression (log scale) changes in perturbed "
                  "cells compared with unperturbed control cells: above 0 the gene goes up, below 0 "
                  "it goes down.")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$])")


# ----------------------------------------------------------------------------- messages
def md(text: object) -> str:
    """Escape Markdown (and Streamlit's ``$``/``:color[]`` syntax) in text shown with
    ``st.markdown``/``st.error``: a gene name or file name is never markup or a link."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def show_error(exc: BaseException | str, *, context: str = "") -> None:
    """One ``st.error`` line: what is wrong and what to do (never a traceback)."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    st.error((f"{context}: " if context else "") + md(text), icon=":material/error:")


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelEntry:
    """A model folder found on disk, checked without loading it."""

    name: str
    folder: str
    source: str
    """``bundled`` (assets/models) or ``yours`` (the models folder setting)."""
    stamp: str
    """Changes whenever a file of the folder changes (part of every cache key)."""
    error: str = ""
    manifest: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class Selection:
    """What the sidebar chose: plain values, safe to pass to cached functions."""

    model: str = ""
    folder: str = ""
    stamp: str = ""
    source: str = ""
    dataset: str = ""
    split: str = ""
    models_dir: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.folder)


def _stamp(folder: Path) -> str:
    digest = hashlib.sha1()
    for item in sorted(folder.iterdir()):
        if item.is_file():
            info = item.stat()
            digest.update(f"{item.name}:{info.st_size}:{info.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


@st.cache_data(max_entries=64, show_spinner=False)
def _verify(folder: str, stamp: str) -> tuple[dict[str, Any], str]:
    from .bundle import verify_bundle

    try:
        return verify_bundle(folder), ""
    except GrapeError as exc:
        return {}, str(exc)


def model_entries(models_dir: str) -> list[ModelEntry]:
    """Every model folder in ``assets/models`` and in ``models_dir``, verified (SHA-256 of
    each file) but not loaded; cached per folder stamp."""
    from .bundle import list_bundles

    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for source, root in (("bundled", BUNDLED_MODELS), ("yours", Path(models_dir).expanduser())):
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
            manifest, error = _verify(str(folder), stamp)
            entries.append(ModelEntry(label, str(folder), source, stamp, error, manifest))
    return entries


def _entry_label(entry: ModelEntry) -> str:
    data = entry.manifest.get("dataset", {})
    tag = "" if entry.source == "bundled" else " · yours"
    return f"{entry.name} ({data.get('conditions', '?')} perturbations{tag})"


def _restore(key: str, default: Any, *, url: bool = False, valid=lambda value: True) -> None:
    """Give widget ``key`` its remembered value (``_key``) before it is drawn: widget state
    does not survive a page switch, the remembered value does. A value in the URL that this
    session has not applied yet wins (links between pages, shared links)."""
    memo = f"_{key}"
    if url:
        values = st.query_params.get_all(key)
        value = values if isinstance(default, list) else (values[0] if values else None)
        if values and valid(value) and st.session_state.get(f"{memo}_from_url") != values:
            st.session_state[f"{memo}_from_url"] = values
            st.session_state[memo] = value
    value = st.session_state.get(memo, default)
    st.session_state[key] = value if valid(value) else default


def _changed(key: str) -> None:
    """Widget callback: remember the new value before the page reruns."""
    st.session_state[f"_{key}"] = st.session_state[key]


def _remember(key: str, value: Any, *, url: bool = False) -> None:
    st.session_state[f"_{key}"] = value
    if url:
        values = [str(v) for v in value] if isinstance(value, list) else ([str(value)] if value else [])
        if values != st.query_params.get_all(key):
            if values:
                st.query_params[key] = values if len(values) > 1 else values[0]
            else:
                st.query_params.pop(key, None)
            st.session_state[f"_{key}_from_url"] = values


def sidebar() -> Selection:
    """The model picker and a short model card; returns the :class:`Selection`."""
    _restore("models_dir", str(Paths.from_env().models_dir))
    models_dir = str(st.session_state["models_dir"])
    entries = model_entries(models_dir)
    usable = {e.name: e for e in entries if e.ok}
    names = list(usable)
    chosen: ModelEntry | None = None
    with st.sidebar:
        if names:
            _restore("model", DEFAULT_MODEL if DEFAULT_MODEL in usable else names[0], url=True,
                     valid=lambda n: n in usable)
            name = st.selectbox("Model", names, key="model", format_func=lambda n: _entry_label(usable[n]),
                                on_change=_changed, args=("model",),
                                help="Bundled models (assets/models) and the models you trained "
                                     "(the models folder below).")
            _remember("model", name, url=True)
            chosen = usable.get(name)
        else:
            st.error("No usable model found: check assets/models, or train one on the Home page.",
                     icon=":material/error:")
        for entry in entries:
            if not entry.ok:
                st.error(f"**{md(entry.name)}** is unusable: {md(entry.error)}", icon=":material/report:")
        if chosen is not None:
            _sidebar_card(chosen.manifest)
        with st.expander("Settings"):
            folder = st.text_input("Folder with your own models", key="models_dir",
                                   on_change=_changed, args=("models_dir",),
                                   help="Models you train here are saved to this folder "
                                        "(default: GRAPE_MODELS_DIR or your cache folder).")
            _remember("models_dir", folder)
    if chosen is None:
        return Selection(models_dir=models_dir)
    return Selection(model=chosen.name, folder=chosen.folder, stamp=chosen.stamp, source=chosen.source,
                     dataset=str(chosen.manifest.get("dataset", {}).get("name", "")),
                     split=str(chosen.manifest.get("split", {}).get("name", "")), models_dir=models_dir)


def manifest(sel: Selection) -> dict[str, Any]:
    """The chosen model's manifest (a copy)."""
    return _verify(sel.folder, sel.stamp)[0] if sel.ok else {}


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _sidebar_card(man: dict[str, Any]) -> None:
    data, split, training = man.get("dataset", {}), man.get("split", {}), man.get("training", {})
    subset = f" · {', '.join(data.get('subset', []))}" if data.get("subset") else ""
    st.markdown(f"**{md(data.get('name', '?'))}**{md(subset)}")
    grape = man.get("metrics", {}).get("test", {}).get("grape")
    held = (f"  \nheld out: Pearson of shifts **{grape.get('pearson_delta', float('nan')):.2f}**"
            if grape else "")
    st.caption(
        f"{data.get('cells', 0):,} cells · {data.get('genes', 0):,} genes  \n"
        f"{data.get('conditions', 0)} perturbations: {split.get('train', '?')} train · "
        f"{split.get('val', '?')} val · {split.get('test', '?')} held out "
        f"({md(split.get('name', '?'))} split)  \n"
        f"ensemble of {man.get('ensemble', '?')} · trained in {_fmt_seconds(training.get('seconds'))}"
        + held)


def page(title: str, icon: str, *, intro: str = "") -> Selection:
    """Page config, sidebar and title: the first call of every page."""
    st.set_page_config(page_title=f"{title} · {APP_TITLE}", page_icon=FAVICON, layout="wide")
    sel = sidebar()
    st.title(f"{icon} {title}")
    if intro:
        st.markdown(intro)
    return sel


def _torch_threads() -> None:
    """One torch thread per computation by default (``GRAPE_APP_THREADS``): the app serves
    sessions concurrently, and on a busy laptop more threads than free cores make every
    prediction many times slower (measured: 0.25 s vs up to 8 s per gene on 2 busy cores)."""
    import torch

    try:
        threads = int(os.environ.get(THREADS_ENV, "1") or 1)
    except ValueError:
        threads = 1
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@st.cache_resource(max_entries=4, show_spinner=False)
def _load_bundle(folder: str, stamp: str):
    """A loaded model, shared by every session: read-only (members in eval mode)."""
    from .bundle import Bundle

    _torch_threads()
    return Bundle.load(folder)


def bundle(sel: Selection):
    """The chosen model, loaded once per process; stops the page with a message if it
    cannot be used."""
    if not sel.ok:
        st.info("Choose a model in the sidebar (or train one on the Home page).")
        st.stop()
    try:
        with st.spinner(f"Loading model {sel.model}…"):
            return _load_bundle(sel.folder, sel.stamp)
    except GrapeError as exc:
        show_error(exc)
        st.stop()


@st.cache_resource(show_spinner=False)
def _warm_up() -> threading.Thread:
    def work() -> None:
        try:  # torch, the graph library and the model code: seconds on a laptop
            from . import predict, screen  # noqa: F401
        except Exception:  # noqa: BLE001 - a failure shows later, where it matters
            pass

    thread = threading.Thread(target=work, name="grape-warm-up", daemon=True)
    _JOBS.append(thread)
    thread.start()
    return thread


def warm_up() -> None:
    """Import the model code in the background once per process, after the first page."""
    _warm_up()


# ----------------------------------------------------------------------------- genes
def gene_picker(b, *, key: str = "genes", label: str = "Gene or pair to perturb") -> list[str]:
    """Searchable choice of up to two genes among the model's; typed symbols are accepted
    and checked (with suggestions) by :func:`resolve`."""
    _restore(key, [], url=True, valid=lambda v: isinstance(v, list))
    genes = st.multiselect(
        label, sorted(b.genes), key=key, accept_new_options=True, on_change=_changed, args=(key,),
        placeholder="type a gene symbol, e.g. KLF1",
        help=f"One gene, or two for a pair. Only the {len(b.genes)} genes of this model's graph "
             "can be predicted; other symbols get suggestions.")
    _remember(key, list(genes), url=True)
    return genes


def _replace_gene(key: str, old: str, new: str) -> None:
    current = list(st.session_state.get(key, []))
    st.session_state[key] = [new if g.strip().lower() == old.strip().lower() else g for g in current]
    st.session_state[f"_{key}"] = st.session_state[key]


def resolve(b, genes: Sequence[str], *, key: str = "genes") -> str | None:
    """The model's condition for the chosen genes, or ``None`` after showing why not (with
    one-click suggestions for a mistyped symbol)."""
    from .predict import resolve_perturbation

    text = "+".join(g.strip() for g in genes if g and g.strip())
    try:
        return resolve_perturbation(b, text)
    except UnknownGeneError as exc:
        show_error(exc)
        if exc.suggestions:
            cols = st.columns(min(len(exc.suggestions), 5))
            for col, suggestion in zip(cols, exc.suggestions):
                col.button(f"Use {suggestion}", key=f"suggest-{key}-{suggestion}",
                           on_click=_replace_gene, args=(key, exc.gene, suggestion))
        return None
    except GrapeError as exc:
        show_error(exc)
        return None


@st.cache_data(max_entries=512, show_spinner=False)
def _prediction(folder: str, stamp: str, condition: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    from .predict import baseline_predictions, predict

    b = _load_bundle(folder, stamp)
    frame = predict(b, condition)
    attrs = dict(frame.attrs)
    frame = viz.with_baselines(frame, baseline_predictions(b, [attrs["condition"]]), b.measured,
                               b.pseudobulk.control_mean)
    return frame, attrs


def prediction(sel: Selection, condition: str) -> pd.DataFrame:
    """:func:`grape_core.predict.predict` plus the baselines' shifts (cached per model and
    condition). For a pair without measured singles, the additive expectation is the sum of
    the model's predicted singles (``attrs['additive_label']`` says which)."""
    from .conditions import format_condition, parse_condition

    frame, attrs = _prediction(sel.folder, sel.stamp, condition)
    genes = parse_condition(condition)
    if len(genes) == 2:
        if "additive_shift" in frame:
            attrs["additive_label"] = "additive (sum of measured singles)"
        else:
            total = np.zeros(len(frame))
            for gene in genes:
                single, _ = _prediction(sel.folder, sel.stamp, format_condition((gene,)))
                total += single.set_index("gene")["shift"].reindex(frame["gene"]).to_numpy()
            frame["additive_shift"] = total
            attrs["additive_label"] = "additive (sum of predicted singles)"
    frame.attrs = attrs
    return frame


def open_in(genes: Sequence[str], sel: Selection, *, pages: Sequence[str] = ("Predict", "Network")) -> None:
    """Links that open ``genes`` on other pages (the genes travel in the URL)."""
    label = " + ".join(genes)
    cols = st.columns(len(pages))
    for col, (path, title, icon) in zip(cols, [p for p in PAGES if p[1] in pages]):
        try:
            col.page_link(path, label=f"Open {label} in {title}", icon=icon,
                          query_params={"genes": list(genes), "model": sel.model})
        except Exception:  # noqa: BLE001 - a page run on its own has no navigation
            col.caption(f"{title}: choose {md(label)} there.")


# ----------------------------------------------------------------------------- network
@st.cache_data(max_entries=64, show_spinner=False)
def network_view(folder: str, stamp: str, focus: tuple[str, ...], hops: int, top_k: int) -> tuple[str, pd.DataFrame]:
    """Self-contained pyvis HTML of the neighbourhood of ``focus`` and its edge table."""
    b = _load_bundle(folder, stamp)
    edges = viz.neighbourhood(b.prior_edges, b.learned_edges, focus, hops=hops, top_k=top_k)
    return viz.network_html(edges, b.table, list(focus)), edges


@st.cache_data(max_entries=8, show_spinner=False)
def structure_summary(folder: str, stamp: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    b = _load_bundle(folder, stamp)
    return (viz.structure_changes(b.prior_edges, b.learned_edges),
            viz.degrees(b.prior_edges, b.learned_edges, b.genes))


def show_html(page_html: str, *, height: int) -> None:
    """Embed a self-contained HTML page (``st.iframe``; older Streamlit: components.html)."""
    if hasattr(st, "iframe"):
        st.iframe(page_html, height=height)
    else:  # pragma: no cover - Streamlit < 1.50
        import streamlit.components.v1 as components

        components.html(page_html, height=height)


# ----------------------------------------------------------------------------- genes page
@st.cache_data(max_entries=8, show_spinner=False)
def gene_overview(folder: str, stamp: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The gene table of a model and the 2-D map of its fused embeddings."""
    from .conditions import genes_of

    b = _load_bundle(folder, stamp)
    try:
        from .genes import load_annotation

        terms = load_annotation().terms
    except Exception:  # noqa: BLE001 - GO names are a nicety; ids are shown without them
        terms = None
    parts: dict[str, str] = {}
    for part in ("test", "val", "train"):
        for condition in getattr(b.split, part):
            for gene in genes_of(condition):
                parts[gene] = part
    overview = viz.gene_overview(b.table, b.prior_edges, b.learned_edges, b.measured, parts, terms)
    return overview, viz.embedding_coords(b.fused)


# ----------------------------------------------------------------------------- screen
@st.cache_resource(max_entries=4, show_spinner=False)
def _singles_job(folder: str, stamp: str) -> threading.Thread:
    from .screen import single_shifts

    b = _load_bundle(folder, stamp)

    def work() -> None:
        try:
            single_shifts(b, stop=_STOP_JOBS)  # cached on the bundle for every later screen
        except Exception:  # noqa: BLE001 - screen() recomputes and reports it
            pass

    thread = threading.Thread(target=work, name=f"grape-singles-{Path(folder).name}", daemon=True)
    _JOBS.append(thread)
    thread.start()
    return thread


def prepare_screen(sel: Selection) -> None:
    """Start predicting every single perturbation of the model in the background (once per
    model and process), while the user picks targets."""
    _singles_job(sel.folder, sel.stamp)


def wait_for_screen(sel: Selection, n_genes: int, n_members: int) -> None:
    """Score every single perturbation of the model (once per model and process, shared by
    all sessions), showing progress; later screens of the model take a moment."""
    job = _singles_job(sel.folder, sel.stamp)
    if not job.is_alive():
        return
    start = time.perf_counter()
    with st.status(f"Predicting all {n_genes} genes as perturbations with {n_members} models "
                   "(once per model; up to a minute on a laptop)…", expanded=True) as status:
        clock = st.empty()
        while job.is_alive():
            clock.caption(f"{time.perf_counter() - start:.0f} s elapsed")
            job.join(timeout=0.5)
        status.update(label=f"All {n_genes} perturbations scored", state="complete", expanded=False)


@st.cache_data(max_entries=32, show_spinner=False)
def screen_result(folder: str, stamp: str, targets: tuple[tuple[str, float], ...], direction: str,
                  pairs: bool, top: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    from .screen import screen

    frame = screen(_load_bundle(folder, stamp), dict(targets), direction=direction, pairs=pairs, top=top)
    return frame, dict(frame.attrs)


@st.cache_data(max_entries=8, show_spinner=False)
def screen_check(folder: str, stamp: str) -> pd.DataFrame:
    from .screen import screen_check as check

    return check(_load_bundle(folder, stamp))


def parse_signature(text: str) -> dict[str, float] | None:
    """A pasted signature (``gene weight`` per line) through the library's reader; the text
    goes to a private temporary file that is removed at once."""
    from .screen import read_signature

    fd, name = tempfile.mkstemp(prefix="grape-signature-", suffix=".tsv")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return read_signature(name)
    except GrapeError as exc:
        show_error(str(exc).replace(name, "the pasted signature"))
        return None
    finally:
        Path(name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- your data
def upload_limit_mb() -> float:
    """Upload size limit: ``server.maxUploadSize``, lowered by ``GRAPE_MAX_UPLOAD_MB``."""
    limit = float(st.get_option("server.maxUploadSize"))
    env = os.environ.get(UPLOAD_LIMIT_ENV, "").strip()
    try:
        return min(limit, float(env)) if env else limit
    except ValueError:
        return limit


def _session_folder() -> Path:
    folder = st.session_state.get("_upload_dir")
    if not folder or not Path(folder).is_dir():
        folder = tempfile.mkdtemp(prefix="grape-upload-")
        _UPLOAD_FOLDERS.add(folder)
        st.session_state["_upload_dir"] = folder
    return Path(folder)


def save_upload(uploaded) -> Path | None:
    """Write an uploaded file to this session's temporary folder (never executed, never
    next to the app); ``None`` with a message when it is over the size limit."""
    limit = upload_limit_mb()
    size_mb = uploaded.size / 2**20
    if size_mb > limit:
        st.error(f"{md(uploaded.name)} is {size_mb:.1f} MB, over the upload limit of {limit:g} MB; "
                 "open it by its path on this computer instead (or raise the limit with "
                 f"{UPLOAD_LIMIT_ENV} / server.maxUploadSize).", icon=":material/error:")
        return None
    tag = hashlib.sha1(f"{uploaded.file_id}:{uploaded.name}:{uploaded.size}".encode()).hexdigest()[:12]
    path = _session_folder() / f"upload-{tag}.h5ad"
    if not path.exists():
        for older in path.parent.glob("upload-*.h5ad"):  # a session keeps its latest upload
            older.unlink(missing_ok=True)
        write_bytes(path, uploaded.getvalue())
    return path


def file_stamp(path: str | Path) -> str:
    info = Path(path).stat()
    return f"{info.st_size}:{info.st_mtime_ns}"


@st.cache_resource(max_entries=2, show_spinner=False)
def _read_data(path: str, stamp: str):
    from .data import describe, pseudobulk, read_perturbseq

    adata = read_perturbseq(path)
    return adata, describe(adata), pseudobulk(adata)


def read_data(path: str | Path, *, display_name: str = "") -> tuple[Any, dict, Any] | None:
    """Read and validate a Perturb-seq file (cached): ``(adata, describe(), pseudobulk)``,
    or ``None`` after one clear message."""
    path = Path(path).expanduser()
    shown = display_name or str(path)
    if not path.is_file():
        show_error(f"file not found: {shown}; give the full path of a .h5ad file on this computer")
        return None
    try:
        with st.spinner(f"Reading and checking {shown}…"):
            return _read_data(str(path), file_stamp(path))
    except GrapeError as exc:
        show_error(str(exc).replace(str(path), shown))
        return None


def data_summary(desc: dict[str, Any], name: str) -> None:
    cols = st.columns(4)
    cols[0].metric("cells", f"{desc['cells']:,}")
    cols[1].metric("measured genes", f"{desc['genes']:,}")
    cols[2].metric("perturbations", desc["conditions"],
                   help=f"{desc['singles']} single genes, {desc['pairs']} pairs")
    cols[3].metric("control cells", f"{desc['control_cells']:,}")
    st.caption(f"{md(name)}: condition column *{md(desc['condition_key'])}*, control label "
               f"*{md(desc['control_label'])}*, DE genes {md(desc['de_genes'])}, cell types "
               f"{md(', '.join(desc['cell_types']))}.")
    for warning in desc.get("warnings", []):
        st.warning(md(warning), icon=":material/warning:")


@st.cache_data(max_entries=16, show_spinner=False)
def _evaluate(folder: str, stamp: str, path: str, data_stamp: str) -> tuple[pd.DataFrame, str]:
    from .workflow import evaluate_bundle

    _, _, pb = _read_data(path, data_stamp)
    report = evaluate_bundle(_load_bundle(folder, stamp), pb)
    return report.table(), str(report.extra.get("verdict", ""))


def evaluate_on(sel: Selection, path: str | Path) -> tuple[pd.DataFrame, str] | None:
    """Held-out metrics of the chosen model on the user's data (same genes required)."""
    try:
        with st.spinner(f"Evaluating {sel.model} on your data…"):
            return _evaluate(sel.folder, sel.stamp, str(path), file_stamp(path))
    except GrapeError as exc:
        show_error(exc)
    except ValueError as exc:  # e.g. none of the model's held-out perturbations in the file
        show_error(f"cannot evaluate {sel.model} on this file: {exc}")
    return None


def train_model(sel: Selection, path: str | Path, *, name: str, ensemble: int, epochs: int) -> Path | None:
    """Train a model on the user's file and save it into the models folder; progress in an
    ``st.status``. Returns the new folder, or ``None`` after a message."""
    from .config import TrainConfig
    from .splits import make_split
    from .workflow import train_bundle

    name = name.strip()
    if not _NAME.fullmatch(name):
        show_error("model name must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                   "letter or digit; choose another name")
        return None
    target = Path(sel.models_dir).expanduser() / name
    if target.exists() or name in {e.name for e in model_entries(sel.models_dir)}:
        show_error(f"a model named {name!r} already exists; choose another name")
        return None
    data = read_data(path)
    if data is None:
        return None
    adata, _, pb = data
    outcome: dict[str, Any] = {}
    with st.status(f"Training model {name}…", expanded=True) as status:
        try:
            st.write("Splitting the perturbations (GEARS simulation split, seed 1)…")
            split = make_split(pb.conditions)
            st.write(f"{len(split.train)} train, {len(split.val)} validation, {len(split.test)} "
                     "held-out perturbations. Building gene knowledge and training "
                     f"{ensemble} model(s), up to {epochs} epochs each…")
            config = TrainConfig(ensemble=int(ensemble), max_epochs=int(epochs))

            def work() -> None:
                try:
                    outcome["bundle"] = train_bundle(adata, split, train_config=config,
                                                     progress=False, name=name,
                                                     command="GRAPE Explorer (app)")
                except BaseException as exc:  # noqa: BLE001 - shown below
                    outcome["error"] = exc

            thread = threading.Thread(target=work, name=f"grape-train-{name}", daemon=True)
            start = time.perf_counter()
            thread.start()
            clock = st.empty()
            while thread.is_alive():
                clock.caption(f"{time.perf_counter() - start:.0f} s elapsed")
                thread.join(timeout=0.5)
            if "error" in outcome:
                raise outcome["error"]
            folder = outcome["bundle"].save(target)
        except GrapeError as exc:
            status.update(label=f"Training {name} failed", state="error")
            show_error(exc)
            return None
        except Exception as exc:  # noqa: BLE001 - a message, not a traceback
            status.update(label=f"Training {name} failed", state="error")
            show_error(f"training failed ({type(exc).__name__}: {exc}); check the file with "
                       "`python -m grape_core describe` and try again")
            return None
        status.update(label=f"Model {name} trained in {time.perf_counter() - start:.0f} s and saved",
                      state="complete", expanded=False)
    return folder


# ----------------------------------------------------------------------------- model card
def table(frame: pd.DataFrame, *, digits: int = 3, **kwargs: Any) -> None:
    """``st.dataframe`` with floats shown to ``digits`` decimals (the index kept as a column)."""
    config = {str(c): st.column_config.NumberColumn(format=f"%.{digits}f")
              for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    st.dataframe(frame, column_config=config, width="stretch", **kwargs)


def models_table(entries: Sequence[ModelEntry]) -> pd.DataFrame:
    rows = []
    for e in entries:
        data = e.manifest.get("dataset", {})
        rows.append({"model": e.name, "from": e.source, "dataset": data.get("name", ""),
                     "perturbations": data.get("conditions"), "measured genes": data.get("genes"),
                     "status": "ready" if e.ok else f"unusable: {e.error}"})
    return pd.DataFrame(rows)


def model_card(man: dict[str, Any]) -> None:
    """Data seen, split, training time and held-out metrics next to the baselines."""
    data, split, training = man.get("dataset", {}), man.get("split", {}), man.get("training", {})
    cols = st.columns(4)
    cols[0].metric("cells seen", f"{data.get('cells', 0):,}", help=f"file {data.get('file', '?')}")
    cols[1].metric("measured genes", f"{data.get('genes', 0):,}",
                   help=f"{man.get('genes', {}).get('n_nodes', '?')} genes in the graph")
    cols[2].metric("perturbations", data.get("conditions", 0),
                   help=f"{split.get('train', '?')} train · {split.get('val', '?')} validation · "
                        f"{split.get('test', '?')} held out")
    cols[3].metric("training time", _fmt_seconds(training.get("seconds")),
                   help=f"{_fmt_seconds(training.get('total_seconds'))} including gene knowledge "
                        f"and evaluation; ensemble of {man.get('ensemble', '?')}")
    subset = ", ".join(data.get("subset", []))
    st.markdown(
        f"Trained on **{md(data.get('name', '?'))}**{' (' + md(subset) + ')' if subset else ''}, "
        f"split **{md(split.get('name', '?'))}** (seed {split.get('seed', '?')}): "
        f"{split.get('train', '?')} perturbations for training, {split.get('val', '?')} for "
        f"early stopping and **{split.get('test', '?')} never seen** — the metrics below are on those.")
    test = man.get("metrics", {}).get("test", {})
    if test:
        overview = viz.metrics_overview(test).drop(columns="key").set_index("model")
        table(overview)
        verdict = man.get("metrics", {}).get("verdict", "")
        if verdict:
            (st.warning if verdict.startswith("Baselines that beat") else st.success)(
                md(verdict), icon=":material/balance:")
    else:
        st.info("This model has no held-out metrics (its split held nothing out).")
