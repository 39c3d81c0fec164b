r"""Graph-structure learning: signed, learned weights for the prior's edges and a few
learned-only edges.

For an edge :math:`e = (u \to v)` of biotype relation :math:`r` with prior weight
:math:`p_e` (0 for a learned-only edge):

.. math::
    w_e = a_r\, p_e + \theta_e + \beta_r\, S_{uv}, \qquad
    S_{uv} = \frac{1}{K}\sum_{k=1}^{K} \cos\big(m_k \odot q_u,\; m_k \odot q_v\big), \qquad
    q = \mathrm{GCN}(z, A_{prior}),

    \mathcal{R} = \sum_e \big\lvert w_e - a_r\, p_e \big\rvert
               = \sum_e \big\lvert \theta_e + \beta_r S_{uv} \big\rvert .

:math:`a_r` scales the prior per relation (the prior says *where* to look, the data say how
strongly and with which sign), :math:`\theta_e` reweights, flips or prunes one edge, and
:math:`\beta_r S_{uv}` is the paper's metric learner (a GCN over the prior, then a
multi-head weighted cosine of gene embeddings). Learned-only edges are the :math:`k` most
similar non-prior sources of each gene under that metric; they enter with the weight
:math:`\beta_r S_{uv}`, which starts at 0 (never as full neighbours). The regulariser is 0
exactly when the learned graph is the prior scaled per relation, so it can reach zero; its
L1 form, edge by edge, prunes what the data do not support (the metric term pays for every
edge it moves, not once).

Shapes:
    - **input:** gene embeddings ``(n_nodes, d)``, prior ``edge_index (2, n_prior)`` and
      ``edge_weight (n_prior,)``, node type ``(n_nodes,)``.
    - **output:** :class:`Edges` with ``n_prior + n_learned`` edges; the prior's edges come
      first, in the prior's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from .sparse import EdgeLayout, edge_dot


@dataclass
class Edges:
    """A weighted, relation-typed edge list (messages flow ``src -> dst``)."""

    src: Tensor
    dst: Tensor
    rel: Tensor
    """Relation id ``src_type * n_types + dst_type``."""
    weight: Tensor
    n_prior: int
    """The first ``n_prior`` edges are the prior's (same order); the rest are learned-only."""
    node_type: Tensor
    """``(n_nodes,)`` type id of every node."""
    n_types: int
    change: Tensor
    """:math:`\\mathcal{R}`: the L1 norm of what structure learning changed (a scalar)."""
    layout: EdgeLayout | None = None
    """CPU only: the edges as rows ``dst`` and columns ``src * n_types + type(dst)``, the
    layout of :func:`~grape_core.nn.sparse.weighted_sum` in propagation."""
    by_destination_type: list[Tensor | None] | None = field(default=None, repr=False)
    """Other devices, without autograd: the weighted adjacency per destination type (sparse
    COO), built by the first propagation of a cached eval-mode graph."""


def relation_ids(src: Tensor, dst: Tensor, node_type: Tensor, n_types: int) -> Tensor:
    return node_type[src] * n_types + node_type[dst]


def sparse_products(device: torch.device) -> bool:
    """Edge products as CSR sparse products (:mod:`~grape_core.nn.sparse`): on a CPU,
    where they are several times faster than a gather and scatter per edge. Other devices
    keep the per-edge form."""
    return device.type == "cpu"


@dataclass(frozen=True)
class _Layouts:
    """Both sparse layouts of one edge list, and what they were built for."""

    prior_index: Tensor
    node_type: Tensor
    learned_src: Tensor
    learned_dst: Tensor
    scores: EdgeLayout
    """rows ``dst``, columns ``src``: the metric learner's edge scores."""
    messages: EdgeLayout
    """rows ``dst``, columns ``src * n_types + type(dst)``: propagation."""

    def fits(self, prior_index: Tensor, node_type: Tensor, ls: Tensor, ld: Tensor) -> bool:
        return (self.prior_index is prior_index and torch.equal(self.node_type, node_type)
                and torch.equal(self.learned_src, ls) and torch.equal(self.learned_dst, ld))


