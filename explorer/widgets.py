"""Inputs: the gene picker with suggestions, uploads, file paths, pasted signatures and
pasted lists of perturbations.

Every widget keeps a stable key, and its value is remembered for the session (see
:mod:`.state`). Wrong input becomes one ``st.error`` line (:func:`.layout.show_error`).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from grape_core.errors import GrapeError, UnknownGeneError
from grape_core.serving.trust import replicate_sentence, typical_response_sentence
from grape_core.io import write_bytes

from .layout import md, show_error
from .loaders import evaluation, file_stamp, predictions_file, predictions_table, screen_data
from .state import (Selection, join_genes, remember, replace_gene, restore, split_genes,
                    typed)

UPLOAD_LIMIT_ENV = "GRAPE_MAX_UPLOAD_MB"
_UPLOAD_FOLDERS: set[str] = set()
"""Per-session upload folders, removed at exit."""


@atexit.register
def _remove_uploads() -> None:
    for folder in list(_UPLOAD_FOLDERS):
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- genes
def gene_picker(model, *, key: str = "genes", label: str = "Gene or pair to perturb") -> list[str]:
    """A text box for one gene or a pair (``KLF1``, ``KLF1+MAP2K6``): what is typed is what is
    predicted, checked (exact symbol, any case, or a known alias) by :func:`resolve`, which
    offers the genes that start with, or look like, a symbol the model lacks. A search list
    would pick its first match on Enter: ``KLF1`` gave KLF1 and KLF12, ``KLF2`` gave KLF12.

    The genes are remembered as a list (``_genes``, and in the URL), the box shows them
    joined by ``+``."""
    restore(key, [], url=True, valid=lambda v: isinstance(v, list))
    st.session_state[key] = join_genes(st.session_state[key])
    text = st.text_input(
        label, key=key, on_change=typed, args=(key,),
        placeholder="a gene symbol, e.g. KLF1; a pair: KLF1+MAP2K6",
        help=f"One gene, or two joined by + for a pair; press Enter. Only the {len(model.genes)} "
             "genes of this model's graph can be predicted; a symbol it lacks gets suggestions.")
    genes = split_genes(text)
    remember(key, genes, url=True)
    return genes


def target_picker(model, container, *, key: str = "targets") -> list[str]:
    """Screen: the target genes, typed (``HBG2, HBE1``); each must be one of the model's
    measured genes as typed (any case, or a known alias): a partial symbol is never widened
    to the genes it starts (``HBG`` is an error that offers HBG1 and HBG2)."""
    text = container.text_input(
        "Target genes", key=key, placeholder="measured genes, e.g. HBG2, HBE1",
        help=f"One or more of the {len(model.measured)} measured genes, separated by commas or "
             "spaces.")
    return split_genes(text)


def use_target(key: str, old: str, new: str) -> None:
    """Suggestion button of the Screen page: put ``new`` in place of ``old`` in the target
    box and in the screen's arguments, so that the ranking shows at once."""
    replace_gene(key, old, new, separator=", ")
    args = st.session_state.get("screen_args")
    if args:
        weights = tuple((new if g.strip().lower() == old.strip().lower() else g, w) for g, w in args[0])
        st.session_state["screen_args"] = (weights, *args[1:])


def gene_error(exc: GrapeError, *, key: str, on_click=None) -> None:
    """One error line and, for a symbol the model lacks, a button per suggestion."""
    show_error(exc)
    if isinstance(exc, UnknownGeneError) and exc.suggestions:
        cols = st.columns(min(len(exc.suggestions), 5))
        for col, suggestion in zip(cols, exc.suggestions):
            col.button(f"Use {md(suggestion)}", key=f"suggest-{key}-{suggestion}",
                       on_click=on_click or replace_gene, args=(key, exc.gene, suggestion))


def open_on_example(model, sel: Selection, *, key: str = "genes") -> tuple[str, ...]:
    """Fill the gene picker with the model's example (a held-out measured perturbation,
    :func:`grape_core.serving.predict.example_condition`) on a session's first visit when no gene
    is chosen or linked, and again when the model changes while the example is shown.
    Returns the example's genes (empty when the model held nothing out)."""
    from grape_core.data.conditions import genes_of
    from grape_core.serving.predict import example_condition

    condition = example_condition(model)
    example = list(genes_of(condition)) if condition else []
    shown = st.session_state.get("_example")  # (model, genes) last filled in
    current = list(st.session_state.get(f"_{key}", []))
    first = shown is None and not current and not st.query_params.get_all(key)
    switched = shown is not None and shown[0] != sel.model and current == shown[1]
    if example and (first or switched):
        st.session_state[f"_{key}"] = example
        st.session_state["_example"] = (sel.model, example)
    return tuple(example)


def resolve(model, genes: Sequence[str], *, key: str = "genes") -> tuple[str, ...] | None:
    """The model's genes for the chosen ones (a measured pair in its measured order), or
    ``None`` after showing why not (with one-click suggestions for a mistyped symbol)."""
    from grape_core.data.conditions import genes_of
    from grape_core.serving.resolve import resolve_perturbation

    try:
        return genes_of(resolve_perturbation(model, list(genes)))
    except GrapeError as exc:
        gene_error(exc, key=key)
        return None


