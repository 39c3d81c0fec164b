"""Model + perturbation -> predicted expression. What the app and the command line call.

A :class:`Model` is a loaded, read-only :class:`~grape_core.bundle.Bundle` plus the caches
of using it (the fitted baselines here, the screen's per-gene columns in
:mod:`grape_core.screen`). It is thread-safe: the app shares one per model between sessions.

.. math::
    \\hat x_{P,g} = \\bar x_{\\mathrm{ctrl},g} + \\frac{1}{M} \\sum_{m=1}^{M} \\hat\\Delta^{(m)}_{P,g}

Shapes: predictions ``(n_perts, n_measured)``; a :class:`Prediction` holds one perturbation,
every array ``(n_measured,)`` in the order of ``genes.tsv``'s measured genes.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bundle import Bundle
from .data.conditions import format_condition, genes_of, label, parse_condition
from .errors import BundleError, ConditionError, GrapeError, UnknownGeneError, echo
from .evaluation.baselines import Baseline, fit_baselines
from .evaluation.calibration import gene_scale, half_width
from .evaluation.evaluate import Report, evaluate_models

ADDITIVE_FROM = {"measured": "additive (sum of measured singles)",
                 "predicted": "additive (sum of predicted singles)",
                 "mixed": "additive (sum of a measured and a predicted single)"}
"""Where a pair's additive expectation comes from, as shown next to it."""


