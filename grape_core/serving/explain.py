r"""Why does perturbing X move Y? The predicted shift of one gene split, exactly, into the
shared response, the perturbed genes' own change and the paths through the learned network.

The model (:mod:`grape_core.nn.grape`) predicts, for each member,

.. math::
    \Delta_Y = \underbrace{\alpha(P)\,\bar\Delta_Y}_{\text{shared response}}
    + f_Y\,\delta_Y + c_Y, \qquad
    \delta^{(l+1)} = x_0 + W\psi(\delta^{(l)}), \; \delta^{(0)} = x_0,

with :math:`x_0` the perturbed genes' own change, :math:`\psi` the per-relation message
function, :math:`f_Y` the per-gene output factor (1 unless ``gene_correction``) and
:math:`c_Y` what the composition of a pair adds (its singles as measured in training in
place of the model's own: the composed prediction minus its uncomposed decoding) and the
floor at zero expression (the prediction less its unfloored value), each its own part.

**Method (exact).** At the states :math:`\delta^{(l)}` the model actually passes through,
each source :math:`u` sends :math:`\psi_r(\delta^{(l)}_u) = g^{(l)}_{u,r}\,\delta^{(l)}_u`
with the effective gain :math:`g = \psi(x)/x` (:math:`\psi'(0)` where :math:`x = 0`, where it
multiplies nothing). With these gains a step is linear,
:math:`\delta^{(l+1)} = x_0 + W^{(l)}\delta^{(l)}`, so after :math:`L` steps

.. math::
    \delta^{(L)}_Y = x_{0,Y} + \sum_{k=1}^{L}\;\sum_{s \to u_1 \to \dots \to Y}
        x_{0,s} \prod_{i=0}^{k-1} w_{u_i u_{i+1}}\, g^{(L-k+i)}_{u_i}

exactly: a sum over every walk of length :math:`\le L` from a perturbed gene :math:`s` to
:math:`Y` of its edge weights times the gains at the step each edge is used. Every walk is
enumerated (backwards from :math:`Y`, keeping only genes a perturbed gene reaches in the
steps left), its contribution is :math:`f_Y` times that product, and the listed paths plus
the others add up to :math:`f_Y(\delta_Y - x_{0,Y})` to float64 precision. Everything is
computed per ensemble member on a float64 copy of it, through the model's own functions
(``graph``, ``forward``, ``decode``, ``amplitude_of``, ``propagation.step`` and
``propagation.messages.sent``; :math:`x_0` and :math:`\delta` are read from the model's own
propagation call with a forward hook), so the decomposition follows the model when it
changes; the parts are checked against the member's own prediction. The ensemble's parts
are the members' means, and each path's member agreement is reported beside it.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..data.conditions import genes_of, label
from ..errors import GrapeError

if TYPE_CHECKING:
    from ..bundle import Bundle
    from .loaded import LoadedModel

MAX_WALKS = 2_000_000
"""Partial walks one length may hold before the enumeration stops; what it did not reach is
reported as a part of its own (never hidden)."""

NETWORK_CARRIES_LITTLE = 0.05
"""Below this share of the shift, the paths' part is called negligible in words."""

PART_LABELS = {
    "shared": "shared response (every perturbation's average shift, scaled)",
    "own": "the perturbed gene's own change (the knock-down itself)",
    "listed": "the paths listed",
    "other": "other paths through the network",
    "unenumerated": "paths not enumerated (too many walks)",
    "composition": "pair composition (the singles as measured in training, in place of the "
                   "model's own)",
    "floor": "floor at zero expression (no prediction takes away more than the control "
             "cells have)",
}
"""What each part of :attr:`Explanation.parts` is, for people."""


