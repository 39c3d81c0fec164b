"""The model's gene graph as tables: learned vs prior edges, neighbourhoods, degrees, the gene
overview and a 2-D map of the gene embeddings. Analysis only (the app draws the results).

Edge tables have one row per directed edge ``source -> target`` with a ``weight`` and a
biotype ``relation`` (``coding->noncoding``...); merged tables add ``status``: ``both``
(in the prior and learned), ``learned only`` (new) or ``prior only`` (dropped by learning).
Learned weights are signed (a negative weight: the source represses the target); strength
is the absolute weight.

:func:`learned_network` reads the graph from the ensemble itself: every member's weight of
every edge, how far the members agree on it (sign agreement, spread), and what changed
against the prior (:class:`PriorChange`); :mod:`grape_core.serving.network_export` writes it as
GraphML, CSV or Cytoscape CX2.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import keys
from ..data.conditions import genes_of

if TYPE_CHECKING:
    from ..bundle import Bundle
    from .loaded import LoadedModel

CODING, NONCODING = "coding", "non-coding"
"""The two node types as people read them."""


def biotype_class(is_coding: bool) -> str:
    """``coding`` or ``non-coding`` (the two node types of the graph)."""
    return CODING if bool(is_coding) else NONCODING


def relation_label(relation: str) -> str:
    """``coding->noncoding`` -> ``coding → non-coding``."""
    return relation.replace(keys.NONCODING, NONCODING).replace("->", " → ")


def _edge_frame(edges: pd.DataFrame, weight_name: str) -> pd.DataFrame:
    cols = ["source", "target", "weight", "relation"]
    out = edges[cols].rename(columns={"weight": weight_name, "relation": f"relation_{weight_name}"})
    return out.groupby(["source", "target"], as_index=False).first()


def merged_edges(prior: pd.DataFrame, learned: pd.DataFrame) -> pd.DataFrame:
    """Prior and learned edges side by side: ``source, target, relation, status, weight,
    prior_weight, learned_weight`` (``weight``: the learned one where there is one)."""
    e = _edge_frame(prior, "prior_weight").merge(_edge_frame(learned, "learned_weight"),
                                                on=["source", "target"], how="outer")
    has_p, has_l = e["prior_weight"].notna(), e["learned_weight"].notna()
    e["status"] = np.where(has_p & has_l, "both", np.where(has_l, "learned only", "prior only"))
    e["relation"] = e["relation_learned_weight"].fillna(e["relation_prior_weight"])
    e["weight"] = e["learned_weight"].fillna(e["prior_weight"]).astype(float)
    return e[["source", "target", "relation", "status", "weight", "prior_weight", "learned_weight"]]


def neighbourhood_of(edges: pd.DataFrame, focus: Iterable[str], *, hops: int = 1,
                     top_k: int = 60) -> pd.DataFrame:
    """:func:`neighbourhood` of an edge table that has ``source``, ``target``, ``status``
    and ``weight`` (:func:`merged_edges`, or :attr:`LearnedNetwork.edges`, whose extra
    columns are kept). Prior edges that learning dropped come after the learned ones."""
    focus = list(dict.fromkeys(focus))
    e = edges
    nodes, frontier = set(focus), set(focus)
    for _ in range(max(int(hops), 0)):
        out = e.loc[e["source"].isin(frontier), "target"]
        inc = e.loc[e["target"].isin(frontier), "source"]
        frontier = (set(out) | set(inc)) - nodes
        nodes |= frontier
        if not frontier:
            break
    sub = e[e["source"].isin(nodes) & e["target"].isin(nodes)].copy()
    sub["touches_focus"] = sub["source"].isin(focus) | sub["target"].isin(focus)
    sub["is_learned"] = sub["status"] != "prior only"
    sub["strength"] = sub["weight"].abs()
    sub = sub.sort_values(["touches_focus", "is_learned", "strength"],
                          ascending=[False, False, False], kind="stable")
    return (sub.head(int(top_k)).drop(columns=["touches_focus", "is_learned", "strength"])
            .reset_index(drop=True))


def structure_changes(prior: pd.DataFrame, learned: pd.DataFrame) -> pd.DataFrame:
    """Per biotype relation: edges in the prior, learned, kept, added and removed."""
    e = merged_edges(prior, learned)
    rows = []
    for relation, part in e.groupby("relation", sort=True):
        counts = part["status"].value_counts()
        rows.append({"relation": relation_label(str(relation)),
                     "prior edges": int(part["prior_weight"].notna().sum()),
                     "learned edges": int(part["learned_weight"].notna().sum()),
                     "kept": int(counts.get("both", 0)),
                     "added by learning": int(counts.get("learned only", 0)),
                     "removed by learning": int(counts.get("prior only", 0))})
    return pd.DataFrame(rows)


def degrees(prior: pd.DataFrame, learned: pd.DataFrame, genes: Sequence[str]) -> pd.DataFrame:
    """Number of edges (in + out) of every gene in the prior and in the learned graph:
    ``gene``, ``prior_degree``, ``learned_degree``, ``(len(genes),)`` rows."""
    def count(edges: pd.DataFrame) -> pd.Series:
        return pd.concat([edges["source"], edges["target"]]).value_counts()

    p, l_ = count(prior), count(learned)
    return pd.DataFrame({"gene": list(genes),
                         "prior_degree": [int(p.get(g, 0)) for g in genes],
                         "learned_degree": [int(l_.get(g, 0)) for g in genes]})


def edge_effect(weight: float) -> str:
    """What a learned edge does to its target: ``activates`` (weight >= 0) or ``represses``."""
    return "activates" if weight >= 0 else "represses"


def split_parts(split) -> dict[str, str]:
    """Gene -> the part of the split where it was perturbed (``test`` before ``val`` before
    ``train``); genes never perturbed are absent."""
    parts: dict[str, str] = {}
    for part in ("test", "val", "train"):
        for condition in getattr(split, part):
            for gene in genes_of(condition):
                parts[gene] = part
    return parts


def go_names(table: pd.DataFrame, terms: pd.DataFrame | None, *, n: int = 3) -> list[str]:
    """The ``n`` most specific GO term names of each gene (ids when no term table)."""
    out = []
    for row in table.itertuples(index=False):
        ids = [t for col in ("go_bp", "go_mf", "go_cc") for t in str(getattr(row, col, "") or "").split(";") if t]
        if terms is not None and len(ids):
            known = [t for t in ids if t in terms.index]
            known.sort(key=lambda t: (terms.at[t, "n_genes"], t))
            out.append("; ".join(str(terms.at[t, "term"]) for t in known[:n]))
        else:
            out.append("; ".join(ids[:n]))
    return out


def gene_overview(table: pd.DataFrame, prior: pd.DataFrame, learned: pd.DataFrame,
                  measured: Sequence[str], parts: Mapping[str, str],
                  terms: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per gene of the model: biotype, name, GO, sequence, degrees, role in the screen.

    ``parts``: gene -> where it was perturbed (:func:`split_parts`).
    """
    genes = list(table.index)
    deg = degrees(prior, learned, genes).set_index("gene")
    measured_set = set(measured)
    return pd.DataFrame({
        "gene": genes,
        "biotype": table["biotype"].astype(str).to_numpy(),
        "coding": table["is_coding"].astype(bool).to_numpy(),
        "name": table.get("full_name", pd.Series([""] * len(genes))).astype(str).to_numpy(),
        "GO (most specific)": go_names(table, terms),
        "sequence known": table.get("has_sequence", pd.Series([False] * len(genes))).astype(bool).to_numpy(),
        "prior degree": deg["prior_degree"].to_numpy(),
        "learned degree": deg["learned_degree"].to_numpy(),
        "measured": [g in measured_set for g in genes],
        "perturbed in screen": [parts.get(g, "") for g in genes],
    })


