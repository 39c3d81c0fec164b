r"""The GRAPE model: gene encoder -> structure learning -> heterogeneous propagation ->
shared decoder.

For a perturbation of the genes :math:`P` (one gene or a pair):

.. math::
    z_v = \mathrm{Enc}(t_v, s_v), \qquad
    x_{0,v} = \mathbb{1}[v \in P]\;\kappa(z_v, c_v), \qquad
    \delta^{P} = \mathrm{Prop}_{W(z)}(\pi x_0) - \pi x_0 + x_0,

    \Delta^{P}_m = \alpha(P)\,\bar\Delta_m + (1 + g_m)\,\delta^{P}_m, \qquad
    \alpha(P) = a\,|P| + \gamma\,\mathbb{1}[|P| = 2]
    + \mathrm{MLP}\Big(\tfrac{1}{|P|}\sum_{u \in P} z_u\Big),

and, for a pair :math:`\{a, b\}` whose singles are known,
:math:`\Delta^{ab} = \Delta^{a} + \Delta^{b} + (\Delta^{ab}_{model} - \Delta^{a}_{model}
- \Delta^{b}_{model})`: the singles (measured in training when they were, predicted
otherwise) plus the interaction the model predicts.

- :math:`t, s`: the text and DNA views; :math:`c_v`: the gene's control expression.
- :math:`\kappa`: the *self-effect head*, shared by all genes: how much a knock-down (or
  activation) changes the perturbed gene itself, read from its embedding and expression.
  A gene never perturbed in training gets its own effect from what the head learned on
  the others; a per-gene table could not (``shared_head=False`` is that ablation).
- :math:`x_0` takes away no more than a measured gene's control cells have
  (``floored_own_change``, with ``nonnegative``), the floor the output has too.
- :math:`\pi`: the *outflow*, what the perturbed gene's targets feel of its own change
  (``free_outflow``; 1 in versions before 4): a knock-down's own transcript can fall far
  more, or less, than its product's loss moves its targets.
- :math:`W(z)`: the prior's edges re-weighted, signed and pruned by structure learning, plus
  learned-only edges (:mod:`~grape_core.nn.gsl`); :math:`\mathrm{Prop}`: the
  heterogeneous propagation (:mod:`~grape_core.nn.hetero`).
- :math:`\bar\Delta`: the shared response (mean shift per perturbed gene in training);
  :math:`\alpha`: how strongly this perturbation triggers it: a dose :math:`a` per
  perturbed gene (a pair brings two, as the additive baseline assumes), an offset
  :math:`\gamma` for pairs and (``global_path``) a term read from the perturbed genes'
  embeddings, so that every gene hears about :math:`P`, however far from it in the graph.
- :math:`g`: per-gene gains, a small correction (L2-penalised) on top of the shared
  decoder.

Structure learning also gets a direct, interventional signal
(:meth:`GRAPE.consistency_loss`): one propagation step applied to a training condition's
*measured* changes must reproduce them, which is what a steady state means. Every sample is
computed on its own (no attention over the batch, no shared incremental pass), so a
prediction never depends on the other conditions of its batch.

Shapes:
    - **input:** :class:`GraphInputs` (``n_nodes`` genes, ``n_measured`` of them
      measured) and ``perts (batch, 2)`` node indices, ``-1`` padding for singles.
    - **output:** :class:`ModelOutput` with ``shift (batch, n_measured)`` (or
      ``(batch, n_outputs)`` for requested positions ``outputs``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import keys
from ..config import ArchitectureConfig
from ..knowledge.encoder import GeneEncoder
from .gsl import Edges, StructureLearner
from .hetero import HeteroPropagation


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

    @property
    def device(self) -> torch.device:
        return self.text.device

    def to(self, device: str | torch.device) -> "GraphInputs":
        return GraphInputs(**{k: v.to(device) for k, v in vars(self).items()})


@dataclass
class ModelOutput:
    shift: Tensor
    """Predicted shift from control, ``(batch, n_outputs)``."""
    reg: Tensor
    """Structure regulariser :math:`\\mathcal{R}` (scalar)."""


@dataclass(frozen=True)
class ModelSizes:
    """The numbers a model is built from (recorded in the manifest)."""

    n_nodes: int
    n_measured: int
    n_prior_edges: int
    n_known: int
    """Measured training singles kept for the composition of pairs."""


class GRAPE(nn.Module):
    """GRAPE (see the module docstring and :class:`~grape_core.config.ArchitectureConfig`)."""

    def __init__(self, config: ArchitectureConfig, sizes: ModelSizes, *, encoder_args: dict):
        super().__init__()
        self.config, self.sizes = config, sizes
        c, n = config, sizes.n_nodes
        self.encoder = GeneEncoder(**encoder_args)
        d = self.encoder.out_dim
        self.n_types = len(keys.NODE_TYPES) if c.heterogeneous else 1
        n_rel = self.n_types ** 2
        self.structure = StructureLearner(
            d, n, sizes.n_prior_edges, n_rel, metric_dim=c.metric_dim, heads=c.gsl_heads,
            top_k=c.gsl_top_k, learn=c.structure_learning, detach=c.detach_structure)
        self.propagation = HeteroPropagation(n_rel, steps=c.propagation_steps,
                                             hidden=c.message_hidden,
                                             nonlinear=c.nonlinear_messages)
        self.self_head = nn.Sequential(nn.Linear(d + 2, c.head_hidden), nn.ELU(),
                                       nn.Linear(c.head_hidden, 1))
        self.self_table = nn.Parameter(torch.zeros(n))  # the shared_head=False ablation
        # the self-effect's sign and typical size, from the training data (warm start); and
        # whether the data could tell them (a training perturbation of a measured gene)
        self.register_buffer("self_scale", torch.ones(()))
        self.register_buffer("self_known", torch.ones((), dtype=torch.bool))
        # pi: the share of a perturbed gene's own change that its targets feel
        # (``free_outflow``; fitted at the warm start, then trained)
        self.outflow = nn.Parameter(torch.ones(()))
        self.amplitude = nn.Sequential(nn.Linear(d, c.head_hidden), nn.ELU(),
                                       nn.Linear(c.head_hidden, 1))
        nn.init.zeros_(self.amplitude[2].weight)
        nn.init.zeros_(self.amplitude[2].bias)
        self.shared_amplitude = nn.Parameter(torch.tensor([1.0, 0.0]))  # per gene; pair offset
        self.gain = nn.Parameter(torch.zeros(sizes.n_measured))
        self.register_buffer("mean_shift", torch.zeros(sizes.n_measured))
        self.register_buffer("node_control", torch.zeros(n))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("known_shift", torch.zeros(sizes.n_known, sizes.n_measured))
        self.register_buffer("known_dose", torch.zeros(sizes.n_known))
        self.register_buffer("known_row", torch.full((n,), -1, dtype=torch.long))
        # how a pair combines its singles' own parts (measured, predicted) and the
        # interaction the propagation predicts; fitted on the training pairs (warm start)
        self.pair_mix = nn.Parameter(torch.tensor([1.0, 1.0, 1.0, 0.0]))
        self.register_buffer("pair_fitted", torch.zeros((), dtype=torch.bool))
        self._cache: tuple[GraphInputs, Tensor, Edges] | None = None
        self._frozen: tuple[GraphInputs, Tensor] | None = None

    # ------------------------------------------------------------------ bookkeeping
    def train(self, mode: bool = True) -> "GRAPE":
        self._cache = None  # weights may change in training: never reuse a cached graph
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._cache = self._frozen = None
        return super().load_state_dict(*args, **kwargs)

    def _apply(self, fn, recurse=True):  # .to(device): cached tensors stay where they were
        self._cache = self._frozen = None
        return super()._apply(fn, recurse)

    def index_tensors(self) -> dict[str, int]:
        """Integer tensors and the exclusive upper bound of their values (``-1`` allowed as
        padding): what a loader checks before trusting a weights file."""
        return {"known_row": self.sizes.n_known, "structure.learned_sources": self.sizes.n_nodes}

    def set_training_data(self, *, mean_shift: Tensor, node_control: Tensor, scale: float,
                          singles: dict[int, Tensor]) -> None:
        """Shared response, control expression per node, the loss scale and the measured
        training singles (node -> shift), before training."""
        if self.config.shared_shift:
            self.mean_shift.copy_(mean_shift)
        self.node_control.copy_(node_control)
        self.scale.fill_(float(scale))
        rows = torch.full_like(self.known_row, -1)
        if self.config.additive_pairs:
            for i, (node, shift) in enumerate(sorted(singles.items())[: self.sizes.n_known]):
                rows[node] = i
                self.known_shift[i] = shift
        self.known_row.copy_(rows)
        self.known_dose.copy_(self.dose_of(self.known_shift))

    def dose_of(self, shifts: Tensor) -> Tensor:
        r"""How much of the shared response each shift ``(n, n_measured)`` holds: its
        projection on :math:`\bar\Delta`, ``(n,)``."""
        norm = self.mean_shift.pow(2).sum()
        if float(norm) == 0.0:
            return shifts.new_zeros(shifts.size(0))
        return shifts @ self.mean_shift / norm

    # ------------------------------------------------------------------ pieces
    def encode(self, g: GraphInputs) -> Tensor:
        """Fused gene embeddings ``(n_nodes, d)`` from the text and DNA views. A frozen encoder
        (``finetune_encoder=False``) runs once per graph, in eval mode (no dropout)."""
        c = self.config
        if c.finetune_encoder and self.training:
            return self.encoder(g.text, g.dna, g.dna_missing, use_text=c.use_text, use_dna=c.use_dna)
        cached = self._frozen
        if not c.finetune_encoder and cached is not None and cached[0] is g:
            return cached[1]
        mode = self.encoder.training
        self.encoder.eval()
        with torch.no_grad():
            z = self.encoder(g.text, g.dna, g.dna_missing, use_text=c.use_text, use_dna=c.use_dna)
        self.encoder.train(mode)
        if not c.finetune_encoder:
            self._frozen = (g, z)
        return z

    def node_type(self, g: GraphInputs) -> Tensor:
        """0 coding, 1 non-coding (``keys.NODE_TYPES`` order); all 0 when homogeneous."""
        if self.n_types == 1:
            return torch.zeros(g.n_nodes, dtype=torch.long, device=g.device)
        return (~g.is_coding).long()

    def graph(self, g: GraphInputs, *, fixed_shapes: bool = False) -> tuple[Tensor, Edges]:
        """Embeddings and the learned graph; cached when nothing can change them (eval mode,
        no autograd), where every prediction shares them. ``fixed_shapes``: see
        :meth:`forward`."""
        cache = not self.training and not torch.is_grad_enabled()
        cached = self._cache  # one read: another thread may replace it meanwhile
        if cache and cached is not None and cached[0] is g:
            return cached[1], cached[2]
        z = self.encode(g)
        edges = self.structure(z, g.prior_index, g.prior_weight, self.node_type(g), self.n_types,
                               fixed_shapes=fixed_shapes)
        if cache:
            self._cache = (g, z, edges)
        return z, edges

    def refresh_structure(self, g: GraphInputs) -> None:
        """Re-choose the learned-only candidate edges under the current metric."""
        with torch.no_grad():
            self.structure.refresh(self.encode(g), g.prior_index, g.prior_weight)
        self._cache = None

    def self_effect(self, z: Tensor, g: GraphInputs) -> Tensor:
        """:math:`\\kappa` for every node ``(n_nodes,)``: the change a perturbation makes at
        the perturbed gene itself."""
        c = self.config
        if not c.shared_head:
            return self.self_table
        if c.perturbation_encoding == "paper":
            # published code: the marked gene's features are zeroed in training (a change of
            # -z) but negated at inference (-2z): two encodings of one idea
            z = -z if self.training else -2.0 * z
        measured = torch.zeros_like(self.node_control).index_fill(0, g.measured, 1.0)
        feats = torch.cat([z, self.node_control.unsqueeze(1), measured.unsqueeze(1)], 1)
        head = self.self_head(feats).squeeze(-1)
        if c.perturbation_encoding == "paper" or not c.signed_self_effect:
            return head
        # the sign the training data gave it, a size the head adapts per gene: a knock-down
        # screen never predicts a perturbed gene raising itself
        return self.self_scale * torch.exp(head.clamp(-4.0, 4.0))

    @staticmethod
    def indicator(perts: Tensor, n_nodes: int) -> Tensor:
        """``(n_nodes, batch)``: 1 at each sample's perturbed genes."""
        b = perts.size(0)
        # padding marks a spare row that is dropped: no data-dependent shape, no wait on a
        # GPU, and a scalar written by a kernel (a CUDA graph cannot copy one from the host)
        rows = perts.masked_fill(perts < 0, n_nodes)
        x = torch.zeros(n_nodes + 1, b, device=perts.device)
        return x.scatter_(0, rows.T, 1.0)[:n_nodes]

    def amplitude_of(self, perts: Tensor, z: Tensor) -> Tensor:
        """:math:`\\alpha(P)` ``(batch, 1)``: how much of the shared response a sample gets
        (a learned dose per perturbed gene, an offset for pairs, and the global path)."""
        n_genes = (perts >= 0).sum(1, keepdim=True)
        alpha = n_genes * self.shared_amplitude[0] + (n_genes == 2) * self.shared_amplitude[1]
        if not self.config.global_path:
            return alpha
        safe = perts.clamp_min(0)
        picked = z.index_select(0, safe.reshape(-1)).view(*safe.shape, -1)
        pooled = (picked * (perts >= 0).unsqueeze(-1).float()).sum(1) / n_genes.clamp_min(1)
        return alpha + self.amplitude(pooled)

    def own_and_source(self, perts: Tensor, z: Tensor, g: GraphInputs) -> tuple[Tensor, Tensor]:
        """The perturbed genes' own change :math:`x_0` and what they send to their targets,
        :math:`\\pi x_0` (``free_outflow``; else :math:`x_0`), each ``(n_nodes, batch)``."""
        x0 = self.indicator(perts, g.n_nodes) * self.self_effect(z, g).unsqueeze(1)
        if self.config.nonnegative and self.config.floored_own_change:
            x0 = torch.maximum(x0, self.own_floor(g).unsqueeze(1))
        return x0, (x0 * self.outflow if self.config.free_outflow else x0)

    def own_floor(self, g: GraphInputs) -> Tensor:
        """``(n_nodes,)``: the most a perturbation can take away from each gene, its control
        expression where it is measured (no floor elsewhere: nothing says how much it has)."""
        floor = torch.full_like(self.node_control, -torch.inf)
        return floor.index_copy(0, g.measured, -self.node_control.index_select(0, g.measured))

    def propagate(self, perts: Tensor, z: Tensor, edges: Edges, g: GraphInputs) -> Tensor:
        """:math:`\\delta` at every node, ``(n_nodes, batch)``: the propagation of what the
        perturbed genes send (:meth:`own_and_source`)."""
        return self.propagation(self.own_and_source(perts, z, g)[1], edges)

    def decode(self, perts: Tensor, z: Tensor, edges: Edges, g: GraphInputs, outputs: Tensor) -> Tensor:
        """Shifts of the measured positions ``outputs`` ``(batch, n_outputs)``, pairs not
        composed (:meth:`parts`)."""
        alpha, delta = self.parts(perts, z, edges, g, outputs)
        return alpha * self.mean_shift[outputs] + delta

    def parts(self, perts: Tensor, z: Tensor, edges: Edges, g: GraphInputs,
              outputs: Tensor) -> tuple[Tensor, Tensor]:
        r"""The two parts of a shift of the measured positions ``outputs``: the dose of the
        shared response :math:`\alpha(P)` ``(batch, 1)`` and the propagated change
        :math:`\delta^P` ``(batch, n_outputs)``, pairs not composed.

        When the training data cannot tell a perturbed gene's own change (no training
        perturbation hit a measured gene, :attr:`self_known` false), the self-effect is a
        unit that only its propagation to other genes gives a size; the perturbed gene's
        own value then leaves it out (what the others' regulation gives it) instead of
        inventing one."""
        x0, source = self.own_and_source(perts, z, g)
        state = self.propagation(source, edges)
        # a perturbed gene's own value: its own change (what it sends, pi x0, is its
        # targets'), nothing where the data could not tell it; a product, not a branch: a
        # training step never waits on the device
        state = state - source + x0 * self.self_known.to(x0.dtype)
        delta = state.index_select(0, g.measured[outputs]).T
        if self.config.gene_correction:
            delta = delta * (1.0 + self.gain.index_select(0, outputs))
        return self.amplitude_of(perts, z), delta

    # ------------------------------------------------------------------ forward
    def forward(self, g: GraphInputs, perts: Tensor, *, outputs: Tensor | None = None,
                structure: tuple[Tensor, Edges] | None = None,
                fixed_shapes: bool = False, hide: Tensor | None = None) -> ModelOutput:
        """Shifts of the measured genes (or of the measured positions ``outputs`` only).
        ``structure``: :meth:`graph`'s result when the caller has it already (a training
        step uses one graph for the prediction and the consistency loss). ``hide``
        ``(batch, 2)`` bool: compose a pair as if that gene's single had not been measured
        (training shows the model the pairs it will meet with an unmeasured single).

        ``fixed_shapes``: the same result in a form whose every shape follows from the batch
        size and the graph alone, with no step that waits on the device, which is what a
        CUDA graph replays (:mod:`~grape_core.training.step`): every candidate edge slot is kept
        (an unused one with weight 0) and both genes of every sample are decoded as singles,
        where the default decodes each distinct gene of the batch's pairs once.
        """
        perts = perts.to(g.device)
        if outputs is None:
            outputs = torch.arange(g.measured.numel(), device=g.device)
        out = self._shifts(g, perts, outputs=outputs, structure=structure,
                           fixed_shapes=fixed_shapes, hide=hide)
        return ModelOutput(self.floored(out.shift, g, outputs), out.reg)

    def floored(self, shift: Tensor, g: GraphInputs, outputs: Tensor) -> Tensor:
        """Shifts of the measured positions ``outputs`` with the floor at zero expression
        (``nonnegative``): a prediction cannot take away more than the control cells have (a
        knock-down of a silent gene changes nothing)."""
        if not self.config.nonnegative:
            return shift
        floor = -self.node_control.index_select(0, g.measured.index_select(0, outputs))
        return torch.maximum(shift, floor)

    def _shifts(self, g: GraphInputs, perts: Tensor, *, outputs: Tensor,
                structure: tuple[Tensor, Edges] | None, fixed_shapes: bool,
                hide: Tensor | None) -> ModelOutput:
        """:meth:`forward` before the floor at zero expression."""
        z, edges = structure if structure is not None else self.graph(g, fixed_shapes=fixed_shapes)
        reg = edges.change
        is_pair = (perts >= 0).sum(1) == 2
        if not self.config.additive_pairs:
            return ModelOutput(self.decode(perts, z, edges, g, outputs), reg)
        b = perts.size(0)
        if fixed_shapes:
            # rows b + 2i and b + 2i + 1 hold the singles of sample i's two genes
            singles = torch.stack([perts.reshape(-1), torch.full_like(perts.reshape(-1), -1)], 1)
            alpha, delta = self.parts(torch.cat([perts, singles]), z, edges, g, outputs)
            a, c = perts[:, 0].clamp_min(0), perts[:, 1].clamp_min(0)
            hide_a, hide_c = (None, None) if hide is None else hide.unbind(1)
            composed = self._compose(alpha[:b], delta[:b], a, alpha[b::2], delta[b::2], c,
                                     alpha[b + 1::2], delta[b + 1::2], outputs, hide_a, hide_c)
            own = alpha[:b] * self.mean_shift[outputs] + delta[:b]
            return ModelOutput(torch.where(is_pair.unsqueeze(1), composed, own), reg)
        if not bool(is_pair.any()):
            return ModelOutput(self.decode(perts, z, edges, g, outputs), reg)
        # a pair is composed from its two singles (:meth:`_compose`); the singles of every
        # pair are decoded in the same pass as the batch
        members = torch.unique(perts[is_pair].reshape(-1))
        singles = torch.stack([members, torch.full_like(members, -1)], 1)
        alpha, delta = self.parts(torch.cat([perts, singles]), z, edges, g, outputs)
        row_of = torch.full((g.n_nodes,), -1, dtype=torch.long, device=g.device)
        row_of[members] = b + torch.arange(members.numel(), device=g.device)
        a, c = perts[is_pair, 0], perts[is_pair, 1]
        hide_a, hide_c = (None, None) if hide is None else hide[is_pair].unbind(1)
        shift = alpha[:b] * self.mean_shift[outputs] + delta[:b]
        shift[is_pair] = self._compose(alpha[:b][is_pair], delta[:b][is_pair], a,
                                       alpha[row_of[a]], delta[row_of[a]], c, alpha[row_of[c]],
                                       delta[row_of[c]], outputs, hide_a, hide_c)
        return ModelOutput(shift, reg)

    def _compose(self, alpha: Tensor, joint: Tensor, a: Tensor, alpha_a: Tensor,
                 delta_a: Tensor, c: Tensor, alpha_c: Tensor, delta_c: Tensor, outputs: Tensor,
                 hide_a: Tensor | None = None, hide_c: Tensor | None = None) -> Tensor:
        r"""A pair's shift from its singles:

        .. math::
            \Delta^{ab} = \alpha(ab)\,\bar\Delta + \hat s_a + \hat s_b
            + \eta\,(\delta^{ab} - \delta^a - \delta^b),

        with :math:`\hat s_x = \kappa_m (\Delta^x - d_x \bar\Delta) + \kappa_b \delta^x`
        when single x was measured in training (its own part: the measured shift less the
        shared response it holds, :attr:`known_dose`, and the model's own prediction of it,
        which carries none of the measurement's noise), else :math:`\kappa_p \delta^x`. The
        :math:`\kappa` say how the singles' own parts add up in a pair (1: additively;
        below 1: they saturate, or the measured singles are noisy) and :math:`\eta` how much
        of the propagation's own non-additivity to keep; all four, and the pair's dose
        :math:`\alpha(ab)`, are fitted on the training pairs whose singles were measured
        (:attr:`pair_mix`, warm-started by least squares). Without such pairs
        (:attr:`pair_fitted` false) the data cannot say how a pair combines: it is then
        additive, the sum of its singles (each single's own dose of the shared response,
        :math:`d_x` or :math:`\alpha(x)`) plus the interaction the propagation predicts.
        ``pair_mixing`` off (versions before 3): always the sum of the singles plus the
        interaction the model predicts, the shared response's included.
        """
        kappa_m, kappa_p, eta, kappa_b = self.pair_mix.unbind()
        own_a, dose_a = self._own_part(a, alpha_a, delta_a, outputs, kappa_m, kappa_p, kappa_b, hide_a)
        own_c, dose_c = self._own_part(c, alpha_c, delta_c, outputs, kappa_m, kappa_p, kappa_b, hide_c)
        if self.config.pair_mixing:
            dose = torch.where(self.pair_fitted, alpha, dose_a + dose_c)
        else:  # the singles' doses and the model's own interaction in the shared response
            dose = dose_a + dose_c + alpha - alpha_a - alpha_c
        return dose * self.mean_shift[outputs] + own_a + own_c + eta * (joint - delta_a - delta_c)

    def _own_part(self, nodes: Tensor, alpha: Tensor, predicted: Tensor, outputs: Tensor,
                  kappa_m: Tensor, kappa_p: Tensor, kappa_b: Tensor,
                  hide: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r""":math:`\hat s_x` of each node (see :meth:`_compose`) and its single's dose of the
        shared response ``(n, 1)``; ``hide``: treat it as not measured."""
        if self.known_shift.size(0) == 0:  # no measured training single
            return kappa_p * predicted, alpha
        row = self.known_row[nodes]
        if hide is not None:
            row = row.masked_fill(hide, -1)
        safe = row.clamp_min(0)
        dose = self.known_dose[safe].unsqueeze(1)
        known = self.known_shift[safe][:, outputs] - dose * self.mean_shift[outputs]
        measured = (row >= 0).unsqueeze(1)
        return (torch.where(measured, kappa_m * known + kappa_b * predicted, kappa_p * predicted),
                torch.where(measured, dose, alpha))

    def consistency_loss(self, g: GraphInputs, perts: Tensor, target: Tensor, *,
                         structure: tuple[Tensor, Edges] | None = None) -> Tensor:
        """Interventional consistency: one propagation step from a training condition's
        *measured* changes (what is left after the shared response) must give them back.

        At a steady state :math:`\\delta = x_0 + W\\psi(\\delta)`; here :math:`\\delta` is read
        from the data at measured genes (at genes outside the panel, the perturbation's own
        change :math:`x_0`), so every edge whose source moved in a training condition gets a
        direct gradient, in proportion to how much it moved. Scaled like the prediction loss
        (:attr:`scale`).
        """
        z, edges = structure if structure is not None else self.graph(g)
        perts = perts.to(g.device)
        alpha = self.amplitude_of(perts, z)
        observed = target - alpha * self.mean_shift
        if self.config.gene_correction:
            observed = observed / (1.0 + self.gain.detach())
        x0, source = self.own_and_source(perts, z, g)
        # the state a measured perturbed gene propagates is what it sends, not its own change
        sent = (source - x0 * self.self_known.to(x0.dtype)).detach().index_select(0, g.measured)
        state = source.detach().index_copy(0, g.measured, observed.T.detach() + sent)
        one_step = self.propagation.step(state, source, edges).index_select(0, g.measured)
        return F.mse_loss(one_step, state[g.measured]) / self.scale ** 2