@dataclass(frozen=True)
class Explanation:
    """The predicted shift of ``gene`` after ``condition``, split into parts that add up to
    it exactly (:func:`explain`)."""

    model: str
    condition: str
    perturbed: tuple[str, ...]
    gene: str
    shift: float
    """The ensemble's mean predicted shift of ``gene`` (the sum of :attr:`parts`)."""
    member_shift: tuple[float, ...]
    """Each member's predicted shift."""
    parts: pd.DataFrame
    """``part`` (a key of :data:`PART_LABELS`), ``label``, ``value`` (ensemble mean),
    ``share`` (of :attr:`shift`), ``value_member_1`` ... per member. The values add up to
    :attr:`shift`, the members' to :attr:`member_shift`."""
    paths: pd.DataFrame
    """The strongest walks from a perturbed gene to ``gene``, largest ``|contribution|``
    first: ``rank``, ``path`` (``A → B → Y``), ``genes`` (tuple), ``length``,
    ``contribution`` (ensemble mean), ``share`` (of :attr:`shift`; negative: the path
    pushes the other way), ``sign_agreement`` (share of members with the majority sign),
    ``members_same_sign`` (members whose contribution has the mean's sign), ``spread``,
    ``contribution_member_1`` ...; 0 for a member without one of the path's edges."""
    edges: pd.DataFrame
    """The edges of the listed paths with the learned network's columns (weight, sign,
    status, agreement...: :func:`grape_core.serving.network.learned_network`, with ``weak=True``:
    a path may use a learned-only edge below the cut)."""
    n_walks: int
    """Walks found from the perturbed gene(s) to ``gene`` (any member)."""
    steps: int
    """Propagation steps: the longest walk."""
    n_members: int
    method: str = field(default=__doc__ or "", repr=False)

    @property
    def member_columns(self) -> list[str]:
        return [f"contribution_member_{i + 1}" for i in range(self.n_members)]

    def part(self, key: str) -> float:
        """The ensemble value of one part (0 when absent)."""
        rows = self.parts[self.parts["part"] == key]
        return float(rows["value"].iloc[0]) if len(rows) else 0.0

    def sentences(self) -> list[str]:
        """What drives the prediction, in words, the largest part first."""
        x, y = label(self.perturbed), self.gene
        out = [f"Perturbing {x} is predicted to shift {y} by {signed(self.shift)}."]
        parts = self.parts[self.parts["value"].abs() > 0]
        if len(parts):
            order = parts.reindex(parts["value"].abs().sort_values(ascending=False).index)
            shown = "; ".join(f"{row.label}: {signed(row.value)}" for row in order.itertuples())
            out.append(f"It adds up from {shown}.")
        network = self.part("listed") + self.part("other") + self.part("unenumerated")
        if self.shift != 0 and abs(network) < NETWORK_CARRIES_LITTLE * abs(self.shift):
            carried = 100 * abs(network / self.shift)
            amount = f"only {carried:.1f} %" if carried >= 0.1 else "less than 0.1 %"
            out.append(f"The learned network carries {amount} of this shift: the "
                       "prediction rests on the other parts, not on a regulatory path, however "
                       "the paths below read.")
        if len(self.paths):
            best = self.paths.iloc[0]
            agree = (f", in {int(best['members_same_sign'])} of {self.n_members} members with "
                     "this sign" if self.n_members > 1 else "")
            out.append(f"The strongest path, {best['path']}, carries {signed(best['contribution'])}"
                       f"{agree}; {len(self.paths)} of {self.n_walks:,} paths are listed.")
        elif self.steps and not self.n_walks:
            out.append(f"No path of at most {self.steps} steps leads from {x} to {y} in the "
                       "learned network: the network carries none of this shift.")
        if self.n_members > 1:
            signs = np.sign(np.asarray(self.member_shift))
            same = int(max((signs > 0).sum(), (signs < 0).sum()))
            if same < self.n_members:
                out.append(f"The members disagree on its direction: {same} of {self.n_members} "
                           "predict the sign of the mean "
                           f"({', '.join(signed(v) for v in self.member_shift)}).")
        return out

    def to_dict(self) -> dict:
        """JSON-able: the parts, the paths (with their edges) and the sentences."""
        return {"model": self.model, "condition": self.condition, "gene": self.gene,
                "shift": self.shift, "member_shift": list(self.member_shift),
                "parts": self.parts.to_dict(orient="records"),
                "paths": self.paths.assign(genes=self.paths["genes"].map(list))
                .to_dict(orient="records"),
                "n_walks": self.n_walks, "sentences": self.sentences()}


