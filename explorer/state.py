"""What a session chose, and how choices survive page switches and travel in the URL.

Choices live in ``st.session_state`` only (widget keys ``model``, ``genes``, ``models_dir``,
each remembered under ``_<key>`` so it survives page switches), so no session sees
another's. ``model`` and ``genes`` are mirrored in the URL (``?model=norman&genes=KLF1``):
links between pages, and shared links, carry them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


def replace_gene(key: str, old: str, new: str) -> None:
    """Button callback: swap a mistyped symbol for a suggestion in the gene picker ``key``."""
    current = list(st.session_state.get(key, []))
    st.session_state[key] = [new if g.strip().lower() == old.strip().lower() else g for g in current]
    st.session_state[f"_{key}"] = st.session_state[key]
