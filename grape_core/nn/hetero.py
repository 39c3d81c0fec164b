r"""Heterogeneous propagation of a perturbation: one message function per biotype relation,
signed edge weights inside the messages, summed at each gene (PyG ``HeteroConv`` style).

.. math::
    \delta^{(0)} = x_0, \qquad
    \delta^{(l+1)}_v = x_{0,v} + \sum_{r \in \mathcal{R}} \sum_{u \to v \in E_r}
        w_{uv}\, \psi_r\big(\delta^{(l)}_u\big), \qquad
    \psi_r(x) = x + \sum_{h} c_{rh} \tanh(b_{rh}\, x),

with :math:`x_0` the change the perturbation makes at the perturbed genes (the
knock-down or activation itself), :math:`w` the learned signed weights
(:mod:`~grape_core.nn.gsl`) and :math:`\psi_r` a small monotone-at-start message
function per relation (:math:`c = 0` at initialisation, so messages start linear). With
linear messages, ``L`` steps give :math:`\sum_{l \le L} W^l x_0`, the steady state
:math:`(I - W)^{-1} x_0` truncated. The state is the perturbation-induced change of every
gene, zero where the perturbation does not reach, so every sample of a batch is
independent of the others, and no attention normalises the marked gene's signal away.

Shapes:
    - **input:** ``x0 (n_nodes, batch)`` (genes in rows: gathering a source reads one
      contiguous row for the whole batch), :class:`~grape_core.nn.gsl.Edges`.
    - **output:** ``(n_nodes, batch)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .gsl import Edges
from .sparse import weighted_sum


class RelationMessages(nn.Module):
    """:math:`\\psi_r`: a residual, saturating message function per relation."""

    def __init__(self, n_relations: int, hidden: int = 8, *, nonlinear: bool = True):
        super().__init__()
        self.nonlinear = nonlinear and hidden > 0
        self.c = nn.Parameter(torch.zeros(n_relations, max(hidden, 0)))
        self.b = nn.Parameter(torch.linspace(0.25, 2.0, max(hidden, 0)).repeat(n_relations, 1))

    def sent(self, state: Tensor, edges: Edges) -> Tensor:
        """What every node sends to a destination of each type, ``(n_nodes, n_types, batch)``.

        :math:`\\psi_r` depends on the source's value and the relation only, so it is
        evaluated once per node and destination type, not per edge.
        """
        t = edges.n_types
        x = state.unsqueeze(1)  # (n, 1, B)
        if not self.nonlinear:
            return x.expand(-1, t, -1)
        n, h = state.size(0), self.c.size(1)
        rel = (edges.node_type.unsqueeze(1) * t + torch.arange(t, device=state.device)).reshape(-1)
        # (n, T, 1, H); index_select for a GPU's backward, as in the structure learner
        c = self.c.index_select(0, rel).view(n, t, 1, h)
        b = self.b.index_select(0, rel).view(n, t, 1, h)
        return x + (c * torch.tanh(x.unsqueeze(-1) * b)).sum(-1)

    def forward(self, state: Tensor, edges: Edges) -> Tensor:
        """Messages of every edge before weighting, ``(n_edges, batch)``."""
        if not self.nonlinear:
            return state.index_select(0, edges.src)
        # row src * T + type(dst) of the sent messages; index_select's backward adds into the
        # rows (index_add), where indexing's would sort the edges first on a GPU
        sent = self.sent(state, edges)
        rows = edges.src * edges.n_types + edges.rel % edges.n_types
        return sent.reshape(-1, sent.size(-1)).index_select(0, rows)


def _by_destination_type(edges: Edges) -> list[Tensor | None]:
    """The weighted adjacency split by destination type, ``(n_nodes, n_nodes)`` sparse COO
    each (row = destination); built once per :class:`Edges` (a cached eval-mode graph)."""
    if edges.by_destination_type is not None:
        return edges.by_destination_type
    n = edges.node_type.numel()
    dst_type = edges.rel % edges.n_types
    out: list[Tensor | None] = []
    for t in range(edges.n_types):
        keep = dst_type == t
        if not bool(keep.any()):
            out.append(None)
            continue
        index = torch.stack([edges.dst[keep], edges.src[keep]])
        out.append(torch.sparse_coo_tensor(index, edges.weight[keep].detach(), (n, n),
                                           check_invariants=False).coalesce())
    edges.by_destination_type = out
    return out


class HeteroPropagation(nn.Module):
    """``steps`` rounds of relation-typed, weighted message passing (see the module docstring)."""

    def __init__(self, n_relations: int, *, steps: int = 4, hidden: int = 8, nonlinear: bool = True):
        super().__init__()
        if steps < 0:
            raise ValueError(f"propagation_steps={steps}: must be >= 0 (0: no propagation)")
        self.steps = steps
        self.messages = RelationMessages(n_relations, hidden, nonlinear=nonlinear)

    def step(self, state: Tensor, x0: Tensor, edges: Edges) -> Tensor:
        """One round: ``x0`` plus the weighted messages of ``state``.

        On a CPU (``edges.layout``), one CSR product, with and without autograd. Elsewhere,
        with autograd, per edge (gather, weight, scatter), and without (prediction, screens)
        one sparse product per destination type; neither sparse form holds an
        ``n_edges x batch`` message tensor.
        """
        if edges.layout is not None:
            sent = self.messages.sent(state, edges)  # (n, T, B): row src * T + type(dst)
            return x0 + weighted_sum(edges.weight, sent.reshape(-1, sent.size(-1)), edges.layout)
        if torch.is_grad_enabled():
            msg = self.messages(state, edges) * edges.weight.unsqueeze(1)
            return x0.index_add(0, edges.dst, msg)
        sent = self.messages.sent(state, edges)
        out = x0.clone()
        for t, matrix in enumerate(_by_destination_type(edges)):
            if matrix is not None:
                out += torch.sparse.mm(matrix, sent[:, t].contiguous())
        return out

    def forward(self, x0: Tensor, edges: Edges) -> Tensor:
        state = x0
        for _ in range(self.steps):
            state = self.step(state, x0, edges)
        return state
