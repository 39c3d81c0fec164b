"""The one forward pass of an ensemble: every member's predicted shifts of a list of
conditions, and their mean and spread.

.. math::
    \\hat x_{P,g} = \\bar x_{\\mathrm{ctrl},g} + \\frac{1}{M} \\sum_{m=1}^{M} \\hat\\Delta^{(m)}_{P,g}

Prediction, the screen, the stored singles and training's held-out evaluation and
calibration all call :func:`member_shifts`; a loaded model
(:class:`~grape_core.serving.model.Model`) calls it on its members once they are on its
device (:func:`on_device`).

Shapes: ``conditions`` ``n_perts`` labels; member shifts ``(n_members, n_perts, n_outputs)``
(``n_outputs``: the measured genes, or the positions ``outputs``); the ensemble's mean and
spread ``(n_perts, n_measured)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import BundleError, echo


def on_device(members: Sequence[Any], graph: Any, device: str) -> tuple[list, Any]:
    """The members and the gene graph where predictions run: themselves on the CPU, else
    copies (the originals, shared read-only, stay on the CPU).

    Parameters
    ----------
    members
        The ensemble's :class:`~grape_core.nn.grape.GRAPE` members (eval mode).
    graph
        Their :class:`~grape_core.nn.grape.GraphInputs`.
    device
        ``cpu``, ``auto``, ``cuda``, ``cuda:N`` or ``mps``
        (:func:`~grape_core.devices.resolve_device`).

    Returns
    -------
    members, graph
        On ``device``.
    """
    from ..devices import resolve_device

    where = resolve_device(device)
    if where.type == "cpu":
        return list(members), graph
    return [copy.deepcopy(m).to(where).eval() for m in members], graph.to(where)


def non_finite_error(name: str, conditions: Sequence[str] = ()) -> BundleError:
    """The error for a model that predicts NaN or infinite values (damaged weights).

    Parameters
    ----------
    name
        The model's name.
    conditions
        The conditions it was asked for (named in the message; none for a long pass).

    Returns
    -------
    BundleError
    """
    where = f" for {echo(', '.join(conditions))}" if len(conditions) else ""
    return BundleError(f"model {name!r} predicts non-finite values (NaN or infinite)"
                       f"{where}; its weights may be damaged: restore the model folder or "
                       "retrain it")


def member_shifts(members: Sequence[Any], graph: Any, node_index: dict[str, int],
                  conditions: Sequence[str], *, outputs: np.ndarray | None = None,
                  chunk: int = 256, dtype: type = np.float32, finite: str | None = None,
                  name_conditions: bool = False,
                  on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Every member's predicted shifts of ``conditions``, a chunk at a time.

    Computed on the members' device and converted to ``dtype`` (``np.float32`` or
    ``np.float16``) there: no float32 copy of a float16 result is ever whole in memory.
    Each sample is computed on its own (:func:`~grape_core.nn.inputs.predict_shifts`), so
    the chunk changes the speed, never the result.

    Parameters
    ----------
    members, graph
        The ensemble and its gene graph, on one device (:func:`on_device`).
    node_index
        Gene symbol -> node.
    conditions
        Condition labels (``A+ctrl``, ``A+B``).
    outputs
        Measured positions to compute (default: every measured gene).
    chunk
        Conditions per pass.
    dtype
        ``np.float32`` or ``np.float16``.
    finite
        The model's name: a non-finite value (after the conversion: a float16 overflow is
        caught too) raises :func:`non_finite_error`. ``None``: not checked.
    name_conditions
        Name the conditions in that error.
    on_progress
        ``on_progress(done, total)`` after each chunk of each member.

    Returns
    -------
    np.ndarray
        ``(n_members, n_perts, n_outputs)`` of ``dtype``.

    Raises
    ------
    BundleError
        Non-finite predictions (with ``finite``).
    """
    import torch

    from .inputs import perturbation_tensor, predict_shifts

    width = graph.measured.numel() if outputs is None else len(outputs)
    out_t = None if outputs is None else torch.as_tensor(outputs, dtype=torch.long,
                                                         device=graph.device)
    torch_dtype = {np.dtype(np.float32): torch.float32,
                   np.dtype(np.float16): torch.float16}.get(np.dtype(dtype))
    if torch_dtype is None:
        raise ValueError(f"dtype {np.dtype(dtype)} is not float32 or float16")
    out = np.empty((len(members), len(conditions), width), dtype=dtype)
    total, done = len(members) * -(-len(conditions) // chunk), 0
    for start in range(0, len(conditions), chunk):
        perts = perturbation_tensor(list(conditions[start:start + chunk]), node_index)
        with torch.inference_mode():
            for m, member in enumerate(members):
                shifts = predict_shifts(member, graph, perts, batch_size=chunk, outputs=out_t,
                                        dtype=torch_dtype)
                if finite is not None and not bool(torch.isfinite(shifts).all()):
                    raise non_finite_error(finite, conditions if name_conditions else ())
                out[m, start:start + chunk] = shifts.numpy()
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
    return out


def ensemble_spread(values: np.ndarray) -> np.ndarray:
    """Standard deviation over the members (axis 0, ``ddof=1``); zero for one member.

    Parameters
    ----------
    values
        ``(n_members, ...)``.

    Returns
    -------
    np.ndarray
        ``values.shape[1:]``.
    """
    return values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(values[0])


def ensemble_expression(members: Sequence[Any], graph: Any, node_index: dict[str, int],
                        conditions: Sequence[str], control: np.ndarray, *,
                        name: str) -> tuple[np.ndarray, np.ndarray]:
    """The ensemble's predicted expression: control plus each member's shift, averaged.

    Parameters
    ----------
    members, graph, node_index
        As :func:`member_shifts`.
    conditions
        Condition labels.
    control
        Control mean log-expression ``(n_measured,)``.
    name
        The model's name, for the error on non-finite predictions.

    Returns
    -------
    mean, std
        ``(n_perts, n_measured)``: the members' mean predicted log-expression and their
        spread (:func:`ensemble_spread`).

    Raises
    ------
    BundleError
        Non-finite predictions, naming the conditions.
    """
    if not len(conditions):
        n = graph.measured.numel()
        return np.zeros((0, n)), np.zeros((0, n))
    shifts = member_shifts(members, graph, node_index, conditions, finite=name,
                           name_conditions=True)
    expression = control[None, None, :] + shifts
    return expression.mean(axis=0), ensemble_spread(expression)
