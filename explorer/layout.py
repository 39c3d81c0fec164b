"""The page frame every page shares: page setup, sidebar (model picker and card, and the
progress of a full public screen being prepared), messages, tables, links between pages and
the model card.

- :func:`page` sets the page up and draws the sidebar. Every page calls it first, so a page
  also works when run on its own (``AppTest`` does that).
- A :class:`~grape_core.errors.GrapeError` becomes one ``st.error`` line saying what to do.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from grape_core.bundle import Manifest
from grape_core.config import Paths
from grape_core.data.conditions import label, short_label
from grape_core.errors import GrapeError  # noqa: F401 - pages catch it as layout.GrapeError

from grape_core.viz.charts import number  # noqa: F401 - pages format numbers with layout.number
from .loaders import held_out_metrics, load_model, model_entries, verified, warm_up
from .state import (ModelEntry, PublicJob, Selection, cancel_job, changed, dismiss_job, public_jobs,
                    remember, restore)

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
SHIFT_SENTENCE = ("A **shift** is how much a gene's expression (log scale) changes in perturbed "
                  "cells compared with unperturbed control cells: above 0 the gene goes up, below 0 "
                  "it goes down.")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$!:])")
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- messages
def md(text: object) -> str:
    """Escape Markdown (and Streamlit's ``$``/``:color[]`` syntax) in text shown with
    ``st.markdown``/``st.error``: a gene name or file name is never markup or a link."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def split_words(split) -> str:
    """How a model's perturbations were used, e.g. ``14 train · 3 val · 16 held out``; a
    validation set carved from the training perturbations is counted once."""
    if split.val_carved_from_train:
        return (f"{split.train} train (of which {split.val} first held back to choose the "
                f"training length) · {split.test} held out")
    return f"{split.train} train · {split.val} val · {split.test} held out"


def show_error(exc: BaseException | str, *, context: str = "") -> None:
    """One ``st.error`` line: what is wrong and what to do (never a traceback)."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    st.error((f"{context}: " if context else "") + md(text), icon=":material/error:")


def run(body: Callable[[], None]) -> None:
    """Run a page's body: a :class:`GrapeError` becomes one ``st.error`` line, and so does
    anything unexpected (its traceback goes to the server log, never to the page)."""
    try:
        body()
    except GrapeError as exc:
        show_error(exc)
    except Exception as exc:  # noqa: BLE001 - a page never shows a traceback
        log.exception("page failed")
        show_error(f"unexpected {type(exc).__name__}: {exc}; reload the page, or choose another "
                   "model or input")


def guarded(body: Callable[[], None]) -> Callable[[], None]:
    """:func:`run` as a decorator (for page functions given to ``st.Page``)."""

    @functools.wraps(body)
    def page_body() -> None:
        run(body)

    return page_body


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def table(frame: pd.DataFrame, *, digits: int = 3, **kwargs: Any) -> None:
    """``st.dataframe`` with floats shown to ``digits`` decimals (the index kept as a column)."""
    config = {str(c): st.column_config.NumberColumn(format=f"%.{digits}f")
              for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    st.dataframe(frame, column_config=config, width="stretch", **kwargs)


def show_html(page_html: str, *, height: int) -> None:
    """Embed a self-contained HTML page (``st.iframe``; older Streamlit: components.html)."""
    if hasattr(st, "iframe"):
        st.iframe(page_html, height=height)
    else:  # pragma: no cover - Streamlit < 1.50
        import streamlit.components.v1 as components

        components.html(page_html, height=height)


# ----------------------------------------------------------------------------- the frame
def _route_through_app() -> None:
    """Run ``app.py``'s navigation, not Streamlit's ``pages/`` folder mode.

    A link straight to a page, opened on a freshly started server before any session ran
    ``app.py``, makes Streamlit run the page file on its own with the folder's menu ("app",
    no icons, no Home). Leaving folder mode and rerunning routes the same URL through
    ``app.py`` (its ``st.navigation``), as every later visit is. Only in a real server:
    ``AppTest`` (a stand-in runtime) resets the mode before every run and drives pages on
    their own, and a rerun there would drop a submitted form's values.
    """
    try:
        from streamlit import runtime
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the folder mode
        return
    if not runtime.exists() or type(runtime.get_instance()) is not runtime.Runtime:
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def page(title: str, icon: str, *, intro: str = "") -> Selection:
    """Page config, sidebar and title: the first call of every page."""
    _route_through_app()
    st.set_page_config(page_title=f"{title} · {APP_TITLE}", page_icon=FAVICON, layout="wide")
    warm_up()  # the first page of the process, whichever it is, starts the heavy imports
    sel = sidebar()
    st.title(f"{icon} {title}")
    if intro:
        st.markdown(intro)
    return sel


def _entry_label(entry: ModelEntry) -> str:
    tag = "" if entry.source == "bundled" else " · yours"
    return f"{entry.name} ({entry.manifest.dataset.conditions} perturbations{tag})"


def sidebar() -> Selection:
    """The model picker and a short model card; returns the :class:`Selection`."""
    restore("models_dir", str(Paths.from_env().models_dir))
    models_dir = str(st.session_state["models_dir"])
    entries = model_entries(models_dir)  # never raises: a broken folder is listed with its reason
    usable = {e.name: e for e in entries if e.ok}
    names = list(usable)
    chosen: ModelEntry | None = None
    with st.sidebar:
        job_panel()  # a full screen being prepared: its progress on every page
        if names:
            restore("model", DEFAULT_MODEL if DEFAULT_MODEL in usable else names[0], url=True,
                    valid=lambda n: n in usable)
            name = st.selectbox("Model", names, key="model", format_func=lambda n: _entry_label(usable[n]),
                                on_change=changed, args=("model",),
                                help="Bundled models (assets/models) and the models you trained "
                                     "(the models folder below).")
            remember("model", name, url=True)
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
                                   on_change=changed, args=("models_dir",),
                                   help="Models you train here are saved to this folder "
                                        "(default: GRAPE_MODELS_DIR or your cache folder).")
            remember("models_dir", folder)
    if chosen is None:
        return Selection(models_dir=models_dir)
    return Selection(model=chosen.name, folder=chosen.folder, stamp=chosen.stamp, source=chosen.source,
                     dataset=chosen.manifest.dataset.name, split=chosen.manifest.split.name,
                     models_dir=models_dir)


def manifest(sel: Selection) -> Manifest | None:
    """The chosen model's manifest."""
    return verified(sel.folder, sel.stamp)[0] if sel.ok else None