class Model:
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
    >>> model = gc.load("assets/models/norman")
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
        self.singles: np.ndarray | None = None
        """For a model that stores no singles (genome scale), every member's shift of every
        single at every measured gene, float16, computed by the first screen when it fits in
        :func:`~grape_core.screen.screen_memory`."""
        self.screen_pass: tuple[int, int] | None = None
        """``(done, total)`` of the pass a screen is running on this model to compute its
        singles (another session can show it), ``None`` when none is running."""
        self.single_columns: dict[int, np.ndarray] = {}
        """Every single's shift at one measured position ``(n_members, n_singles)``, per
        position a screen has read, when :attr:`singles` does not fit: a second screen
        computes only the positions it has not seen."""
        self.single_columns_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, *, unverified: bool = False, device: str = "cpu") -> "Model":
        """Load and verify a model folder (:meth:`Bundle.load`; ``unverified`` also loads
        one whose manifest has no checksums)."""
        return cls(Bundle.load(path, unverified=unverified), device=device)

    def members_and_graph(self) -> tuple[list, Any]:
        """The ensemble members and the gene graph on :attr:`device` (copied there once)."""
        with self._lock:
            if self._on_device is None:
                import copy

                from .devices import resolve_device

                device = resolve_device(self.device)
                if device.type == "cpu":
                    self._on_device = (list(self.bundle.members), self.bundle.graph)
                else:
                    members = [copy.deepcopy(m).to(device).eval() for m in self.bundle.members]
                    self._on_device = (members, self.bundle.graph.to(device))
            return self._on_device

    def __repr__(self) -> str:
        return f"Model({self.name!r}, {len(self.bundle.members)} members, {len(self.genes)} genes)"

    # ------------------------------------------------------------------ scverse-style API
    def predict(self, perturbations: str | Sequence[str], *, interactions: bool = False,
                control: bool = True, progress: bool = False) -> "anndata.AnnData":  # noqa: F821
        """Predicted expression of perturbations, as AnnData (pertpy's layout).

        Parameters
        ----------
        perturbations
            ``"KLF1"``, ``"KLF1+MAP2K6"``, or a list of them (each once).
        interactions
            Also each pair's genetic-interaction type (``obs['gi_type']``; about a second per
            pair).
        control
            Add the ``control`` row (the control mean) that pertpy and cell-eval compare with.
        progress
            A progress bar over a long list.

        Returns
        -------
        AnnData ``(n_perturbations + 1) × n_measured``: ``X`` predicted mean log-expression,
        ``obs['perturbation']`` (``KLF1``, ``KLF1+MAP2K6``, ``control``), layers ``shift``,
        ``ensemble_std``, ``interval`` and, for measured perturbations, ``measured``
        (:func:`grape_core.export.to_anndata`).

        Examples
        --------
        >>> import grape_core as gc
        >>> model = gc.load("assets/models/norman")
        >>> model.predict(["KLF1", "KLF1+MAP2K6"]).obs["perturbation"].tolist()
        ['KLF1', 'KLF1+MAP2K6', 'control']
        """
        from .export import to_anndata

        listed = [perturbations] if isinstance(perturbations, str) else list(perturbations)
        preds = predict_many(self, listed, interactions=interactions, progress=progress)
        return to_anndata(preds, control=control)

    def evaluate(self, adata=None, *, part: str = "test") -> Report:
        """GRAPE, every baseline and the data's replicate on the held-out perturbations,
        with GEARS' and cell-eval's metrics (:func:`evaluate`).

        Parameters
        ----------
        adata
            The screen's cells (``n_cells × n_genes``, the same measured genes; the file the
            model was trained on, read or in memory): the replicate and cell-eval's DE
            metrics need them. ``None``: the model's own stored data.
        """
        if adata is None:
            return evaluate(self, part=part)
        from .data.pseudobulk import pseudobulk
        from .data.read import read_perturbseq

        if "grape_source" not in adata.uns:  # not read by grape_core: check it the same way
            adata = read_perturbseq(adata)
        return evaluate(self, pseudobulk(adata), part=part, cells=adata)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model folder (:meth:`~grape_core.bundle.Bundle.save`)."""
        return self.bundle.save(path, overwrite=overwrite)

    @property
    def name(self) -> str:
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
        (:meth:`~grape_core.model.grape.GRAPE._compose`); a pair of any other gene is built
        from that gene's predicted single."""
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

    def baselines(self) -> Mapping[str, Baseline]:
        """Every baseline fitted on the model's training conditions (once)."""
        with self._lock:
            if self._baselines is None:
                bundle = self.bundle  # the members' training conditions, and its own prior
                self._baselines = fit_baselines(bundle.pseudobulk, self.fitted_on,
                                                prior=bundle.prior_edges, genes=bundle.genes,
                                                features=bundle.fused)
            return self._baselines

    def gene_scale(self) -> np.ndarray:
        """How far each measured gene moved over the training conditions, validation ones
        left out (:func:`~grape_core.evaluation.calibration.gene_scale`), computed once."""
        with self._lock:
            if self._gene_scale is None:
                self._gene_scale = gene_scale(self.bundle.pseudobulk, self.fitted_on,
                                              self.bundle.manifest.training.val_conditions)
            return self._gene_scale

    def interval(self, shift: np.ndarray, std: np.ndarray) -> np.ndarray | None:
        """Half width of the calibrated prediction interval for predicted shifts ``shift``
        and ensemble spreads ``std`` (``(n_measured,)`` or ``(n, n_measured)``); ``None`` for
        a model without a calibration."""
        calibration = self.bundle.manifest.calibration
        return None if calibration is None else half_width(calibration, shift, std,
                                                           self.gene_scale())


def as_model(model: Model | Bundle) -> Model:
    """``model`` itself, or a new :class:`Model` (with empty caches) around a bundle."""
    return model if isinstance(model, Model) else Model(model)


def load(path: str | Path, *, unverified: bool = False, device: str = "cpu") -> Model:
    """A model folder, loaded and verified, ready for :func:`predict` and
    :func:`~grape_core.screen.screen`.

    Parameters
    ----------
    unverified
        Also load a folder whose manifest has no checksums (refused otherwise). Every
        tensor is still checked against the manifest.
    device
        Where predictions run: ``cpu`` (default), ``auto``, ``cuda``, ``mps``.

    Raises
    ------
    BundleError
        Missing, corrupted or incompatible folder (one line saying what to do).
    """
    return Model.load(path, unverified=unverified, device=device)