def model_gene_overview(bundle) -> pd.DataFrame:
    """:func:`gene_overview` of a bundle, with GO term names from the bundled annotation
    when it is there."""
    try:
        from ..knowledge.genes import load_annotation

        terms = load_annotation().terms
    except Exception:  # noqa: BLE001 - GO names are a nicety; ids are shown without them
        terms = None
    return gene_overview(bundle.table, bundle.prior_edges, bundle.learned_edges, bundle.measured,
                         split_parts(bundle.split), terms)


def embedding_coords(fused: np.ndarray) -> np.ndarray:
    """First two principal components of the fused gene embeddings, ``(n_nodes, 2)``."""
    x = np.asarray(fused, dtype=np.float64)
    x = x - x.mean(0, keepdims=True)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:2].T
    return coords if coords.shape[1] == 2 else np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def prior_label(graph_info) -> str:
    """The prior a model started from, for people: ``union (built-in)``, ``upr.csv (your file,
    3 of its genes not in the model)``, joined by ``+``. ``graph_info``: the manifest's
    :class:`~grape_core.bundle.GraphInfo`."""
    parts = []
    for source in graph_info.prior_sources or ({"name": n, "kind": "builtin"} for n in graph_info.prior):
        kind = {"builtin": "built-in", "file": "your file", "table": "your table"}.get(
            str(source.get("kind", "")), str(source.get("kind", "")))
        unknown = int(source.get("unknown_genes", 0) or 0)
        extra = f", {unknown} of its genes not in the model" if unknown else ""
        parts.append(f"{source.get('name', '?')} ({kind}{extra})")
    return " + ".join(parts) or "none"


