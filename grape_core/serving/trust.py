"""How far to trust a prediction or a screen, in plain language, as data.

Built only from what was measured: the model's held-out metrics against the simple
baselines (overall and for perturbations like this one), how many held-out measured shifts
fell inside the calibrated intervals (or, without them, how well the ensemble's spread
tracked the errors; ``manifest.uncertainty``), this prediction's own spread, and,
when the screen measured the perturbation, how close the prediction came. A :class:`Trust`
has a ``level`` for code to branch on and ``sentences`` for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from ..evaluation.calibration import COVERAGE_KEYS
from ..evaluation.metrics import pearson
from ..evaluation.verdicts import Comparison, compare, model_label, verdict_of_metrics

if TYPE_CHECKING:
    from .loaded import LoadedModel
    from .results import Prediction
    from .results import ScreenResult

Level = Literal["low", "moderate", "fair"]
FEW_HELD_OUT = 5
"""Fewer held-out perturbations than this: any comparison is anecdotal (trust is low)."""
ENOUGH_HELD_OUT = 30
"""Fewer than this: trust is at most moderate."""
SUBGROUP_WORDS = {
    "unseen_single": "a single gene not perturbed in training",
    "combo_seen0": "a pair of genes neither of which was perturbed in training",
    "combo_seen1": "a pair with one gene perturbed in training",
    "combo_seen2": "a pair with both genes perturbed in training",
}
BOTTOM_LINE = {
    "low": "In short: treat this as a hypothesis to check at the bench, not as a result.",
    "moderate": "In short: useful to choose what to test first; confirm it before relying on it.",
    "fair": "In short: a reasonable guide for ranking what to test; single gene values can "
            "still be off.",
}


@dataclass(frozen=True)
class Trust:
    """``level`` (``low``, ``moderate``, ``fair``) and the sentences that justify it."""

    level: Level
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def _rivals(metrics: pd.DataFrame | None, conditions=None) -> tuple[int, float, list[Comparison]]:
    """GRAPE's mean ``pearson_delta`` over ``conditions`` (default: all held out), how many,
    and its comparison with each baseline on the conditions both predict (best first)."""
    if metrics is None or not len(metrics) or not {"model", "condition", "pearson_delta"} <= set(metrics):
        return 0, float("nan"), []
    if conditions is not None:
        metrics = metrics[metrics["condition"].isin(list(conditions))]
    own = metrics[metrics["model"] == "grape"]
    found = compare(metrics, "pearson_delta")
    return (len(own), float(own["pearson_delta"].mean()) if len(own) else float("nan"),
            sorted(found, key=lambda c: -c.baseline_value))


def _versus(found: list[Comparison], n: int, *, partial: bool = True) -> tuple[str, bool]:
    """Words for the best baseline on the same conditions (``", against 0.27 for the train
    mean baseline"``, plus a sentence for one that covers only some of them, the additive
    one), and whether a baseline is as good or better there: better beyond a tie anywhere,
    or tied on all of them (:func:`~.verdicts.tied`; a tie on one pair of several is not)."""
    full = [c for c in found if c.n_conditions == n]
    words = ""
    if full:
        best = full[0]
        words = f", against {best.baseline_value:.2f} for the {model_label(best.baseline)} baseline"
    words += "."
    for c in [c for c in found if c.n_conditions < n][:int(partial)]:
        words += (f" On the {_n(c.n_conditions, 'pair')} whose two singles were measured, the "
                  f"{model_label(c.baseline)} baseline scored {c.baseline_value:.2f} against "
                  f"{c.model_value:.2f}.")
    return words, any(c.baseline_wins for c in found) or any(c.tie for c in full)


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def subgroup_like(model: LoadedModel, perturbation: tuple[str, ...]) -> str | None:
    """The GEARS subgroup a perturbation would belong to if it were held out
    (``unseen_single``, ``combo_seen0/1/2``); ``None`` for a single gene that training
    perturbed (no held-out group is like it)."""
    seen = model.bundle.trained_genes
    n_seen = sum(g in seen for g in perturbation)
    if len(perturbation) == 1:
        return None if n_seen else "unseen_single"
    return f"combo_seen{n_seen}"


def _evidence(model: LoadedModel) -> tuple[list[str], Level, int]:
    """Sentences about the held-out test as a whole; the level they allow; how many
    perturbations were held out."""
    n, ours, found = _rivals(model.bundle.metrics)
    if not n:
        return (["This model was not tested on perturbations it never saw (its split held "
                 "nothing out), so nothing measures how far to trust it."], "low", 0)
    vs, beaten = _versus(found, n)
    out = [f"The model was tested on {_n(n, 'perturbation')} that the screen measured but "
           f"training never saw. Its predicted shifts matched the measured ones with an average "
           f"correlation of {ours:.2f} (Pearson over all measured genes: 1 is perfect, 0 is no "
           f"better than predicting no change){vs}"]
    level: Level = "fair" if n >= ENOUGH_HELD_OUT else "moderate"
    verdict = verdict_of_metrics(model.bundle.metrics)
    if verdict is not None and verdict.beaten:
        names = ", ".join(model_label(w.baseline) for w in verdict.beaten_by)
        out.append(f"Simpler baselines ({names}) do as well or better on both correlation and "
                   "error: on this evidence the model adds little to the screen's average "
                   "response.")
        level = "low"
    elif beaten:
        level = "low"
    if n < FEW_HELD_OUT:
        out.append(f"With only {_n(n, 'held-out perturbation')} these figures are anecdotes, "
                   "not statistics.")
        level = "low"
    return out, level, n


def _spread(model: LoadedModel, pred: Prediction, *, top: int = 20) -> list[str]:
    """This prediction's spread and interval on its largest shifts, and how well they held
    the held-out measurements."""
    members = len(model.bundle.members)
    order = pred.order()[:top]
    size = float(np.median(np.abs(pred.shift[order])))
    out = []
    if members > 1:
        spread = float(np.median(pred.std[order]))
        agree = "agree closely" if spread < 0.25 * size else (
            "partly disagree" if spread < size else "disagree")
        out.append(f"The {members} models of the ensemble {agree} on the {len(order)} largest "
                   f"shifts (typical spread {spread:.3f} against a typical shift of {size:.3f}).")
    else:
        out.append("The model is a single network: there is no ensemble spread to show doubt.")
    if pred.interval is not None:
        out.append(f"Its {_percent(pred.interval_level)} intervals on those shifts are typically "
                   f"± {float(np.median(pred.interval[order])):.3f}.")
    out += interval_sentences(model.bundle.manifest)
    return out


def _percent(share: float | None) -> str:
    return f"{100 * share:.0f} %" if share is not None and np.isfinite(share) else "?"


def interval_sentences(manifest) -> list[str]:
    """What the error bars are and how well they held on held-out perturbations: the
    calibrated interval when the model has one (how many never-seen perturbations it was
    fitted on, the share of held-out measured shifts inside), else the spread's record."""
    unc, calibration = manifest.uncertainty or {}, manifest.calibration
    if calibration is None:
        rho, within = unc.get("spearman_std_vs_error"), unc.get("within_2_std")
        if rho is None or within is None:
            return []
        if not (np.isfinite(rho) and np.isfinite(within)):
            return ["On held-out data the spread's rank correlation with the error is n/a "
                    "(too few values that vary): read the spread as a ranking of doubt at most."]
        tracks = ("a larger spread went with a larger error" if rho >= 0.5 else
                  "the spread said little about the error")
        return [f"On held-out data {tracks} (rank correlation {rho:.2f}), and "
                f"{100 * within:.0f} % of errors were within two spreads: read the spread as "
                "a ranking of doubt, not as an error bar."]
    level = _percent(calibration.level)
    how = (" each predicted by a model trained without its genes"
           if getattr(calibration, "method", "split") == "cross" else " held back from training")
    fitted = (f"Error bars are {level} intervals: ranges meant to hold the measured shift "
              f"{level} of the time, set on {_n(calibration.conditions, 'perturbation')}{how}")
    fitted += (": with so few, a rough guide." if calibration.conditions < FEW_HELD_OUT else ".")
    out = [fitted]
    shown = unc.get("within_interval_top")
    if shown is None:  # trained without held-out perturbations
        return out
    parts = []
    for key, words in zip(COVERAGE_KEYS, (f"the {calibration.top} genes a chart shows",
                                          "the other expressed genes",
                                          "the genes that moved most")):
        share = unc.get(key)
        if share is not None:
            below = (f" (below the {level} aimed at)" if np.isfinite(share)
                     and share < calibration.level - 0.025 and not parts else "")
            parts.append(f"{_percent(share) if np.isfinite(share) else 'n/a'} of {words}{below}")
    out.append("On the held-out perturbations the measured shift fell inside for "
               + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
               + ".")
    return out


