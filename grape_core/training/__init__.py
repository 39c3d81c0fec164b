"""Training: a screen in, a trained model out.

``recipe``  the one recipe (:func:`train_bundle`) and its steps: split, gene graph, ensemble,
manifest, calibration, stored singles, held-out evaluation; :func:`save_model`
``plan``  the ensemble's training plan and its calibration set (:func:`train_grape`)
``members``  one member's optimisation, early stopping, members side by side
``warm``  a new member and its least-squares warm start; ``step``  one optimisation step
``ablations``  the recipe for each model variant; ``public``  a public screen, downloaded
and trained, with progress and a stop switch (the app's "Get the full screen")

Submodules are imported where used: importing this package does not import torch (the
app's first page reads :func:`~.public.public_model_name` from here).
"""