# ----------------------------------------------------------------------------- the ensemble's graph
EDGE_COLUMNS = ("source", "target", "weight", "sign", "effect", "status", "in_prior", "learned",
                "prior_weight", "rescaled_prior", "beyond_prior", "sign_agreement",
                "members_same_sign", "spread", "stable", "relation", "source_biotype",
                "target_biotype", "prior_source")
"""The columns of :attr:`LearnedNetwork.edges` (then ``weight_member_1`` ... one per member),
the same in every export."""


@dataclass(frozen=True)
class PriorChange:
    """What structure learning changed against the prior, as numbers and sentences.

    Prior weights are normalised per destination, positive unless the prior is signed (a
    negative one: the prior says the source represses the target); each member learns a
    signed weight for each prior edge and may add learned-only edges. A least-squares factor
    per relation and member, :math:`w_e \approx s_r p_e`, says how much of a member's
    learned network is the prior rescaled: what the factor does not explain is what the data
    changed edge by edge.
    """

    prior_edges: int
    kept: int
    """Prior edges the learned graph keeps (``status == "both"``)."""
    dropped: int
    added: int
    """Learned-only edges (absent from the prior) strong enough to keep."""
    negative_share: float
    """Share of the kept edges whose ensemble-mean weight is negative (repressing)."""
    scales: dict[str, float]
    """Relation label -> the members' mean fitted factor :math:`s_r`."""
    member_rescaled_share: tuple[float, ...]
    """Per member: the share of its learned edges' squared weight that its per-relation
    factors explain (1: that member's network is the prior rescaled, nothing else)."""
    members_disagree: int
    """Learned edges on whose sign the members do not all agree."""
    n_members: int
    prior_negative_share: float = 0.0
    """Share of the prior's edges that it says repress their target (0: an unsigned prior)."""
    flipped: int = 0
    """Kept prior edges whose learned mean weight has the other sign than the prior's."""

    @property
    def nothing_beyond_prior(self) -> bool:
        """No learned-only edge, and in every member the per-relation factors explain at
        least :data:`RESCALED_ENOUGH` of the learned weights."""
        return self.added == 0 and all(s >= RESCALED_ENOUGH for s in self.member_rescaled_share)

    def sentences(self) -> list[str]:
        """Plain sentences, the most important first."""
        scale = ", ".join(f"{r} ×{s:+.3g}" for r, s in self.scales.items())
        shares = ", ".join(f"{100 * s:.0f} %" for s in self.member_rescaled_share)
        out = []
        if self.nothing_beyond_prior:
            exact = all(s >= NOTHING_ELSE for s in self.member_rescaled_share)
            out.append(
                f"{'Nothing' if exact else 'Little'} beyond the prior was learned: every edge "
                "the model uses is a prior edge, and in every member the learned weights are "
                f"the prior times one factor per relation (that explains {shares} of them; "
                f"mean factors {scale}). The network says what the prior said, rescaled: it is "
                "no evidence of new regulation.")
        else:
            out.append(
                f"Structure learning kept {self.kept:,} of the prior's {self.prior_edges:,} "
                f"edges, dropped {self.dropped:,} and added {self.added:,} new (learned-only) "
                f"edges{': every learned edge is a prior edge' if not self.added else ''}. "
                "The prior times one factor per relation explains "
                f"{shares} of the learned weights in the {self.n_members} member(s) (mean "
                f"factors {scale}); the rest was learned edge by edge.")
            plain = [i + 1 for i, s in enumerate(self.member_rescaled_share)
                     if s >= NOTHING_ELSE]
            if plain and len(plain) < self.n_members:
                which = " and ".join(str(i) for i in plain)
                out.append(f"Member{'s' if len(plain) > 1 else ''} {which} learned nothing "
                           f"beyond the prior ({'their' if len(plain) > 1 else 'its'} weights "
                           "are the prior rescaled per relation): the edge-by-edge changes come "
                           "from the other member(s) alone.")
        if self.kept or self.added:
            started = ("every prior edge started positive" if not self.prior_negative_share
                       else f"the prior called {100 * self.prior_negative_share:.0f} % of its "
                            f"edges repressions, and {self.flipped:,} of the kept ones now have "
                            "the other sign")
            out.append(f"{100 * self.negative_share:.0f} % of the learned edges repress their "
                       f"target (negative mean weight), the rest activate it; {started}.")
        if self.n_members > 1 and self.members_disagree:
            out.append(f"The {self.n_members} ensemble members disagree on the sign of "
                       f"{self.members_disagree:,} of the {self.kept + self.added:,} learned edges: "
                       "their mean weight hides that, so read the agreement column before "
                       "trusting an edge.")
        elif self.n_members == 1:
            out.append("The model has one member: there is no agreement across members to "
                       "show.")
        return out