def explain(model: LoadedModel | Bundle, perturbation, gene: str, *, top: int = 10) -> Explanation:
    """Why ``perturbation`` moves ``gene``: its predicted shift split into the shared
    response, the perturbed genes' own change, the ``top`` strongest paths through the
    learned network, the other paths and (for a pair) the composition from its singles.

    Parameters
    ----------
    model
        A loaded model.
    perturbation
        What :func:`~grape_core.serving.predict.predict` takes (``"KLF1"``, ``"SET+KLF1"``...).
    gene
        A measured gene (the responding one).
    top
        Paths to list.

    Returns
    -------
    Explanation
        Parts that add up to the ensemble's predicted shift (and per member to each
        member's), and the paths with their member agreement. See the module docstring
        for the method.

    Raises
    ------
    UnknownGeneError, ConditionError, GrapeError
        An unknown gene or perturbation, or a ``gene`` the model does not measure.

    Examples
    --------
    >>> import grape_core as gc
    >>> from grape_core.serving.explain import explain
    >>> why = explain(gc.load("assets/models/norman"), "SET+KLF1", "HBG2")
    >>> abs(why.parts["value"].sum() - why.shift) < 1e-9
    True
    """
    import torch

    from ..nn.inputs import perturbation_tensor
    from .network import learned_network
    from .loaded import as_model
    from .resolve import resolve_gene, resolve_perturbation

    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 0:
        raise GrapeError(f"top must be a whole number of paths, 0 or more, not {top!r}")
    model = as_model(model)
    bundle = model.bundle
    condition = resolve_perturbation(model, perturbation)
    symbol = resolve_gene(model, gene)
    position = {g: i for i, g in enumerate(bundle.measured)}
    if symbol not in position:
        raise GrapeError(f"{symbol} is in the graph of model {bundle.name!r} but not measured: "
                         "choose a measured gene to explain")
    perts = perturbation_tensor([condition], bundle.node_index)
    # the float64 copies are made once per loaded model; one explanation at a time uses them
    # (each registers a hook on its member's propagation)
    members64 = model.cached("explain: float64 members",
                             lambda: [_float64(m, bundle.graph) for m in bundle.members])
    lock = model.cached("explain: lock", threading.Lock)
    with lock, torch.no_grad():
        results = [_member(m, g, perts, position[symbol]) for m, g in members64]
    n = len(results)
    walks = sorted({w for r in results for w in r.walks})
    contributions = np.zeros((len(walks), n))
    index = {w: i for i, w in enumerate(walks)}
    for m, r in enumerate(results):
        for w, c in r.walks.items():
            contributions[index[w], m] = c
    mean = contributions.mean(1) if n else np.zeros(len(walks))
    order = np.argsort(-np.abs(mean), kind="stable")[:top]
    member_shift = np.array([r.total for r in results])
    shift = float(member_shift.mean())
    listed = contributions[order]
    per_member = {
        "shared": np.array([r.shared for r in results]),
        "own": np.array([r.own for r in results]),
        "listed": listed.sum(0),
        "other": np.array([r.enumerated for r in results]) - listed.sum(0),  # the rest
        "unenumerated": np.array([r.propagated - r.enumerated for r in results]),
        "composition": np.array([r.composition for r in results]),
        "floor": np.array([r.floor for r in results]),
    }
    rows = []
    for key, values in per_member.items():
        if key in ("unenumerated", "composition", "floor") and not np.any(
                np.abs(values) > 1e-12 * (1.0 + np.abs(member_shift))):
            continue
        if key == "own" and symbol not in genes_of(condition):
            continue
        row = {"part": key, "label": PART_LABELS[key], "value": float(values.mean()),
               "share": _share(float(values.mean()), shift)}
        row.update({f"value_member_{i + 1}": float(v) for i, v in enumerate(values)})
        rows.append(row)
    parts = pd.DataFrame(rows)
    genes = np.asarray(bundle.genes, dtype=object)
    from ..nn.inputs import member_spread, same_sign_as_mean, sign_agreement

    agree = sign_agreement(listed)
    paths = pd.DataFrame({
        "rank": np.arange(1, len(order) + 1),
        "path": [" → ".join(genes[list(walks[i])]) for i in order],
        "genes": [tuple(str(g) for g in genes[list(walks[i])]) for i in order],
        "length": [len(walks[i]) - 1 for i in order],
        "contribution": mean[order],
        "share": [_share(float(v), shift) for v in mean[order]],
        "sign_agreement": agree,
        "members_same_sign": same_sign_as_mean(listed),
        "spread": member_spread(listed),
    })
    for i in range(n):
        paths[f"contribution_member_{i + 1}"] = listed[:, i] if len(order) else np.zeros(0)
    pairs = {(a, b) for g in paths["genes"] for a, b in zip(g[:-1], g[1:])}
    edges = pd.DataFrame()
    if pairs:
        network = model.cached("explain: weak network", lambda: learned_network(model, weak=True)).edges
        keys = pd.MultiIndex.from_frame(network[["source", "target"]])
        edges = network[keys.isin(list(pairs))].reset_index(drop=True)
    return Explanation(model=bundle.name, condition=condition, perturbed=genes_of(condition),
                       gene=symbol, shift=shift, member_shift=tuple(float(v) for v in member_shift),
                       parts=parts, paths=paths, edges=edges, n_walks=len(walks),
                       steps=max((r.steps for r in results), default=0), n_members=n)


