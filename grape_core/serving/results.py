"""What the loaded model answers, as typed results: a :class:`Prediction` (one perturbation,
every measured gene) and a :class:`ScreenResult` (a ranking of perturbations).

Shapes: a :class:`Prediction`'s arrays are ``(n_measured,)`` in the order of the model's
measured genes; a :class:`ScreenResult`'s table has one row per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.conditions import label
from ..errors import GrapeError, echo


ADDITIVE_FROM = {"measured": "additive (sum of measured singles)",
                 "predicted": "additive (sum of predicted singles)",
                 "mixed": "additive (sum of a measured and a predicted single)"}
"""Where a pair's additive expectation comes from, as shown next to it."""


@dataclass(frozen=True)
class Prediction:
    """The predicted response of every measured gene to one perturbation.

    Arrays are ``(n_measured,)``, in the model's measured-gene order (``genes``).
    """

    model: str
    condition: str
    """Canonical condition with the model's symbols (``A+ctrl`` or ``A+B``)."""
    perturbed: tuple[str, ...]
    """The perturbed genes (one or two)."""
    part: str
    """``train``/``val``/``test`` (the split's part), ``measured`` or ``unmeasured``."""
    genes: tuple[str, ...]
    biotype: np.ndarray
    is_coding: np.ndarray
    control: np.ndarray
    """Control mean log-expression."""
    shift: np.ndarray
    """Ensemble mean predicted shift (predicted minus control)."""
    std: np.ndarray
    """Spread of the members' predictions (standard deviation)."""
    interval: np.ndarray | None = None
    """Half width of the prediction interval for the measured shift, which holds an
    :attr:`interval_level` share of validation perturbations' measured shifts
    (:mod:`~grape_core.evaluation.calibration`); ``None`` for a model without calibration."""
    interval_level: float | None = None
    measured_shift: np.ndarray | None = None
    """What the screen measured, when it has this condition."""
    baselines: dict[str, np.ndarray] = field(default_factory=dict)
    """Baseline name -> its predicted shift; baselines that do not apply (``additive`` for a
    single) and ``control`` (zero by definition) are left out."""
    additive: np.ndarray | None = None
    """For a pair: the additive expectation (sum of the two singles' shifts)."""
    additive_from: str = ""
    """``measured`` (both singles measured in training) or ``predicted`` (the model's
    singles); empty for a single."""
    singles: np.ndarray | None = None
    """For a pair: the shifts of the two singles it is built from, ``(2, n_genes)``
    (:func:`~grape_core.serving.predict.pair_singles`; ``additive`` is their sum)."""
    single_sources: tuple[str, ...] = ()
    """For a pair: where each of :attr:`singles` came from, ``measured`` or ``predicted``."""
    warnings: tuple[str, ...] = ()
    interaction: dict[str, dict[str, Any]] | None = None
    """For a pair: ``{"predicted": report, "measured": report}`` of
    :func:`~grape_core.evaluation.interactions.interaction_report` (``measured`` when the
    screen has the pair and both singles)."""

    @property
    def is_pair(self) -> bool:
        return len(self.perturbed) == 2

    @property
    def predicted(self) -> np.ndarray:
        """Predicted mean log-expression."""
        return self.control + self.shift

    @property
    def label(self) -> str:
        """The perturbation as people write it: ``KLF1`` or ``KLF1 + MAP2K6``."""
        return label(self.perturbed)

    @property
    def additive_label(self) -> str:
        return ADDITIVE_FROM.get(self.additive_from, "additive")

    def order(self) -> np.ndarray:
        """Gene positions by decreasing |shift| (stable).

        Returns
        -------
        np.ndarray
            ``(n_measured,)`` positions.
        """
        return np.argsort(-np.abs(self.shift), kind="stable")

    def to_frame(self, *, top: int | None = None, baselines: bool = False) -> pd.DataFrame:
        """One row per measured gene, sorted by |shift|: ``gene``, ``biotype``,
        ``is_coding``, ``control``, ``predicted``, ``shift``, ``std``; ``interval`` (the
        prediction interval's half width) when the model has one; when measured also
        ``measured`` and ``measured_shift``; with ``baselines`` a ``<name>_shift`` column per
        baseline (``additive_shift``: :attr:`additive`). ``top`` keeps the largest |shift|.

        Parameters
        ----------
        top
            Keep the ``top`` largest |shift| (default: all).
        baselines
            Add each baseline's shift.

        Returns
        -------
        pd.DataFrame
            ``(n_genes, n_columns)``, largest |shift| first.
        """
        frame = pd.DataFrame({
            "gene": list(self.genes), "biotype": self.biotype, "is_coding": self.is_coding,
            "control": self.control.astype(float), "predicted": self.predicted,
            "shift": self.shift, "std": self.std,
        })
        if self.interval is not None:
            frame["interval"] = self.interval
        if self.measured_shift is not None:
            frame["measured"] = self.control + self.measured_shift
            frame["measured_shift"] = self.measured_shift
        if baselines:
            for name, shift in self.baselines.items():
                if name != "additive":
                    frame[f"{name}_shift"] = shift
            if self.additive is not None:
                frame["additive_shift"] = self.additive
        if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer))
                                or top < 1):
            raise GrapeError(f"top must be a whole number of genes, 1 or more, not {echo(top)}")
        frame = frame.iloc[self.order()].reset_index(drop=True)
        return frame.head(top) if top is not None else frame

    def to_anndata(self):
        """This prediction as an AnnData ``1 × n_measured`` for scanpy
        (:func:`grape_core.serving.export.to_anndata`: ``X`` predicted expression, ``var['biotype']``,
        layers ``shift``, ``ensemble_std``, ``interval`` when calibrated, ``measured`` when
        measured).

        Returns
        -------
        AnnData
            ``1 × n_measured``.
        """
        from .export import to_anndata

        return to_anndata(self)

    def to_dict(self, *, top: int | None = None) -> dict[str, Any]:
        """JSON-able: ``condition``, ``part``, ``genes`` (rows of :meth:`to_frame`),
        ``interval_level`` (of the genes' ``interval``; ``None`` without one),
        ``interaction``.

        Parameters
        ----------
        top
            Keep the genes with the largest |shift| (default: all).

        Returns
        -------
        dict
        """
        return {"condition": self.condition, "part": self.part,
                "genes": self.to_frame(top=top).to_dict(orient="records"),
                "interval_level": self.interval_level, "interaction": self.interaction}


