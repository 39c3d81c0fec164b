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

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .bundle import SINGLES_FLOAT16_ABOVE, SINGLES_MAX_VALUES, Bundle
from .data.conditions import format_condition, genes_of, label
from .errors import GrapeError, echo
from .io import read_text_file
from .predict import (Model, as_model, baseline_predictions, non_finite_error, predict_conditions,
                      resolve_gene)


def read_signature(path: str | Path) -> dict[str, float]:
    """A gene signature file: ``gene<TAB or comma>weight`` per line (weight optional, 1).

    Raises
    ------
    GrapeError
        Not found, a folder, not text (a binary file), or what :func:`parse_signature`
        refuses.
    """
    text = read_text_file(path, what="signature file",
                          fix="give a text file with one gene and weight per line")
    return parse_signature(text, source=str(path))


def parse_signature(text: str, *, source: str = "the pasted signature") -> dict[str, float]:
    """A gene signature given as text, one ``gene<TAB, comma or space>weight`` per line
    (weight optional, 1; ``#`` comments and a ``gene weight`` header skipped). With a tab or
    a comma on the line, a gene symbol may hold spaces.

    Raises
    ------
    GrapeError
        A weight that is not a finite, non-zero number, a gene listed twice (also in
        another case: ``HSPA5`` and ``hspa5``), naming ``source`` and the line; or no gene
        at all.
    """
    path = source
    out: dict[str, float] = {}
    seen: dict[str, tuple[int, str]] = {}  # case-folded gene -> (line, as written)
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "\t" in line or "," in line:  # a symbol may hold spaces ("my gene<TAB>1")
            parts = [p.strip() for p in re.split(r"[\t,]", line) if p.strip()]
        else:
            parts = line.split()
        if n == 1 and len(parts) == 2 and parts[1].lower() in {"weight", "w"}:
            continue  # header
        gene = parts[0]
        try:
            weight = float(parts[1]) if len(parts) > 1 else 1.0
        except ValueError as exc:
            raise GrapeError(f"{path}, line {n}: weight {echo(parts[1])} is not a number") from exc
        if not np.isfinite(weight):
            raise GrapeError(f"{path}, line {n}: weight {echo(parts[1])} of {echo(gene)} is not a "
                             "finite number; give a number such as 1 or -0.5")
        if weight == 0:
            raise GrapeError(f"{path}, line {n}: weight of {echo(gene)} is 0; leave the gene out "
                             "or give it a non-zero weight")
        folded = gene.lower()
        if folded in seen:
            first, written = seen[folded]
            again = "again" if written == gene else f"as {echo(written)} on line {first} too"
            raise GrapeError(f"{path}, line {n}: {echo(gene)} is listed {again}"
                             f"{'' if written != gene else f' (first on line {first})'}; give each "
                             "gene once")
        seen[folded] = (n, gene)
        out[gene] = weight
    if not out:
        raise GrapeError(f"signature {path} lists no genes")
    return out