def signed(value: float) -> str:
    """A shift as people read it: 3 decimals, or 2 significant digits when smaller (a path
    that carries 5e-07 is not +0.000)."""
    if value != 0 and abs(value) < 5e-4:
        return f"{value:+.1e}"
    return f"{value:+.3f}"


def _share(value: float, total: float) -> float:
    return value / total if total != 0 else float("nan")


@dataclass
class _MemberParts:
    total: float
    shared: float
    own: float
    propagated: float
    """``f_Y (delta_Y - sent_Y)``: what every walk together carries."""
    enumerated: float
    """The sum of the enumerated walks (``propagated`` to float64 precision unless the
    enumeration stopped at :data:`MAX_WALKS`)."""
    composition: float
    """What composing a pair from its singles adds (0 for a single)."""
    floor: float
    """What the floor at zero expression adds (the prediction less its unfloored value)."""
    walks: dict[tuple[int, ...], float]
    steps: int
    truncated: bool
    """The enumeration stopped at :data:`MAX_WALKS`."""


def _float64(member, graph):
    """A float64 copy of a member and of the graph (the parts then add up to ~1e-12)."""
    from ..nn.grape import GraphInputs

    m = copy.deepcopy(member).double().eval()
    g = GraphInputs(**{k: (v.double() if v.is_floating_point() else v)
                       for k, v in vars(graph).items()})
    return m, g


def _member(m, g, perts, y: int) -> _MemberParts:
    """One member's parts of the shift at measured position ``y``; ``m``, ``g``: the member
    and the graph in float64 (:func:`_float64`)."""
    import torch

    outputs = torch.tensor([y], dtype=torch.long)
    z, edges = m.graph(g)
    composed_shift = m._shifts(g, perts, outputs=outputs, structure=(z, edges),
                               fixed_shapes=False, hide=None).shift
    composed = float(composed_shift[0, 0])
    total = float(m.floored(composed_shift, g, outputs)[0, 0])  # the model's prediction
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = m.propagation.register_forward_hook(
        lambda module, args, out: seen.append((args[0], out)))
    try:
        raw = float(m.decode(perts, z, edges, g, outputs)[0, 0])
    finally:
        hook.remove()
    if len(seen) != 1:
        raise GrapeError(f"the model propagated {len(seen)} times for one perturbation; the "
                         "decomposition expects one propagation per decoding")
    # what the perturbed genes send (pi x0, the propagation's input) and the state it gives
    source, delta = seen[0][0][:, 0], seen[0][1][:, 0]
    shared = float((m.amplitude_of(perts, z) * m.mean_shift[outputs])[0, 0])
    node = int(g.measured[y])
    # the same rounds as the model's propagation, keeping every state
    propagation = m.propagation
    states = [source.unsqueeze(1)]
    for _ in range(propagation.steps):
        states.append(propagation.step(states[-1], source.unsqueeze(1), edges))
    if not torch.allclose(states[-1][:, 0], delta, rtol=1e-9, atol=1e-12):
        raise GrapeError("the propagation's rounds do not reproduce the model's own "
                         "propagation; the decomposition needs updating for this model")
    # the decoded value is f (delta_Y - sent_Y + own_Y) (:meth:`GRAPE.parts`), f the gene's
    # correction; own_Y the perturbed gene's own change where the data could tell it
    own_change = m.own_and_source(perts, z, g)[0][:, 0]
    delta_y, sent_y = float(delta[node]), float(source[node])
    own_y = float(own_change[node]) * float(m.self_known)
    decoded = delta_y - sent_y + own_y
    factor = (raw - shared) / decoded if decoded != 0 else 1.0
    gains = [_gains(propagation.messages, s, edges) for s in states[:-1]]
    walks, enumerated, truncated = _walks(edges, gains, source.numpy(), node, propagation.steps)
    walks = {w: factor * c for w, c in walks.items()}
    propagated = factor * (delta_y - sent_y)
    if not truncated and abs(factor * enumerated - propagated) > 1e-8 * max(1.0, abs(total)):
        raise GrapeError(f"the paths add up to {factor * enumerated:.6g}, not to the propagated "
                         f"shift {propagated:.6g}; the decomposition needs updating for this model")
    return _MemberParts(total=total, shared=shared, own=factor * own_y, propagated=propagated,
                        enumerated=factor * enumerated if truncated else propagated,
                        composition=composed - raw, floor=total - composed, walks=walks,
                        steps=propagation.steps, truncated=truncated)