def prediction_trust(model: LoadedModel, pred: Prediction) -> Trust:
    """How far to trust ``pred`` (see the module docstring).

    Examples
    --------
    >>> import grape_core as gc
    >>> from grape_core.serving.trust import prediction_trust
    >>> model = gc.load("assets/models/adamson")
    >>> prediction_trust(model, gc.predict(model, "TARS")).level
    'low'
    """
    sentences, level, _ = _evidence(model)
    bundle = model.bundle
    group = bundle.split.subgroup_of(pred.condition) or subgroup_like(model, pred.perturbed)
    members = [c for part in ("test", "val") for c in bundle.split.subgroups.get(part, {}).get(group or "", [])]
    n, ours, found = _rivals(bundle.metrics, members) if group else (0, float("nan"), [])
    if n:
        vs, beaten = _versus(found, n, partial=False)  # the overall sentence names it
        sentences.append(f"For perturbations like this one ({SUBGROUP_WORDS.get(group, group)}; "
                         f"{n} held out) GRAPE's correlation was {ours:.2f}{vs}")
        if beaten:
            level = "low"
    elif group is None:
        sentences.append("Training saw this gene perturbed, so this is not a prediction for an "
                         "unseen perturbation.")
    if group == "combo_seen0":
        level = "low"  # neither gene was ever perturbed: the furthest extrapolation
    if pred.measured_shift is not None:
        r = float(pearson(pred.shift, pred.measured_shift))
        if pred.part == "test":
            sentences.append(f"This perturbation was held out, and its prediction correlates "
                             f"with the measurement at {r:.2f}.")
            ceiling = replicate_sentence(model, pred)
            if ceiling:
                sentences.append(ceiling)
        else:
            sentences.append(f"This perturbation was used in training, so its agreement with the "
                             f"measurement ({r:.2f}) says little about new perturbations.")
    typical = typical_response_sentence(model, pred)
    if typical:
        sentences.append(typical)
        level = "low"
    sentences += _spread(model, pred)
    return Trust(level=level, sentences=(*sentences, BOTTOM_LINE[level]))


