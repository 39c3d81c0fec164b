"""From gene knowledge to the tensors a GRAPE model reads, and back: tensors in, tensors out.

- :func:`graph_inputs`: the model's :class:`~grape_core.nn.grape.GraphInputs` (gene
  views, node types, the pruned and row-normalised prior, measured positions);
- :func:`perturbation_tensor`: conditions as node indices ``(n_perts, 2)``;
- :func:`predict_shifts`: one member's shifts in eval mode (shared by training's validation,
  prediction and the screen: one code path);
- :func:`learned_graph`, :func:`fused_embeddings`, :func:`named_edges`: what a trained
  ensemble learned, as edge tables and embeddings.

Shapes: ``prior_index`` ``(2, n_edges)``, ``perts`` ``(n_perts, 2)`` (``-1`` pads singles),
shifts ``(n_perts, n_measured)``, fused embeddings ``(n_nodes, d)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .. import keys
from ..data.conditions import genes_of
from ..errors import GrapeError
from .grape import GRAPE, GraphInputs


def graph_inputs(knowledge, measured: Sequence[str], prior: pd.DataFrame, *,
                 max_in_degree: int = 15) -> tuple[GraphInputs, dict[str, int], pd.DataFrame]:
    """Tensors of the gene graph for a model, the node index, and the prior it uses.

    Parameters
    ----------
    knowledge
        :class:`~grape_core.knowledge.folder.GeneKnowledge` (node order, views, biotypes).
    measured
        Measured genes, in output order.
    prior
        Edge list over the knowledge's nodes (``src``, ``dst``, ``weight``), e.g. from
        :func:`~grape_core.knowledge.graphs.resolve_priors`; a negative weight is a
        repression (a signed prior). Each gene keeps its ``max_in_degree`` strongest
        in-edges (by size), normalised per destination so that their sizes sum to 1.
    """
    genes = list(knowledge.genes)
    node_index = {g: i for i, g in enumerate(genes)}
    missing = [g for g in measured if g not in node_index]
    if missing:
        raise GrapeError(f"{len(missing)} measured genes have no node (e.g. {', '.join(missing[:3])})")
    edges = prior[prior["src"] != prior["dst"]]
    edges = (edges.assign(size=edges["weight"].abs())
             .sort_values(["dst", "size"], ascending=[True, False], kind="stable")
             .groupby("dst", sort=False).head(max_in_degree).drop(columns="size")
             .reset_index(drop=True))
    weight = edges["weight"].to_numpy(dtype=np.float64)
    totals = pd.Series(np.abs(weight)).groupby(edges["dst"].to_numpy()).transform("sum").to_numpy()
    edges = edges.assign(weight=(weight / np.maximum(totals, 1e-12)).astype(np.float32))
    is_coding = knowledge.table["is_coding"].astype(bool).to_numpy()
    graph = GraphInputs(
        text=torch.as_tensor(np.asarray(knowledge.text, dtype=np.float32)),
        dna=torch.as_tensor(np.asarray(knowledge.dna, dtype=np.float32)),
        dna_missing=torch.as_tensor(np.asarray(knowledge.dna_missing, dtype=bool)),
        is_coding=torch.as_tensor(is_coding),
        prior_index=torch.as_tensor(edges[["src", "dst"]].to_numpy(dtype=np.int64).T.copy()),
        prior_weight=torch.as_tensor(edges["weight"].to_numpy(dtype=np.float32)),
        measured=torch.as_tensor([node_index[g] for g in measured], dtype=torch.long),
    )
    return graph, node_index, edges


def perturbation_tensor(conditions: Sequence[str], node_index: dict[str, int]) -> torch.Tensor:
    """Node indices of each condition's genes, ``(n_conds, 2)``, ``-1`` padding for singles."""
    out = torch.full((len(conditions), 2), -1, dtype=torch.long)
    for i, cond in enumerate(conditions):
        for j, gene in enumerate(genes_of(cond)):
            if gene not in node_index:
                raise GrapeError(f"gene {gene!r} of condition {cond!r} has no node in the graph")
            out[i, j] = node_index[gene]
    return out


@torch.no_grad()
def predict_shifts(model: GRAPE, graph: GraphInputs, perts: torch.Tensor, *, batch_size: int = 256,
                   outputs: torch.Tensor | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Shifts ``(n_conds, n_measured)`` of one member on the CPU, in eval mode (only the
    measured positions ``outputs`` when given). Each sample is computed on its own, so the
    batch size changes the speed, never the result. ``dtype``: converted to it on the
    model's device, before the copy (float16 halves what a GPU sends back)."""
    if model.training:
        model.eval()
    out = [model(graph, perts[i:i + batch_size], outputs=outputs).shift
           for i in range(0, perts.size(0), batch_size)]
    width = graph.measured.numel() if outputs is None else outputs.numel()
    return torch.cat(out).to(dtype).cpu() if out else torch.zeros(0, width, dtype=dtype)


def named_edges(edges: pd.DataFrame, genes: Sequence[str], is_coding: np.ndarray) -> pd.DataFrame:
    """Edge list with gene symbols and biotype relation (``coding->noncoding``...)."""
    src, dst = edges["src"].to_numpy(), edges["dst"].to_numpy()
    kind = np.where(is_coding, keys.CODING, keys.NONCODING)
    out = pd.DataFrame({
        "source": np.asarray(genes, dtype=object)[src],
        "target": np.asarray(genes, dtype=object)[dst],
        "weight": edges["weight"].to_numpy(dtype=np.float32),
        "relation": [f"{a}->{b}" for a, b in zip(kind[src], kind[dst])],
    })
    if "source" in edges.columns:  # which prior an edge came from (go, coexpression, ...)
        out["prior"] = edges["source"].to_numpy()
    return out


def sign_agreement(weights: np.ndarray) -> np.ndarray:
    """Share of the members whose weight has the majority sign, ``(n_edges,)`` from
    ``weights (n_edges, n_members)``; a member without the edge (weight 0) agrees with
    neither sign, so an edge that only one of three members has scores 1/3."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] == 0:
        return np.zeros(w.shape[0] if w.ndim else 0)
    return np.maximum((w > 0).sum(1), (w < 0).sum(1)) / w.shape[1]


def same_sign_as_mean(weights: np.ndarray) -> np.ndarray:
    """Members whose weight has the sign of the members' mean, ``(n_edges,)`` integers
    from ``weights (n_edges, n_members)``: what "k of M members with this sign" means next
    to a mean weight (the majority sign can differ from the mean's: -0.008, -0.008, +0.25
    has mean +0.08 and one member of that sign)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] == 0:
        return np.zeros(w.shape[0] if w.ndim else 0, dtype=np.int64)
    mean = np.sign(w.mean(1, keepdims=True))
    return ((np.sign(w) == mean) & (mean != 0)).sum(1).astype(np.int64)