def _gains(messages, state, edges) -> np.ndarray:
    """Effective gain ``psi(x) / x`` of every node towards each destination type,
    ``(n_nodes, n_types)``, at ``state (n_nodes, 1)``; ``psi'(0)`` where ``x == 0``."""
    import torch

    sent = messages.sent(state, edges)[:, :, 0]  # (n, T)
    tiny = torch.full_like(state, 1e-6)
    slope = messages.sent(tiny, edges)[:, :, 0] / 1e-6  # psi'(0) to O(1e-12)
    x = state[:, 0].unsqueeze(1).expand_as(sent)
    gain = torch.where(x != 0, sent / torch.where(x != 0, x, torch.ones_like(x)), slope)
    return gain.numpy()


def _walks(edges, gains: list[np.ndarray], x0: np.ndarray, target: int,
           steps: int) -> tuple[dict[tuple[int, ...], float], float, bool]:
    """Every walk of 1..``steps`` edges from a node with ``x0 != 0`` to ``target`` and its
    contribution ``x0[start] * prod(w * gain)``, the edge ``j``-th from the end using the
    gains of step ``steps - j``; the sum of all of them; and whether the enumeration stopped
    at :data:`MAX_WALKS` partial walks.

    Enumerated backwards from ``target``: a partial walk is kept only while its first node
    can be reached from a perturbed gene in the steps left."""
    src = edges.src.numpy()
    dst = edges.dst.numpy()
    weight = edges.weight.detach().numpy().astype(np.float64)
    dst_type = (edges.rel % edges.n_types).numpy()
    n = len(x0)
    live = weight != 0
    src, dst, weight, dst_type = src[live], dst[live], weight[live], dst_type[live]
    starts = np.flatnonzero(x0)
    # fewest steps from a perturbed gene to every node
    reach = np.full(n, np.inf)
    reach[starts] = 0
    frontier = starts
    for d in range(1, steps + 1):
        hit = np.unique(dst[np.isin(src, frontier)])
        hit = hit[np.isinf(reach[hit])]
        reach[hit] = d
        frontier = hit
    order = np.argsort(dst, kind="stable")
    ptr = np.searchsorted(dst[order], np.arange(n + 1))
    nodes = np.array([target])
    prods = np.array([1.0])
    history: list[tuple[np.ndarray, np.ndarray]] = []  # per level: (node, parent)
    walks: dict[tuple[int, ...], float] = {}
    total = 0.0
    for j in range(1, steps + 1):
        gain = gains[steps - j]
        counts = ptr[nodes + 1] - ptr[nodes]
        if int(counts.sum()) > MAX_WALKS:  # before allocating them
            return walks, total, True
        parent = np.repeat(np.arange(len(nodes)), counts)
        if not len(parent):
            break
        first = np.repeat(ptr[nodes], counts)
        offset = np.arange(len(parent)) - np.repeat(np.cumsum(counts) - counts, counts)
        e = order[first + offset]
        new_nodes = src[e]
        new_prods = prods[parent] * weight[e] * gain[src[e], dst_type[e]]
        keep = reach[new_nodes] <= steps - j
        new_nodes, new_prods, parent = new_nodes[keep], new_prods[keep], parent[keep]
        history.append((new_nodes, parent))
        done = np.flatnonzero(x0[new_nodes] != 0)
        for i in done.tolist():
            contribution = float(x0[new_nodes[i]] * new_prods[i])
            walk = [int(new_nodes[i])]
            p = int(parent[i])
            for level in range(len(history) - 2, -1, -1):
                walk.append(int(history[level][0][p]))
                p = int(history[level][1][p])
            walk.append(int(target))
            walks[tuple(walk)] = walks.get(tuple(walk), 0.0) + contribution
            total += contribution
        nodes, prods = new_nodes, new_prods
    return walks, total, False


def responding_gene(pred) -> str | None:
    """The gene to explain first for a :class:`~grape_core.serving.results.Prediction`: the measured
    gene with the largest predicted shift that is not itself perturbed (the top of the
    Predict chart); ``None`` when every measured gene is perturbed."""
    perturbed = set(pred.perturbed)
    order = np.argsort(-np.abs(np.asarray(pred.shift)), kind="stable")
    return next((str(pred.genes[i]) for i in order if pred.genes[i] not in perturbed), None)
