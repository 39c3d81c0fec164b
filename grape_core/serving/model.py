"""The user's loaded model (:class:`Model`), scverse-style, and :func:`load`, which reads a
model folder or a model by name (``adamson``: the user's models folder, then the models that
ship with the package).

A :class:`Model` is a :class:`~.loaded.LoadedModel` (the bundle, its forward pass, caches and
singles) with methods that return AnnData and reports: ``model.predict([...])``,
``model.evaluate(adata)``, ``model.save(folder)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..bundle import Bundle
from ..data.pseudobulk import pseudobulk
from ..data.read import read_perturbseq
from ..evaluation.benchmark import Report
from .evaluate import evaluate
from .export import to_anndata
from .loaded import LoadedModel
from .predict import predict_many


class Model(LoadedModel):
    """A loaded model: predictions, screens and evaluations of a trained GRAPE ensemble.

    Parameters
    ----------
    bundle
        A loaded (:meth:`Bundle.load`) or freshly trained bundle.
    device
        Where predictions run (:func:`~grape_core.devices.resolve_device`): ``cpu``,
        ``auto``, ``cuda``, ``mps``.

    Examples
    --------
    >>> import grape_core as gc
    >>> model = gc.load("norman")
    >>> model.name, len(model.measured)
    ('norman', 500)
    """

    @classmethod
    def load(cls, path: str | Path, *, unverified: bool = False, device: str = "cpu") -> "Model":
        """A model folder, loaded and verified (:func:`load`).

        Parameters
        ----------
        path
            A model folder, or a model's name (:func:`find_model`).
        unverified
            Also load a folder whose manifest has no checksums.
        device
            Where predictions run.

        Returns
        -------
        Model
        """
        return cls(Bundle.load(find_model(path), unverified=unverified), device=device)

    # ------------------------------------------------------------------ scverse-style API
    def predict(self, perturbations: str | Sequence[str], *, interactions: bool = False,
                control: bool = True, progress: bool = False) -> "anndata.AnnData":  # noqa: F821
        """Predicted expression of perturbations, as AnnData (pertpy's layout).

        Parameters
        ----------
        perturbations
            ``"KLF1"``, ``"KLF1+MAP2K6"``, or a list of them (each once).
        interactions
            Also each pair's genetic-interaction type (``obs['gi_type']``; about a second per
            pair).
        control
            Add the ``control`` row (the control mean) that pertpy and cell-eval compare with.
        progress
            A progress bar over a long list.

        Returns
        -------
        AnnData
            ``(n_perturbations + 1) × n_measured``: ``X`` predicted mean log-expression,
            ``obs['perturbation']`` (``KLF1``, ``KLF1+MAP2K6``, ``control``), layers
            ``shift``, ``ensemble_std``, ``interval`` and, for measured perturbations,
            ``measured`` (:func:`grape_core.serving.export.to_anndata`).

        Examples
        --------
        >>> import grape_core as gc
        >>> model = gc.load("norman")
        >>> model.predict(["KLF1", "KLF1+MAP2K6"]).obs["perturbation"].tolist()
        ['KLF1', 'KLF1+MAP2K6', 'control']
        """
        listed = [perturbations] if isinstance(perturbations, str) else list(perturbations)
        preds = predict_many(self, listed, interactions=interactions, progress=progress)
        return to_anndata(preds, control=control)

    def evaluate(self, adata=None, *, part: str = "test") -> Report:
        """GRAPE, every baseline and the data's replicate on the held-out perturbations,
        with GEARS' and cell-eval's metrics (:func:`grape_core.serving.evaluate.evaluate`).

        Parameters
        ----------
        adata
            The screen's cells (``n_cells × n_genes``, the same measured genes; the file the
            model was trained on, read or in memory): the replicate and cell-eval's DE
            metrics need them. ``None``: the model's own stored data.
        part
            ``test`` or ``val``.

        Returns
        -------
        Report
        """
        if adata is None:
            return evaluate(self, part=part)
        if "grape_source" not in adata.uns:  # not read by grape_core: check it the same way
            adata = read_perturbseq(adata)
        return evaluate(self, pseudobulk(adata), part=part, cells=adata)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model folder (:meth:`~grape_core.bundle.Bundle.save`).

        Parameters
        ----------
        path
            The folder.
        overwrite
            Replace a model folder already there.

        Returns
        -------
        Path
        """
        return self.bundle.save(path, overwrite=overwrite)



def find_model(path: str | Path) -> Path:
    """The model folder ``path`` names: the folder itself, or, for a bare name such as
    ``adamson`` that is no folder here, the model of that name in the user's models folder
    (``GRAPE_MODELS_DIR``), then among the models that ship with the package.

    Parameters
    ----------
    path
        A folder, or a model's name.

    Returns
    -------
    Path
        The folder (``path`` itself when nothing of that name is found: loading it then
        says what is wrong).
    """
    from ..settings import settings

    given = Path(path).expanduser()
    text = str(path)
    if os.path.lexists(given) or any(sep in text for sep in ("/", "\\")) or text in ("", ".", ".."):
        return given
    for root in (settings.models_dir, settings.bundled_models):
        found = Path(root) / text
        if (found / "manifest.json").is_file():
            return found
    return given


def load(path: str | Path, *, unverified: bool = False, device: str = "cpu") -> Model:
    """A model folder, loaded and verified, ready for :func:`~grape_core.serving.predict.predict`
    and :func:`~grape_core.serving.screen.screen`.

    Parameters
    ----------
    path
        A model folder, or a model's name: ``adamson`` and ``norman`` ship with the package,
        and the user's models folder (``GRAPE_MODELS_DIR``) is looked in first
        (:func:`find_model`).
    unverified
        Also load a folder whose manifest has no checksums (refused otherwise). Every
        tensor is still checked against the manifest.
    device
        Where predictions run: ``cpu`` (default), ``auto``, ``cuda``, ``mps``.

    Returns
    -------
    Model
        Read-only, with empty caches.

    Raises
    ------
    BundleError
        Missing, corrupted or incompatible folder (one line saying what to do).

    Examples
    --------
    >>> import grape_core as gc
    >>> gc.load("adamson").name
    'adamson'
    """
    return Model.load(path, unverified=unverified, device=device)
