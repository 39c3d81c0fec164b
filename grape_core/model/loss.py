r"""Training loss on pseudo-bulk shifts.

.. math::
    \mathcal{L} = \mathrm{MSE}(\hat\Delta, \Delta) + \mathrm{Huber}_{\delta}(\hat\Delta, \Delta)
    + \lambda\, \mathcal{R}_{graph}

Shapes: ``pred``, ``target`` ``(batch, n_measured)``; ``reg`` a scalar.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass
class LossOutput:
    total: Tensor
    mse: Tensor
    huber: Tensor
    reg: Tensor

    def items(self) -> dict[str, float]:
        return {k: float(getattr(self, k).detach()) for k in ("total", "mse", "huber", "reg")}


def grape_loss(pred: Tensor, target: Tensor, reg: Tensor, *, huber_delta: float = 0.7,
               reg_weight: float = 0.1) -> LossOutput:
    mse = F.mse_loss(pred, target)
    huber = F.huber_loss(pred, target, delta=huber_delta)
    return LossOutput(total=mse + huber + reg_weight * reg, mse=mse, huber=huber, reg=reg)