RESCALED_ENOUGH = 0.95
""":attr:`PriorChange.member_rescaled_share` from which (in every member, with no
learned-only edge) the page says that little beyond the prior was learned."""
NOTHING_ELSE = 0.999
"""... and from which it says *nothing* beyond the prior (a member left at its warm start)."""


@dataclass(frozen=True)
class LearnedNetwork:
    """The gene network an ensemble propagates perturbations on, edge by edge, with each
    member's weight (:func:`learned_network`)."""

    model: str
    edges: pd.DataFrame
    """One row per edge of the prior ∪ the learned graph, columns :data:`EDGE_COLUMNS` then
    ``weight_member_1`` ... ``weight_member_M``:

    - ``weight``: the ensemble's mean signed weight (what the model propagates, also for a
      dropped prior edge, where it is small); ``sign`` ``+``/``-``; ``effect``
      activates/represses;
    - ``status``: ``both`` (prior edge kept), ``learned only`` (new), ``prior only``
      (dropped by learning); ``in_prior``, ``learned`` the same as booleans;
    - ``prior_weight`` (row-normalised, 0 for a learned-only edge), ``rescaled_prior`` (it
      times the relation's fitted factor, :class:`PriorChange`), ``beyond_prior`` (``weight``
      minus ``rescaled_prior``: what was learned for this edge itself);
    - ``sign_agreement``: share of members with the majority sign (a member without the
      edge has none); ``members_same_sign``: members whose weight has the sign of
      ``weight`` (the mean), which can be a minority (-0.008, -0.008, +0.25: mean +0.08,
      one member); ``spread``: standard deviation of the members' weights; ``stable``: every
      member has the mean's sign and the spread is below the weight's size;
    - ``relation`` (``coding->noncoding``...), ``source_biotype``, ``target_biotype``,
      ``prior_source`` (which prior the edge came from, empty for a learned-only one).
    """
    n_members: int
    keep_fraction: float
    change: PriorChange
    genes: pd.DataFrame = field(repr=False)
    """Node table: ``gene`` (index), ``biotype``, ``coding``, ``measured``."""

    @property
    def member_columns(self) -> list[str]:
        return [f"weight_member_{i + 1}" for i in range(self.n_members)]

    def neighbourhood(self, focus: Iterable[str], *, hops: int = 1,
                      top_k: int = 60) -> pd.DataFrame:
        """:func:`neighbourhood_of` these edges (all their columns)."""
        return neighbourhood_of(self.edges, focus, hops=hops, top_k=top_k)

    def changed_most(self, n: int = 50) -> pd.DataFrame:
        """The ``n`` learned edges whose weight differs most from the rescaled prior (largest
        ``|beyond_prior|``): what the data changed edge by edge, learned-only edges
        included."""
        e = self.edges[self.edges["learned"]]
        order = e["beyond_prior"].abs().sort_values(ascending=False, kind="stable").index
        return e.loc[order].head(n).reset_index(drop=True)


