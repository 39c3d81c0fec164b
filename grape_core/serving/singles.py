"""The singles a screen reads: every single perturbation's predicted shift, owned by the loaded
:class:`~grape_core.serving.model.Model` (:class:`SinglesStore`).

A bundle stores them from training time (:attr:`~grape_core.bundle.Bundle.singles`), so a
screen is a lookup. A genome-scale model stores none: its first screen predicts them once,
every measured gene as float16 when that fits in ``GRAPE_SCREEN_MEMORY_GB``, else only the
columns screens read (float32, so near-ties may rank in another order than with the
float16 copy), and later screens read what is kept here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..data.conditions import format_condition

OFF_TARGET_GENES = 256
"""For models of more than :data:`EXACT_OFF_TARGET_MAX` measured genes, the off-target cost
is estimated on a fixed random sample of this many genes (the targets are always exact).
For roughly normal shifts the RMS of 256 genes is off by about 1/sqrt(2 * 256), 4 per cent,
at a fraction of the cost of all genes."""
EXACT_OFF_TARGET_MAX = 1000


def screened_genes(bundle, idx: np.ndarray) -> np.ndarray:
    """Measured positions a screen reads: all genes, or for large models the targets plus a
    fixed random sample of :data:`OFF_TARGET_GENES` genes for the off-target cost.

    Parameters
    ----------
    bundle
        The model's bundle.
    idx
        The targets' measured positions.

    Returns
    -------
    np.ndarray
        Sorted positions.
    """
    n = len(bundle.measured)
    if n <= max(EXACT_OFF_TARGET_MAX, OFF_TARGET_GENES + len(idx)):
        return np.arange(n)
    sample = np.random.default_rng(0).choice(n, OFF_TARGET_GENES, replace=False)
    return np.union1d(idx, sample)


def singles_size(bundle) -> int:
    """Values in every member's shift of every single at every measured gene.

    Parameters
    ----------
    bundle
        The model's bundle.

    Returns
    -------
    int
    """
    return len(bundle.members) * len(bundle.genes) * len(bundle.measured)


def screen_memory() -> float:
    """Bytes a model that stores no singles (genome scale) may keep in memory for screens:
    ``GRAPE_SCREEN_MEMORY_GB`` GB (default 1).

    Returns
    -------
    float

    Raises
    ------
    GrapeError
        The setting is not a number >= 0.
    """
    from ..settings import settings

    return settings.screen_memory


class SinglesStore:
    """Every single perturbation of a model and its members' shifts, for screens.

    Parameters
    ----------
    model
        The :class:`~.loaded.LoadedModel` that owns the store (its forward pass computes
        what the bundle does not store).
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self.computed: np.ndarray | None = None
        """For a model that stores no singles: every member's shift of every single at every
        measured gene, float16, made by the first screen when it fits in
        :func:`screen_memory`."""
        self.columns: dict[int, np.ndarray] = {}
        """Every single's shift at one measured position ``(n_members, n_singles)``, per
        position a screen has read, when :attr:`computed` does not fit: a second screen
        computes only the positions it has not seen."""
        self.progress: tuple[int, int] | None = None
        """``(done, total)`` of the pass a screen is running to compute them (another
        session can show it); ``None`` when none is running."""
        self.lock = threading.Lock()

    @property
    def stored(self) -> bool:
        """The bundle stores them (a screen is a lookup)."""
        return self._model.bundle.singles is not None

    def shifts(self, genes: np.ndarray | None = None, *,
               on_progress: Callable[[int, int], None] | None = None
               ) -> tuple[list[str], np.ndarray]:
        """Every single perturbation of the model (each node on its own) and its members'
        shifts at the measured positions ``genes``.

        Parameters
        ----------
        genes
            Measured positions (default: those every screen reads, :func:`screened_genes`
            without targets).
        on_progress
            ``on_progress(done, total)`` while a genome-scale model's first screen predicts
            them (:attr:`progress` meanwhile).

        Returns
        -------
        conditions, shifts
            The singles (``A+ctrl``, in node order) and ``(n_members, n_singles, len(genes))``
            float32.
        """
        model = self._model
        bundle = model.bundle
        if genes is None:
            genes = screened_genes(bundle, np.array([], dtype=np.int64))
        conditions = [format_condition((g,)) for g in bundle.genes]
        if bundle.singles is not None:
            return conditions, np.asarray(bundle.singles[:, :, genes], dtype=np.float32)

        def passes(done: int, total: int) -> None:
            self.progress = (done, total)
            if on_progress is not None:
                on_progress(done, total)

        with self.lock:
            try:
                if self.computed is None and 2 * singles_size(bundle) <= screen_memory():
                    self.computed = model.member_shifts(conditions, dtype=np.float16,
                                                        on_progress=passes)
                if self.computed is not None:
                    return conditions, np.asarray(self.computed[:, :, genes], dtype=np.float32)
                missing = np.array([g for g in genes.tolist() if g not in self.columns],
                                   dtype=np.int64)
                if len(missing):
                    found = model.member_shifts(conditions, outputs=missing, on_progress=passes)
                    for j, g in enumerate(missing.tolist()):
                        self.columns[g] = found[:, :, j]
                return conditions, np.stack([self.columns[g] for g in genes.tolist()], axis=-1)
            finally:
                self.progress = None
