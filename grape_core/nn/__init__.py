"""The torch modules of GRAPE: tensors in, tensors out (no AnnData, files, optimiser or
device choice), and the ensemble's one forward pass.

``grape``  the model (:class:`~.grape.GRAPE`): propagation over the learned gene graph
``gsl``  graph structure learning (the gene encoder is pre-trained with the knowledge:
:mod:`grape_core.knowledge.encoder`)
``hetero``  per-relation messages; ``sparse``  edge products; ``loss``  the training loss
``inputs``  gene knowledge to the model's tensors, and its outputs back to tables
``ensemble``  every member's shifts of a list of conditions (:func:`~.ensemble.member_shifts`)

Submodules are imported where used: importing this package does not import torch.
"""