# ----------------------------------------------------------------------------- genes
def resolve_gene(model: Model | Bundle, symbol: str) -> str:
    """The model's symbol for ``symbol`` (exact, case-insensitive, or a known alias).

    Raises
    ------
    UnknownGeneError
        With close matches as suggestions; says so when the gene exists in the annotation
        but has no node in this model.
    """
    bundle = as_model(model).bundle
    text = symbol.strip()
    if text in bundle.node_index:
        return text
    folded = text.lower()
    same = [g for g in bundle.genes if g.lower() == folded]
    if len(same) == 1:
        return same[0]
    if len(same) > 1:
        raise UnknownGeneError(
            f"{echo(text)} is ambiguous in model {bundle.name!r}: its genes "
            f"{' and '.join(same[:4])} differ only in case; type the exact symbol",
            gene=text, suggestions=tuple(same[:5]))
    if "resolved_symbol" in bundle.table:  # current official symbol given for an old one
        hits = bundle.table.index[bundle.table["resolved_symbol"].astype(str).str.lower() == text.lower()]
        if len(hits) == 1:
            return str(hits[0])
    # the genes it starts (what a partial symbol was on its way to), shortest first, then
    # the genes that look like it: offered, never picked
    starts = sorted((g for g in bundle.genes if g.lower().startswith(folded)), key=lambda g: (len(g), g))
    close = difflib.get_close_matches(text.upper(), bundle.genes, n=5, cutoff=0.6)
    suggestions = tuple(dict.fromkeys([*starts, *close]))[:5] if folded else ()
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    if _in_annotation(text):
        raise UnknownGeneError(
            f"{text} is a known human gene but not in model {bundle.name!r} (its graph holds "
            f"the {len(bundle.genes)} genes of its training data){hint}",
            gene=text, suggestions=suggestions,
        )
    raise UnknownGeneError(f"unknown gene {echo(text)} for model {bundle.name!r}{hint}",
                           gene=text, suggestions=suggestions)


def _in_annotation(symbol: str) -> bool:
    try:
        from .knowledge.genes import load_annotation

        ann = load_annotation()
        return symbol in ann.by_symbol or symbol.upper() in ann.by_upper or symbol in ann.by_alias
    except Exception:  # noqa: BLE001 - the annotation is optional here
        return False


def resolve_perturbation(model: Model | Bundle, perturbation: str | Sequence[str]) -> str:
    """Canonical condition (``A+ctrl`` or ``A+B``) with the model's gene symbols.

    ``perturbation``: a condition label (``"A"``, ``"A+B"``, ``"A+ctrl"``) or the genes
    themselves (``["A", "B"]``). A pair that was measured in either order is returned in the
    measured order.
    """
    bundle = as_model(model).bundle
    known = bundle.node_index
    if isinstance(perturbation, str):
        genes = parse_condition(perturbation, known=known)
        text = perturbation
    else:
        items = [item for item in perturbation if item and item.strip()]
        if len(items) > 2:
            raise ConditionError(f"condition {echo(label(items))} perturbs {len(items)} genes; "
                                 "only single genes and pairs are supported")
        genes = tuple(g for item in items for g in parse_condition(item, known=known))
        text = label(genes)
        if len(genes) > 2:
            raise ConditionError(f"condition {echo(text)} perturbs {len(genes)} genes; only single "
                                 "genes and pairs are supported")
    if not genes:
        raise ConditionError("choose at least one gene to perturb (control is the baseline)")
    genes = tuple(resolve_gene(bundle, g) for g in genes)
    if len(genes) == 2 and genes[0] == genes[1]:
        raise ConditionError(f"{echo(text)} names the same gene twice")
    condition = format_condition(genes)
    measured = bundle.pseudobulk.find(condition)
    return measured or condition


