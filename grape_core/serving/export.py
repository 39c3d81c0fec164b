"""Predictions as AnnData, for scanpy, pertpy and cell-eval.

Every AnnData written here follows pertpy's convention: ``obs['perturbation']`` holds
``KLF1``, ``KLF1+MAP2K6`` or ``control`` (cell-eval reads it with ``--pert-col perturbation
--control-pert control``), ``obs['condition']`` the GEARS label (``KLF1+ctrl``), the var
index gene symbols, and ``uns['log1p']`` says that ``X`` is log1p data (scanpy's flag).

:func:`to_anndata` turns one or more :class:`~grape_core.serving.results.Prediction` of the same
model into an AnnData ``(n_conditions + 1) × n_measured``: one row per predicted condition
and a last ``control`` row (the control cells' mean: what every shift is measured from),
one column per measured gene (in ``genes.tsv`` order).

=========================  ==================================================================
``X``                      predicted mean log-expression (control + shift), float32; the
                           control row: the control mean
``obs`` (index: condition  ``perturbation`` (``KLF1+MAP2K6``; ``control``), ``condition``,
e.g. ``KLF1+MAP2K6``;      ``gene_a``, ``gene_b`` (empty for a single), ``n_perturbed``,
``ctrl``)                  ``measured`` (the screen has it), ``part`` (``train``/``val``/
                           ``test`` of the split, ``measured``, ``unmeasured``; ``control``),
                           ``model``, ``gi_type`` and ``gi_type_measured``
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
``uns['log1p']``           ``{'base': None}``: X is natural-log log1p data
=========================  ==================================================================

:func:`cell_eval_anndata` lays out means and cells the way cell-eval compares them (see
:mod:`grape_core.evaluation.celleval`), and :func:`write_cell_eval` writes an evaluation's
files (``evaluate --h5ad DIR``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import keys
from .._version import __version__
from ..errors import GrapeError

if TYPE_CHECKING:  # Prediction (grape_core.serving.results) is named in annotations only: predict
    import anndata   # imports this module for Prediction.to_anndata

LAYERS = {
    "shift": "predicted shift vs control cells (log-expression)",
    "ensemble_std": "standard deviation of the ensemble members' predictions",
    "interval": "half width of the prediction interval of the shift, calibrated to hold the "
                "measured shift at the level in uns['grape']['interval_level']",
    "measured": "measured mean log-expression; 0 in rows where obs['measured'] is False",
    "measured_shift": "measured shift vs control; 0 in rows where obs['measured'] is False",
}


def to_anndata(predictions: "Prediction | Sequence[Prediction]", *,  # noqa: F821
               control: bool = True) -> anndata.AnnData:
    """Predictions of one model as an AnnData ``(n_conditions + 1) × n_measured`` (fields in
    the module docstring).

    Parameters
    ----------
    predictions
        One :class:`~grape_core.serving.results.Prediction` or several, of the same model (same
        genes); each condition at most once.
    control
        Add the last row, ``control`` (the control mean, shift 0): pertpy and cell-eval
        compare every perturbation with it.

    Returns
    -------
    AnnData
        ``X`` ``(n_conditions + 1, n_measured)`` predicted expression; ``obs`` one row per
        condition, then ``control``; ``var`` the measured genes with their ``biotype``;
        layers ``shift``, ``ensemble_std`` and, when some condition was measured,
        ``measured`` and ``measured_shift`` (0 where ``obs['measured']`` is False).

    Raises
    ------
    GrapeError
        No prediction, predictions of different models or genes, a condition twice.

    Examples
    --------
    >>> import grape_core as gc
    >>> model = gc.load("assets/models/norman")
    >>> adata = gc.predict(model, "KLF1+MAP2K6").to_anndata()
    >>> adata.shape, list(adata.obs["perturbation"]), "biotype" in adata.var
    ((2, 500), ['KLF1+MAP2K6', 'control'], True)
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

    from ..data.conditions import perturbation_label

    index = [*conditions, keys.CTRL] if control else conditions
    n_extra = int(control)
    obs = pd.DataFrame({
        keys.PERTURBATION: [perturbation_label(c) for c in index],
        keys.CONDITION: index,
        "gene_a": [p.perturbed[0] for p in preds] + [""] * n_extra,
        "gene_b": [p.perturbed[1] if p.is_pair else "" for p in preds] + [""] * n_extra,
        "n_perturbed": np.array([len(p.perturbed) for p in preds] + [0] * n_extra, dtype=np.int64),
        "measured": np.array([p.measured_shift is not None for p in preds] + [True] * n_extra,
                             dtype=bool),
        "part": [p.part for p in preds] + ["control"] * n_extra,
        "model": [p.model for p in preds] + [first.model] * n_extra,
        "gi_type": [gi(p, "predicted") for p in preds] + [""] * n_extra,
        "gi_type_measured": [gi(p, "measured") for p in preds] + [""] * n_extra,
    }, index=pd.Index(index))
    var = pd.DataFrame({
        "biotype": np.asarray(first.biotype).astype(str),
        "is_coding": np.asarray(first.is_coding, dtype=bool),
        "control_mean": np.asarray(first.control, dtype=np.float32),
    }, index=pd.Index(list(first.genes), name="gene"))

    def rows(values: list[np.ndarray]) -> np.ndarray:  # the control row: 0 (no shift)
        return np.stack(values + [np.zeros_like(values[0])] * n_extra).astype(np.float32)

    shift = rows([p.shift for p in preds])
    base = np.asarray(first.control, dtype=np.float32)[None, :]
    layers = {"shift": shift, "ensemble_std": rows([p.std for p in preds])}
    if first.interval is not None:
        layers["interval"] = rows([p.interval for p in preds])
    described = {k: LAYERS[k] for k in layers}
    if obs["measured"].iloc[:len(preds)].any():
        measured = rows([p.measured_shift if p.measured_shift is not None
                         else np.zeros_like(p.shift) for p in preds])
        mask = obs["measured"].to_numpy()[:, None]
        layers["measured_shift"] = measured
        layers["measured"] = np.where(mask, base + measured, 0.0).astype(np.float32)
        described.update({k: LAYERS[k] for k in ("measured", "measured_shift")})
    adata = anndata.AnnData(X=base + shift, obs=obs, var=var, layers=layers)
    adata.uns["grape"] = {"model": first.model, "grape_core_version": __version__,
                          "X": "predicted mean log-expression (control + shift); the control "
                               "row: the control mean",
                          "layers": described}
    adata.uns["log1p"] = {"base": None}
    if first.interval_level is not None:
        adata.uns["grape"]["interval_level"] = first.interval_level
    return adata


