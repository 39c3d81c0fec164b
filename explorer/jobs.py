"""Background work: the warm-up import, a large model's first screen (every single's
shifts), training a model, and getting a full public screen (download + training).

Threads are registered here, stopped and joined at exit (the interpreter must not tear a
thread down inside torch); a session waits for one with :func:`follow`, the one progress
loop of the app. The two thread singletons (one per process / per model) are
``st.cache_resource`` entries: cached resources are shared by every session.

A full-screen run (:class:`~.state.PublicJob`, started by :func:`start_public`) lives in
this process, not in a session: it is keyed by dataset and models folder, so a page reload,
another page or another tab finds it. Its progress shows in the sidebar of every page
(:func:`.layout.job_panel`, refreshed every second while it runs) with a Cancel button.
"""

from __future__ import annotations

import atexit
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from grape_core.errors import GrapeError

from .layout import md, show_error
from .loaders import load_model, model_entries, torch_threads
from .state import JOBS, JOBS_LOCK, PublicJob, Selection, job_key, public_job
from .widgets import read_data

STOP = threading.Event()
_THREADS: list[threading.Thread] = []
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@atexit.register
def _at_exit() -> None:
    STOP.set()
    for job in list(JOBS.values()):
        job.stop.set()
    for thread in _THREADS:
        thread.join(timeout=30)


def start(name: str, work: Callable[[], None]) -> threading.Thread:
    """Run ``work`` in a registered daemon thread."""
    thread = threading.Thread(target=work, name=name, daemon=True)
    _THREADS[:] = [t for t in _THREADS if t.is_alive()]
    _THREADS.append(thread)
    thread.start()
    return thread


def follow(thread: threading.Thread, status: Any) -> float:
    """Show the seconds elapsed under ``status`` (an ``st.status``) until ``thread`` ends;
    returns them."""
    begin = time.perf_counter()
    clock = st.empty()
    while thread.is_alive():
        clock.caption(f"{time.perf_counter() - begin:.0f} s elapsed")
        thread.join(timeout=0.5)
    return time.perf_counter() - begin


def prepare_screen(sel: Selection, targets: tuple[tuple[str, float], ...]) -> None:
    """Before a screen of ``targets``: what it reads, predicted once per model. For a model
    that stores no singles (genome scale) the first screen is a pass over every single: it
    runs in a registered thread, with its progress here (read from the shared model, so a
    session that waits for another's pass shows it too), and a click meanwhile reruns the
    page without losing the pass.

    Raises what the pass raises (a :class:`~grape_core.errors.GrapeError`)."""
    from grape_core.serving.screen import prepare_screen as prepare

    model = load_model(sel.folder, sel.stamp)
    if model.bundle.singles is not None:  # a lookup: nothing to prepare
        return
    failed: list[BaseException] = []

    def work() -> None:
        try:
            prepare(model, dict(targets))
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the page
            failed.append(exc)

    thread = start("grape-screen-pass", work)
    thread.join(timeout=0.3)
    bar = None
    while thread.is_alive():
        if bar is None:
            bar = st.progress(0.0)
        done, total = model.singles.progress or (0, 0)
        bar.progress(done / total if total else 0.0,
                     text=f"Predicting every single perturbation once, the first screen of a "
                          f"large model ({done} of {total} passes); later screens are instant"
                     if total else "Waiting for this model's first screen to finish…")
        thread.join(timeout=0.5)
    if bar is not None:
        bar.empty()
    if failed:
        raise failed[0]


