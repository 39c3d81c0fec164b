"""A loaded model's working parts, owned in one place: a read-only
:class:`~grape_core.bundle.Bundle`, its members on the prediction device, the one ensemble
forward pass (:meth:`LoadedModel.member_shifts`, :meth:`LoadedModel.expression`:
:mod:`grape_core.nn.ensemble`), the fitted baselines, the genes' training-shift scale and the
singles a screen reads (:attr:`LoadedModel.singles`, a :class:`~.singles.SinglesStore`).

Every function of :mod:`grape_core.serving` takes a :class:`LoadedModel` (or a bundle,
wrapped by :func:`as_model`); the user's :class:`~.model.Model` is one, with the
scverse-style methods on top. It is thread-safe: the app shares one per model between
sessions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..data.conditions import format_condition
from ..evaluation.baselines import Baseline, fit_baselines
from ..evaluation.calibration import gene_scale, half_width
from ..nn.ensemble import ensemble_expression, member_shifts, on_device
from .singles import SinglesStore


class LoadedModel:
    """A loaded model and the caches of using it.

    The bundle is never changed; every cache lives here, each behind a lock, so one
    ``Model`` can serve many threads (the app shares it between sessions).

    Parameters
    ----------
    bundle
        A loaded (:meth:`Bundle.load`) or freshly trained bundle.
    device
        Where predictions run (:func:`~grape_core.devices.resolve_device`): ``cpu``,
        ``auto``, ``cuda``, ``mps``. Off the CPU the members and the graph are copied there
        once; the bundle's own tensors stay on the CPU.

    Examples
    --------
    >>> import grape_core as gc
    >>> model = gc.load("norman")
    >>> model.name, len(model.measured)
    ('norman', 500)
    """

    def __init__(self, bundle: Bundle, *, device: str = "cpu") -> None:
        self.bundle = bundle
        self.device = str(device)
        self._on_device: tuple[list, Any] | None = None
        self._lock = threading.Lock()
        self._baselines: dict[str, Baseline] | None = None
        self._gene_scale: np.ndarray | None = None
        self._cache: dict[str, Any] = {}
        self._cache_lock = threading.RLock()  # a build may ask for another cached value
        self.singles = SinglesStore(self)
        """Every single perturbation's predicted shift, what a screen reads: the bundle's
        stored ones, or those the first screen of a genome-scale model computes."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, {len(self.bundle.members)} members, "
                f"{len(self.genes)} genes)")

    # ------------------------------------------------------------------ the forward pass
    def members_and_graph(self) -> tuple[list, Any]:
        """The ensemble members and the gene graph on :attr:`device` (copied there once).

        Returns
        -------
        members, graph
        """
        with self._lock:
            if self._on_device is None:
                self._on_device = on_device(self.bundle.members, self.bundle.graph, self.device)
            return self._on_device

    def member_shifts(self, conditions: Sequence[str], *, outputs: np.ndarray | None = None,
                      chunk: int = 256, dtype: type = np.float32,
                      on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Every member's predicted shifts (:func:`grape_core.nn.ensemble.member_shifts`).

        Parameters
        ----------
        conditions
            Condition labels (``A+ctrl``, ``A+B``) of the model's genes.
        outputs
            Measured positions (default: all).
        chunk
            Conditions per pass.
        dtype
            ``np.float32`` or ``np.float16``.
        on_progress
            ``on_progress(done, total)`` after each chunk of each member.

        Returns
        -------
        np.ndarray
            ``(n_members, n_perts, n_outputs)``.

        Raises
        ------
        BundleError
            The model predicts non-finite values.
        """
        members, graph = self.members_and_graph()
        return member_shifts(members, graph, self.bundle.node_index, conditions, outputs=outputs,
                             chunk=chunk, dtype=dtype, finite=self.bundle.name,
                             on_progress=on_progress)

    def expression(self, conditions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ensemble's predicted expression (:func:`grape_core.nn.ensemble.ensemble_expression`).

        Parameters
        ----------
        conditions
            Condition labels.

        Returns
        -------
        mean, std
            ``(n_perts, n_measured)`` predicted mean log-expression and the members' spread.
        """
        members, graph = self.members_and_graph()
        return ensemble_expression(members, graph, self.bundle.node_index, conditions,
                                   self.bundle.pseudobulk.control_mean, name=self.bundle.name)

    # ------------------------------------------------------------------ accessors
    @property
    def name(self) -> str:
        """The model's name."""
        return self.bundle.name

    @property
    def genes(self) -> tuple[str, ...]:
        """Graph nodes: every gene that can be perturbed."""
        return self.bundle.genes

    @property
    def measured(self) -> tuple[str, ...]:
        """Genes whose expression is predicted."""
        return self.bundle.measured

    @property
    def fitted_on(self) -> Sequence[str]:
        """The conditions the members were fitted on."""
        return self.bundle.manifest.training.train_conditions or self.bundle.split.train

    def composing_singles(self) -> dict[str, str]:
        """Gene -> its measured single (a condition of the screen), for every gene whose
        measured training single the model builds a pair from
        (:meth:`~grape_core.nn.grape.GRAPE._compose`); a pair of any other gene is built
        from that gene's predicted single.

        Returns
        -------
        dict
        """
        rows = getattr(self.bundle.members[0], "known_row", None)
        if rows is None:  # a member that composes no pair from measured singles
            return {}
        rows = rows.numpy()
        pb = self.bundle.pseudobulk
        out = {}
        for gene, node in self.bundle.node_index.items():
            if rows[node] >= 0:
                found = pb.find(format_condition((gene,)))
                if found is not None:
                    out[gene] = found
        return out

    def single_shifts_composed(self, genes: Sequence[str], predicted: np.ndarray,
                               columns: np.ndarray | slice = slice(None)) -> tuple[np.ndarray, tuple[str, ...]]:
        """The singles of ``genes`` as the model builds a pair from them: a gene's measured
        training single where it composes pairs from it (:meth:`composing_singles`), else
        its predicted single.

        Parameters
        ----------
        genes
            One gene per row of ``predicted``.
        predicted
            ``(len(genes), n_columns)`` predicted single shifts.
        columns
            The measured genes ``predicted``'s columns are (default: all).

        Returns
        -------
        shifts, sources
            ``predicted`` with the measured singles swapped in (float64, a copy), and for
            each row ``measured`` or ``predicted``.
        """
        known = self.composing_singles()
        out = np.array(predicted, dtype=np.float64, copy=True)
        rows = [i for i, gene in enumerate(genes) if gene in known]
        if rows:
            measured = self.bundle.pseudobulk.shifts_of([known[genes[i]] for i in rows])
            out[rows] = measured[:, columns]
        return out, tuple("measured" if gene in known else "predicted" for gene in genes)

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()``, computed once per loaded model and kept (the bundle never changes):
        what several requests share, e.g. the float64 members the "why" view decomposes.

        Parameters
        ----------
        key
            The value's name.
        build
            Makes the value.

        Returns
        -------
        Any
        """
        with self._cache_lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    def baselines(self) -> Mapping[str, Baseline]:
        """Every baseline fitted on the model's training conditions (once).

        Returns
        -------
        Mapping
            Name -> fitted :class:`~grape_core.evaluation.baselines.Baseline`.
        """
        with self._lock:
            if self._baselines is None:
                bundle = self.bundle  # the members' training conditions, and its own prior
                self._baselines = fit_baselines(bundle.pseudobulk, self.fitted_on,
                                                prior=bundle.prior_edges, genes=bundle.genes,
                                                features=bundle.fused)
            return self._baselines

    def gene_scale(self) -> np.ndarray:
        """How far each measured gene moved over the training conditions, validation ones
        left out (:func:`~grape_core.evaluation.calibration.gene_scale`), computed once.

        Returns
        -------
        np.ndarray
            ``(n_measured,)``.
        """
        with self._lock:
            if self._gene_scale is None:
                self._gene_scale = gene_scale(self.bundle.pseudobulk, self.fitted_on,
                                              self.bundle.manifest.training.val_conditions)
            return self._gene_scale

    def interval(self, shift: np.ndarray, std: np.ndarray) -> np.ndarray | None:
        """Half width of the calibrated prediction interval.

        Parameters
        ----------
        shift, std
            Predicted shifts and ensemble spreads, ``(n_measured,)`` or ``(n, n_measured)``.

        Returns
        -------
        np.ndarray or None
            The same shape; ``None`` for a model without a calibration.
        """
        calibration = self.bundle.manifest.calibration
        return None if calibration is None else half_width(calibration, shift, std,
                                                           self.gene_scale())


def as_model(model: "LoadedModel | Bundle") -> "LoadedModel":
    """``model`` itself, or a new :class:`LoadedModel` (with empty caches) around a bundle:
    every function of :mod:`grape_core.serving` takes either.

    Parameters
    ----------
    model
        A loaded model or a bundle.

    Returns
    -------
    LoadedModel
    """
    return model if isinstance(model, LoadedModel) else LoadedModel(model)
