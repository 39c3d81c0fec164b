"""Bundle + perturbation -> predicted expression. What the app and the command line call."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from . import keys
from .baselines import fit_baselines
from .bundle import Bundle
from .conditions import format_condition, parse_condition
from .errors import ConditionError, UnknownGeneError
from .train import perturbation_tensor, predict_shifts


def resolve_gene(bundle: Bundle, symbol: str) -> str:
    """The model's symbol for ``symbol`` (exact, case-insensitive, or a known alias).

    Raises
    ------
    UnknownGeneError
        With close matches as suggestions; says so when the gene exists in the annotation
        but has no node in this model.
    """
    text = symbol.strip()
    if text in bundle.node_index:
        return text
    lower = {g.lower(): g for g in bundle.genes}
    if text.lower() in lower:
        return lower[text.lower()]
    if "resolved_symbol" in bundle.table:  # current official symbol given for an old one
        hits = bundle.table.index[bundle.table["resolved_symbol"].astype(str).str.lower() == text.lower()]
        if len(hits) == 1:
            return str(hits[0])
    suggestions = tuple(difflib.get_close_matches(text.upper(), bundle.genes, n=5, cutoff=0.6))
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    if _in_annotation(text):
        raise UnknownGeneError(
            f"{text} is a known human gene but not in model {bundle.name!r} (its graph holds "
            f"the {len(bundle.genes)} genes of its training data){hint}",
            gene=text, suggestions=suggestions,
        )
    raise UnknownGeneError(f"unknown gene {text!r} for model {bundle.name!r}{hint}",
                           gene=text, suggestions=suggestions)


def _in_annotation(symbol: str) -> bool:
    try:
        from .genes import load_annotation

        ann = load_annotation()
        return symbol in ann.by_symbol or symbol.upper() in ann.by_upper or symbol in ann.by_alias
    except Exception:  # noqa: BLE001 - the annotation is optional here
        return False


def resolve_perturbation(bundle: Bundle, text: str) -> str:
    """Canonical condition (``A+ctrl`` or ``A+B``) with the model's gene symbols.

    A pair that was measured in either order is returned in the measured order.
    """
    genes = parse_condition(text)
    if not genes:
        raise ConditionError("choose at least one gene to perturb (control is the baseline)")
    genes = tuple(resolve_gene(bundle, g) for g in genes)
    if len(genes) == 2 and genes[0] == genes[1]:
        raise ConditionError(f"{text!r} names the same gene twice")
    condition = format_condition(genes)
    measured = bundle.pseudobulk.find(condition)
    return measured or condition


def predict_conditions(bundle: Bundle, conditions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and standard deviation of predicted expression.

    Returns
    -------
    mean, std
        ``(n_conds, n_measured)`` predicted mean log-expression and the per-gene standard
        deviation across ensemble members.
    """
    if not len(conditions):
        n = len(bundle.measured)
        return np.zeros((0, n)), np.zeros((0, n))
    perts = perturbation_tensor(list(conditions), bundle.node_index)
    with torch.inference_mode():
        shifts = torch.stack([predict_shifts(m, bundle.graph, perts) for m in bundle.members]).numpy()
    expression = bundle.pseudobulk.control_mean[None, None, :] + shifts
    std = expression.std(axis=0, ddof=1) if len(bundle.members) > 1 else np.zeros_like(expression[0])
    return expression.mean(axis=0), std


def baseline_predictions(bundle: Bundle, conditions: Sequence[str]) -> dict[str, np.ndarray]:
    """Every baseline fitted on the bundle's training conditions, ``{name: (n, n_measured)}``."""
    if "baselines" not in bundle._cache:
        bundle._cache["baselines"] = fit_baselines(bundle.pseudobulk, bundle.split.train)
    return {name: b.predict(list(conditions)) for name, b in bundle._cache["baselines"].items()}