@dataclass(frozen=True)
class ScreenResult:
    """A ranking of candidate perturbations (:func:`screen`)."""

    table: pd.DataFrame
    """Best first (largest ``vs_typical``): ``rank``, ``perturbation``, ``kind``
    (single/pair), ``genes``, ``biotype``, ``effect`` (ensemble mean, higher = better),
    ``effect_std``, ``vs_typical`` (the effect minus the typical one of its kind),
    ``members_agree`` (members in which it beats that member's typical perturbation of its
    kind), ``off_target``, ``additive_effect`` (pairs), ``measured`` (bool),
    ``measured_effect``."""
    model: str
    targets: tuple[str, ...]
    """The model's symbols of the targets."""
    weights: tuple[float, ...]
    """Normalised weights (their absolute values sum to 1)."""
    direction: str
    typical_effect: float
    """The median single perturbation's effect: most of a screen's shift is shared by all
    perturbations; ``vs_typical`` is what is specific to a candidate."""
    perturbed: tuple[tuple[str, ...], ...]
    """The genes of each row's perturbation."""
    all_coding: np.ndarray
    """Per row: are all perturbed genes protein-coding, ``(n_rows,)`` bool."""
    notes: tuple[str, ...] = ()
    """What to know when reading the ranking (e.g. no gene left for the off-target cost)."""
    typical_pair_effect: float | None = None
    """With pairs: the median effect of :data:`TYPICAL_PAIRS` random pairs, what a pair's
    ``vs_typical`` is measured from (a pair gets about twice the shared response)."""
    n_members: int = 1
    """Ensemble members (``members_agree`` counts among them)."""
    leaders: pd.DataFrame | None = None
    """The best candidate of each kind (single, and pair with ``pairs``), columns of
    :attr:`table`, whether or not it made the table: a pair screen still tells whether its
    best single stands out."""

    def typical_of(self, kind: str) -> float:
        """The typical effect a ``single`` or ``pair`` candidate is compared with.

        Parameters
        ----------
        kind
            ``single`` or ``pair``.

        Returns
        -------
        float
        """
        if kind == "pair" and self.typical_pair_effect is not None:
            return self.typical_pair_effect
        return self.typical_effect

    def __len__(self) -> int:
        return len(self.table)

    def to_dict(self) -> dict:
        """The ranking as JSON (what ``screen --json`` writes).

        Returns
        -------
        dict
            ``model``, ``targets``, ``direction``, the typical effects, ``n_members``, ``notes``
            and ``candidates`` (rows of :attr:`table`).
        """
        return {"model": self.model, "targets": list(self.targets), "direction": self.direction,
                "typical_effect": self.typical_effect,
                "typical_pair_effect": self.typical_pair_effect, "n_members": self.n_members,
                "notes": list(self.notes),
                "candidates": self.table.to_dict(orient="records")}