def _sidebar_card(man: Manifest) -> None:
    data, split = man.dataset, man.split
    subset = f" · {', '.join(data.subset)}" if data.subset else ""
    st.markdown(f"**{md(data.name or data.file or 'dataset not recorded')}**{md(subset)}")
    grape = man.metrics.test.get("grape") if man.metrics is not None else None
    held = (f"  \nheld out: Pearson of shifts **{number(grape.get('pearson_delta'))}**"
            if grape else "")
    st.caption(
        f"{data.cells:,} cells · {data.genes:,} genes  \n"
        f"{data.conditions} perturbations: {split_words(split)} "
        f"({md(split.name)} split)  \n"
        f"ensemble of {man.ensemble} · trained in {fmt_seconds(man.training.seconds)}"
        + held)


def model(sel: Selection):
    """The chosen model (:class:`grape_core.serving.model.Model`), loaded once per process; stops
    the page with a message if it cannot be used."""
    if not sel.ok:
        st.info("Choose a model in the sidebar (or train one on the Home page).")
        st.stop()
    try:
        with st.spinner(f"Loading model {md(sel.model)}…"):
            return load_model(sel.folder, sel.stamp)
    except GrapeError as exc:
        show_error(exc)
        st.stop()
    except Exception as exc:  # noqa: BLE001 - a damaged folder the checks did not foresee
        log.exception("loading %s failed", sel.folder)
        show_error(f"model {sel.model!r} cannot be loaded ({type(exc).__name__}: {exc}); restore "
                   "the model folder or retrain it")
        st.stop()


def open_in(genes: Sequence[str], sel: Selection, *, pages: Sequence[str] = ("Predict", "Network")) -> None:
    """Links that open ``genes`` on other pages (the genes travel in the URL)."""
    shown = md(label(genes))  # a label is Markdown: a gene name must not be a link or image
    cols = st.columns(len(pages))
    for col, (path, title, icon) in zip(cols, [p for p in PAGES if p[1] in pages]):
        try:
            col.page_link(path, label=f"Open {shown} in {title}", icon=icon,
                          query_params={"genes": list(genes), "model": sel.model})
        except Exception:  # noqa: BLE001 - a page run on its own has no navigation
            col.caption(f"{title}: choose {shown} there.")


# ----------------------------------------------------------------------------- model card
def models_table(entries: Sequence[ModelEntry]) -> pd.DataFrame:
    rows = []
    for e in entries:
        data = e.manifest.dataset if e.manifest is not None else None
        rows.append({"model": e.name, "from": e.source, "dataset": data.name if data else "",
                     "perturbations": data.conditions if data else None,
                     "measured genes": data.genes if data else None,
                     "status": "ready" if e.ok else f"unusable: {e.error}"})
    return pd.DataFrame(rows)