class StructureLearner(nn.Module):
    """Signed edge weights over the prior plus learned-only edges (see the module docstring).

    Parameters
    ----------
    d_in
        Width of the gene embeddings.
    n_prior
        Number of prior edges (one :math:`\\theta_e` each).
    n_relations
        Biotype relations (4, or 1 for the homogeneous ablation).
    learn
        ``False``: weights are :math:`a_r p_e` only (no structure learning).
    detach
        Reproduces the published code: the learned part gets no gradient from the
        prediction loss (only from the regulariser).
    """

    def __init__(self, d_in: int, n_nodes: int, n_prior: int, n_relations: int, *,
                 metric_dim: int = 16, heads: int = 4, top_k: int = 5, learn: bool = True,
                 detach: bool = False, chunk: int = 2048):
        super().__init__()
        self.learn, self.detach, self.top_k, self.chunk = learn, detach, top_k, chunk
        self.scale = nn.Parameter(torch.zeros(n_relations))
        self.theta = nn.Parameter(torch.zeros(n_prior))
        self.beta = nn.Parameter(torch.zeros(n_relations))
        self.gcn = GCNConv(d_in, metric_dim)
        self.metric = nn.Parameter(torch.empty(heads, metric_dim))
        nn.init.xavier_uniform_(self.metric)
        k = max(0, min(top_k, n_nodes - 1)) if learn else 0
        # learned-only candidates: each gene's k sources (rows = destinations); a fixed shape,
        # with the slots that hold no usable candidate switched off
        self.register_buffer("learned_sources", torch.arange(n_nodes).unsqueeze(1).repeat(1, k))
        self.register_buffer("learned_valid", torch.zeros(n_nodes, k, dtype=torch.bool))
        self._layouts: _Layouts | None = None
        self._gcn_prior: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def metric_embedding(self, z: Tensor, prior_index: Tensor, prior_weight: Tensor) -> Tensor:
        """``(n_nodes, heads * metric_dim)`` rows whose dot product is :math:`S_{uv}`."""
        index, weight = self._normalised_prior(prior_index, prior_weight, z.size(0))
        # GCNConv's own forward on the normalised prior, without normalising it at every step
        # (gcn_norm drops self-loops with a boolean mask: a wait on a GPU)
        q = self.gcn.propagate(index, x=self.gcn.lin(z), edge_weight=weight) + self.gcn.bias
        u = F.normalize(q.unsqueeze(0) * self.metric.unsqueeze(1), dim=-1)  # (K, n, d)
        return u.permute(1, 0, 2).reshape(q.size(0), -1) / self.metric.size(0) ** 0.5

    def _apply(self, fn, recurse=True):  # .to(device): the cached forms stay where they were
        self._layouts = self._gcn_prior = None
        return super()._apply(fn, recurse)

    def _normalised_prior(self, prior_index: Tensor, prior_weight: Tensor,
                          n: int) -> tuple[Tensor, Tensor]:
        """The prior with self-loops and GCN normalisation, computed once per prior."""
        cached = self._gcn_prior
        if cached is not None and cached[0] is prior_index and cached[1] is prior_weight:
            return cached[2], cached[3]
        gcn = self.gcn
        # the metric asks which genes the prior links, not how: a signed prior's sizes (a
        # degree summing signed weights could be 0 or negative)
        index, weight = gcn_norm(prior_index, prior_weight.abs(), n, gcn.improved,
                                 gcn.add_self_loops, gcn.flow, prior_weight.dtype)
        self._gcn_prior = (prior_index, prior_weight, index, weight)
        return index, weight

    @torch.no_grad()
    def refresh(self, z: Tensor, prior_index: Tensor, prior_weight: Tensor) -> None:
        """Choose the learned-only candidates: each gene's ``top_k`` most similar sources
        under the current metric, prior edges and self excluded. The choice is discrete (no
        gradient); their weights are differentiable."""
        n, k = self.learned_sources.shape
        if k == 0:
            return
        u = self.metric_embedding(z, prior_index, prior_weight)
        prior_key = torch.sort(prior_index[1] * n + prior_index[0]).values
        sources, valid = [], []
        for start in range(0, n, self.chunk):
            rows = torch.arange(start, min(start + self.chunk, n), device=u.device)
            sim = u[rows] @ u.T  # (chunk, n): row = destination, column = source
            sim[rows - start, rows] = -2.0
            top = sim.topk(k, dim=1)
            key = rows.unsqueeze(1) * n + top.indices
            pos = torch.searchsorted(prior_key, key).clamp(max=max(prior_key.numel() - 1, 0))
            in_prior = (prior_key[pos] == key) if prior_key.numel() else torch.zeros_like(key, dtype=torch.bool)
            sources.append(top.indices)
            valid.append((top.values > -2.0) & ~in_prior)
        self.learned_sources.copy_(torch.cat(sources))
        self.learned_valid.copy_(torch.cat(valid))

    def layouts(self, prior_index: Tensor, node_type: Tensor, n_types: int, ls: Tensor,
                ld: Tensor) -> _Layouts:
        """The sparse layouts of the prior plus the learned-only edges ``ls -> ld``; rebuilt
        only when those edges change (a refresh), not at every step."""
        cached = self._layouts
        if cached is not None and cached.fits(prior_index, node_type, ls, ld):
            return cached
        n = node_type.numel()
        src, dst = torch.cat([prior_index[0], ls]), torch.cat([prior_index[1], ld])
        messages = EdgeLayout.build(dst, src * n_types + node_type[dst], n, n * n_types)
        self._layouts = _Layouts(prior_index, node_type, ls, ld,
                                 EdgeLayout.build(dst, src, n, n), messages)
        return self._layouts

    def forward(self, z: Tensor, prior_index: Tensor, prior_weight: Tensor, node_type: Tensor,
                n_types: int, *, fixed_shapes: bool = False) -> Edges:
        """``fixed_shapes``: keep every candidate slot of the learned-only edges, an unused one
        with weight 0, instead of selecting the used ones (a shape the data decide)."""
        src, dst = prior_index
        rel = relation_ids(src, dst, node_type, n_types)
        # index_select, not indexing: on a GPU the backward of indexing a 4-entry table with
        # every edge runs the edges of one entry one after the other (a millisecond each)
        weight = self.scale.index_select(0, rel) * prior_weight
        if fixed_shapes:
            n, k = self.learned_sources.shape
            ld = torch.arange(n, device=src.device).unsqueeze(1).expand(n, k).reshape(-1)
            ls, used = self.learned_sources.reshape(-1), self.learned_valid.reshape(-1)
        else:
            ld, slot = self.learned_valid.nonzero(as_tuple=True)
            ls, used = self.learned_sources[ld, slot], None  # none without structure learning
        layouts = (self.layouts(prior_index, node_type, n_types, ls, ld)
                   if sparse_products(src.device) else None)
        messages = layouts.messages if layouts is not None else None
        if not self.learn:
            return Edges(src, dst, rel, weight, src.numel(), node_type, n_types,
                         weight.new_zeros(()), messages)
        u = self.metric_embedding(z, prior_index, prior_weight)
        lrel = relation_ids(ls, ld, node_type, n_types)
        all_src, all_dst = torch.cat([src, ls]), torch.cat([dst, ld])
        score = (edge_dot(u, layouts.scores) if layouts is not None
                 else (u.index_select(0, all_dst) * u.index_select(0, all_src)).sum(-1))
        n_prior = src.numel()
        learned = self.theta + self.beta.index_select(0, rel) * score[:n_prior]
        learned_only = self.beta.index_select(0, lrel) * score[n_prior:]
        if used is not None:
            learned_only = learned_only * used
        change = learned.abs().sum() + learned_only.abs().sum()
        if self.detach:
            learned, learned_only = learned.detach(), learned_only.detach()
        return Edges(all_src, all_dst, torch.cat([rel, lrel]),
                     torch.cat([weight + learned, learned_only]), n_prior, node_type, n_types,
                     change, messages)
