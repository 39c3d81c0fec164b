r"""The GRAPE model: gene encoder -> structure learning -> heterogeneous GAT -> decoder.

For a perturbation of the genes :math:`P` (one gene or a pair):

.. math::
    x_v = W_{in}\,\mathrm{Enc}(t_v, s_v) + \mathbb{1}[v \in P]\, p, \qquad
    Z^{P} = \mathrm{HeteroGAT}(x, A), \qquad
    g^{P} = \mathrm{MLP}\Big(\sum_{u \in P} Z^{P}_u\Big),

    r^{P}_m = w_m^\top \,\mathrm{MLP}_{dec}([Z^{P}_m \,\|\, g^{P}]) + b_m, \qquad
    \Delta^{P} = \bar\Delta_{train} + r^{P}
    \quad\text{or, for a pair } \{a, b\}:\quad
    \Delta^{ab} = \Delta^{a} + \Delta^{b} + r^{ab},

with :math:`t, s` the text and DNA views, :math:`p` a learned perturbation vector (the same
in training and inference), :math:`A` the prior mixed with the learned graph,
:math:`\bar\Delta_{train}` the mean training shift and :math:`\Delta^{a}` the measured
training shift of a single (predicted when it was not measured). Prediction = control mean
+ shift.

Efficiency: the graph, the encoder and the GAT pass over the unperturbed graph are computed
once per batch. Marking :math:`P` changes layer-``l`` outputs only within ``l`` hops of
:math:`P`, so each sample recomputes just those nodes, exactly, on a bipartite sub-graph
that holds all in-edges of the changed nodes (their sources read the shared pass). Of
those, only the nodes the prediction reads are computed: the requested genes and
:math:`P` at the last layer, and one hop of in-neighbours more per earlier layer; a screen
that asks for one gene therefore costs a fraction of a full prediction.

Shapes:
    - **input:** :class:`GraphInputs` (``n_nodes`` genes, ``n_measured`` of them measured)
      and ``perts (batch, 2)`` node indices, ``-1`` padding for singles.
    - **output:** :class:`ModelOutput` with ``shift (batch, n_measured)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import keys
from ..config import ModelConfig
from .encoder import GeneEncoder
from .gsl import GraphLearner
from .hetero import HeteroGAT


@dataclass
class GraphInputs:
    """What a model knows about its genes; fixed for the model's life.

    Attributes
    ----------
    text, dna
        View features ``(n_nodes, d_text)``, ``(n_nodes, d_dna)``.
    dna_missing
        ``(n_nodes,)`` bool, genes without a sequence.
    is_coding
        ``(n_nodes,)`` bool, the node type.
    prior_index, prior_weight
        Prior graph ``(2, n_edges)`` (``src -> dst``) and ``(n_edges,)``, row-normalised.
    measured
        ``(n_measured,)`` node index of each measured gene, in output order.
    """

    text: Tensor
    dna: Tensor
    dna_missing: Tensor
    is_coding: Tensor
    prior_index: Tensor
    prior_weight: Tensor
    measured: Tensor

    @property
    def n_nodes(self) -> int:
        return int(self.text.size(0))

    def to(self, device: str | torch.device) -> "GraphInputs":
        return GraphInputs(**{k: v.to(device) for k, v in vars(self).items()})


@dataclass
class ModelOutput:
    shift: Tensor
    """Predicted shift from control, ``(batch, n_measured)``."""
    reg: Tensor
    """Graph regulariser (scalar)."""
    learned_index: Tensor | None = None
    learned_weight: Tensor | None = None


@dataclass
class SharedPass:
    """What every sample of a batch shares: the graph and the unperturbed layer outputs."""

    base: list[Tensor]
    """Inputs ``(n_nodes, hidden)`` then each GAT layer's output."""
    node_type: Tensor
    src: Tensor
    dst: Tensor
    weight: Tensor
    rel: Tensor
    reg: Tensor
    learned_index: Tensor | None
    learned_weight: Tensor | None
    out_edges: tuple[Tensor, Tensor]
    """Edges grouped by source: ``(ptr (n_nodes + 1,), edge ids)``, CSR."""
    in_edges: tuple[Tensor, Tensor]
    """Edges grouped by destination, each group in edge order (as the full pass sums)."""
    memo: dict[str, object] = field(default_factory=dict)
    """What every call for all measured genes reuses (a cached pass serves many calls)."""


