"""Background work: the warm-up import, every single's screen shifts, training a model.

Threads are registered here, stopped and joined at exit (the interpreter must not tear a
thread down inside torch); a session waits for one with :func:`follow`, the one progress
loop of the app. The two thread singletons (one per process / per model) are
``st.cache_resource`` entries: cached resources are shared by every session.
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
from .loaders import load_model, model_entries
from .state import Selection
from .widgets import read_data

STOP = threading.Event()
_THREADS: list[threading.Thread] = []
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@atexit.register
def _at_exit() -> None:
    STOP.set()
    for thread in _THREADS:
        thread.join(timeout=30)


def start(name: str, work: Callable[[], None]) -> threading.Thread:
    """Run ``work`` in a registered daemon thread."""
    thread = threading.Thread(target=work, name=name, daemon=True)
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


@st.cache_resource(show_spinner=False)
def _warm_up() -> threading.Thread:
    def work() -> None:
        try:  # torch, the graph library, the model and interaction code: seconds on a laptop
            import dcor  # noqa: F401
            import sklearn.linear_model  # noqa: F401

            from grape_core import model  # noqa: F401
            from grape_core.model import inputs  # noqa: F401
        except Exception:  # noqa: BLE001 - a failure shows later, where it matters
            pass

    return start("grape-warm-up", work)


def warm_up() -> None:
    """Import the model code in the background once per process, after the first page."""
    _warm_up()


@st.cache_resource(max_entries=4, show_spinner=False)
def _singles_job(folder: str, stamp: str) -> threading.Thread:
    from grape_core.screen import single_shifts

    model = load_model(folder, stamp)

    def work() -> None:
        try:
            single_shifts(model, stop=STOP)  # cached on the shared Model for every later screen
        except Exception:  # noqa: BLE001 - screen() recomputes and reports it
            pass

    return start(f"grape-singles-{Path(folder).name}", work)


def prepare_screen(sel: Selection) -> None:
    """Start predicting every single perturbation of the model in the background (once per
    model and process), while the user picks targets."""
    _singles_job(sel.folder, sel.stamp)


def wait_for_screen(sel: Selection, n_genes: int, n_members: int) -> None:
    """Wait for every single perturbation of the model to be scored (once per model and
    process, shared by all sessions), showing progress."""
    job = _singles_job(sel.folder, sel.stamp)
    if not job.is_alive():
        return
    with st.status(f"Predicting all {n_genes} genes as perturbations with {n_members} models "
                   "(once per model; up to a minute on a laptop)…", expanded=True) as status:
        follow(job, status)
        status.update(label=f"All {n_genes} perturbations scored", state="complete", expanded=False)


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
                                   epochs=epochs, where=where)
    except GrapeError as exc:
        show_error(exc)
        return None


def _train_and_save(adata, pb, target: Path, *, name: str, ensemble: int, epochs: int,
                    where: str) -> Path | None:
    from grape_core.config import TrainConfig
    from grape_core.data.splits import make_split
    from grape_core.train import train_bundle

    outcome: dict[str, Any] = {}
    with st.status(f"Training model {md(name)}…", expanded=True) as status:
        try:
            st.write("Splitting the perturbations (GEARS simulation split, seed 1)…")
            split = make_split(pb.conditions)
            st.write(f"{len(split.train)} train, {len(split.val)} validation, {len(split.test)} "
                     "held-out perturbations. Building gene knowledge and training "
                     f"{ensemble} model(s), up to {max_steps} optimisation steps each…")
            config = TrainConfig(ensemble=int(ensemble), max_steps=int(max_steps))

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
            folder = outcome["bundle"].save(target)
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

