"""In-silico screen: which perturbation moves chosen genes the way the user wants?

Every single perturbation the model knows (each gene of its graph) is scored by the
predicted change of the target genes, or of a weighted signature:

.. math::
    \\text{effect}(P) = s \\cdot \\frac{\\sum_g w_g \\hat\\Delta^{P}_g}{\\sum_g |w_g|},
    \\qquad s = +1 \\text{ (up) or } -1 \\text{ (down)},

with the ensemble's spread of that score as its uncertainty and the off-target cost
:math:`\\sqrt{\\mathrm{mean}_{g \\notin targets} (\\hat\\Delta^{P}_g)^2}` (how much everything
else moves). With ``pairs``, the best singles are combined two by two and each pair is
scored by the model and by the additive expectation (sum of the two singles the pair is
built from: measured where the model composes it from a measured single, else predicted).

Most of a score is shared by every perturbation (the shared response), and a pair may hold
more of it: candidates are ranked by what is specific to them, ``vs_typical``, the effect
minus that of the median single (for a single) or of the median of a seeded random sample
of pairs (for a pair), so pairs are scored against pairs. ``members_agree`` counts the
ensemble members in which a candidate beats that member's own typical perturbation: a hit
that rests on one member says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd

from ..bundle import Bundle
from ..data.conditions import format_condition, genes_of, label
from ..errors import GrapeError, echo
from .loaded import LoadedModel, as_model
from .resolve import resolve_targets
from .results import ScreenResult
from .singles import screened_genes


def prepare_screen(model: LoadedModel | Bundle, targets: Sequence[str] | Mapping[str, float], *,
                   on_progress: Callable[[int, int], None] | None = None) -> None:
    """Predict, and keep on the model, what a screen of ``targets`` reads (:meth:`.SinglesStore.shifts`),
    with ``on_progress(done, total)`` meanwhile: nothing to do for a model that stores its
    singles, a pass over every single for a genome-scale model's first screen. The app runs
    it before :func:`screen`, to show that pass's progress."""
    model = as_model(model)
    bundle = model.bundle
    if bundle.singles is None:
        idx, _, _ = resolve_targets(bundle, targets)
        model.singles.shifts(screened_genes(bundle, idx), on_progress=on_progress)


def _score(shifts: np.ndarray, idx: np.ndarray, w: np.ndarray, sign: float) -> np.ndarray:
    """Signed weighted mean shift at the targets; ``shifts (..., n_measured)``."""
    return sign * (shifts[..., idx] * w).sum(-1)