def predict(bundle: Bundle, perturbation: str, *, top: int | None = None) -> pd.DataFrame:
    """Predicted response of every measured gene to one gene or a pair.

    Parameters
    ----------
    bundle
        A loaded model (:meth:`Bundle.load`).
    perturbation
        ``"A"``, ``"A+B"`` (also ``A+ctrl``, any case, known aliases).
    top
        Keep the ``top`` genes with the largest predicted |shift|.

    Returns
    -------
    DataFrame, one row per measured gene, sorted by |shift|: ``gene``, ``biotype``,
    ``is_coding``, ``control``, ``predicted``, ``shift``, ``std``; when the screen measured
    this condition also ``measured`` and ``measured_shift``. ``attrs`` holds ``condition``,
    ``part`` (train/val/test/unmeasured), ``warnings`` and, for pairs, ``interaction``.
    """
    condition = resolve_perturbation(bundle, perturbation)
    genes = parse_condition(condition)
    mean, std = predict_conditions(bundle, [condition])
    pb = bundle.pseudobulk
    table = bundle.table.loc[list(pb.genes)]
    frame = pd.DataFrame({
        "gene": list(pb.genes),
        "biotype": table["biotype"].to_numpy(),
        "is_coding": table["is_coding"].astype(bool).to_numpy(),
        "control": pb.control_mean.astype(float),
        "predicted": mean[0],
        "shift": mean[0] - pb.control_mean,
        "std": std[0],
    })
    if condition in pb:
        measured = pb.means[pb.index(condition)].astype(float)
        frame["measured"] = measured
        frame["measured_shift"] = measured - pb.control_mean
    warnings = []
    unseen = [g for g in genes if g not in bundle.trained_genes]
    if len(genes) == 2 and len(unseen) == 2:
        warnings.append(f"neither {genes[0]} nor {genes[1]} was perturbed in training: "
                        "this pair is an extrapolation (GEARS' combo_seen0)")
    elif unseen:
        warnings.append(f"{', '.join(unseen)} was not perturbed in training: the prediction "
                        "comes from its gene knowledge and graph neighbours")
    order = np.argsort(-np.abs(frame["shift"].to_numpy()), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    if top is not None:
        frame = frame.head(top)
    frame.attrs.update({
        "condition": condition,
        "part": bundle.split.part_of(condition) or ("measured" if condition in pb else "unmeasured"),
        "warnings": warnings,
        "model": bundle.name,
    })
    if len(genes) == 2:
        frame.attrs["interaction"] = pair_interaction(bundle, condition)
    return frame


def pair_interaction(bundle: Bundle, condition: str) -> dict:
    """Genetic-interaction analysis of a pair on predicted shifts (and measured ones when
    the screen has the pair and both singles)."""
    from .interactions import interaction_report

    a, b = parse_condition(condition)
    singles = [format_condition((a,)), format_condition((b,))]
    mean, _ = predict_conditions(bundle, [*singles, condition])
    ctrl = bundle.pseudobulk.control_mean
    genes = _interaction_genes(bundle)
    out = {"predicted": interaction_report(mean[0] - ctrl, mean[1] - ctrl, mean[2] - ctrl, genes=genes,
                                           names=(a, b))}
    pb = bundle.pseudobulk
    conds = [pb.find(c) for c in (*singles, condition)]
    if all(conds):
        shifts = pb.shifts[pb.rows(conds)]
        out["measured"] = interaction_report(shifts[0], shifts[1], shifts[2], genes=genes, names=(a, b))
    return out


def _interaction_genes(bundle: Bundle, n: int = 500) -> np.ndarray:
    """Genes with the highest control expression (GEARS fits interactions on these)."""
    ctrl = bundle.pseudobulk.control_mean
    return np.argsort(-ctrl, kind="stable")[: min(n, ctrl.size)]


def measured_conditions(bundle: Bundle) -> list[str]:
    return [c for c in bundle.pseudobulk.conditions if c != keys.CTRL]