def replicate_sentence(model: LoadedModel, pred: Prediction) -> str | None:
    """For a held-out perturbation: how close the prediction came to repeating the
    experiment (:func:`~.replicate.condition_scaled` of ``pearson_delta``: 0 is the training
    perturbations' mean response, 1 half of the perturbation's cells against the other half);
    ``None`` for a perturbation that was not held out."""
    from ..evaluation.replicate import condition_scaled, has_replicate

    if pred.part != "test":
        return None
    metrics = model.bundle.metrics
    if not has_replicate(metrics):
        return ("This model does not store the screen's own replicate (it was trained before "
                "replicates were kept), so how close this comes to repeating the experiment is "
                "not known here; `python -m grape_core evaluate` with the training data "
                "computes it.")
    found = condition_scaled(metrics, pred.condition)
    if found is None:
        return None
    values = (f"the correlation of predicted and measured shifts was {found.model_value:.2f}, "
              f"against {found.baseline_value:.2f} for the training perturbations' mean "
              f"response and {found.reference_value:.2f} for half of this perturbation's cells "
              "against the other half")
    if not np.isfinite(found.value):
        return (f"How close to repeating the experiment: not defined for this perturbation, "
                f"because {found.reason}; {values}.")
    return (f"How close to repeating the experiment: {found.value:.2f} on a scale where 0 is "
            f"the training perturbations' mean response and 1 a replicate of the screen (half "
            f"the cells against the other half; above 1: closer to the measurement than that "
            f"replicate). Here {values}.")


TYPICAL = 0.1
"""Distance from the training perturbations' mean response, as a share of the prediction,
below which a prediction is said to hold nothing specific to its perturbation (measured
shifts on the bundled screens are 0.66 to 1.0 away from it)."""


