"""What a session chose, and how choices survive page switches and travel in the URL; and
the one piece of server-side state, the full-screen runs (:class:`PublicJob`).

Choices live in ``st.session_state`` only (widget keys ``model``, ``genes``, ``models_dir``,
each remembered under ``_<key>`` so it survives page switches), so no session sees
another's. ``model`` and ``genes`` are mirrored in the URL (``?model=norman&genes=KLF1``):
links between pages, and shared links, carry them.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import streamlit as st

from grape_core.bundle import Manifest


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
    manifest: Manifest | None = None

    @property
    def ok(self) -> bool:
        return not self.error and self.manifest is not None


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


def restore(key: str, default: Any, *, url: bool = False,
            valid: Callable[[Any], bool] = lambda value: True) -> None:
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


def changed(key: str) -> None:
    """Widget callback: remember the new value before the page reruns."""
    st.session_state[f"_{key}"] = st.session_state[key]


def remember(key: str, value: Any, *, url: bool = False) -> None:
    st.session_state[f"_{key}"] = value
    if url:
        values = [str(v) for v in value] if isinstance(value, list) else ([str(value)] if value else [])
        if values != st.query_params.get_all(key):
            if values:
                st.query_params[key] = values if len(values) > 1 else values[0]
            else:
                st.query_params.pop(key, None)
            st.session_state[f"_{key}_from_url"] = values


GENE_SEPARATORS = re.compile(r"[+,;\s]+")
"""What separates the genes typed in a gene box: ``+`` (as in ``KLF1+MAP2K6``), commas,
semicolons or spaces; none of them is ever part of a symbol here."""


def split_genes(text: str) -> list[str]:
    """The genes typed in a gene box, as typed (``"KLF1 + MAP2K6"`` -> ``["KLF1", "MAP2K6"]``)."""
    return [g for g in GENE_SEPARATORS.split(str(text or "")) if g]


def join_genes(genes: list[str], separator: str = "+") -> str:
    return separator.join(genes)


def typed(key: str) -> None:
    """Gene box callback: remember the genes typed in text box ``key`` (``_key``: a list)."""
    st.session_state[f"_{key}"] = split_genes(st.session_state.get(key, ""))


def replace_gene(key: str, old: str, new: str, separator: str = "+") -> None:
    """Button callback: swap a mistyped symbol for a suggestion in the gene box ``key``."""
    current = list(st.session_state.get(f"_{key}", split_genes(st.session_state.get(key, ""))))
    genes = [new if g.strip().lower() == old.strip().lower() else g for g in current]
    st.session_state[f"_{key}"] = genes
    st.session_state[key] = join_genes(genes, separator)


# ----------------------------------------------------------------------------- full screens (server-side)
@dataclass
class PublicJob:
    """Download a registry screen and train on all of it, in a background thread.

    Shared by every session of this process (:data:`JOBS`); ``state`` is ``running``,
    ``done``, ``failed`` or ``cancelled``. Written only by its own thread, read by pages.
    """

    key: str
    dataset: str
    model_name: str
    models_dir: str
    progress: Any = None
    """The latest :class:`grape_core.training.public.Progress`."""
    state: str = "running"
    kind: str = ""
    """For a failed run: :func:`grape_core.training.public.failure_kind`."""
    message: str = ""
    folder: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def fraction(self) -> float:
        return float(self.progress.fraction) if self.progress is not None else 0.0

    @property
    def line(self) -> str:
        return self.progress.message if self.progress is not None else "Starting…"

    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started


JOBS: dict[str, PublicJob] = {}
"""Full-screen runs of this process, by :func:`job_key` (kept until dismissed)."""
JOBS_LOCK = threading.Lock()


def job_key(dataset: str, models_dir: str) -> str:
    return f"{dataset}@{Path(models_dir).expanduser()}"


def public_jobs() -> list[PublicJob]:
    """Every full-screen run of this process, oldest first."""
    with JOBS_LOCK:
        return sorted(JOBS.values(), key=lambda j: j.started)


def public_job(dataset: str, models_dir: str) -> PublicJob | None:
    with JOBS_LOCK:
        return JOBS.get(job_key(dataset, models_dir))


def cancel_job(key: str) -> None:
    """Ask a run to stop (at its next download block or validation check of training)."""
    with JOBS_LOCK:
        job = JOBS.get(key)
    if job is not None:
        job.stop.set()


def dismiss_job(key: str) -> None:
    """Forget a finished run (its message goes away)."""
    with JOBS_LOCK:
        job = JOBS.get(key)
        if job is not None and not job.running:
            del JOBS[key]