def model_card(sel: Selection) -> None:
    """Data seen, split, training time and held-out metrics next to the baselines."""
    from grape_core.evaluation.verdicts import metrics_overview, verdict_of_metrics

    man = manifest(sel)
    if man is None:
        return
    data, split, training = man.dataset, man.split, man.training
    cols = st.columns(4)
    cols[0].metric("cells seen", f"{data.cells:,}", help=f"file {md(data.file or '?')}")
    cols[1].metric("measured genes", f"{data.genes:,}",
                   help=f"{man.genes.n_nodes if man.genes else '?'} genes in the graph")
    cols[2].metric("perturbations", data.conditions,
                   help=split_words(split))
    cols[3].metric("training time", fmt_seconds(training.seconds),
                   help=f"{fmt_seconds(training.total_seconds)} including gene knowledge "
                        f"and evaluation; ensemble of {man.ensemble}")
    subset = ", ".join(data.subset)
    st.markdown(
        f"Trained on **{md(data.name or '?')}**{' (' + md(subset) + ')' if subset else ''}, "
        f"split **{md(split.name)}** (seed {split.seed}): "
        f"{split.train} perturbations for training, {split.val} for "
        f"early stopping and **{split.test} never seen** — the metrics below are on those.")
    if man.metrics is not None and man.metrics.test:
        overview = metrics_overview(man.metrics.test).drop(columns="key").set_index("model")
        table(overview)
        found = verdict_of_metrics(held_out_metrics(sel.folder, sel.stamp))
        text = man.metrics.verdict or (found.text if found is not None else "")
        if text:
            beaten = found.beaten if found is not None else False
            (st.warning if beaten else st.success)(md(text), icon=":material/balance:")
    else:
        st.info("This model has no held-out metrics (its split held nothing out).")


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


# ----------------------------------------------------------------------------- full screens
FAILURE_TITLES = {
    "network": "No network: the download server could not be reached",
    "http": "The server refused the download",
    "disk": "The disk is full",
    "checksum": "The downloaded file failed its check",
    "interrupted": "The download was interrupted (trying again resumes it)",
    "error": "Getting the full screen failed",
}


def _use_model(name: str) -> None:
    st.session_state["_model"] = name


def _job_view(job: PublicJob) -> None:
    """One run: its progress bar and Cancel while it runs, its outcome after."""
    name = md(job.model_name)
    if job.running:
        stopping = " (cancelling: stops after the current step)" if job.stop.is_set() else ""
        st.progress(job.fraction, text=f"**{name}**: {md(job.line)}{stopping}")
        st.caption(f"{job.elapsed():.0f} s elapsed · runs in the background: keep using the app, "
                   "or reload the page")
        st.button("Cancel", key=f"cancel-{job.key}", icon=":material/cancel:",
                  on_click=cancel_job, args=(job.key,), disabled=job.stop.is_set())
        return
    if job.state == "done":
        st.success(f"**{name}** is ready (trained on the full {md(job.dataset.capitalize())} screen in "
                   f"{job.elapsed() / 60:.1f} min).", icon=":material/check_circle:")
        st.button(f"Use {job.model_name}", key=f"use-{job.key}", on_click=_use_model,
                  args=(job.model_name,))
    elif job.state == "cancelled":
        st.warning(f"Cancelled: {md(job.message)}", icon=":material/cancel:")
    else:
        title = FAILURE_TITLES.get(job.kind, FAILURE_TITLES["error"])
        st.error(f"{title}: {md(job.message)}", icon=":material/error:")
    st.button("Dismiss", key=f"dismiss-{job.key}", on_click=dismiss_job, args=(job.key,))


@st.fragment(run_every=1.0)
def _live_panel(keys: tuple[str, ...]) -> None:
    jobs = [j for j in public_jobs() if j.key in keys]
    for job in jobs:
        _job_view(job)
    if not any(j.running for j in jobs):  # finished: rerun the page (the model list changes)
        st.rerun()


def job_panel() -> None:
    """The full-screen runs of this process, in the sidebar of every page: refreshed every
    second while one runs, its outcome shown until dismissed."""
    jobs = public_jobs()
    if not jobs:
        return
    st.markdown("**Full screens**")
    if any(j.running for j in jobs):
        _live_panel(tuple(j.key for j in jobs))
    else:
        for job in jobs:
            _job_view(job)
    st.divider()


def ceiling(b, metric: str) -> None:
    """Benchmark: how close each model came to repeating the experiment (the replicate and
    the scaled scores), and cell-eval's metrics."""
    from grape_core.viz import charts

    st.subheader("How close to repeating the experiment?")
    scaled = charts.scaled_table(b.metrics, metric)
    if scaled.empty:
        st.info("This model does not store the screen's replicate (it was trained before "
                "replicates were kept). `python -m grape_core evaluate --model <folder> --data "
                "<its training file>` computes it; retraining stores it.", icon=":material/info:")
    else:
        table(scaled.set_index("model"))
        st.caption("0 = the train mean baseline (every perturbation gets the mean training "
                   "shift), 1 = the replicate; per held-out perturbation in the other columns. "
                   "Undefined (empty) where the replicate does not beat the train mean beyond a "
                   "tie: there the data cannot tell a good model from the mean response.")
    cell_eval = charts.cell_eval_overview(b.manifest.metrics)
    if not cell_eval.empty:
        st.markdown("**cell-eval's metrics** (the Virtual Cell Challenge's names and definitions)")
        table(cell_eval)
        st.caption("Predicted means laid out as cells, as cell-eval lays out its own mean baseline; "
                   "the perturbed gene is left out of the discrimination score. `python -m "
                   "grape_core evaluate --data ... --h5ad DIR` writes the files to run cell-eval "
                   "itself.")