def typical_response_sentence(model: LoadedModel, pred: Prediction) -> str | None:
    """A sentence when ``pred`` is nearly the mean response of the training perturbations
    (the ``train_mean`` baseline) at every gene but the perturbed ones, else ``None``: a
    model that learned little beyond the shared response predicts it for every gene, and
    a chart of it looks like a specific answer."""
    typical = model.baselines()["train_mean"].predict([pred.condition])[0] - pred.control
    others = ~np.isin(np.asarray(pred.genes), pred.perturbed)
    size = float(np.linalg.norm(pred.shift[others]))
    if size == 0 or not np.isfinite(typical[others]).all():
        return None
    distance = float(np.linalg.norm((pred.shift - typical)[others])) / size
    if distance >= TYPICAL:
        return None
    return (f"Apart from the perturbed gene{'s' if pred.is_pair else ''}, this prediction is the "
            f"average response of all training perturbations to within {100 * distance:.0f} %: "
            f"the model has little to say that is specific to {pred.label}, and other "
            "perturbations get nearly the same chart.")


def screen_trust(model: LoadedModel, result: ScreenResult, check: pd.DataFrame | None = None) -> Trust:
    """How far to trust a screen's ranking: whether the top candidates stand out from a
    typical perturbation by more than the ensemble's spread, the screen check (does the
    model rank held-out perturbations like the measurements; ``screen_check()``), and the
    held-out evidence."""
    sentences, level, _ = _evidence(model)
    noise = ranking_is_noise(result)
    if noise:
        sentences.append(noise)
        level = "low"
    elif len(result.table):
        top = result.table.iloc[0]
        sentences.append(f"The top candidate's specific effect ({float(top['vs_typical']):.3f} "
                         f"beyond a typical perturbation) is larger than the ensemble's spread "
                         f"({float(top['effect_std']):.3f}), which is a lower bound on its "
                         "uncertainty.")
    if len(result.table) and result.n_members > 1 and "members_agree" in result.table:
        agree = int(result.table.iloc[0]["members_agree"])
        sentences.append(f"The top candidate beats a typical perturbation in {agree} of the "
                         f"{result.n_members} ensemble members"
                         + (": it rests on one member, not on the ensemble." if agree <= 1 else "."))
        if agree <= 1:
            level = "low"
    if check is not None and "grape" in check.index:
        rho = float(check.loc["grape", "spearman"])
        others = check.drop(index="grape")["spearman"]
        line = (f"Screen check: across {int(check.loc['grape', 'n_conditions'])} held-out "
                f"perturbations, predicted effects ranked them like the measurements with "
                f"Spearman {rho:.2f}")
        if len(others):
            line += f" (best baseline {float(others.max()):.2f})"
        sentences.append(line + ".")
        if rho < 0.3:
            level = "low"
    return Trust(level=level, sentences=(*sentences, BOTTOM_LINE[level]))


def ranking_is_noise(result: ScreenResult) -> str | None:
    """A sentence when the screen's best candidate of a kind (single, pair) does not stand
    out from a typical perturbation of that kind (what is specific to it is within twice
    the ensemble's spread, or under a tenth of the shared effect), else ``None``. A pair is
    compared with a typical pair, and a pair screen still says when its singles are noise."""
    leaders = result.leaders if result.leaders is not None else result.table.head(1)
    if not len(leaders):
        return None
    both = leaders["kind"].nunique() > 1 if "kind" in leaders else False
    out = []
    for top in leaders.itertuples(index=False):
        kind = str(getattr(top, "kind", "single"))
        typical = result.typical_of(kind)
        specific, spread = float(top.vs_typical), float(top.effect_std)
        if abs(specific) > 2 * spread and abs(specific) >= 0.1 * abs(typical):
            continue
        what = f"{kind}s" if kind == "pair" else "single genes"
        out.append((f"Among the {what}, no" if both else "No")
                   + f" candidate stands out: most of the predicted effect "
                   f"({float(top.effect):.3f} for the best one, {top.genes}) is shared by every "
                   f"{'pair' if kind == 'pair' else 'perturbation'} (typical {typical:.3f}), and "
                   f"what is specific to it ({specific:.3f}) is small against the ensemble's "
                   f"spread ({spread:.3f}). The order is mostly noise.")
    return " ".join(out) or None