# ----------------------------------------------------------------------------- prediction
def predict_conditions(model: Model | Bundle, conditions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and standard deviation of predicted expression.

    Returns
    -------
    mean, std
        ``(n_perts, n_measured)`` predicted mean log-expression and the per-gene standard
        deviation across ensemble members.
    """
    import torch

    from .model.inputs import perturbation_tensor, predict_shifts

    bundle = as_model(model).bundle
    if not len(conditions):
        n = len(bundle.measured)
        return np.zeros((0, n)), np.zeros((0, n))
    perts = perturbation_tensor(list(conditions), bundle.node_index)
    members, graph = as_model(model).members_and_graph()
    with torch.inference_mode():
        shifts = torch.stack([predict_shifts(m, graph, perts) for m in members]).numpy()
    if not np.isfinite(shifts).all():
        raise non_finite_error(bundle, conditions)
    expression = bundle.pseudobulk.control_mean[None, None, :] + shifts
    return expression.mean(axis=0), ensemble_spread(expression)


def ensemble_spread(values: np.ndarray) -> np.ndarray:
    """Standard deviation over the members (axis 0, ``ddof=1``); zero for one member."""
    return values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(values[0])


def non_finite_error(bundle: Bundle, conditions: Sequence[str] = ()) -> BundleError:
    """The error for a model that predicts NaN or infinite values (damaged weights)."""
    where = f" for {echo(', '.join(conditions))}" if len(conditions) else ""
    return BundleError(f"model {bundle.name!r} predicts non-finite values (NaN or infinite)"
                       f"{where}; its weights may be damaged: restore the model folder or "
                       "retrain it")


def baseline_predictions(model: Model | Bundle, conditions: Sequence[str]) -> dict[str, np.ndarray]:
    """Every baseline fitted on the model's training conditions, ``{name: (n_perts, n_measured)}``."""
    return {name: b.predict(list(conditions)) for name, b in as_model(model).baselines().items()}


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
        """Gene positions by decreasing |shift| (stable)."""
        return np.argsort(-np.abs(self.shift), kind="stable")

    def to_frame(self, *, top: int | None = None, baselines: bool = False) -> pd.DataFrame:
        """One row per measured gene, sorted by |shift|: ``gene``, ``biotype``,
        ``is_coding``, ``control``, ``predicted``, ``shift``, ``std``; ``interval`` (the
        prediction interval's half width) when the model has one; when measured also
        ``measured`` and ``measured_shift``; with ``baselines`` a ``<name>_shift`` column per
        baseline (``additive_shift``: :attr:`additive`). ``top`` keeps the largest |shift|."""
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
        (:func:`grape_core.export.to_anndata`: ``X`` predicted expression, ``var['biotype']``,
        layers ``shift``, ``ensemble_std``, ``interval`` when calibrated, ``measured`` when
        measured)."""
        from .export import to_anndata

        return to_anndata(self)

    def to_dict(self, *, top: int | None = None) -> dict[str, Any]:
        """JSON-able: ``condition``, ``part``, ``genes`` (rows of :meth:`to_frame`),
        ``interval_level`` (of the genes' ``interval``; ``None`` without one),
        ``interaction``."""
        return {"condition": self.condition, "part": self.part,
                "genes": self.to_frame(top=top).to_dict(orient="records"),
                "interval_level": self.interval_level, "interaction": self.interaction}


def predict(model: Model | Bundle, perturbation: str | Sequence[str], *,
            baselines: bool = True, interactions: bool = True) -> Prediction:
    """Predicted response of every measured gene to one gene or a pair.

    Parameters
    ----------
    model
        A loaded model (:func:`load`).
    perturbation
        ``"A"``, ``"A+B"`` (also ``A+ctrl``, any case, known aliases) or ``["A", "B"]``.
    baselines
        Also give every baseline's shift and, for a pair, the additive expectation.
    interactions
        A pair's genetic-interaction analysis (about a second, and the first one of a process
        imports its libraries); ``False`` leaves it out (:func:`with_interaction` adds it).

    Returns
    -------
    Prediction
        Shifts, spread, measured values (when the screen has the condition), baselines,
        part of the split, warnings and, for a pair, the genetic-interaction analysis.

    Raises
    ------
    UnknownGeneError, ConditionError
        A gene the model does not know (with suggestions), a bad perturbation string.

    Examples
    --------
    >>> import grape_core as gc
    >>> model = gc.load("assets/models/norman")
    >>> pred = gc.predict(model, "KLF1+MAP2K6")
    >>> pred.condition, pred.interaction["predicted"]["gi_type"] in gc.evaluation.interactions.GI_TYPES
    ('KLF1+MAP2K6', True)
    """
    model = as_model(model)
    condition = resolve_perturbation(model, perturbation)
    mean, std = predict_conditions(model, _with_singles(condition))  # a pair's singles in one pass
    return _prediction(model, condition, mean, std, baselines=baselines, analyse_pair=interactions)


def with_interaction(model: Model | Bundle, pred: Prediction) -> Prediction:
    """``pred`` with a pair's genetic-interaction analysis (:attr:`Prediction.interaction`),
    for a prediction made without it; a single, or a pair that has it, as it is. The app
    shows a pair's chart first and this below it."""
    if pred.interaction is not None or len(pred.perturbed) != 2:
        return pred
    from dataclasses import replace

    model = as_model(model)
    mean, _ = predict_conditions(model, _with_singles(pred.condition))
    control = model.bundle.pseudobulk.control_mean.astype(np.float64)
    return replace(pred, interaction=_interaction(model, pred.perturbed, pred.condition,
                                                  mean - control[None, :]))


def _with_singles(condition: str) -> list[str]:
    """What a prediction of ``condition`` needs: a pair's two singles, then the condition."""
    perturbed = genes_of(condition)
    singles = [format_condition((g,)) for g in perturbed] if len(perturbed) == 2 else []
    return [*singles, condition]


def _prediction(model: Model, condition: str, mean: np.ndarray, std: np.ndarray, *,
                baselines: bool, analyse_pair: bool = True) -> Prediction:
    """The :class:`Prediction` of ``condition`` from the predicted expression (ensemble mean
    and spread) of :func:`_with_singles`'s conditions; ``analyse_pair``: a pair's
    genetic-interaction analysis."""
    bundle = model.bundle
    calibration = bundle.manifest.calibration
    perturbed = genes_of(condition)
    singles = _with_singles(condition)[:-1]
    pb = bundle.pseudobulk
    control = pb.control_mean.astype(np.float64)
    shift = mean[-1] - control
    table = bundle.table.loc[list(pb.genes)]
    warnings = []
    unseen = [g for g in perturbed if g not in bundle.trained_genes]
    if len(perturbed) == 2 and len(unseen) == 2:
        warnings.append(f"neither {perturbed[0]} nor {perturbed[1]} was perturbed in training: "
                        "this pair is an extrapolation (GEARS' combo_seen0)")
    elif unseen:
        warnings.append(f"{', '.join(unseen)} was not perturbed in training: the prediction "
                        "comes from its gene knowledge and graph neighbours")
    found: dict[str, np.ndarray] = {}
    additive, additive_from = None, ""
    if baselines:
        for name, values in baseline_predictions(model, [condition]).items():
            values = np.asarray(values, dtype=np.float64).reshape(-1) - control
            if name != "control" and not np.isnan(values).all():
                found[name] = values
    if singles:
        single_shifts, sources = pair_singles(model, perturbed, mean[:2] - control[None, :])
        additive = single_shifts.sum(axis=0)
        additive_from = sources[0] if sources[0] == sources[1] else "mixed"
    interaction = None
    if singles and analyse_pair:
        interaction = _interaction(model, perturbed, condition, mean - control[None, :])
    return Prediction(
        model=bundle.name, condition=condition, perturbed=perturbed,
        part=bundle.split.part_of(condition) or ("measured" if condition in pb else "unmeasured"),
        genes=tuple(pb.genes), biotype=table["biotype"].to_numpy(),
        is_coding=table["is_coding"].astype(bool).to_numpy(), control=control, shift=shift,
        std=std[-1], interval=model.interval(shift, std[-1]),
        interval_level=calibration.level if calibration is not None else None,
        measured_shift=(pb.means[pb.index(condition)].astype(np.float64) - control
                        if condition in pb else None),
        baselines=found, additive=additive, additive_from=additive_from,
        warnings=tuple(warnings), interaction=interaction,
    )


def predict_many(model: Model | Bundle, perturbations: Sequence[str | Sequence[str]], *,
                 where: Sequence[str] | None = None, baselines: bool = True,
                 interactions: bool = True, progress: bool = False,
                 chunk: int = 256) -> list[Prediction]:
    """:func:`predict` for several perturbations, in their order; every one is checked
    before any is predicted, and the ensemble runs over all of them (and the singles of
    their pairs) in passes of ``chunk`` conditions, each condition once.

    Parameters
    ----------
    perturbations
        A list of what :func:`predict` takes (``["KLF1", "KLF1+MAP2K6"]``).
    where
        Where each perturbation came from (e.g. ``"list.txt, line 3"``), named in errors;
        default ``perturbation 1``, ``perturbation 2``... (nothing for a list of one).
    baselines
        As for :func:`predict`.
    interactions
        The genetic-interaction analysis of each pair (:attr:`Prediction.interaction`), as
        :func:`predict` gives; about a second per pair on a laptop CPU. ``False``: none.
    progress
        A progress bar over the perturbations.

    Raises
    ------
    UnknownGeneError, ConditionError
        As :func:`predict`, naming where the perturbation came from; also a perturbation
        given twice (``KLF1`` and ``klf1+ctrl``, ``A+B`` and ``B+A``, are the same one).
    """
    from tqdm.auto import tqdm

    if isinstance(perturbations, str):
        raise TypeError("perturbations: a list of perturbations, not one string; for one, "
                        "call predict")
    if chunk < 1:
        raise ValueError(f"chunk must be 1 or more, not {chunk}")
    model = as_model(model)
    if where is None:
        where = ([""] if len(perturbations) == 1 else
                 [f"perturbation {i + 1}" for i in range(len(perturbations))])
    if len(where) != len(perturbations):
        raise ValueError(f"where: {len(where)} places for {len(perturbations)} perturbations")
    conditions: list[str] = []
    seen: dict[frozenset, str] = {}  # the perturbed genes -> where they were given
    for text, place in zip(perturbations, where):
        prefix = f"{place}: " if place else ""
        try:
            condition = resolve_perturbation(model, text)
        except UnknownGeneError as exc:
            raise UnknownGeneError(f"{prefix}{exc}", gene=exc.gene,
                                   suggestions=exc.suggestions) from exc
        except GrapeError as exc:
            raise type(exc)(f"{prefix}{exc}") from exc
        genes = frozenset(genes_of(condition))
        if genes in seen:
            raise ConditionError(f"{prefix}{condition} was given already ({seen[genes]}); give "
                                 "each perturbation once")
        seen[genes] = place or "above"
        conditions.append(condition)
    needed = list(dict.fromkeys(c for condition in conditions for c in _with_singles(condition)))
    row = {c: i for i, c in enumerate(needed)}
    parts = [predict_conditions(model, needed[i:i + chunk]) for i in range(0, len(needed), chunk)]
    mean = np.concatenate([m for m, _ in parts]) if parts else np.zeros((0, 0))
    std = np.concatenate([s for _, s in parts]) if parts else np.zeros((0, 0))
    out = []
    for condition in tqdm(conditions, desc="predictions", unit="perturbation",
                          disable=not progress or len(conditions) < 2):
        rows = [row[c] for c in _with_singles(condition)]
        out.append(_prediction(model, condition, mean[rows], std[rows], baselines=baselines,
                               analyse_pair=interactions))
    return out


def read_perturbations(path: str | Path) -> tuple[list[str], list[str]]:
    """A file listing perturbations (:func:`parse_perturbations`), with ``"FILE, line N"``
    for each.

    Raises
    ------
    GrapeError
        The file cannot be read or is not text, or lists no perturbation.
    """
    from .io import read_text_file

    text = read_text_file(path, what="perturbation list",
                          fix="give a text file with one perturbation (GENE or GENE_A+GENE_B) "
                              "per line")
    return parse_perturbations(text, source=str(path))


_HEADERS = frozenset({"perturbation", "condition"})
_SEPARATORS = ((",", "comma"), ("\t", "tab"))


def parse_perturbations(text: str, *, source: str = "") -> tuple[list[str], list[str]]:
    """Perturbations listed one per line, ``GENE`` or ``GENE_A+GENE_B`` (blank lines and what
    follows a ``#`` skipped). A table (CSV or TSV) works when its header's first column is
    ``perturbation`` or ``condition``: then each line's first field is read. Without such a
    header, a line with a comma or a tab is refused (``A,B`` is not the pair ``A+B``, nor
    the single ``A``).

    Returns
    -------
    perturbations, where
        The perturbations as written, and where each was (``"SOURCE, line N"``, or
        ``"line N"`` without a source): :func:`predict_many`'s ``where``.

    Raises
    ------
    GrapeError
        No perturbation is listed, or a line holds a separator other than ``+`` (with its
        line number).
    """
    from .errors import echo

    perturbations, where = [], []
    table: str | None = None  # the separator of a table with a header; "" for a header alone
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        at = f"{source}, line {n}" if source else f"line {n}"
        if not perturbations and table is None:
            cut = min([i for i in (line.find(","), line.find("\t")) if i >= 0], default=-1)
            first = line if cut < 0 else line[:cut]
            if first.strip().strip('"').strip().lower() in _HEADERS:
                table = "" if cut < 0 else line[cut]
                continue
        if table:
            line = line.split(table)[0]
        else:
            for sep, word in _SEPARATORS:
                if sep in line:
                    raise GrapeError(
                        f"{at}: {echo(line)} holds a {word}; give one perturbation per line, "
                        "a pair as GENE_A+GENE_B (for a table, start it with a header whose "
                        "first column is perturbation)")
        line = line.strip().strip('"').strip()
        if not line:
            continue
        perturbations.append(line)
        where.append(at)
    if not perturbations:
        listed = f"perturbation list {source}" if source else "the list"
        raise GrapeError(f"{listed} names no perturbation; give one GENE or GENE_A+GENE_B per "
                         "line")
    return perturbations, where


def pair_singles(model: Model, perturbed: Sequence[str],
                 predicted: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """The two singles a pair's prediction is built from, ``(2, n_measured)``: a gene's
    measured training single where the model composes the pair from it
    (:meth:`Model.composing_singles`), else its predicted single (``predicted``, the same
    shape); and where each came from (``measured`` / ``predicted``)."""
    known = model.composing_singles()
    pb = model.bundle.pseudobulk
    out, sources = np.array(predicted, dtype=np.float64, copy=True), []
    for i, gene in enumerate(perturbed):
        if gene in known:
            out[i] = pb.shifts_of([known[gene]])[0]
            sources.append("measured")
        else:
            sources.append("predicted")
    return out, (sources[0], sources[1])


def _interaction(model: Model, perturbed: tuple[str, ...], condition: str,
                 shifts: np.ndarray) -> dict[str, dict[str, Any]]:
    """Genetic-interaction analysis of a pair: of its predicted shift ``shifts[2]`` against
    the singles it is built from (:func:`pair_singles`: measured where the model composes
    the pair from a measured single, else ``shifts[0]`` / ``shifts[1]``, the predicted
    ones), so that the verdict describes the prediction's own parts; and of the measured
    pair against its measured singles when the screen has all three."""
    from .evaluation.interactions import interaction_report

    a, b = perturbed
    genes = _interaction_genes(model.bundle)
    singles, sources = pair_singles(model, perturbed, shifts[:2])
    report = interaction_report(singles[0], singles[1], shifts[2], genes=genes, names=(a, b))
    out = {"predicted": {**report, "singles": list(sources)}}
    pb = model.bundle.pseudobulk
    conds = [pb.find(c) for c in (format_condition((a,)), format_condition((b,)), condition)]
    if all(conds):
        measured = pb.shifts_of(conds)
        out["measured"] = interaction_report(measured[0], measured[1], measured[2], genes=genes,
                                             names=(a, b))
    return out


def _interaction_genes(bundle: Bundle, n: int = 500) -> np.ndarray:
    """The genes GEARS fits interactions on: the highest control expression, among the genes
    expressed in control cells. A silent gene moves in no single, and a Theil-Sen fit over
    many such genes (79 % of the Norman slice's) returns slopes near 0 for a pair that is
    exactly the sum of its singles."""
    ctrl = bundle.pseudobulk.control_mean
    expressed = np.flatnonzero(ctrl > 0)
    order = expressed[np.argsort(-ctrl[expressed], kind="stable")]
    return order[: min(n, order.size)] if order.size else np.arange(ctrl.size)


def example_condition(model: Model | Bundle) -> str | None:
    """A perturbation to open on: held out (measured by the screen, never seen in training),
    the one of median held-out accuracy (``pearson_delta`` in ``metrics.csv``), so neither
    the model's best nor its worst. ``None`` when nothing was held out.

    Examples
    --------
    >>> import grape_core as gc
    >>> from grape_core.predict import example_condition
    >>> model = gc.load("assets/models/norman")
    >>> example_condition(model) in model.bundle.split.test
    True
    """
    bundle = as_model(model).bundle
    pb = bundle.pseudobulk
    held = sorted(c for c in bundle.split.test if c in pb and genes_of(c))
    if not held:
        return None
    metrics = bundle.metrics
    if {"model", "condition", "pearson_delta"} <= set(metrics.columns):
        rows = metrics[(metrics["model"] == "grape") & metrics["condition"].isin(held)]
        rows = rows.dropna(subset=["pearson_delta"]).sort_values(["pearson_delta", "condition"],
                                                                 kind="stable")
        if len(rows):
            return str(rows["condition"].iloc[(len(rows) - 1) // 2])
    return held[0]


# ----------------------------------------------------------------------------- evaluation
def evaluate(model: Model | Bundle, pb=None, *, part: str = "test",
             predicted: np.ndarray | None = None, cells=None) -> Report:
    """GRAPE (row ``grape``), every baseline and the data's replicate on the model's
    held-out conditions, with GEARS' and cell-eval's metrics.

    Parameters
    ----------
    model
        A loaded model.
    pb
        The pseudo-bulk of other data with the same measured genes (default: the model's
        own training data).
    part
        ``test`` or ``val``.
    predicted
        GRAPE's predicted expression of the model's own held-out conditions of ``part``
        (:func:`predict_conditions`, in the split's order) when the caller has it already.
    cells
        The screen's cells (the AnnData ``pb`` comes from; for the model's own data, the
        training file read by :func:`~grape_core.data.read.read_perturbseq`): cell-eval's
        DE metrics and the ``replicate`` row are computed from them. Without them, the
        replicate rows stored in the model at training time are used, when it has them, and
        cell-eval's DE metrics are left out (``Report.notes`` says so).

    Raises
    ------
    BundleError
        ``pb`` measures other genes than the model.
    """
    model = as_model(model)
    bundle = model.bundle
    pb = pb if pb is not None else bundle.pseudobulk
    bundle.check_genes(pb.genes)
    baselines = model.baselines() if pb is bundle.pseudobulk else None
    if predicted is not None and pb is not bundle.pseudobulk:
        raise ValueError("predicted: only for the model's own data")

    def grape(conditions: Sequence[str]) -> np.ndarray:
        if predicted is None:
            return predict_conditions(model, conditions)[0]
        if len(predicted) != len(conditions):
            raise ValueError(f"predicted: {len(predicted)} rows for {len(conditions)} held-out "
                             "conditions")
        return predicted

    report = evaluate_models(pb, bundle.split, {"grape": grape},
                             part=part, baselines=baselines or fit_baselines(
                                 pb, model.fitted_on, prior=bundle.prior_edges,
                                 genes=bundle.genes, features=bundle.fused), cells=cells)
    if cells is None and pb is bundle.pseudobulk and part == "test":
        _stored_replicate(bundle, report)
    report.extra["verdict"] = report.verdict("grape")
    return report


def _stored_replicate(bundle: Bundle, report: Report) -> None:
    """The ``replicate`` rows a model stored at training time (they depend on the data and
    the split only), into ``report`` when it has none."""
    from .evaluation.replicate import REFERENCE

    metrics = bundle.metrics
    if REFERENCE in report.tables or "model" not in metrics:
        return
    rows = metrics[metrics["model"] == REFERENCE].set_index("condition")
    rows = rows.loc[rows.index.intersection(report.test_conditions)]
    if not len(rows):
        return
    report.tables[REFERENCE] = rows.drop(columns=["model", "subgroup"], errors="ignore")
    report.notes[:] = [n for n in report.notes if not n.startswith("no replicate row")]
    report.notes.append("replicate row: stored in the model at training time (computed from "
                        "the training data's cells)")
    report.replicate = dict(bundle.manifest.metrics.extra.get("replicate", {})) \
        if bundle.manifest.metrics is not None else {}
