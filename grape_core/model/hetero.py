r"""Heterogeneous GAT: one GAT per biotype pair, outputs summed (PyG ``HeteroConv``).

.. math::
    h^{(l+1)}_v = \sigma\Big(\sum_{r \in \mathcal{R}} \mathrm{GAT}^{(l)}_r\big(h^{(l)}, A_r\big)_v\Big),
    \quad \mathcal{R} = \{cc, cn, nc, nn\},

where the edge weight of the (mixed) graph enters each attention logit as an edge feature,
so the structure learner receives the gradient of the prediction loss through it.

Shapes:
    - **input:** ``x_dict[type] (n_type, d_in)``, ``edge_index_dict[rel] (2, n_rel_edges)``
      in per-type indices, ``edge_weight_dict[rel] (n_rel_edges,)``.
    - **output:** ``x_dict[type] (n_type, d_out)``.

Self-loops are part of the graph given to the layer (same-type relations), never added
inside ``GATConv``: that keeps a layer exact on a bipartite sub-graph, which the
perturbation pass relies on (see :mod:`grape_core.model.grape`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, HeteroConv

EdgeType = tuple[str, str, str]


class HeteroGAT(nn.Module):
    """Stack of ``HeteroConv`` layers of per-relation ``GATConv``."""

    def __init__(self, relations: Sequence[EdgeType], dims: Sequence[int], *, heads: int = 4,
                 dropout: float = 0.4):
        super().__init__()
        self.relations = [tuple(r) for r in relations]
        self.dropout = dropout
        self.layers = nn.ModuleList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            if d_out % heads:
                raise ValueError(f"layer width {d_out} is not divisible by {heads} heads")
            # heads are concatenated (d_out / heads each): per-edge work scales with d_out
            self.layers.append(HeteroConv({
                rel: GATConv(d_in, d_out // heads, heads=heads, concat=True, dropout=dropout,
                             add_self_loops=False, edge_dim=1)
                for rel in self.relations
            }, aggr="sum"))

    def layer(self, i: int, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor],
              edge_weight_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        """Layer ``i`` (activation included except after the last layer)."""
        present = {r: e for r, e in edge_index_dict.items() if e.numel()}
        attr = {r: edge_weight_dict[r].unsqueeze(-1) for r in present}
        out = self.layers[i](x_dict, present, edge_attr_dict=attr)
        for node_type, x in x_dict.items():  # a type that receives no edge keeps a zero message
            if node_type not in out:
                out[node_type] = x.new_zeros(x.size(0), self._out_dim(i))
        if i < len(self.layers) - 1:
            out = {t: F.dropout(F.elu(x), self.dropout, self.training) for t, x in out.items()}
        return out

    def _out_dim(self, i: int) -> int:
        conv = next(iter(self.layers[i].convs.values()))
        return conv.out_channels * conv.heads

    def forward(self, x_dict: dict[str, Tensor], edge_index_dict: dict[EdgeType, Tensor],
                edge_weight_dict: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        for i in range(len(self.layers)):
            x_dict = self.layer(i, x_dict, edge_index_dict, edge_weight_dict)
        return x_dict
