"""One optimisation step of an ensemble member: eagerly, or replayed as a CUDA graph.

A GRAPE step is small (about 10^7 operations in some 500 kernels at 5,000 genes), so on a
GPU its time goes to Python and to launching kernels, not to arithmetic. On CUDA the whole
step (forward, backward, gradient clipping and Adam) is captured once as a CUDA graph and
then replayed: one launch per step, the same arithmetic. Capture needs every shape fixed
and no wait on the device, which is what the model's ``fixed_shapes`` form gives
(:meth:`~grape_core.nn.grape.GRAPE.forward`); the batch is copied into fixed input
buffers before each replay, and Adam keeps its step counts on the device (``capturable``).

The first :data:`WARMUP_STEPS` steps run eagerly (they initialise Adam's state and the
libraries' workspaces, as capture requires); they are ordinary training steps. Where a
capture fails, training goes on eagerly, with a warning, and the process does not try again.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from ..config import TrainConfig
from ..nn.grape import GRAPE, GraphInputs
from ..nn.loss import LossOutput, grape_loss

log = logging.getLogger(__name__)

_capture_failed: str | None = None
"""Why a capture failed in this process, if one did: later members do not try again (a
failed capture can leave the allocator and the random generators in an undefined state)."""

WARMUP_STEPS = 2
"""Eager steps before the capture: the first creates Adam's state and the libraries'
workspaces on the capture stream."""


def graphs_available(device: torch.device, train_config: TrainConfig) -> bool:
    """Training steps replay as CUDA graphs: on CUDA, unless ``cuda_graphs`` is off or a
    capture already failed in this process."""
    return device.type == "cuda" and train_config.cuda_graphs and _capture_failed is None


def structure_l1_weight(train_config: TrainConfig, n_train: int, n_measured: int) -> float:
    """The L1 weight of the structure regulariser: ``structure_l1`` per training condition
    and measured gene, so that the evidence (conditions x genes) outweighs it as it grows."""
    return train_config.structure_l1 / (n_train * n_measured)


def batch_loss(model: GRAPE, graph: GraphInputs, perts: Tensor, target: Tensor, *,
               train_config: TrainConfig, reg_weight: float,
               fixed_shapes: bool = False, hide: Tensor | None = None) -> LossOutput:
    """The training objective on one batch: the fit, the interventional consistency (when
    structure learning uses it), the structure regulariser and the gains' penalty.
    ``hide``: the pairs' singles composed as if unmeasured (:meth:`GRAPE.forward`)."""
    c, tc = model.config, train_config
    structure = model.graph(graph, fixed_shapes=fixed_shapes)  # one graph for both terms
    out = model(graph, perts, structure=structure, fixed_shapes=fixed_shapes, hide=hide)
    consistency = (model.consistency_loss(graph, perts, target, structure=structure)
                   if c.structure_learning and c.interventional_consistency
                   else out.reg.new_zeros(()))
    return grape_loss(out.shift, target, scale=model.scale, reg=out.reg, consistency=consistency,
                      gains=model.gain, huber_delta=tc.huber_delta,
                      consistency_weight=tc.consistency_weight, reg_weight=reg_weight,
                      gain_weight=tc.gain_l2 if c.gene_correction else 0.0)