def cell_eval_anndata(groups: Mapping[str, Any], control, genes: Sequence[str], *,
                      description: str = "", model: str = "") -> anndata.AnnData:
    """Cells laid out as cell-eval and pertpy read them.

    Parameters
    ----------
    groups
        Canonical condition -> its cells ``(n_cells, n_genes)`` (array or sparse) or a
        :class:`~grape_core.evaluation.celleval.Constant` (a predicted mean, written as that
        many equal cells).
    control
        The control cells ``(n_control, n_genes)``.
    genes
        Gene symbols (the var index).
    description
        What the file holds, in ``uns['grape']``.

    Returns
    -------
    AnnData ``n_cells × n_genes``: groups in the sorted order of their labels (``control``
    among them; the order cell-eval's data ceiling shuffles them in), each group's cells in
    the given order; ``obs['perturbation']`` (categorical), ``obs['condition']``;
    ``uns['log1p']``; ``X`` float32, sparse when every input is.
    """
    import anndata
    import scipy.sparse as sp

    from ..data.conditions import perturbation_label
    from ..evaluation.celleval import Constant

    blocks = {perturbation_label(c): (c, m) for c, m in groups.items()}
    blocks[keys.PERTURBATION_CONTROL] = (keys.CTRL, control)
    order = sorted(blocks)
    sparse = all(sp.issparse(m) for _, m in blocks.values())
    pieces, labels, conditions = [], [], []
    for label in order:
        condition, matrix = blocks[label]
        if isinstance(matrix, Constant):
            matrix = np.broadcast_to(np.asarray(matrix.values, dtype=np.float32),
                                     (int(matrix.n), len(genes)))
        if sparse:
            pieces.append(sp.csr_matrix(matrix, dtype=np.float32))
        else:
            pieces.append(matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix))
        labels += [label] * matrix.shape[0]
        conditions += [condition] * matrix.shape[0]
    X = sp.vstack(pieces, format="csr").astype(np.float32) if sparse else \
        np.concatenate(pieces).astype(np.float32)
    obs = pd.DataFrame({keys.PERTURBATION: pd.Categorical(labels, categories=order),
                        keys.CONDITION: conditions},
                       index=[f"cell{i}" for i in range(len(labels))])
    var = pd.DataFrame({keys.GENE_NAME: list(genes)}, index=pd.Index(list(genes)))
    adata = anndata.AnnData(X=X, obs=obs, var=var)
    adata.uns["log1p"] = {"base": None}
    adata.uns["grape"] = {"grape_core_version": __version__, "model": model,
                          "holds": description}
    return adata


