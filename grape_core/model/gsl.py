r"""Graph-structure learning: a learned gene-gene adjacency mixed with the prior.

.. math::
    Z = \mathrm{GCN}(H, A_{prior}), \qquad
    S_{ij} = \frac{1}{K}\sum_{k=1}^{K} \cos(w_k \odot z_i,\; w_k \odot z_j), \qquad
    A_{learn} = \mathrm{rownorm}(\mathrm{ReLU}(\mathrm{top}_k(S))),

    A = (1 - \alpha) A_{prior} + \alpha A_{learn}, \qquad
    \mathcal{R} = \lVert A_{learn} - A_{prior} \rVert^2_{\text{on the union of edges}} / n.

Shapes:
    - **input:** gene embeddings ``(n_nodes, d)``, prior ``edge_index (2, n_edges)``,
      ``edge_weight (n_edges,)`` (row-normalised per destination).
    - **output:** mixed ``edge_index (2, n_mixed)``, ``edge_weight (n_mixed,)`` and the
      regulariser (a scalar).

Edges point from source to destination (messages flow ``src -> dst``); the top-k
neighbours of a node are its sources. The learned weights keep their gradient unless
``detach`` reproduces the published code, which cut it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv
from torch_geometric.utils import coalesce, scatter


def row_normalise(edge_index: Tensor, weight: Tensor, n_nodes: int) -> Tensor:
    """Divide each edge weight by the sum of weights into its destination."""
    total = scatter(weight, edge_index[1], dim=0, dim_size=n_nodes, reduce="sum")
    return weight / total[edge_index[1]].clamp_min(1e-12)


class GraphLearner(nn.Module):
    """GCN learner + multi-head weighted cosine metric, top-k per node, mixed with the prior."""

    def __init__(self, dim: int, *, heads: int = 4, top_k: int = 10, mix: float = 0.5,
                 detach: bool = False, refresh: int = 1, chunk: int = 1024):
        super().__init__()
        self.gcn = GCNConv(dim, dim)
        self.metric = nn.Parameter(torch.empty(heads, dim))
        nn.init.xavier_uniform_(self.metric)
        self.top_k, self.mix, self.detach, self.chunk = top_k, mix, detach, chunk
        self.refresh = max(1, refresh)
        self._sources: Tensor | None = None
        self._steps = 0

    def learned(self, h: Tensor, edge_index: Tensor, edge_weight: Tensor) -> tuple[Tensor, Tensor]:
        """Top-k learned edges ``(2, n_nodes * k)`` and their row-normalised weights."""
        n = h.size(0)
        z = self.gcn(h, edge_index, edge_weight)
        # all heads in one matrix: cos averaged over heads = <u_i, u_j> with u = [..]/sqrt(K)
        u = F.normalize(z.unsqueeze(0) * self.metric.unsqueeze(1), dim=-1)  # (K, n, d)
        u = u.permute(1, 0, 2).reshape(n, -1) / self.metric.size(0) ** 0.5
        k = min(self.top_k, n - 1)
        # the top-k choice is discrete (no gradient): pick neighbours without autograd, then
        # recompute the chosen similarities with it, so the backward pass is per edge, not
        # n x n. In training the choice is refreshed every `refresh` steps (it moves slowly).
        stale = (self._sources is None or self._sources.size(0) != n * k
                 or not self.training or self._steps % self.refresh == 0)
        if self.training:
            self._steps += 1
        if stale:
            self._sources = self._select(u.detach(), k)
        src = self._sources
        dst = torch.arange(n, device=h.device).repeat_interleave(k)
        # node i's k sources against u_i: one batched product, no gather of u[dst]
        weight = F.relu(torch.bmm(u[src].view(n, k, -1), u.unsqueeze(2)).reshape(-1))
        learned_index = torch.stack([src, dst])
        keep = weight > 0
        learned_index, weight = learned_index[:, keep], weight[keep]
        return learned_index, row_normalise(learned_index, weight, n)

    @torch.no_grad()
    def _select(self, u: Tensor, k: int) -> Tensor:
        """Indices of each node's ``k`` most similar other nodes, flattened ``(n * k,)``."""
        n = u.size(0)
        sources = []
        for start in range(0, n, self.chunk):
            sim = u[start:start + self.chunk] @ u.T  # (chunk, n)
            rows = torch.arange(start, min(start + self.chunk, n), device=u.device)
            sim[rows - start, rows] = -2.0  # no self-edges: the model adds self-loops
            sources.append(sim.topk(k, dim=1).indices)
        return torch.cat(sources).reshape(-1)

    def forward(self, h: Tensor, edge_index: Tensor, edge_weight: Tensor
                ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Mixed graph, regulariser, and the learned edges (for export)."""
        n = h.size(0)
        learned_index, learned_weight = self.learned(h, edge_index, edge_weight)
        if self.detach:
            learned_weight = learned_weight.detach()
        mixed_index, mixed_weight = coalesce(
            torch.cat([edge_index, learned_index], dim=1),
            torch.cat([(1 - self.mix) * edge_weight, self.mix * learned_weight]),
            num_nodes=n, reduce="sum",
        )
        _, diff = coalesce(
            torch.cat([edge_index, learned_index], dim=1),
            torch.cat([-edge_weight, learned_weight]), num_nodes=n, reduce="sum",
        )
        reg = (diff * diff).sum() / n
        return mixed_index, mixed_weight, reg, (learned_index, learned_weight)
