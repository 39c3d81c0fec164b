"""The loaded model and everything done with it.

``loaded``  :class:`LoadedModel`: a read-only bundle, its one forward pass, caches and singles
``model``  :class:`Model` (a loaded model with scverse-style methods), :func:`load`
``singles``  the singles a screen reads (:class:`SinglesStore`, owned by the model)
``resolve``  genes, perturbations, lists and signatures as the model names them
``results``  :class:`Prediction`, :class:`ScreenResult`
``predict``  :func:`predict`, :func:`predict_many`; ``screen``  :func:`screen`
``evaluate``  :func:`evaluate` (held-out metrics), :func:`screen_check`
``export``  AnnData for scanpy, pertpy and cell-eval; ``trust``  how far to trust a result
``explain``, ``network``, ``network_export``, ``decomposition``  what the model learned
``fit``  :func:`fit`: train (:mod:`grape_core.training`) and load in one call
"""

from .evaluate import evaluate, screen_check
from .export import to_anndata
from .fit import fit
from .loaded import LoadedModel, as_model
from .model import Model, find_model, load
from .predict import predict, predict_conditions, predict_many, with_interaction
from .resolve import read_perturbations, read_signature, resolve_gene, resolve_perturbation
from .results import Prediction, ScreenResult
from .screen import prepare_screen, screen
from .singles import SinglesStore

__all__ = ["Model", "LoadedModel", "load", "find_model", "as_model", "SinglesStore", "predict", "predict_many",
           "predict_conditions", "with_interaction", "screen", "prepare_screen", "evaluate",
           "screen_check", "Prediction", "ScreenResult", "to_anndata", "read_perturbations",
           "read_signature", "resolve_gene", "resolve_perturbation", "fit"]