def train_model(sel: Selection, path: str | Path, *, name: str, ensemble: int, max_steps: int) -> Path | None:
    """Train a model on the user's file and save it into the models folder; progress in an
    ``st.status``. Returns the new folder, or ``None`` after a message.

    The models folder is checked before the work, and the model's name is reserved (a lock
    file) while it trains: another session cannot train a model of the same name meanwhile.
    """
    from grape_core.io import check_writable, reserve

    name = name.strip()
    if not _NAME.fullmatch(name):
        show_error("model name must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                   "letter or digit; choose another name")
        return None
    target = Path(sel.models_dir).expanduser() / name
    if target.exists() or name in {e.name for e in model_entries(sel.models_dir)}:
        show_error(f"a model named {name!r} already exists; choose another name")
        return None
    where = ("choose a folder you can write in Settings ('Folder with your own models', "
             "or the GRAPE_MODELS_DIR setting)")
    try:  # before the work: a read-only models folder is not found after training
        check_writable(target, what="model", hint=where)
    except GrapeError as exc:
        show_error(exc)
        return None
    data = read_data(path)
    if data is None:
        return None
    adata, _, pb = data
    try:
        with reserve(target, what="model", hint="wait for that training to finish or choose "
                     "another name"):
            return _train_and_save(adata, pb, target, name=name, ensemble=ensemble,
                                   max_steps=max_steps, where=where)
    except GrapeError as exc:
        show_error(exc)
        return None


def _train_and_save(adata, pb, target: Path, *, name: str, ensemble: int, max_steps: int,
                    where: str) -> Path | None:
    from grape_core.config import TrainConfig
    from grape_core.training.recipe import default_split, save_model, train_bundle

    outcome: dict[str, Any] = {}
    with st.status(f"Training model {md(name)}…", expanded=True) as status:
        try:
            config = TrainConfig(ensemble=int(ensemble), max_steps=int(max_steps))
            st.write(f"Splitting the perturbations (GEARS simulation split, seed {config.seed})…")
            split = default_split(pb, seed=config.seed)
            st.write(f"{len(split.train)} train, {len(split.val)} validation, {len(split.test)} "
                     "held-out perturbations. Building gene knowledge and training "
                     f"{ensemble} model(s), up to {max_steps} optimisation steps each…")

            def work() -> None:
                try:
                    outcome["bundle"] = train_bundle(adata, split, train_config=config,
                                                     progress=False, name=name, pb=pb,
                                                     command="GRAPE Explorer (app)")
                except BaseException as exc:  # noqa: BLE001 - shown below
                    outcome["error"] = exc

            seconds = follow(start(f"grape-train-{name}", work), status)
            if "error" in outcome:
                raise outcome["error"]
            folder = save_model(outcome["bundle"], target)
        except GrapeError as exc:
            status.update(label=f"Training {md(name)} failed", state="error")
            show_error(exc)
            return None
        except OSError as exc:  # writing the model folder
            status.update(label=f"Saving {md(name)} failed", state="error")
            show_error(f"cannot save model {name} in the models folder {target.parent} "
                       f"({exc.strerror or exc}); {where}")
            return None
        except Exception as exc:  # noqa: BLE001 - a message, not a traceback
            status.update(label=f"Training {md(name)} failed", state="error")
            show_error(f"training failed ({type(exc).__name__}: {exc}); check the file with "
                       "`python -m grape_core describe` and try again")
            return None
        status.update(label=f"Model {md(name)} trained in {seconds:.0f} s and saved",
                      state="complete", expanded=False)
    return folder



# ----------------------------------------------------------------------------- full screens
def start_public(dataset: str, models_dir: str, *, ensemble: int, max_steps: int) -> PublicJob | None:
    """Start (or find, if it is already running) the full-screen run of ``dataset``;
    ``None`` after a message when another run is busy or the model exists already."""
    from grape_core.config import TrainConfig
    from grape_core.training.public import failure_kind, public_model_name, train_public

    name = public_model_name(dataset)
    key = job_key(dataset, models_dir)
    with JOBS_LOCK:
        current = JOBS.get(key)
        if current is not None and current.running:
            return current
        busy = [j for j in JOBS.values() if j.running]
        if busy:
            show_error(f"the full {busy[0].dataset} screen is being prepared; wait for it or "
                       "cancel it (sidebar) before starting another")
            return None
        if (Path(models_dir).expanduser() / name).exists():
            show_error(f"a model named {name!r} already exists in your models folder; choose "
                       "it in the sidebar, or delete its folder to train it again")
            return None
        job = PublicJob(key=key, dataset=dataset, model_name=name, models_dir=models_dir)
        JOBS[key] = job
    config = TrainConfig(ensemble=int(ensemble), max_steps=int(max_steps))

    def progress(update) -> None:
        job.progress = update

    def work() -> None:
        try:
            torch_threads()  # the app's setting (GRAPE_APP_THREADS): sessions stay responsive
            job.folder = str(train_public(dataset, models_dir=models_dir, model_name=name,
                                          train_config=config, on_progress=progress,
                                          stop=job.stop))
            job.state = "done"
        except BaseException as exc:  # noqa: BLE001 - reported by the panel, never raised
            job.kind = failure_kind(exc)
            text = str(exc).strip()
            job.message = text.splitlines()[0] if text else type(exc).__name__
            job.state = "cancelled" if job.kind == "cancelled" else "failed"
        finally:
            job.finished = time.time()

    start(f"grape-public-{dataset}", work)
    return job


def full_screen_section(sel: Selection) -> None:
    """Home: "Get the full Adamson (or Norman) screen": the only outbound call of the app,
    made when the user asks for it."""
    from urllib.parse import urlparse

    from grape_core.data.datasets import registry
    from grape_core.training.public import public_model_name

    st.subheader("Get a full public screen")
    st.markdown("The bundled models saw only a few dozen perturbations, so their screens rank "
                "candidates by noise. A model trained on a whole published screen gives "
                "rankings that mean something. This downloads the screen (the only time the app "
                "goes online), checks it, trains in the background and adds the model to your "
                "list. Progress shows in the sidebar on every page.")
    try:
        known = registry()
    except GrapeError as exc:
        show_error(exc)
        return
    names = list(known)
    dataset = st.radio("Screen", names, key="full_dataset", horizontal=True,
                       format_func=lambda n: n.capitalize())
    entry = known[dataset]
    size = f"{entry.size / 1e6:,.0f} MB" if entry.size else "size not recorded"
    check = ("checked against its SHA-256" if entry.sha256 else
             "checked for size, and that it opens as the expected AnnData (no checksum "
             "recorded)" if entry.size else
             "checked that it opens as the expected AnnData (no checksum recorded)")
    st.caption(f"{md(entry.description)}. Download: {size} from "
               f"{md(urlparse(entry.url).hostname or entry.url)}, {check}. "
               f"{md(ESTIMATES.get(dataset, ''))}")
    with st.expander("Training settings"):
        ensemble = st.slider("Models in the ensemble", 1, 5, 3, key="full_ensemble",
                             help="Their spread, with the error of models trained without each "
                                  "perturbation's genes, gives the error bars; each adds "
                                  "training time.")
        max_steps = st.slider("Maximum optimisation steps per model", 100, 3000, 2000, step=100,
                              key="full_steps", help="Training stops earlier when held-back "
                              "perturbations stop improving.")
    job = public_job(dataset, sel.models_dir)
    name = public_model_name(dataset)
    if job is not None and job.running:
        st.info(f"Getting the full {md(dataset.capitalize())} screen in the background: progress "
                "and Cancel are in the sidebar, on every page.", icon=":material/downloading:")
        return
    exists = (Path(sel.models_dir).expanduser() / name).exists()
    if exists:
        st.caption(f"Already done: **{md(name)}** is in your models (choose it in the sidebar).")
    if st.button(f"Get the full {dataset.capitalize()} screen", key="full_start", type="primary",
                 icon=":material/download:", disabled=exists):
        if start_public(dataset, sel.models_dir, ensemble=ensemble, max_steps=max_steps) is not None:
            st.rerun()  # the sidebar panel shows it from now on


ESTIMATES = {
    "adamson": "After the download, about 3 minutes on a 2-core laptop CPU.",
    "norman": "After the download, about 4 minutes on a 2-core laptop CPU.",
}
"""Time after the download, estimated on generated screens of the real size
(``benchmarks/bench_full_screen.py``; README, "Full public screens from the app")."""
