"""From gene knowledge to the tensors a GRAPE model reads, and back: tensors in, tensors out.

- :func:`graph_inputs`: the model's :class:`~grape_core.model.grape.GraphInputs` (gene
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


def graph_inputs(knowledge, measured: Sequence[str], *, prior: str = "union",
                 max_in_degree: int = 15) -> tuple[GraphInputs, dict[str, int], pd.DataFrame]:
    """Tensors of the gene graph for a model, the node index, and the prior it uses.

    The prior keeps, for each gene, its ``max_in_degree`` strongest in-edges and is
    row-normalised per destination.
    """
    genes = list(knowledge.genes)
    node_index = {g: i for i, g in enumerate(genes)}
    missing = [g for g in measured if g not in node_index]
    if missing:
        raise GrapeError(f"{len(missing)} measured genes have no node (e.g. {', '.join(missing[:3])})")
    if prior not in knowledge.priors:
        raise GrapeError(f"unknown prior {prior!r}; available: {', '.join(knowledge.priors)}")
    edges = knowledge.priors[prior]
    edges = edges[edges["src"] != edges["dst"]]
    edges = (edges.sort_values(["dst", "weight"], ascending=[True, False], kind="stable")
             .groupby("dst", sort=False).head(max_in_degree).reset_index(drop=True))
    weight = edges["weight"].to_numpy(dtype=np.float64)
    totals = pd.Series(weight).groupby(edges["dst"].to_numpy()).transform("sum").to_numpy()
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
def predict_shifts(model: GRAPE, graph: GraphInputs, perts: torch.Tensor, *, batch_size: int = 64,
                   outputs: torch.Tensor | None = None) -> torch.Tensor:
    """Shifts ``(n_conds, n_measured)`` of one member, in eval mode (only the measured
    positions ``outputs`` when given)."""
    if model.training:
        model.eval()
    out = [model(graph, perts[i:i + batch_size], outputs=outputs).shift
           for i in range(0, perts.size(0), batch_size)]
    width = graph.measured.numel() if outputs is None else outputs.numel()
    return torch.cat(out) if out else torch.zeros(0, width)


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


@torch.no_grad()
def learned_graph(members: Sequence[GRAPE], graph: GraphInputs) -> pd.DataFrame:
    """Ensemble mean of the learned adjacency (``src``, ``dst``, ``weight``)."""
    frames = []
    for model in members:
        if model.learner is None:
            continue
        model.eval()
        x = model.encode(graph)
        index, weight = model.learner.learned(x, graph.prior_index, graph.prior_weight)
        frames.append(pd.DataFrame({"src": index[0].numpy(), "dst": index[1].numpy(),
                                    "weight": weight.numpy()}))
    if not frames:
        return pd.DataFrame({"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64),
                             "weight": np.zeros(0, np.float32)})
    edges = pd.concat(frames).groupby(["src", "dst"], as_index=False)["weight"].sum()
    edges["weight"] /= len(frames)
    return edges


@torch.no_grad()
def fused_embeddings(model: GRAPE, graph: GraphInputs) -> np.ndarray:
    """The fine-tuned gene encoder's output ``(n_nodes, d)``."""
    model.eval()
    return model.encoder(graph.text, graph.dna, graph.dna_missing).numpy()
