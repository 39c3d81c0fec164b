r"""Training loss on pseudo-bulk shifts.

.. math::
    \mathcal{L} = \mathrm{MSE}(\hat\Delta / s, \Delta / s) + \mathrm{Huber}_{\delta}(\hat\Delta / s, \Delta / s)
    + \mu\, \mathcal{L}_{cons} + \lambda\, \mathcal{R}_{graph} + \nu\, \overline{g^2}

with :math:`s` the typical size of a training shift (so one setting of :math:`\lambda`
means the same on screens of any scale), :math:`\mathcal{L}_{cons}` the interventional
consistency (:meth:`~grape_core.nn.grape.GRAPE.consistency_loss`), :math:`\mathcal{R}`
the structure regulariser and :math:`g` the per-gene gains.

Shapes: ``pred``, ``target`` ``(batch, n_outputs)``; the other terms are scalars.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass
class LossOutput:
    total: Tensor
    fit: Tensor
    """Scaled MSE + Huber of the prediction."""
    consistency: Tensor
    reg: Tensor
    """Structure regulariser (before its weight)."""

    def items(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "fit", "consistency", "reg")}


def grape_loss(pred: Tensor, target: Tensor, *, scale: Tensor | float, reg: Tensor,
               consistency: Tensor, gains: Tensor, huber_delta: float = 0.7,
               consistency_weight: float = 1.0, reg_weight: float = 0.0,
               gain_weight: float = 0.0) -> LossOutput:
    pred, target = pred / scale, target / scale
    fit = F.mse_loss(pred, target) + F.huber_loss(pred, target, delta=huber_delta)
    total = (fit + consistency_weight * consistency + reg_weight * reg
             + gain_weight * (gains ** 2).mean())
    return LossOutput(total=total, fit=fit, consistency=consistency, reg=reg)
