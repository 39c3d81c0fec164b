"""The model's gene graph as tables: learned vs prior edges, neighbourhoods, degrees, the gene
overview and a 2-D map of the gene embeddings. Analysis only (the app draws the results).

Edge tables have one row per directed edge ``source -> target`` with a ``weight`` and a
biotype ``relation`` (``coding->noncoding``...); merged tables add ``status``: ``both``
(in the prior and learned), ``learned only`` (new) or ``prior only`` (dropped by learning).
Learned weights are signed (a negative weight: the source represses the target); strength
is the absolute weight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import keys
from .data.conditions import genes_of

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


def neighbourhood(prior: pd.DataFrame, learned: pd.DataFrame, focus: Iterable[str], *,
                  hops: int = 1, top_k: int = 60) -> pd.DataFrame:
    """Edges of the ``hops``-hop neighbourhood of ``focus`` in prior ∪ learned graph, the
    ``top_k`` strongest kept (edges touching a focus gene first); columns of
    :func:`merged_edges`."""
    focus = list(dict.fromkeys(focus))
    e = merged_edges(prior, learned)
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
    sub["strength"] = sub["weight"].abs()
    sub = sub.sort_values(["touches_focus", "strength"], ascending=[False, False], kind="stable")
    return sub.head(int(top_k)).drop(columns=["touches_focus", "strength"]).reset_index(drop=True)


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


def strongest_learned(learned: pd.DataFrame, *, new_only: bool = False, n: int = 200) -> pd.DataFrame:
    """The ``n`` strongest learned edges by absolute weight (``new_only``: those absent from
    the prior): ``source, target, weight`` (signed), ``strength``, ``effect`` (activates or
    represses), ``relation``, ``also in prior``."""
    e = learned if not new_only else learned[~learned["in_prior"].astype(bool)]
    e = e.assign(strength=e["weight"].abs()).sort_values("strength", ascending=False,
                                                         kind="stable").head(n)
    out = e[["source", "target", "weight", "strength", "relation", "in_prior"]].copy()
    out.insert(4, "effect", out["weight"].map(edge_effect))
    out["relation"] = out["relation"].map(relation_label)
    return out.rename(columns={"in_prior": "also in prior"}).reset_index(drop=True)


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
        from .knowledge.genes import load_annotation

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
