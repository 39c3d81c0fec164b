"""What drives a model's predictions: each prediction split into the parts the model adds up.

For a perturbation :math:`P` (:mod:`grape_core.nn.grape`):

- **shared response** :math:`\\alpha(P)\\,\\bar\\Delta`: what every perturbation of the screen
  does;
- **self-effect**: the perturbed gene's own change :math:`x_0` (only where it is measured,
  and only where the training data could tell it);
- **graph**: what the propagation over the learned network carries to the other genes
  (:math:`\\delta - x_0`);
- **pair composition**: for a pair, what composing it from its singles (measured ones
  where the model has them, :meth:`~grape_core.nn.grape.GRAPE._compose`) changes from the
  model's own joint prediction;
- **floor at zero**: what keeps a predicted expression from going below zero.

The parts add up to the prediction exactly. :func:`decompose` reports, over held-out
perturbations, each part's share of the prediction's norm and the held-out metrics of the
prediction built up part by part, so that the Benchmark page and the README can say what
each part adds on real data, from the numbers the model used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..evaluation.metrics import pearson

PARTS = ("shared response", "self-effect", "graph", "pair composition", "floor at zero")
"""The parts of a prediction, in the order they are added up."""


@dataclass(frozen=True)
class Decomposition:
    """Parts of the predicted shifts of ``conditions``, each ``(n, n_measured)`` (ensemble
    mean); :meth:`table` summarises them against the measured shifts."""

    conditions: tuple[str, ...]
    parts: dict[str, np.ndarray]
    measured: np.ndarray | None
    """``(n, n_measured)`` measured shifts (``None``: not measured)."""

    @property
    def prediction(self) -> np.ndarray:
        return sum(self.parts.values())

    def table(self) -> pd.DataFrame:
        """One row per part: its share of the prediction's norm (root mean square of the part
        over that of the prediction) and, with measured shifts, ``pearson_delta`` and ``mse``
        of the prediction built up to it (shared response, + self-effect, + graph, + pair
        composition, + floor), and what the part added."""
        total = float(np.sqrt(np.mean(self.prediction ** 2))) or 1.0
        rows, running = [], np.zeros_like(self.prediction)
        previous: tuple[float, float] | None = None
        for name in PARTS:
            part = self.parts[name]
            running = running + part
            row = {"part": name, "share of the prediction": float(np.sqrt(np.mean(part ** 2))) / total}
            if self.measured is not None:
                pd_ = float(np.mean([pearson(p, t) for p, t in zip(running, self.measured)]))
                mse = float(np.mean((running - self.measured) ** 2))
                row |= {"pearson_delta up to it": pd_, "mse up to it": mse,
                        "pearson_delta added": pd_ - previous[0] if previous else pd_,
                        "mse added": mse - previous[1] if previous else
                        mse - float(np.mean(self.measured ** 2))}
                previous = (pd_, mse)
            rows.append(row)
        return pd.DataFrame(rows).set_index("part")


def decompose(model, conditions: Sequence[str]) -> Decomposition:
    """The parts of ``model``'s predictions of ``conditions`` (a loaded
    :class:`~grape_core.serving.model.Model` or a bundle), each the ensemble mean of the members'
    own parts, computed by the members' own forward functions."""
    import torch

    from ..nn.inputs import perturbation_tensor
    from .loaded import as_model

    model = as_model(model)
    bundle = model.bundle
    members, graph = model.members_and_graph()
    perts = perturbation_tensor(list(conditions), bundle.node_index)
    sums = {name: 0.0 for name in PARTS}
    with torch.inference_mode():
        outputs = torch.arange(graph.measured.numel(), device=graph.device)
        for member in members:
            member.eval()
            z, edges = member.graph(graph)
            p = perts.to(graph.device)
            alpha, delta = member.parts(p, z, edges, graph, outputs)
            x0 = member.own_and_source(p, z, graph)[0]
            own = x0.index_select(0, graph.measured).T * member.self_known.to(x0.dtype)
            shared = alpha * member.mean_shift
            composed = member._shifts(graph, p, outputs=outputs, structure=(z, edges),
                                      fixed_shapes=False, hide=None).shift
            full = member.floored(composed, graph, outputs)  # the model's prediction
            parts = {"shared response": shared, "self-effect": own, "graph": delta - own,
                     "pair composition": composed - shared - delta, "floor at zero": full - composed}
            for name, value in parts.items():
                sums[name] = sums[name] + value.double().cpu().numpy()
    parts = {name: value / len(members) for name, value in sums.items()}
    pb = bundle.pseudobulk
    measured = (pb.shifts_of(list(conditions)).astype(np.float64)
                if all(c in pb for c in conditions) else None)
    return Decomposition(tuple(conditions), parts, measured)