def _off_target(shifts: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """RMS shift of the genes that are not targets; 0 when every gene is a target."""
    mask = np.ones(shifts.shape[-1], dtype=bool)
    mask[idx] = False
    if not mask.any():
        return np.zeros(shifts.shape[:-1])
    return np.sqrt((shifts[..., mask] ** 2).mean(-1))


def screen(
    model: LoadedModel | Bundle,
    targets: Sequence[str] | Mapping[str, float],
    *,
    direction: Literal["up", "down"] = "up",
    pairs: bool = False,
    top: int = 20,
    pair_candidates: int = 12,
    on_progress: Callable[[int, int], None] | None = None,
) -> ScreenResult:
    """Rank perturbations by how well they move the targets in ``direction``.

    Parameters
    ----------
    model
        A loaded model (:func:`~grape_core.serving.model.load`); its cache of every single's
        predicted shifts makes later screens quick.
    targets
        Gene symbols (equal weights) or a signature ``{gene: weight}`` (negative weights
        mean "move the other way").
    direction
        ``up`` or ``down``.
    pairs
        Also score all pairs among the ``pair_candidates`` best singles.
    top
        Rows to return (best first).
    on_progress
        ``on_progress(done, total)`` while the first screen of a model that stores no
        singles (genome scale) predicts them (:meth:`.SinglesStore.shifts`).

    Returns
    -------
    ScreenResult
        The ranking (``table``) with the targets, weights and typical effect.

    Examples
    --------
    >>> import grape_core as gc
    >>> model = gc.load("assets/models/norman")
    >>> hits = gc.screen(model, targets=["HBG2"], direction="up")
    >>> list(hits.table.columns[:3])
    ['rank', 'perturbation', 'kind']
    """
    model = as_model(model)
    bundle = model.bundle
    if direction not in ("up", "down"):
        raise GrapeError(f"direction must be 'up' or 'down', not {echo(direction)}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise GrapeError(f"top must be a whole number of rows, 1 or more, not {echo(top)}")
    idx, w, names = resolve_targets(bundle, targets)
    sign = 1.0 if direction == "up" else -1.0
    genes = screened_genes(bundle, idx)
    idx = np.searchsorted(genes, idx)  # target positions within the computed genes
    conditions, members = model.singles.shifts(genes, on_progress=on_progress)
    target_genes = set(names)
    keep = [i for i, c in enumerate(conditions) if genes_of(c)[0] not in target_genes]
    if not keep:
        raise GrapeError(f"every gene of model {bundle.name!r} is a target, so no perturbation is "
                         "left to rank; leave some genes out of the targets")
    conditions = [conditions[i] for i in keep]
    members = members[:, keep]
    notes = []
    if len(idx) == len(genes):
        notes.append("every measured gene is a target: no other gene is left to measure the "
                     "off-target cost, so off_target is 0")
    scores = _score(members, idx, w, sign)  # (n_members, n_singles)
    mean_shift = members.mean(0)
    frame = _frame(bundle, conditions, scores, _off_target(mean_shift, idx), genes[idx], w, sign)
    frame["kind"] = "single"
    frame["additive_effect"] = np.nan
    typical = float(np.median(scores.mean(0)))
    frame["vs_typical"] = frame["effect"] - typical
    frame["members_agree"] = _members_agree(scores, scores)
    typical_pair = None
    if pairs and len(conditions) > 1:
        best = np.argsort(-scores.mean(0), kind="stable")[:pair_candidates]
        combos = list(combinations(best.tolist(), 2))
        pair_conds = [format_condition((genes_of(conditions[i])[0], genes_of(conditions[j])[0]))
                      for i, j in combos]
        # a seeded random sample of pairs, scored the same way: what a typical pair does
        sample = _random_pairs(len(conditions), TYPICAL_PAIRS, exclude=set(combos))
        sample_conds = [format_condition((genes_of(conditions[i])[0], genes_of(conditions[j])[0]))
                        for i, j in sample]
        scored = model.member_shifts(pair_conds + sample_conds, outputs=genes)
        pair_members, sample_members = scored[:, :len(pair_conds)], scored[:, len(pair_conds):]
        pair_scores = _score(pair_members, idx, w, sign)
        sample_scores = _score(sample_members, idx, w, sign)
        pf = _frame(bundle, pair_conds, pair_scores, _off_target(pair_members.mean(0), idx),
                    genes[idx], w, sign)
        pf["kind"] = "pair"
        built, _ = model.single_shifts_composed([genes_of(c)[0] for c in conditions], mean_shift, genes)
        additive = np.array([built[i] + built[j] for i, j in combos])
        pf["additive_effect"] = _score(additive, idx, w, sign)
        reference = sample_scores if sample else pair_scores  # too few genes for a sample
        typical_pair = float(np.median(reference.mean(0)))
        pf["vs_typical"] = pf["effect"] - typical_pair
        pf["members_agree"] = _members_agree(pair_scores, reference)
        frame = pd.concat([frame, pf], ignore_index=True)
    notes += _direction_notes(frame, names, direction, typical)
    frame = frame.sort_values(["vs_typical", "effect"], ascending=False,
                              kind="stable").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    leaders = frame.groupby("kind", sort=False).head(1).reset_index(drop=True)
    frame = frame.head(top)
    frame = frame[["rank", "perturbation", "kind", "genes", "biotype", "effect", "effect_std",
                   "vs_typical", "members_agree", "off_target", "additive_effect", "measured",
                   "measured_effect"]]
    notes += _agreement_notes(frame, scores.shape[0])
    perturbed = tuple(genes_of(c) for c in frame["perturbation"])
    coding = bundle.table["is_coding"].astype(bool)
    return ScreenResult(table=frame, model=bundle.name, targets=tuple(names),
                        weights=tuple(float(x) for x in w), direction=direction,
                        typical_effect=typical, perturbed=perturbed,
                        all_coding=np.array([all(bool(coding.get(g, True)) for g in p)
                                             for p in perturbed], dtype=bool),
                        notes=tuple(notes), typical_pair_effect=typical_pair,
                        n_members=int(scores.shape[0]), leaders=leaders[frame.columns])


TYPICAL_PAIRS = 48
"""Random pairs (seeded) scored to tell what a typical pair does."""


def _random_pairs(n: int, k: int, *, exclude: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """Up to ``k`` distinct pairs ``(i, j)``, ``i < j < n``, not in ``exclude``, drawn with a
    fixed seed (the same screen gives the same typical pair)."""
    rng = np.random.default_rng(0)
    out: list[tuple[int, int]] = []
    seen = set(exclude)
    total = n * (n - 1) // 2
    for _ in range(20 * k):
        if len(out) >= k or len(seen) >= total:
            break
        i, j = sorted(rng.choice(n, 2, replace=False).tolist())
        if (i, j) not in seen:
            seen.add((i, j))
            out.append((i, j))
    return out


def _members_agree(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per candidate: the members ``(n_members, n_candidates)`` in which its score beats
    that member's median score over ``reference`` ``(n_members, n_reference)``."""
    typical = np.median(reference, axis=1, keepdims=True)
    return (scores > typical).sum(0).astype(np.int64)


def _direction_notes(frame: pd.DataFrame, targets: Sequence[str], direction: str,
                     typical: float) -> list[str]:
    """A plain sentence when no candidate moves the targets the asked way at all."""
    if not len(frame) or float(frame["effect"].max()) > 0:
        return []
    verb, other = ("raise", "lowers") if direction == "up" else ("lower", "raises")
    shown = ", ".join(targets[:5]) + (" ..." if len(targets) > 5 else "")
    return [f"No perturbation is predicted to {verb} {shown}: every candidate {other} "
            f"{'it' if len(targets) == 1 else 'them'} or leaves {'it' if len(targets) == 1 else 'them'} "
            f"unchanged (a typical perturbation scores {typical:+.3f}, the best "
            f"{float(frame['effect'].max()):+.3f}). The ranking lists those that move it the "
            "wrong way least; none is a hit."]


def _agreement_notes(frame: pd.DataFrame, n_members: int) -> list[str]:
    """A sentence when top candidates beat a typical perturbation in one member only."""
    if n_members < 2:
        return []
    alone = frame.head(5)
    alone = alone[alone["members_agree"] <= 1]
    if not len(alone):
        return []
    names = ", ".join(alone["genes"].astype(str).tolist())
    return [f"{names} {'ranks' if len(alone) == 1 else 'rank'} above a typical perturbation in "
            f"at most one of the {n_members} ensemble members: the hit rests on one member, "
            "not on the ensemble (see members_agree)."]


def _frame(bundle: Bundle, conditions: list[str], scores: np.ndarray, off: np.ndarray,
           idx: np.ndarray, w: np.ndarray, sign: float) -> pd.DataFrame:
    pb = bundle.pseudobulk
    biotype = bundle.table["biotype"].astype(str)
    measured = [pb.find(c) for c in conditions]
    found = [m for m in measured if m]
    effect = dict(zip(found, _score(pb.shifts_of(found), idx, w, sign).tolist())) if found else {}
    measured_effect = [effect[m] if m else np.nan for m in measured]
    return pd.DataFrame({
        "perturbation": conditions,
        "genes": [label(genes_of(c)) for c in conditions],
        "biotype": [" + ".join(biotype.get(g, "unknown") for g in genes_of(c)) for c in conditions],
        "effect": scores.mean(0),
        "effect_std": scores.std(0, ddof=1) if scores.shape[0] > 1 else np.zeros(scores.shape[1]),
        "off_target": off,
        "measured": [m is not None for m in measured],
        "measured_effect": measured_effect,
    })