def write_cell_eval(folder, report, sample) -> dict:
    """The files to run cell-eval on an evaluation (``evaluate --h5ad DIR``).

    Writes, in ``folder`` (created if needed; files of a previous run are replaced):
    ``real.h5ad`` (the held-out perturbations' cells and the control cells),
    ``pred_<model>.h5ad`` for every model of ``report`` (its predicted means laid out as
    cells, :func:`cell_eval_anndata`), ``real_<model>.h5ad`` for a model that predicts only
    some perturbations (``additive``: cell-eval compares the same perturbations),
    ``replicate_real.h5ad`` / ``replicate_pred.h5ad`` (the two halves of the replicate row),
    and ``cell_eval.json``: what each file is and the cell-eval command for each pair.

    Parameters
    ----------
    report
        :func:`~grape_core.evaluation.benchmark.benchmark` with its predictions.
    sample
        :class:`~grape_core.evaluation.replicate.CellSample` of the same screen.

    Returns
    -------
    The contents of ``cell_eval.json``.
    """
    import re
    from pathlib import Path

    from ..evaluation import celleval
    from ..evaluation.replicate import split_halves
    from ..io import write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    held = list(report.test_conditions)
    genes = list(sample.genes)
    command = ("cell-eval run -ap {pred} -ar {real} --control-pert "
               f"{celleval.CONTROL} --pert-col {celleval.PERT_COL} --profile full")
    pairs = []

    def write(name: str, adata) -> str:
        write_h5ad(adata, folder / name)
        return name

    real_all = write("real.h5ad", cell_eval_anndata({c: sample.cells[c] for c in held},
                                                    sample.control, genes,
                                                    description="measured cells"))
    for model, pred in report.predictions.items():
        keep = [c for c, row in zip(held, pred) if not np.all(np.isnan(row))]
        if not keep:
            continue
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model)
        cells = celleval.as_predicted_cells(pred[[held.index(c) for c in keep]])
        groups = {c: celleval.Constant(cells[i], sample.n_cells(c)) for i, c in enumerate(keep)}
        pred_file = write(f"pred_{safe}.h5ad", cell_eval_anndata(
            groups, sample.control, genes, model=model,
            description="predicted means laid out as cells: each perturbation as many cells "
                        "as measured, all equal to the predicted mean clipped at 0; the real "
                        "control cells"))
        real_file = real_all
        if len(keep) < len(held):
            real_file = write(f"real_{safe}.h5ad", cell_eval_anndata(
                {c: sample.cells[c] for c in keep}, sample.control, genes,
                description=f"measured cells of the perturbations {model} predicts"))
        pairs.append({"model": model, "pred": pred_file, "real": real_file,
                      "command": command.format(pred=pred_file, real=real_file)})
    halves = split_halves(sample, seed=report.replicate.get("seed", 0)) if report.replicate else None
    if halves is not None:
        first = write("replicate_real.h5ad", cell_eval_anndata(
            {c: halves.measured.cells[c] for c in halves.measured.conditions},
            halves.measured.control, genes, description="replicate: first half of the cells"))
        second = write("replicate_pred.h5ad", cell_eval_anndata(
            {c: halves.predicted.cells[c] for c in halves.predicted.conditions},
            halves.predicted.control, genes, description="replicate: second half of the cells"))
        pairs.append({"model": "replicate", "pred": second, "real": first,
                      "command": command.format(pred=second, real=first)})
    index = {**celleval.describe(), "pairs": pairs,
             "ceiling": "cell-eval's own data ceiling of real.h5ad: add --ceiling to a command "
                        "(its seed 0 draws the halves of replicate_*.h5ad)"}
    write_json(folder / "cell_eval.json", index)
    return index


def write_h5ad(adata: anndata.AnnData, path, *, what: str = "the AnnData file") -> None:
    """Write ``adata`` atomically (a temporary file renamed into place; see
    :func:`grape_core.io.atomic_path`: never over a link, a device or a FIFO)."""
    from ..io import atomic_path, tensor_bytes

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
    :meth:`~grape_core.serving.results.Prediction.to_frame`'s columns, each perturbation's genes by
    |shift| (its ``top`` largest, or all); ``measured`` columns only when some condition was
    measured (empty for the others)."""
    frames = [p.to_frame(top=top).assign(perturbation=p.condition, part=p.part)
              for p in predictions]
    if not frames:
        return pd.DataFrame(columns=["perturbation", "part"])
    table = pd.concat(frames, ignore_index=True)
    first = ["perturbation", "part"]
    return table[first + [c for c in table.columns if c not in first]]