def _csr(node: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Edge ids grouped by ``node`` (stable) and the group offsets ``(n + 1,)``."""
    order = torch.argsort(node, stable=True)
    ptr = torch.zeros(n + 1, dtype=torch.long, device=node.device)
    ptr[1:] = torch.cumsum(torch.bincount(node, minlength=n), 0)
    return ptr, order


def _incident(keys_: Tensor, csr: tuple[Tensor, Tensor], n: int) -> tuple[Tensor, Tensor]:
    """Sample and edge id of every edge at the (sample, node) keys ``sample * n + node``."""
    ptr, order = csr
    node = keys_ % n
    counts = ptr[node + 1] - ptr[node]
    first = torch.repeat_interleave(ptr[node], counts)
    offset = torch.arange(first.numel(), device=keys_.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    return torch.repeat_interleave(keys_ // n, counts), order[first + offset]


def _member(keys_: Tensor, sorted_keys: Tensor) -> Tensor:
    """``keys_`` in the sorted tensor ``sorted_keys`` (bool, elementwise)."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys_, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys_).clamp(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == keys_


class GRAPE(nn.Module):
    """GRAPE with the published code's bugs fixed (see :class:`~grape_core.config.ModelConfig`)."""

    def __init__(self, config: ModelConfig, *, n_nodes: int, n_measured: int,
                 encoder_args: dict):
        super().__init__()
        self.config = config
        c = config
        self.encoder = GeneEncoder(**encoder_args)
        self.input = nn.Linear(self.encoder.out_dim, c.hidden)
        self.pert = nn.Parameter(torch.randn(c.hidden) * 0.5)
        self.learner = (GraphLearner(c.hidden, heads=c.gsl_heads, top_k=c.gsl_top_k,
                                     mix=c.gsl_mix, detach=c.detach_structure,
                                     refresh=c.gsl_refresh)
                        if c.structure_learning else None)
        self.node_types = list(keys.NODE_TYPES) if c.heterogeneous else [keys.GENE]
        self.relations = [keys.relation(s, d) for s in self.node_types for d in self.node_types]
        self.gnn = HeteroGAT(self.relations, [c.hidden, *c.gnn_dims], heads=c.heads,
                             dropout=c.dropout)
        d = c.gnn_dims[-1]
        self.global_mlp = (nn.Sequential(nn.Linear(d, d), nn.ELU(), nn.Linear(d, d))
                           if c.global_path else None)
        self.pair_vec = nn.Parameter(torch.zeros(d)) if c.additive_pairs else None
        # decoder layer 1 split in two so that its gene part runs once per gene, not per sample
        self.decode_gene = nn.Linear(d, c.decoder_hidden)
        self.decode_global = nn.Linear(d, c.decoder_hidden, bias=False) if c.global_path else None
        # zero heads: an untrained model predicts the shared shift exactly
        self.head_w = nn.Parameter(torch.zeros(n_measured, c.decoder_hidden))
        self.head_b = nn.Parameter(torch.zeros(n_measured))
        self.register_buffer("mean_shift", torch.zeros(n_measured))
        self.register_buffer("known_shift", torch.zeros(0, n_measured))
        self.register_buffer("known_row", torch.full((n_nodes,), -1, dtype=torch.long))
        self._inference_cache: tuple[GraphInputs, SharedPass] | None = None

    def train(self, mode: bool = True) -> "GRAPE":
        if mode or mode != self.training:  # training may change the weights: drop the cache
            self._inference_cache = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._inference_cache = None
        return super().load_state_dict(*args, **kwargs)

    # ------------------------------------------------------------------ training statistics
    def set_training_shifts(self, mean_shift: Tensor, singles: dict[int, Tensor]) -> None:
        """Shared shift (mean over training conditions) and measured training singles."""
        if self.config.shared_shift:
            self.mean_shift.copy_(mean_shift)
        rows = torch.full_like(self.known_row, -1)
        table = []
        if self.config.additive_pairs:
            for i, (node, shift) in enumerate(sorted(singles.items())):
                rows[node] = i
                table.append(shift)
        self.known_row = rows
        self.known_shift = (torch.stack(table) if table
                            else self.head_b.new_zeros(0, self.head_b.numel()))

    def index_tensors(self) -> dict[str, int]:
        """Integer tensors of :meth:`state_dict` that index other data: name -> exclusive
        upper bound of their values (``-1`` means "none"). A loaded model folder is checked
        against these bounds, so a stored index can never point outside what it indexes.
        """
        return {"known_row": int(self.known_shift.size(0))}

    # ------------------------------------------------------------------ graph
    def _graph(self, g: GraphInputs, x: Tensor):
        n = g.n_nodes
        if self.learner is not None:
            index, weight, reg, (li, lw) = self.learner(x, g.prior_index, g.prior_weight)
        else:
            index, weight, reg, li, lw = g.prior_index, g.prior_weight, x.new_zeros(()), None, None
        loops = torch.arange(n, device=x.device)
        index = torch.cat([index, torch.stack([loops, loops])], dim=1)
        weight = torch.cat([weight, x.new_ones(n)])
        return index, weight, reg, li, lw

    def _types(self, g: GraphInputs) -> tuple[Tensor, Tensor]:
        """Node type id ``(n_nodes,)`` and index within its type ``(n_nodes,)``."""
        if len(self.node_types) == 1:
            node_type = torch.zeros(g.n_nodes, dtype=torch.long, device=g.text.device)
        else:
            node_type = (~g.is_coding).long()  # 0 coding, 1 noncoding (keys.NODE_TYPES order)
        local = torch.zeros_like(node_type)
        for t in range(len(self.node_types)):
            mask = node_type == t
            local[mask] = torch.arange(int(mask.sum()), device=node_type.device)
        return node_type, local

    def _split(self, keys_: Tensor, n: int, node_type: Tensor):
        """Group global keys (``sample * n + node``) by node type; sorted per type."""
        out = []
        for t in range(len(self.node_types)):
            k = keys_[node_type[keys_ % n] == t]
            out.append(torch.sort(k).values)
        return out

    # ------------------------------------------------------------------ forward
    def encode(self, g: GraphInputs) -> Tensor:
        """Gene inputs ``(n_nodes, hidden)`` from the two views."""
        fused = self.encoder(g.text, g.dna, g.dna_missing, use_text=self.config.use_text,
                             use_dna=self.config.use_dna)
        if not self.config.finetune_encoder:
            fused = fused.detach()
        return self.input(fused)

    def _marked(self, x: Tensor, nodes: Tensor) -> Tensor:
        """Input rows of the perturbed nodes: one encoding for training and inference,
        or the published pair (zero in training, negate at inference)."""
        if self.config.perturbation_encoding == "paper":
            return torch.zeros_like(x[nodes]) if self.training else -x[nodes]
        return x[nodes] + self.pert

    def shared(self, g: GraphInputs, last_nodes: Tensor | None = None) -> SharedPass:
        """Encoder, graph and the unperturbed GAT pass; cached for inference (eval mode,
        no autograd), where the weights cannot change between calls.

        ``last_nodes`` (node ids): outside the cache (training), the last layer is computed
        only at these nodes, the only ones the decoder reads; its other rows are zero.
        """
        cache = not self.training and not torch.is_grad_enabled()
        cached = self._inference_cache  # one read: other threads may replace it meanwhile
        if cache and cached is not None and cached[0] is g:
            return cached[1]
        x = self.encode(g)
        index, weight, reg, li, lw = self._graph(g, x)
        node_type, _ = self._types(g)
        src, dst = index
        rel = node_type[src] * len(self.node_types) + node_type[dst]
        base = [x]
        last = len(self.gnn.layers) - 1
        for i in range(len(self.gnn.layers)):
            if i == last and last_nodes is not None and not cache:
                base.append(self._layer_at(i, base[-1], last_nodes, node_type, src, dst, weight, rel))
            else:
                base.append(self._layer_full(i, base[-1], node_type, src, dst, weight, rel))
        n = g.n_nodes
        out = SharedPass(base, node_type, src, dst, weight, rel, reg, li, lw,
                         out_edges=_csr(src, n), in_edges=_csr(dst, n))
        if cache:
            self._inference_cache = (g, out)
        return out

    def forward(self, g: GraphInputs, perts: Tensor, *, outputs: Tensor | None = None) -> ModelOutput:
        """Shifts of the measured genes (or of the measured positions ``outputs`` only:
        exact, and much cheaper when few genes are needed, as in a screen)."""
        perts = perts.to(g.text.device)
        b = perts.size(0)
        every_gene = outputs is None
        if every_gene:
            outputs = torch.arange(g.measured.numel(), device=perts.device)
        want = self._needed_singles(perts)
        if every_gene:
            s = self.shared(g)
        else:  # the decoder reads the last layer at the requested and the perturbed genes
            s = self.shared(g, torch.cat([g.measured[outputs], perts[perts >= 0], want[want >= 0]]))
        all_perts = torch.cat([perts, want], dim=0) if want.numel() else perts
        gene_part, pooled = self._perturbed(all_perts, g, s, outputs, every_gene)
        if self.global_mlp is not None:
            glob = self.global_mlp(pooled)  # (batch', d)
            if self.pair_vec is not None:
                is_pair = (all_perts >= 0).sum(1) == 2
                glob = glob + is_pair.unsqueeze(1).float() * self.pair_vec
            gene_part = gene_part + self.decode_global(glob).unsqueeze(1)
        hidden = F.elu(gene_part)  # (batch', n_outputs, decoder_hidden)
        residual = torch.einsum("bmh,mh->bm", hidden, self.head_w[outputs]) + self.head_b[outputs]
        shift = self._compose(all_perts, residual, b, outputs)
        return ModelOutput(shift=shift, reg=s.reg, learned_index=s.learned_index,
                           learned_weight=s.learned_weight)

    def _layer_full(self, i, h, node_type, src, dst, weight, rel) -> Tensor:
        n = h.size(0)
        keys_ = torch.arange(n, device=h.device)
        return self._run_layer(i, keys_, keys_, h, node_type, src, dst, weight, rel, n, None)[1]

    def _layer_at(self, i, h, nodes, node_type, src, dst, weight, rel) -> Tensor:
        """Layer ``i`` at ``nodes`` only (exact: all their in-edges); zero rows elsewhere."""
        n = h.size(0)
        dest = torch.unique(nodes)
        into = _member(dst, dest)
        keys_ = torch.unique(torch.cat([src[into], dest]))
        rows, _ = self._run_layer(i, keys_, dest, None, node_type, src[into], dst[into],
                                  weight[into], rel[into], n, lambda k: h[k])
        where = torch.cat([k for k, _ in rows])
        values = torch.cat([v for _, v in rows])
        return values.new_zeros(n, values.size(1)).index_put((where,), values)

    def _run_layer(self, i, node_keys, dest_keys, feats_global, node_type, src_keys, dst_keys,
                   weight, rel, n, feats_of):
        """Run GAT layer ``i`` on the (virtual) nodes ``node_keys`` with edges
        ``src_keys -> dst_keys``; return outputs for ``dest_keys`` and (full pass) globally."""
        groups = self._split(node_keys, n, node_type)
        x_dict, ei, ew = {}, {}, {}
        for t, k in enumerate(groups):
            feats = feats_of(k) if feats_of is not None else feats_global[k % n]
            x_dict[self.node_types[t]] = feats
        for r, relation in enumerate(self.relations):
            s_t, d_t = divmod(r, len(self.node_types))
            m = rel == r
            if not bool(m.any()):
                ei[relation] = src_keys.new_zeros(2, 0)
                ew[relation] = weight.new_zeros(0)
                continue
            s = torch.searchsorted(groups[s_t], src_keys[m])
            d = torch.searchsorted(groups[d_t], dst_keys[m])
            ei[relation] = torch.stack([s, d])
            ew[relation] = weight[m]
        out = self.gnn.layer(i, x_dict, ei, ew)
        d_out = next(iter(out.values())).size(1)
        if feats_of is None:  # full pass: scatter back to global order
            full = feats_global.new_zeros(n, d_out)
            for t, k in enumerate(groups):
                full[k] = out[self.node_types[t]]
            return None, full
        rows = []
        for t, k in enumerate(groups):
            is_dest = torch.isin(k, dest_keys)
            rows.append((k[is_dest], out[self.node_types[t]][is_dest]))
        return rows, None

    def _perturbed(self, perts, g, s: SharedPass, outputs: Tensor, every_gene: bool):
        """Per-sample gene part of the decoder ``(batch, n_measured, decoder_hidden)`` and the
        pooled embedding of each sample's perturbed genes ``(batch, d)``."""
        b, n = perts.size(0), g.n_nodes
        base, node_type, src, dst, weight, rel = s.base, s.node_type, s.src, s.dst, s.weight, s.rel
        sample, col = (perts >= 0).nonzero(as_tuple=True)
        nodes = perts[sample, col]
        # nodes are tracked as keys sample * n + node: a sample's changed nodes are few
        key_of = sample * n + nodes
        perturbed = torch.unique(key_of)
        changed = perturbed
        if every_gene and "needed" in s.memo:
            needed_everywhere = s.memo["needed"]
        else:
            needed_everywhere = self._needed_everywhere(g, s, outputs)
            if every_gene:
                s.memo["needed"] = needed_everywhere
        needed_here = self._needed_here(g, s, perturbed)
        over_keys, over_rows = key_of, self._marked(base[0], nodes)
        shared = b  # pseudo-sample whose nodes are the shared, unperturbed pass
        for i in range(len(self.gnn.layers)):
            hb, he = _incident(changed, s.out_edges, n)  # edges leaving a changed node
            reach = torch.unique(torch.cat([changed, hb * n + dst[he]]))
            reach = reach[needed_everywhere[i][reach % n] | _member(reach, needed_here[i])]
            eb, ee = _incident(reach, s.in_edges, n)  # all in-edges of reached nodes
            s_node = src[ee]
            # an unchanged source reads the shared pass: one node for all samples
            e_src = torch.where(_member(eb * n + s_node, changed), eb * n + s_node, shared * n + s_node)
            e_dst = eb * n + dst[ee]
            node_keys = torch.unique(torch.cat([e_src, e_dst]))
            dest_keys = reach
            order = torch.argsort(over_keys)
            sorted_keys, sorted_rows = over_keys[order], over_rows[order]
            prev = base[i]

            def feats_of(k, prev=prev, sorted_keys=sorted_keys, sorted_rows=sorted_rows):
                pos = torch.searchsorted(sorted_keys, k).clamp(max=sorted_keys.numel() - 1)
                hit = sorted_keys[pos] == k
                return torch.where(hit.unsqueeze(1), sorted_rows[pos], prev[k % n])

            rows, _ = self._run_layer(i, node_keys, dest_keys, None, node_type, e_src, e_dst,
                                      weight[ee], rel[ee], n, feats_of)
            over_keys = torch.cat([k for k, _ in rows])
            over_rows = torch.cat([v for _, v in rows])
            changed = reach

        final = base[-1]
        out_nodes = g.measured[outputs]
        pos_of = torch.full((n,), -1, dtype=torch.long, device=perts.device)
        pos_of[out_nodes] = torch.arange(out_nodes.numel(), device=perts.device)
        ks, kn = over_keys // n, over_keys % n
        meas = pos_of[kn] >= 0
        if every_gene and "decoded" in s.memo:
            decoded = s.memo["decoded"]
        else:
            decoded = self.decode_gene(final[out_nodes])
            if every_gene:
                s.memo["decoded"] = decoded
        gene_part = decoded.unsqueeze(0).expand(b, -1, -1).clone()
        gene_part[ks[meas], pos_of[kn[meas]]] = self.decode_gene(over_rows[meas])
        # pooled embedding of the perturbed genes, read from the per-sample pass
        order = torch.argsort(over_keys)
        pos = torch.searchsorted(over_keys[order], key_of)
        pert_emb = over_rows[order][pos]
        pooled = final.new_zeros(b, final.size(1)).index_add(0, sample, pert_emb)
        return gene_part, pooled

    def _needed_everywhere(self, g: GraphInputs, s: SharedPass, outputs: Tensor) -> list[Tensor]:
        """Which layer outputs every sample's prediction reads, a node mask ``(n_nodes,)``
        per layer: the last layer's at the requested genes, each earlier layer's at the
        in-neighbours of those."""
        mask = torch.zeros(g.n_nodes, dtype=torch.bool, device=outputs.device)
        mask[g.measured[outputs]] = True
        masks = [mask]
        for _ in range(len(self.gnn.layers) - 1):
            mask = masks[0].clone()
            mask[s.src[masks[0][s.dst]]] = True
            masks.insert(0, mask)
        return masks

    def _needed_here(self, g: GraphInputs, s: SharedPass, perturbed: Tensor) -> list[Tensor]:
        """What single samples read beyond that: per layer the sorted keys of their
        perturbed genes (global path) and, one hop further per earlier layer, of the
        in-neighbours of those."""
        n = g.n_nodes
        keys_ = [perturbed]
        for _ in range(len(self.gnn.layers) - 1):
            sample, edge = _incident(keys_[0], s.in_edges, n)
            keys_.insert(0, torch.unique(torch.cat([keys_[0], sample * n + s.src[edge]])))
        return keys_

    # ------------------------------------------------------------------ pairs
    def _needed_singles(self, perts: Tensor) -> Tensor:
        """Singles that pairs of this batch need but that were not measured in training."""
        if not self.config.additive_pairs:
            return perts.new_zeros(0, 2)
        pairs = perts[(perts >= 0).sum(1) == 2]
        genes = torch.unique(pairs.reshape(-1))
        genes = genes[self.known_row[genes] < 0] if genes.numel() else genes
        if genes.numel() == 0:
            return perts.new_zeros(0, 2)
        return torch.stack([genes, torch.full_like(genes, -1)], dim=1)

    def _compose(self, all_perts: Tensor, residual: Tensor, b: int, outputs: Tensor) -> Tensor:
        single_shift = self.mean_shift[outputs] + residual  # singles and predicted components
        perts = all_perts[:b]
        is_pair = (perts >= 0).sum(1) == 2
        if not self.config.additive_pairs or not bool(is_pair.any()):
            return single_shift[:b]
        extra = all_perts[b:, 0]
        predicted_row = {int(gene): b + i for i, gene in enumerate(extra.tolist())}
        out = single_shift[:b].clone()
        for i in is_pair.nonzero(as_tuple=True)[0].tolist():
            parts = []
            for gene in perts[i].tolist():
                row = int(self.known_row[gene])
                parts.append(self.known_shift[row, outputs] if row >= 0
                             else single_shift[predicted_row[gene]])
            out[i] = parts[0] + parts[1] + residual[i]
        return out
