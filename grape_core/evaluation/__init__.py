"""How good is a model: GEARS metrics, baselines, genetic interactions, verdicts.

``metrics``  GEARS-named metrics as pure functions of arrays
``baselines``  control, train mean, linear (PCA + ridge), additive
``benchmark``  every model and baseline on a split's held-out conditions (:class:`Report`;
a loaded model's own: :func:`grape_core.serving.evaluate.evaluate`)
``interactions``  genetic-interaction scores and types of a pair
``verdicts``  the honest comparison with the baselines, as data
``calibration``  prediction intervals for measured shifts, calibrated on validation perturbations
``replicate``, ``celleval``  the data's own replicate; cell-eval's metrics
``planted``  the planted-truth benchmark's results as tables
"""

from __future__ import annotations

from .baselines import fit_baselines
from .benchmark import Report, benchmark, uncertainty_check
from .interactions import classify_interaction, interaction_report, interaction_scores
from .metrics import condition_metrics, metrics_table
from .verdicts import Comparison, Verdict, compare, model_label, verdict

__all__ = [
    "condition_metrics", "metrics_table", "fit_baselines", "benchmark", "Report",
    "uncertainty_check", "interaction_report", "interaction_scores", "classify_interaction",
    "Comparison", "Verdict", "compare", "verdict", "model_label",
]
