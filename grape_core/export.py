"""Predictions as AnnData, for scanpy and other single-cell pipelines.

:func:`to_anndata` turns one or more :class:`~grape_core.predict.Prediction` of the same
model into an AnnData ``n_conditions × n_measured``: one row per predicted condition, one
column per measured gene (in ``genes.tsv`` order).

=========================  ==================================================================
``X``                      predicted mean log-expression (control + shift), float32
``obs`` (index: condition  ``perturbation`` (``KLF1 + MAP2K6``), ``gene_a``, ``gene_b`` (empty
e.g. ``KLF1+MAP2K6``)      for a single), ``n_perturbed``, ``measured`` (the screen has it),
                           ``part`` (``train``/``val``/``test`` of the split, ``measured`` or
                           ``unmeasured``), ``model``, ``gi_type`` and ``gi_type_measured``
                           (genetic-interaction type of a pair; empty for singles)
``var`` (index: symbol)    ``biotype`` (GENCODE), ``is_coding``, ``control_mean``
``layers['shift']``        predicted shift vs control cells
``layers['ensemble_std']`` spread of the ensemble members' predictions
``layers['interval']``     half width of the calibrated prediction interval of the shift
                           (level in ``uns['grape']``); only for a model that has one
``layers['measured']``     measured mean log-expression, and ``layers['measured_shift']``;
                           only when at least one condition was measured. Rows whose
                           ``obs['measured']`` is False hold 0 there (no NaN): select
                           ``adata[adata.obs['measured']]`` before comparing.
``uns['grape']``           model, grape_core version, and this description of the layers
=========================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import __version__
from .errors import GrapeError

if TYPE_CHECKING:  # Prediction (grape_core.predict) is named in annotations only: predict
    import anndata   # imports this module for Prediction.to_anndata

LAYERS = {
    "shift": "predicted shift vs control cells (log-expression)",
    "ensemble_std": "standard deviation of the ensemble members' predictions",
    "interval": "half width of the prediction interval of the shift, calibrated to hold the "
                "measured shift at the level in uns['grape']['interval_level']",
    "measured": "measured mean log-expression; 0 in rows where obs['measured'] is False",
    "measured_shift": "measured shift vs control; 0 in rows where obs['measured'] is False",
}


def to_anndata(predictions: "Prediction | Sequence[Prediction]") -> anndata.AnnData:  # noqa: F821
    """Predictions of one model as an AnnData ``n_conditions × n_measured`` (fields in the
    module docstring).

    Parameters
    ----------
    predictions
        One :class:`~grape_core.predict.Prediction` or several, of the same model (same
        genes); each condition at most once.

    Returns
    -------
    AnnData
        ``X`` ``(n_conditions, n_measured)`` predicted expression; ``obs`` one row per
        condition; ``var`` the measured genes with their ``biotype``; layers ``shift``,
        ``ensemble_std`` and, when some condition was measured, ``measured`` and
        ``measured_shift`` (0 where ``obs['measured']`` is False).

    Raises
    ------
    GrapeError
        No prediction, predictions of different models or genes, a condition twice.

    Examples
    --------
    >>> import grape_core as gc
    >>> model = gc.load("assets/models/norman")
    >>> adata = gc.predict(model, "KLF1+MAP2K6").to_anndata()
    >>> adata.shape, adata.obs_names[0], "biotype" in adata.var
    ((1, 500), 'KLF1+MAP2K6', True)
    """
    import anndata

    single = hasattr(predictions, "condition") and hasattr(predictions, "shift")
    preds = [predictions] if single else list(predictions)
    if not preds:
        raise GrapeError("no prediction to export; predict at least one perturbation")
    first = preds[0]
    for p in preds[1:]:
        if p.model != first.model or p.genes != first.genes:
            raise GrapeError(f"predictions of different models ({first.model!r}, {p.model!r}) "
                             "cannot share one AnnData; export each model separately")
    conditions = [p.condition for p in preds]
    if len(set(conditions)) != len(conditions):
        twice = sorted({c for c in conditions if conditions.count(c) > 1})
        raise GrapeError(f"condition(s) {', '.join(twice)} given twice; predict each once")

    def gi(p, source: str) -> str:
        return str((p.interaction or {}).get(source, {}).get("gi_type", ""))

    obs = pd.DataFrame({
        "perturbation": [p.label for p in preds],
        "gene_a": [p.perturbed[0] for p in preds],
        "gene_b": [p.perturbed[1] if p.is_pair else "" for p in preds],
        "n_perturbed": np.array([len(p.perturbed) for p in preds], dtype=np.int64),
        "measured": np.array([p.measured_shift is not None for p in preds], dtype=bool),
        "part": [p.part for p in preds],
        "model": [p.model for p in preds],
        "gi_type": [gi(p, "predicted") for p in preds],
        "gi_type_measured": [gi(p, "measured") for p in preds],
    }, index=pd.Index(conditions, name="condition"))
    var = pd.DataFrame({
        "biotype": np.asarray(first.biotype).astype(str),
        "is_coding": np.asarray(first.is_coding, dtype=bool),
        "control_mean": np.asarray(first.control, dtype=np.float32),
    }, index=pd.Index(list(first.genes), name="gene"))
    shift = np.stack([p.shift for p in preds]).astype(np.float32)
    control = np.asarray(first.control, dtype=np.float32)[None, :]
    layers = {"shift": shift, "ensemble_std": np.stack([p.std for p in preds]).astype(np.float32)}
    if first.interval is not None:
        layers["interval"] = np.stack([p.interval for p in preds]).astype(np.float32)
    described = {k: LAYERS[k] for k in layers}
    if obs["measured"].any():
        measured = np.stack([p.measured_shift if p.measured_shift is not None
                             else np.zeros_like(p.shift) for p in preds]).astype(np.float32)
        mask = obs["measured"].to_numpy()[:, None]
        layers["measured_shift"] = measured
        layers["measured"] = np.where(mask, control + measured, 0.0).astype(np.float32)
        described.update({k: LAYERS[k] for k in ("measured", "measured_shift")})
    adata = anndata.AnnData(X=control + shift, obs=obs, var=var, layers=layers)
    adata.uns["grape"] = {"model": first.model, "grape_core_version": __version__,
                          "X": "predicted mean log-expression (control + shift)",
                          "layers": described}
    if first.interval_level is not None:
        adata.uns["grape"]["interval_level"] = first.interval_level
    return adata


def write_h5ad(adata: anndata.AnnData, path, *, what: str = "the AnnData file") -> None:
    """Write ``adata`` atomically (a temporary file renamed into place; see
    :func:`grape_core.io.atomic_path`: never over a link, a device or a FIFO)."""
    from .io import atomic_path, tensor_bytes

    needed = tensor_bytes(adata.X) + sum(tensor_bytes(v) for v in adata.layers.values())
    with atomic_path(path, needed=needed or None, what=what) as tmp:
        adata.write_h5ad(tmp)


def h5ad_bytes(adata: anndata.AnnData) -> bytes:
    """``adata`` as the bytes of an ``.h5ad`` file (a download in the app)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="grape-h5ad-") as folder:
        path = Path(folder) / "predictions.h5ad"
        adata.write_h5ad(path)
        return path.read_bytes()


def predictions_frame(predictions: "Sequence[Prediction]", *,  # noqa: F821
                      top: int | None = None) -> pd.DataFrame:
    """Several predictions as one long table: ``perturbation``, ``part``, then
    :meth:`~grape_core.predict.Prediction.to_frame`'s columns, each perturbation's genes by
    |shift| (its ``top`` largest, or all); ``measured`` columns only when some condition was
    measured (empty for the others)."""
    frames = [p.to_frame(top=top).assign(perturbation=p.condition, part=p.part)
              for p in predictions]
    if not frames:
        return pd.DataFrame(columns=["perturbation", "part"])
    table = pd.concat(frames, ignore_index=True)
    first = ["perturbation", "part"]
    return table[first + [c for c in table.columns if c not in first]]
