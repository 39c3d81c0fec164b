"""Training: a screen in, a trained model out.

``recipe``  the one recipe (:func:`train_bundle`) and its steps: split, gene graph, ensemble,
manifest, calibration, stored singles, held-out evaluation; :func:`save_model`
``plan``  the ensemble's training plan and its calibration set (:func:`train_grape`)
``members``  one member's optimisation, early stopping, members side by side
``warm``  a new member and its least-squares warm start; ``step``  one optimisation step
``ablations``  the recipe for each model variant; ``public``  a public screen, downloaded
and trained, with progress and a stop switch (the app's "Get the full screen")
"""

from .ablations import ABLATIONS, run_ablations
from .plan import TrainResult, train_grape
from .public import train_public
from .recipe import default_split, save_model, stored_singles, train_bundle

__all__ = ["train_bundle", "save_model", "default_split", "stored_singles", "train_grape",
           "TrainResult", "ABLATIONS", "run_ablations", "train_public"]