WEAK = "learned only (below the cut)"
"""Status of a learned-only candidate edge too weak to count as learned (kept only with
``learned_network(..., weak=True)``: it still carries its tiny weight in propagation)."""


def learned_network(model: LoadedModel | Bundle, *, keep_fraction: float = 0.05,
                    weak: bool = False) -> LearnedNetwork:
    """Every edge of the model's prior and of the graph its members learned, with each
    member's weight and their agreement.

    Read from the loaded members themselves (:func:`~grape_core.nn.inputs.member_edges`),
    so a model folder written before these columns existed gets them too; the learned edges
    are those of :func:`~grape_core.nn.inputs.learned_graph` (the model folder's
    ``learned_edges``).

    Parameters
    ----------
    model
        A loaded model or bundle.
    keep_fraction
        As :func:`~grape_core.nn.inputs.learned_graph`: an edge is learned when its mean
        absolute weight reaches this share of the 99th percentile.
    weak
        Also the learned-only candidates below that cut (status :data:`WEAK`): every edge
        the members propagate on, as a path decomposition needs.

    Returns
    -------
    LearnedNetwork
        ``edges`` (one row per edge, :data:`EDGE_COLUMNS` plus one weight per member) and
        the :class:`PriorChange` summary.
    """
    from ..nn.inputs import (learned_mask, member_edges, member_spread, same_sign_as_mean,
                               sign_agreement)
    from .loaded import as_model

    bundle = as_model(model).bundle
    members, graph = bundle.members, bundle.graph
    genes = np.asarray(bundle.genes, dtype=object)
    table, weights = member_edges(members, graph)
    n = weights.shape[1]
    src, dst = table["src"].to_numpy(), table["dst"].to_numpy()
    in_prior = table["in_prior"].to_numpy(bool)
    # the edges of learned_graph (the model folder's learned_edges), from the same weights
    mean = (weights.mean(1) if n else np.zeros(len(table))).astype(np.float32)
    learned = learned_mask(mean, keep_fraction)
    keep = in_prior | learned | weak  # learned-only candidates below the cut carry ~nothing
    src, dst, in_prior, learned, weights = (src[keep], dst[keep], in_prior[keep], learned[keep],
                                            weights[keep])
    weight = weights.mean(1) if n else np.zeros(len(src))
    prior_index = graph.prior_index.cpu().numpy()
    prior_w = pd.Series(graph.prior_weight.cpu().numpy().astype(np.float64),
                        index=pd.MultiIndex.from_arrays(prior_index)).groupby(level=[0, 1]).sum()
    prior_weight = prior_w.reindex(pd.MultiIndex.from_arrays([src, dst])).fillna(0.0).to_numpy()
    table_genes = bundle.table
    coding = table_genes["is_coding"].astype(bool).to_numpy()
    biotype = table_genes["biotype"].astype(str).to_numpy()
    kind = np.where(coding, keys.CODING, keys.NONCODING)
    relation = np.array([f"{a}->{b}" for a, b in zip(kind[src], kind[dst])], dtype=object)
    source_of = {}
    if "prior" in bundle.prior_edges.columns:
        source_of = dict(zip(zip(bundle.prior_edges["source"], bundle.prior_edges["target"]),
                             bundle.prior_edges["prior"].astype(str)))
    agree = sign_agreement(weights)
    same = same_sign_as_mean(weights)
    spread = member_spread(weights)
    status = np.where(in_prior & learned, "both",
                      np.where(learned, "learned only", np.where(in_prior, "prior only", WEAK)))
    fit_on = learned & in_prior
    fits = [_relation_scales(weights[:, i], prior_weight, relation, fit_on) for i in range(n)]
    # the edge's rescaled prior: the members' own rescalings, averaged like the weights
    rescaled = np.mean([r for _, r in fits], axis=0) if n else np.zeros(len(src))
    member_shares = tuple(_explained(weights[learned, i], fits[i][1][learned]) for i in range(n))
    scales = {r: float(np.mean([f[0].get(r, 0.0) for f in fits]))
              for r in sorted({r for f in fits for r in f[0]})}
    edges = pd.DataFrame({
        "source": genes[src], "target": genes[dst], "weight": weight,
        "sign": np.where(weight < 0, "-", "+"),
        "effect": [edge_effect(w) for w in weight],
        "status": status, "in_prior": in_prior, "learned": learned,
        "prior_weight": prior_weight, "rescaled_prior": rescaled,
        "beyond_prior": weight - rescaled,
        "sign_agreement": agree, "members_same_sign": same,
        "spread": spread, "stable": (same == n) & (spread < np.abs(weight)),
        "relation": relation, "source_biotype": biotype[src], "target_biotype": biotype[dst],
        "prior_source": [source_of.get((a, b), "") for a, b in zip(genes[src], genes[dst])],
    })
    for i in range(n):
        edges[f"weight_member_{i + 1}"] = weights[:, i]
    edges = edges.sort_values(["source", "target"], kind="stable").reset_index(drop=True)
    kept_rows = edges[edges["learned"]]
    change = PriorChange(
        prior_edges=int(in_prior.sum()), kept=int((edges["status"] == "both").sum()),
        dropped=int((edges["status"] == "prior only").sum()),
        added=int((edges["status"] == "learned only").sum()),
        negative_share=float((kept_rows["weight"] < 0).mean()) if len(kept_rows) else 0.0,
        scales={relation_label(r): v for r, v in scales.items()},
        member_rescaled_share=member_shares,
        members_disagree=int((kept_rows["sign_agreement"] < 1.0).sum()) if n > 1 else 0,
        n_members=n,
        prior_negative_share=float((graph.prior_weight < 0).float().mean())
        if graph.prior_weight.numel() else 0.0,
        flipped=int((np.sign(kept_rows["weight"]) * np.sign(kept_rows["prior_weight"]) < 0).sum()))
    measured = set(bundle.measured)
    nodes = pd.DataFrame({"biotype": biotype, "coding": coding,
                          "measured": [g in measured for g in genes]},
                         index=pd.Index(genes, name="gene"))
    return LearnedNetwork(model=bundle.name, edges=edges[[*EDGE_COLUMNS, *[
        f"weight_member_{i + 1}" for i in range(n)]]], n_members=n, keep_fraction=keep_fraction,
        change=change, genes=nodes)


def _explained(weight: np.ndarray, rescaled: np.ndarray) -> float:
    """Share of ``weight``'s squared size that ``rescaled`` explains (0 for no weight)."""
    squared = float((weight ** 2).sum())
    return max(1.0 - float(((weight - rescaled) ** 2).sum()) / squared, 0.0) if squared else 0.0


def _relation_scales(weight: np.ndarray, prior: np.ndarray, relation: np.ndarray,
                     fit_on: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Least-squares factor per relation (through the origin) of the learned weights on the
    prior weights, fitted on the kept prior edges ``fit_on``, and every edge's prior weight
    times its relation's factor (0 for a learned-only edge)."""
    scales: dict[str, float] = {}
    rescaled = np.zeros_like(weight, dtype=np.float64)
    for r in np.unique(relation):
        rows = relation == r
        fit = rows & fit_on
        denominator = float((prior[fit] ** 2).sum())
        if denominator > 0:
            scales[str(r)] = float((weight[fit] * prior[fit]).sum()) / denominator
            rescaled[rows] = scales[str(r)] * prior[rows]
    return scales, rescaled