def _targets(bundle: Bundle, targets: Sequence[str] | Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if isinstance(targets, str):
        targets = [targets]
    weights = dict(targets) if isinstance(targets, Mapping) else {t: 1.0 for t in targets}
    if not weights:
        raise GrapeError("choose at least one target gene")
    position = {g: i for i, g in enumerate(bundle.measured)}
    idx, w, names = [], [], []
    given: dict[str, str] = {}  # model symbol -> as given
    for gene, weight in weights.items():
        symbol = resolve_gene(bundle, gene)
        if symbol not in position:
            raise GrapeError(f"{symbol} is in the graph but not measured by model {bundle.name!r}: "
                             "a target must be a measured gene")
        if symbol in given:
            raise GrapeError(f"{echo(given[symbol])} and {echo(gene)} are the same gene ({symbol}) "
                             f"of model {bundle.name!r}; give each target gene once")
        try:
            value = float(weight)
        except (TypeError, ValueError) as exc:
            raise GrapeError(f"the weight of target {symbol} is {echo(weight)}, not a "
                             "number") from exc
        if not np.isfinite(value):
            raise GrapeError(f"the weight of target {symbol} is {value}, not a finite number; give "
                             "a number such as 1 or -0.5")
        given[symbol] = gene
        idx.append(position[symbol])
        w.append(value)
        names.append(symbol)
    w = np.asarray(w, dtype=np.float64)
    if not np.any(w):
        raise GrapeError("all signature weights are zero; give at least one non-zero weight")
    w = w / np.abs(w).max()  # first to the largest: huge or tiny weights stay finite
    return np.asarray(idx), w / np.abs(w).sum(), names


OFF_TARGET_GENES = 256
"""For models of more than :data:`EXACT_OFF_TARGET_MAX` measured genes, the off-target cost
is estimated on a fixed random sample of this many genes (the targets are always exact).
For roughly normal shifts the RMS of 256 genes is off by about 1/sqrt(2 * 256), 4 per cent,
at a fraction of the cost of all genes."""
EXACT_OFF_TARGET_MAX = 1000

SCREEN_MEMORY_ENV = "GRAPE_SCREEN_MEMORY_GB"
"""GB that the copy of every single's shift at every measured gene (float16) may take, for a
genome-scale model (one that stores no singles): when it fits, the first screen makes it and
later screens are lookups; else each screen computes, and keeps, the genes it reads (float32,
so near-ties may rank in another order than with the float16 copy)."""


def all_member_shifts(model: Model | Bundle, conditions: Sequence[str], *,
                      outputs: np.ndarray | None = None, chunk: int = 256,
                      dtype: type = np.float32,
                      on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Predicted shifts of every member ``(n_members, n_perts, n_outputs)`` for the measured
    positions ``outputs`` (default: all measured genes), computed on the model's device and
    converted to ``dtype`` (``np.float32`` or ``np.float16``) there, a chunk at a time: no
    float32 copy of a float16 result is ever whole in memory. ``on_progress(done, total)``
    after each chunk of each member."""
    import torch

    from .model.inputs import perturbation_tensor, predict_shifts

    model = as_model(model)
    bundle = model.bundle
    members, graph = model.members_and_graph()
    width = len(bundle.measured) if outputs is None else len(outputs)
    out_t = None if outputs is None else torch.as_tensor(outputs, dtype=torch.long,
                                                         device=graph.device)
    torch_dtype = {np.dtype(np.float32): torch.float32,
                   np.dtype(np.float16): torch.float16}.get(np.dtype(dtype))
    if torch_dtype is None:
        raise ValueError(f"dtype {np.dtype(dtype)} is not float32 or float16")
    out = np.empty((len(members), len(conditions), width), dtype=dtype)
    total, done = len(members) * -(-len(conditions) // chunk), 0
    for start in range(0, len(conditions), chunk):
        perts = perturbation_tensor(list(conditions[start:start + chunk]), bundle.node_index)
        with torch.inference_mode():
            for m, member in enumerate(members):
                shifts = predict_shifts(member, graph, perts, batch_size=chunk, outputs=out_t,
                                        dtype=torch_dtype)
                # after the conversion: a float16 overflow is caught as well
                if not bool(torch.isfinite(shifts).all()):
                    raise non_finite_error(bundle)
                out[m, start:start + chunk] = shifts.numpy()
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
    return out


def screened_genes(bundle: Bundle, idx: np.ndarray) -> np.ndarray:
    """Measured positions a screen reads: all genes, or for large models the targets plus a
    fixed random sample of :data:`OFF_TARGET_GENES` genes for the off-target cost."""
    n = len(bundle.measured)
    if n <= max(EXACT_OFF_TARGET_MAX, OFF_TARGET_GENES + len(idx)):
        return np.arange(n)
    sample = np.random.default_rng(0).choice(n, OFF_TARGET_GENES, replace=False)
    return np.union1d(idx, sample)


def singles_size(bundle: Bundle) -> int:
    """Values in every member's shift of every single at every measured gene."""
    return len(bundle.members) * len(bundle.genes) * len(bundle.measured)


def screen_memory() -> float:
    """Bytes a model that stores no singles (genome scale) may keep in memory for screens:
    ``GRAPE_SCREEN_MEMORY_GB`` GB (default 1).

    Raises
    ------
    GrapeError
        The setting is not a number >= 0.
    """
    from .settings import settings

    return settings.screen_memory


def stored_singles(model: Model | Bundle) -> np.ndarray | None:
    """What a bundle stores for screens (:attr:`Bundle.singles`): every member's shift of
    every single perturbation, each node on its own, at every measured gene,
    ``(n_members, n_nodes, n_measured)``, float16 above :data:`SINGLES_FLOAT16_ABOVE` values
    (as saved, so a model screens the same before and after a reload); ``None`` above
    :data:`SINGLES_MAX_VALUES` values (genome scale), where the first screen computes them
    (:func:`single_shifts`)."""
    model = as_model(model)
    bundle = model.bundle
    size = singles_size(bundle)
    if size > SINGLES_MAX_VALUES:
        return None
    return all_member_shifts(model, [format_condition((g,)) for g in bundle.genes],
                             dtype=np.float16 if size > SINGLES_FLOAT16_ABOVE else np.float32)


def single_shifts(model: Model | Bundle, genes: np.ndarray | None = None, *,
                  on_progress: Callable[[int, int], None] | None = None
                  ) -> tuple[list[str], np.ndarray]:
    """Every single perturbation of the model (each node on its own) and its members'
    shifts ``(n_members, n_singles, len(genes))`` at the measured positions ``genes``
    (default: those every screen reads, :func:`screened_genes` without targets).

    A lookup in the bundle's stored predictions (:attr:`Bundle.singles`, computed at training
    time): the first screen of a freshly loaded model costs no model pass. Genome-scale
    models store none: the first screen computes them (``on_progress(done, total)`` and
    :attr:`Model.screen_pass <grape_core.predict.Model.screen_pass>` meanwhile) and keeps
    them on the :class:`~grape_core.predict.Model`: every measured gene, as
    float16, when that fits in :func:`screen_memory` (later screens are lookups), else only
    the columns read (:attr:`~grape_core.predict.Model.single_columns`).
    """
    model = as_model(model)
    bundle = model.bundle
    if genes is None:
        genes = screened_genes(bundle, np.array([], dtype=np.int64))
    conditions = [format_condition((g,)) for g in bundle.genes]
    if bundle.singles is not None:
        return conditions, np.asarray(bundle.singles[:, :, genes], dtype=np.float32)

    def passes(done: int, total: int) -> None:
        model.screen_pass = (done, total)
        if on_progress is not None:
            on_progress(done, total)

    with model.single_columns_lock:
        try:
            if model.singles is None and 2 * singles_size(bundle) <= screen_memory():
                model.singles = all_member_shifts(model, conditions, dtype=np.float16,
                                                  on_progress=passes)
            if model.singles is not None:
                return conditions, np.asarray(model.singles[:, :, genes], dtype=np.float32)
            columns = model.single_columns
            missing = np.array([g for g in genes.tolist() if g not in columns], dtype=np.int64)
            if len(missing):
                computed = all_member_shifts(model, conditions, outputs=missing,
                                             on_progress=passes)
                for j, g in enumerate(missing.tolist()):
                    columns[g] = computed[:, :, j]
            return conditions, np.stack([columns[g] for g in genes.tolist()], axis=-1)
        finally:
            model.screen_pass = None


def prepare_screen(model: Model | Bundle, targets: Sequence[str] | Mapping[str, float], *,
                   on_progress: Callable[[int, int], None] | None = None) -> None:
    """Predict, and keep on the model, what a screen of ``targets`` reads (:func:`single_shifts`),
    with ``on_progress(done, total)`` meanwhile: nothing to do for a model that stores its
    singles, a pass over every single for a genome-scale model's first screen. The app runs
    it before :func:`screen`, to show that pass's progress."""
    model = as_model(model)
    bundle = model.bundle
    if bundle.singles is None:
        idx, _, _ = _targets(bundle, targets)
        single_shifts(model, screened_genes(bundle, idx), on_progress=on_progress)


def _composing_singles(model: Model, conditions: Sequence[str], predicted: np.ndarray,
                       genes: np.ndarray) -> np.ndarray:
    """The singles a pair is built from, at the measured positions ``genes``: a gene's
    measured training single where the model composes pairs from it
    (:meth:`~grape_core.predict.Model.composing_singles`), else its predicted one
    (``predicted``, ``(len(conditions), len(genes))``)."""
    known = model.composing_singles()
    out = np.array(predicted, dtype=np.float64, copy=True)
    rows = [(i, known[genes_of(c)[0]]) for i, c in enumerate(conditions) if genes_of(c)[0] in known]
    if rows:
        out[[i for i, _ in rows]] = model.bundle.pseudobulk.shifts_of([c for _, c in rows])[:, genes]
    return out


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
        """The typical effect a ``single`` or ``pair`` candidate is compared with."""
        if kind == "pair" and self.typical_pair_effect is not None:
            return self.typical_pair_effect
        return self.typical_effect

    def __len__(self) -> int:
        return len(self.table)

    def to_dict(self) -> dict:
        return {"model": self.model, "targets": list(self.targets), "direction": self.direction,
                "typical_effect": self.typical_effect,
                "typical_pair_effect": self.typical_pair_effect, "n_members": self.n_members,
                "notes": list(self.notes),
                "candidates": self.table.to_dict(orient="records")}


def screen(
    model: Model | Bundle,
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
        A loaded model (:func:`~grape_core.predict.load`); its cache of every single's
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
        singles (genome scale) predicts them (:func:`single_shifts`).

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
    idx, w, names = _targets(bundle, targets)
    sign = 1.0 if direction == "up" else -1.0
    genes = screened_genes(bundle, idx)
    idx = np.searchsorted(genes, idx)  # target positions within the computed genes
    conditions, members = single_shifts(model, genes, on_progress=on_progress)
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
        scored = all_member_shifts(model, pair_conds + sample_conds, outputs=genes)
        pair_members, sample_members = scored[:, :len(pair_conds)], scored[:, len(pair_conds):]
        pair_scores = _score(pair_members, idx, w, sign)
        sample_scores = _score(sample_members, idx, w, sign)
        pf = _frame(bundle, pair_conds, pair_scores, _off_target(pair_members.mean(0), idx),
                    genes[idx], w, sign)
        pf["kind"] = "pair"
        built = _composing_singles(model, conditions, mean_shift, genes)
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


def screen_check(model: Model | Bundle, *, n_targets: int = 20, part: str = "test") -> pd.DataFrame:
    """Does the screen rank held-out perturbations the way the measurements do?

    For each of the ``n_targets`` genes that vary most across held-out conditions, the
    Spearman correlation between predicted and measured shift of that gene across the
    held-out conditions; averaged per model (GRAPE and every baseline).

    Returns
    -------
    DataFrame indexed by model: ``spearman`` (mean over targets), ``n_targets``,
    ``n_conditions``.
    """
    from scipy.stats import spearmanr

    model = as_model(model)
    bundle = model.bundle
    pb = bundle.pseudobulk
    held = [c for c in getattr(bundle.split, part) if c in pb]
    if len(held) < 3:
        raise GrapeError(f"the screen check needs at least 3 measured {part} conditions; "
                         f"model {bundle.name!r} has {len(held)}")
    truth = pb.shifts_of(held)
    targets = np.argsort(-truth.std(0), kind="stable")[:n_targets]
    predictions = {"grape": predict_conditions(model, held)[0]}
    predictions.update(baseline_predictions(model, held))
    rows = {}
    for name, pred in predictions.items():
        shift = pred - pb.control_mean
        ok = ~np.isnan(shift).any(1)
        if ok.sum() < 3:
            continue
        rhos = []
        for g in targets:
            p, t = shift[ok, g], truth[ok, g]
            rho = 0.0 if np.ptp(p) == 0 or np.ptp(t) == 0 else float(spearmanr(p, t).statistic)
            rhos.append(rho)
        rows[name] = {"spearman": float(np.mean(rhos)), "n_targets": len(targets),
                      "n_conditions": int(ok.sum())}
    return pd.DataFrame.from_dict(rows, orient="index")