def member_spread(weights: np.ndarray) -> np.ndarray:
    """Standard deviation across members (``ddof=1``, as the ensemble's prediction spread),
    ``(n_edges,)``; 0 for a single member."""
    w = np.asarray(weights, dtype=np.float64)
    return w.std(axis=1, ddof=1) if w.ndim == 2 and w.shape[1] > 1 else np.zeros(len(w))


@torch.no_grad()
def member_edges(members: Sequence[GRAPE], graph: GraphInputs) -> tuple[pd.DataFrame, np.ndarray]:
    """Every edge any member propagates on, and each member's weight of it.

    Returns
    -------
    edges, weights
        ``src``, ``dst``, ``in_prior`` ``(n_edges,)`` rows, sorted by ``(src, dst)``, and the
        signed weights ``(n_edges, n_members)``: 0 where a member does not have the edge
        (learned-only edges differ between members; prior edges are in every one).
    """
    frames = []
    for i, model in enumerate(members):
        model.eval()
        _, edges = model.graph(graph)
        frames.append(pd.DataFrame({
            "src": edges.src.cpu().numpy(), "dst": edges.dst.cpu().numpy(),
            "weight": edges.weight.detach().cpu().numpy().astype(np.float64),
            "in_prior": np.arange(edges.src.numel()) < edges.n_prior, "member": i}))
    if not frames:
        return (pd.DataFrame({"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64),
                              "in_prior": np.zeros(0, bool)}), np.zeros((0, 0)))
    long = (pd.concat(frames).groupby(["src", "dst", "member"], as_index=False)
            .agg(weight=("weight", "sum"), in_prior=("in_prior", "max")))
    wide = long.pivot(index=["src", "dst"], columns="member", values="weight").fillna(0.0)
    wide = wide.reindex(columns=range(len(frames)), fill_value=0.0)
    in_prior = long.groupby(["src", "dst"])["in_prior"].max().reindex(wide.index)
    index = wide.index.to_frame(index=False)
    table = pd.DataFrame({"src": index["src"].to_numpy(np.int64),
                          "dst": index["dst"].to_numpy(np.int64),
                          "in_prior": in_prior.to_numpy(dtype=bool)})
    return table, wide.to_numpy(dtype=np.float64)


def learned_graph(members: Sequence[GRAPE], graph: GraphInputs, *,
                  keep_fraction: float = 0.05) -> pd.DataFrame:
    """The graph the ensemble propagates perturbations on: ``src``, ``dst``, ``weight``
    (signed ensemble mean), ``in_prior``, and how far the members agree on it:
    ``sign_agreement`` (:func:`sign_agreement`), ``spread`` (:func:`member_spread`) and
    ``weight_member_1`` ... ``weight_member_M`` (each member's weight, 0 where it does
    not have the edge).

    An edge is kept when its mean absolute weight reaches ``keep_fraction`` of the 99th
    percentile of all absolute weights: prior edges below that were pruned by structure learning,
    and learned-only edges below it carry nothing.
    """
    table, weights = member_edges(members, graph)
    edges = table.assign(weight=(weights.mean(1) if weights.shape[1] else
                                 np.zeros(len(table))).astype(np.float32))
    edges = edges[["src", "dst", "weight", "in_prior"]]
    edges["sign_agreement"] = sign_agreement(weights)
    edges["spread"] = member_spread(weights)
    for i in range(weights.shape[1]):
        edges[f"weight_member_{i + 1}"] = weights[:, i]
    if not len(edges):
        return edges
    return edges[learned_mask(edges["weight"].to_numpy(), keep_fraction)].reset_index(drop=True)


def learned_mask(weight: np.ndarray, keep_fraction: float = 0.05) -> np.ndarray:
    """Which edges of mean weights ``weight`` (float32, as :func:`learned_graph` holds them)
    are kept: mean absolute weight at least ``keep_fraction`` of the 99th percentile."""
    magnitude = np.abs(weight)
    if not magnitude.size:
        return np.zeros(0, dtype=bool)
    cut = keep_fraction * float(np.quantile(magnitude, 0.99))
    return magnitude >= max(cut, 1e-12)


@torch.no_grad()
def fused_embeddings(model: GRAPE, graph: GraphInputs) -> np.ndarray:
    """The gene encoder's output ``(n_nodes, d)`` as the model sees it."""
    model.eval()
    return model.encode(graph).cpu().numpy()
