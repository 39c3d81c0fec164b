"""``grape_core.fit``: train a model on a screen with the one recipe
(:func:`grape_core.training.train_bundle`) and hand it back loaded, scverse-style."""

from __future__ import annotations

from typing import Any

from .. import keys
from ..config import TrainConfig
from ..data.pseudobulk import pseudobulk
from ..data.read import read_perturbseq
from ..data.splits import Split
from .model import Model


def fit(adata, split: Split | None = None, *, perturbation_key: str | None = None,
        control: str | None = None, gene_key: str | None = None, seed: int = 1,
        ensemble: int | None = None, max_steps: int | None = None, device: str = "cpu",
        progress: bool = True, ablations: bool = False, **kwargs: Any) -> Model:
    """Train a GRAPE ensemble on a Perturb-seq screen and evaluate it on held-out
    perturbations; the model predicts AnnData (:meth:`Model.predict`).

    Parameters
    ----------
    adata
        ``n_cells × n_genes``, log-normalised expression: pertpy's layout
        (``obs['perturbation']`` with ``control``, pairs ``A+B``), GEARS'
        (``obs['condition']``: ``ctrl``, ``A+ctrl``) or anything
        :func:`~grape_core.data.read.read_perturbseq` reads; it is checked, never changed.
    split
        Train / validation / held-out perturbations; default GEARS' simulation split of the
        screen's perturbations with ``seed``.
    perturbation_key, control, gene_key
        obs column of the perturbation, its control label, var column of the gene symbols
        (default: detected).
    seed
        Seeds the split and training.
    ensemble, max_steps, device
        Members of the ensemble (default 3), optimisation steps per member (default 2,000,
        with early stopping), ``cpu`` / ``cuda`` / ``auto``.
    progress
        Progress bars on stderr.
    ablations
        Also retrain every variant of :data:`~grape_core.training.ablations.ABLATIONS` (one
        member each) and keep their held-out metrics in the model.
    **kwargs
        As :func:`grape_core.training.recipe.train_bundle` (``priors``, ``model_config``,
        ``train_config``, ``name``, ``pb``...).

    Returns
    -------
    Model
        Trained, with its held-out metrics beside the baselines and the data's replicate
        (``model.bundle.manifest.metrics``); :meth:`Model.save` writes its folder.

    Examples
    --------
    >>> import anndata, grape_core as gc
    >>> adata = anndata.read_h5ad("screen.h5ad")  # doctest: +SKIP
    >>> model = gc.fit(adata, max_steps=200)  # doctest: +SKIP
    >>> model.predict(["KLF1", "KLF1+MAP2K6"])  # doctest: +SKIP
    AnnData object with n_obs × n_vars = 3 × 500 ...
    """
    from ..training.ablations import run_ablations
    from ..training.recipe import default_split, train_bundle

    if keys.CONDITION not in adata.obs or keys.UNS_SOURCE not in adata.uns:
        adata = read_perturbseq(adata, condition_key=perturbation_key, control_label=control,
                                gene_name_key=gene_key)
    pb = kwargs.pop("pb", None) or pseudobulk(adata)
    split = split if split is not None else default_split(pb, seed=seed)
    train_config = kwargs.pop("train_config", None) or TrainConfig(seed=seed, device=device)
    changes = {"ensemble": ensemble, "max_steps": max_steps}
    train_config = train_config.replace(**{k: v for k, v in changes.items() if v is not None})
    bundle = train_bundle(adata, split, train_config=train_config, progress=progress, pb=pb,
                          **kwargs)
    if ablations and bundle.manifest.metrics is not None:
        bundle = bundle.replace(ablations=run_ablations(
            bundle, adata, knowledge=kwargs.get("knowledge"), progress=progress, pb=pb,
            priors=kwargs.get("priors")))
    return Model(bundle, device=device)