# ----------------------------------------------------------------------------- pasted lists
def signature(text: str) -> dict[str, float] | None:
    """A pasted signature (``gene weight`` per line) read by the library, or ``None`` after
    one message."""
    from grape_core.serving.resolve import parse_signature

    try:
        return parse_signature(text)
    except GrapeError as exc:
        show_error(exc)
        return None


MAX_LISTED = 500
"""Perturbations one pasted list may hold (the command line takes any number)."""


def perturbation_list(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A pasted list of perturbations and where each was (``line N``).

    Raises
    ------
    GrapeError
        No perturbation, or more than :data:`MAX_LISTED`.
    """
    from grape_core.serving.resolve import parse_perturbations

    listed, where = parse_perturbations(text)
    if len(listed) > MAX_LISTED:
        raise GrapeError(f"the list names {len(listed):,} perturbations; give at most "
                         f"{MAX_LISTED:,} here, or use `python -m grape_core predict "
                         "--perturbations FILE` for longer lists")
    return tuple(listed), tuple(where)


def perturbation_list_section(sel: Selection) -> None:
    """Predict: a pasted list of perturbations at once, for download (CSV, AnnData)."""
    with st.expander("Predict a list of perturbations (download as CSV or AnnData)"):
        with st.form("many"):
            text = st.text_area("One perturbation per line: a gene, or two joined by +",
                                key="many_text", height=120, placeholder="KLF1\nKLF1+MAP2K6\nCEBPE")
            run = st.form_submit_button("Predict the list", icon=":material/playlist_play:")
        if run:
            st.session_state["many_args"] = text
        if not st.session_state.get("many_args"):
            return
        try:
            listed = perturbation_list(st.session_state["many_args"])
            with st.spinner(f"Predicting {len(listed[0]):,} perturbation(s)…"):
                table = predictions_table(sel.folder, sel.stamp, *listed, top=5)
        except GrapeError as exc:
            show_error(exc)
            return
        st.caption(f"{table['perturbation'].nunique():,} perturbation(s): the 5 largest shifts "
                   "of each below. The CSV holds every predicted shift (a perturbation per row, "
                   "a gene per column); the AnnData file also the ensemble's spread, each shift's "
                   "interval and what was measured. *interval*: the half width of the interval "
                   "for the measured shift (see the chart above). A pair's genetic-interaction "
                   "type is not computed for lists (about a second per pair): choose the pair "
                   "above to see it.")
        st.dataframe(table, hide_index=True, width="stretch", height=240)
        for column, kind, label, mime in zip(
                st.columns(2), ("csv", "h5ad"),
                ("Download the shifts (CSV)", "Download all (AnnData .h5ad, for scanpy)"),
                ("text/csv", "application/octet-stream")):
            column.download_button(label, functools.partial(predictions_file, sel.folder,
                                                            sel.stamp, *listed, kind=kind),
                                   file_name=f"grape_{sel.model}_predictions.{kind}", mime=mime,
                                   icon=":material/download:", on_click="ignore",
                                   key=f"many_{kind}")


# ----------------------------------------------------------------------------- your data
def upload_limit_mb() -> float:
    """Upload size limit: ``server.maxUploadSize``, lowered by ``GRAPE_MAX_UPLOAD_MB``."""
    limit = float(st.get_option("server.maxUploadSize"))
    from grape_core.settings import settings

    lower = settings.max_upload_mb
    return min(limit, lower) if lower is not None else limit


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


def read_data(path: str | Path, *, display_name: str = "") -> tuple[Any, dict, Any] | None:
    """Read and validate a Perturb-seq file (cached): ``(adata, describe(), pseudobulk)``,
    or ``None`` after one clear message."""
    path = Path(path).expanduser()
    shown = display_name or str(path)
    if not path.is_file():
        show_error(f"file not found: {shown}; give the full path of a .h5ad file on this computer")
        return None
    try:
        with st.spinner(f"Reading and checking {md(shown)}…"):
            return screen_data(str(path), file_stamp(path))
    except GrapeError as exc:
        show_error(str(exc).replace(str(path), shown))
        return None


def evaluate_on(sel: Selection, path: str | Path):
    """Held-out metrics of the chosen model on the user's data (same genes required):
    ``(table, verdict)``, or ``None`` after one message."""
    try:
        with st.spinner(f"Evaluating {md(sel.model)} on your data…"):
            return evaluation(sel.folder, sel.stamp, str(path), file_stamp(path))
    except GrapeError as exc:
        show_error(exc)
    except ValueError as exc:  # e.g. none of the model's held-out perturbations in the file
        show_error(f"cannot evaluate {sel.model} on this file: {exc}")
    return None


def typical_response(model, pred) -> tuple[str, ...]:
    """A warning when the prediction is nearly the mean response of the training
    perturbations (:func:`~grape_core.serving.trust.typical_response_sentence`)."""
    sentence = typical_response_sentence(model, pred)
    return (sentence,) if sentence else ()


def replicate_note(model, pred) -> tuple[str, ...]:
    """For a held-out perturbation: how close the prediction came to repeating the
    experiment (:func:`~grape_core.serving.trust.replicate_sentence`)."""
    sentence = replicate_sentence(model, pred)
    return (sentence,) if sentence else ()