class TrainingStep:
    """``step(rows, hide)``: one optimisation step on the training conditions ``rows`` (an
    index tensor of fixed length, best already on the model's device: a copy from the host
    waits for the device), with the pairs' singles ``hide`` ``(len(rows), 2)`` composed as
    if unmeasured; returns the batch's loss, a detached device scalar.

    Parameters
    ----------
    perts, targets
        Every training condition's perturbed nodes ``(n, 2)`` and shift ``(n, n_measured)``,
        on the model's device.
    graphed
        Replay the step as a CUDA graph (:func:`graphs_available`); ``optimizer`` must then
        be ``capturable``.
    """

    def __init__(self, model: GRAPE, graph: GraphInputs, optimizer: torch.optim.Optimizer,
                 perts: Tensor, targets: Tensor, *, train_config: TrainConfig,
                 reg_weight: float, graphed: bool = False):
        self.model, self.graph, self.optimizer = model, graph, optimizer
        self.perts, self.targets = perts, targets
        self.train_config, self.reg_weight = train_config, reg_weight
        self.graphed = graphed
        self.steps = 0
        self._cuda_graph: torch.cuda.CUDAGraph | None = None
        self._inputs: tuple[Tensor, Tensor] | None = None
        self._loss: Tensor | None = None
        self._stream = torch.cuda.Stream(perts.device) if graphed else None

    @property
    def replaying(self) -> bool:
        """Whether steps are now replays of a captured graph."""
        return self._cuda_graph is not None

    def __call__(self, rows: Tensor, hide: Tensor) -> Tensor:
        self.steps += 1
        rows = rows.to(self.perts.device)
        hide = hide.to(self.perts.device)
        if not self.graphed:
            return self._eager(self.perts[rows], self.targets[rows], hide)
        perts, target, hide = self._fill(rows, hide)
        if self._cuda_graph is None and self.steps > WARMUP_STEPS and not self._capture(perts, target, hide):
            return self._eager(perts, target, hide)
        if self._cuda_graph is not None:
            self._cuda_graph.replay()
            return self._loss.clone()
        # a warm-up step: eager, in the fixed-shape form, on a side stream as capture wants
        ambient = torch.cuda.current_stream(self.perts.device)
        self._stream.wait_stream(ambient)
        with torch.cuda.stream(self._stream):
            loss = self._eager(perts, target, hide, fixed_shapes=True)
        ambient.wait_stream(self._stream)
        return loss

    def _fill(self, rows: Tensor, hide: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The batch, copied into the fixed buffers that a captured graph reads."""
        if self._inputs is None:
            self._inputs = (self.perts.new_empty((rows.numel(), self.perts.size(1))),
                            self.targets.new_empty((rows.numel(), self.targets.size(1))),
                            torch.empty((rows.numel(), 2), dtype=torch.bool, device=rows.device))
        perts, target, hidden = self._inputs
        torch.index_select(self.perts, 0, rows, out=perts)
        torch.index_select(self.targets, 0, rows, out=target)
        hidden.copy_(hide)
        return perts, target, hidden

    def _objective(self, perts: Tensor, target: Tensor, hide: Tensor, *,
                   fixed_shapes: bool) -> Tensor:
        loss = batch_loss(self.model, self.graph, perts, target, train_config=self.train_config,
                          reg_weight=self.reg_weight, fixed_shapes=fixed_shapes, hide=hide)
        loss.total.backward()
        # propagation multiplies weights along paths: one bad step must not blow the state up
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_config.clip_grad_norm)
        self.optimizer.step()
        return loss.total.detach()

    def _eager(self, perts: Tensor, target: Tensor, hide: Tensor, *,
               fixed_shapes: bool = False) -> Tensor:
        self.optimizer.zero_grad()
        return self._objective(perts, target, hide, fixed_shapes=fixed_shapes)

    def _capture(self, perts: Tensor, target: Tensor, hide: Tensor) -> bool:
        """Record one step as a CUDA graph; False (and eager steps from now on) if it fails."""
        global _capture_failed
        if _capture_failed is not None:
            self.graphed = False
            return False
        torch.cuda.synchronize(perts.device)
        self.optimizer.zero_grad(set_to_none=True)  # the graph allocates the gradients
        cuda_graph = torch.cuda.CUDAGraph()
        try:
            # on the warm-up stream; not through torch.cuda.graph, which first empties the
            # allocator's cache (every later allocation, as at each validation check, would
            # then ask the driver again: a tenth of a second per capture)
            with torch.cuda.stream(self._stream):
                # thread_local: a prediction another thread (the app) runs meanwhile is not
                # refused; this thread's own unsafe calls still are
                cuda_graph.capture_begin(capture_error_mode="thread_local")
                try:
                    loss = self._objective(perts, target, hide, fixed_shapes=True)
                finally:
                    cuda_graph.capture_end()
        except RuntimeError as error:
            cause = error.__context__ or error  # capture_end's own error hides the cause
            _capture_failed = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            log.warning("training steps run eagerly: a CUDA graph could not be captured (%s)",
                        _capture_failed)
            self.graphed = False
            torch.cuda.synchronize(perts.device)
            return False
        self._cuda_graph, self._loss = cuda_graph, loss
        return True
