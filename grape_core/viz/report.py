"""A report to send to a collaborator: one self-contained, offline HTML file.

:func:`prediction_report` (one perturbation) and :func:`screen_report` (a ranking) lay out
library results (:class:`~grape_core.serving.results.Prediction`, :class:`~grape_core.serving.results.ScreenResult`,
the model's :class:`~grape_core.bundle.Manifest`) as HTML: what was predicted, how far to
trust it (:mod:`grape_core.serving.trust`), the top genes beside the measurement and the
baselines, the genetic-interaction verdict of a pair, the network neighbourhood and the model
card. Every data-derived string is HTML-escaped here.

Interactive charts are drawn by the caller and passed in as :class:`ReportParts` (this
module imports no plotting toolkit): :mod:`.report_charts` builds them with the app's own
plotly figures (:mod:`.charts`) and network view (:mod:`.network_view`), with every script
inlined. The page itself links
to nothing: no CDN, no font server, no outside request.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._version import __version__
from ..data.conditions import label
from ..serving.trust import Trust, prediction_trust, screen_trust
from ..evaluation.verdicts import METRIC_LABELS, metrics_overview, model_label

if TYPE_CHECKING:
    from ..bundle import Manifest
    from ..serving.explain import Explanation
    from ..serving.model import Model
    from ..serving.results import Prediction
    from ..serving.results import ScreenResult

PART_SENTENCES = {
    "train": "was measured by the screen and used to train the model",
    "val": "was measured by the screen and used for early stopping",
    "test": "was measured by the screen but held out: the model never saw it",
    "measured": "was measured by the screen",
    "unmeasured": "was not measured: this is a pure prediction",
}
LEVEL_WORDS = {"low": "low", "moderate": "moderate", "fair": "fair"}
LEVEL_COLORS = {"low": "#c53030", "moderate": "#b7791f", "fair": "#2f855a"}
CARD_METRICS = ("pearson_delta", "pearson_delta_de", "mse", "frac_correct_direction_20")


@dataclass(frozen=True)
class Figure:
    """A chart drawn by the caller: trusted markup (a ``<div>`` and its ``<script>``),
    its data already escaped."""

    html: str
    caption: str = ""


@dataclass(frozen=True)
class ReportParts:
    """What the caller draws: charts, the network page, and the scripts they need."""

    figures: tuple[Figure, ...] = ()
    network: str = ""
    """A complete offline HTML page (the network view), shown in a sandboxed frame."""
    scripts: tuple[str, ...] = ()
    """JavaScript inlined once in the page head (e.g. plotly.js)."""


def esc(value: Any) -> str:
    """HTML-escape any value's text (quotes included)."""
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return esc(value)
    return "–" if not np.isfinite(v) else f"{v:.{digits}f}"


def _table(frame: pd.DataFrame, *, digits: int = 3, cls: str = "") -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, (bool, np.bool_)):
                cells.append(f"<td>{'yes' if v else 'no'}</td>")
            elif isinstance(v, (int, np.integer)):
                cells.append(f"<td class='n'>{int(v)}</td>")
            elif isinstance(v, (float, np.floating)):
                cells.append(f"<td class='n'>{_num(v, digits)}</td>")
            else:
                cells.append(f"<td>{esc(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table class='{esc(cls)}'><thead><tr>{head}</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _script(source: str) -> str:
    return "<script>" + source.replace("</script", "<\\/script") + "</script>"


STYLE = """
body{font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1a202c;
 max-width:1100px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #e2e8f0;
 padding-bottom:4px} h3{font-size:16px;margin:16px 0 4px}
.meta{color:#4a5568;font-size:13px} .box{border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px;
 background:#f7fafc} .trust{border-left:6px solid var(--c);background:#fffdf7}
.badge{display:inline-block;color:#fff;background:var(--c);border-radius:10px;padding:0 10px;
 font-size:13px;font-weight:600;margin-left:6px} .warn{color:#9c4221}
table{border-collapse:collapse;font-size:13px;margin:6px 0} th,td{border-bottom:1px solid #e2e8f0;
 padding:3px 8px;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f7fafc} .caption{color:#4a5568;font-size:13px;margin:2px 0 14px}
iframe{width:100%;height:580px;border:1px solid #e2e8f0;border-radius:8px}
.cards{display:flex;gap:12px;flex-wrap:wrap} .card{border:1px solid #e2e8f0;border-radius:8px;
 padding:6px 14px;min-width:120px} .card b{display:block;font-size:20px}
footer{margin-top:40px;color:#718096;font-size:12px}
"""


def _page(title: str, body: Sequence[str], parts: ReportParts) -> str:
    scripts = "".join(_script(s) for s in parts.scripts)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            # nothing may be fetched from another server: the policy makes the promise checkable
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
            "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
            "img-src data: blob:; font-src data:; frame-src 'self' about: data: blob:; "
            "child-src 'self' about: data: blob:\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style>{scripts}</head><body>"
            + "".join(body) + "</body></html>")


def _trust_box(trust: Trust) -> str:
    color = LEVEL_COLORS[trust.level]
    return (f"<div class='box trust' style='--c:{color}'><h3>How far to trust this"
            f"<span class='badge' style='--c:{color}'>trust: {LEVEL_WORDS[trust.level]}</span></h3>"
            f"<p>{esc(trust.text)}</p></div>")


def _figures(parts: ReportParts) -> str:
    out = []
    for fig in parts.figures:
        out.append(f"<div class='figure'>{fig.html}</div>")
        if fig.caption:
            out.append(f"<p class='caption'>{esc(fig.caption)}</p>")
    return "".join(out)


def model_card(manifest: Manifest) -> str:
    """The model card as HTML: data seen, split, training, held-out metrics beside the
    baselines and the verdict sentence."""
    data, split, training = manifest.dataset, manifest.split, manifest.training
    subset = f" ({', '.join(data.subset)})" if data.subset else ""
    cards = [("cells seen", f"{data.cells:,}"), ("measured genes", f"{data.genes:,}"),
             ("perturbations", f"{data.conditions:,}"), ("held out", f"{split.test:,}"),
             ("ensemble", f"{manifest.ensemble}"),
             ("training", f"{training.seconds / 60:.1f} min" if training.seconds >= 120
              else f"{training.seconds:.0f} s")]
    out = ["<div class='cards'>" + "".join(f"<div class='card'>{esc(k)}<b>{esc(v)}</b></div>"
                                           for k, v in cards) + "</div>",
           f"<p>Model <b>{esc(manifest.name)}</b>, trained on <b>{esc(data.name or '?')}</b>"
           f"{esc(subset)} (file {esc(data.file or '?')}, SHA-256 {esc(data.sha256[:12] or '?')}…), "
           f"split <b>{esc(split.name)}</b> seed {esc(split.seed)}: {split.train} perturbations for "
           f"training, {split.val} for early stopping, {split.test} never seen. grape_core "
           f"{esc(manifest.grape_core_version)}, created {esc(manifest.created or '?')}.</p>"]
    if manifest.metrics is not None and manifest.metrics.test:
        overview = metrics_overview(manifest.metrics.test, CARD_METRICS).drop(columns="key")
        overview = overview.rename(columns={m: METRIC_LABELS.get(m, m) for m in CARD_METRICS})
        out.append("<h3>Held-out metrics (perturbations the model never saw)</h3>")
        out.append(_table(overview))
        if manifest.metrics.verdict:
            out.append(f"<p>{esc(manifest.metrics.verdict)}</p>")
    else:
        out.append("<p>This model has no held-out metrics (its split held nothing out).</p>")
    return "".join(out)


def _header(kind: str, title: str, model: Model) -> list[str]:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [f"<h1>{esc(title)}</h1>",
            f"<p class='meta'>GRAPE {esc(kind)} · model {esc(model.name)} · {esc(when)} · made "
            f"offline by GRAPE Explorer {esc(__version__)}</p>"]


def model_argument(model: Model) -> str:
    """The ``--model`` argument that finds ``model`` again, so that a report's "Reproduce"
    line runs as printed: ``assets/models/<name>`` for a bundled model (from the project
    folder, where the app and the command line run); else its folder relative to the working
    folder, or its full path; its name for a model never saved."""
    from pathlib import Path

    folder = getattr(model.bundle, "path", None)
    if folder is None:
        return model.name
    folder = Path(folder).resolve()
    from ..settings import settings

    bundled = settings.bundled_models.resolve()
    for base, prefix in ((bundled, Path("assets") / "models"), (Path.cwd().resolve(), Path())):
        try:
            return (prefix / folder.relative_to(base)).as_posix()
        except ValueError:
            continue
    return str(folder)


def _footer(command: str) -> str:
    return ("<footer><p>Reproduce: <code>" + esc(command) + "</code></p><p>This file is "
            "self-contained: it loads nothing from the internet. Shifts are changes in "
            "log-expression compared with unperturbed control cells.</p></footer>")


# ----------------------------------------------------------------------------- prediction
def _gene_table(pred: Prediction, top: int) -> pd.DataFrame:
    frame = pred.to_frame(top=top, baselines=True)
    out = pd.DataFrame({"gene": frame["gene"], "biotype": frame["biotype"].astype(str),
                        "predicted shift": frame["shift"], "ensemble spread": frame["std"]})
    if pred.interval is not None:
        out[f"± {100 * pred.interval_level:.0f} % interval"] = frame["interval"]
    if "measured_shift" in frame:
        out["measured shift"] = frame["measured_shift"]
    for col in frame.columns:
        if col.endswith("_shift") and col != "measured_shift":
            name = col[: -len("_shift")]
            out[f"{pred.additive_label if name == 'additive' else model_label(name)}"] = frame[col]
    return out


def _interaction(pred: Prediction) -> str:
    if not pred.interaction:
        return ""
    out = ["<h2>Genetic interaction</h2>",
           f"<p>The additive expectation ({esc(pred.additive_label)}) is what the pair would do "
           "if the two genes acted independently; the verdict compares the pair with it.</p>"]
    for source, rep in pred.interaction.items():
        rows = pd.DataFrame([
            ("magnitude vs additive (1 = additive)", rep.get("rel_mag", np.nan)),
            (f"weight of {pred.perturbed[0]} (c1)", rep.get("c1", np.nan)),
            (f"weight of {pred.perturbed[1]} (c2)", rep.get("c2", np.nan)),
            ("fit of the additive model (r)", rep.get("corr_fit", np.nan)),
            ("dominance (|log10 c1/c2|)", rep.get("dominance", np.nan))], columns=["score", "value"])
        built = (f"<p>Compared with the {esc(' and the '.join(rep['singles']))} singles, the ones "
                 "the predicted pair is built from.</p>" if rep.get("singles") else "")
        out.append(f"<h3>{'Predicted' if source == 'predicted' else 'Measured'}: "
                   f"{esc(rep.get('gi_type', '?'))}</h3><p>{esc(rep.get('explanation', ''))}</p>"
                   + built + _table(rows, digits=2))
    return "".join(out)


def _network(parts: ReportParts, edges: pd.DataFrame | None, focus: Sequence[str]) -> str:
    if not parts.network and edges is None:
        return ""
    out = ["<h2>Network neighbourhood</h2>",
           f"<p>The gene network around {esc(label(focus))}: edges the model learned and those "
           "of the prior knowledge it started from (GO, co-expression, sequence similarity). "
           "Drag to explore; hover for details.</p>"]
    if parts.network:
        out.append(f"<iframe sandbox='allow-scripts' title='network' srcdoc=\"{esc(parts.network)}\">"
                   "</iframe>")
    if edges is not None and len(edges):
        cols = [c for c in ("source", "target", "status", "weight", "sign_agreement", "spread")
                if c in edges.columns]
        shown = edges[cols].head(15).rename(columns={
            "sign_agreement": "members with the majority sign", "spread": "spread across members"})
        out.append("<h3>Strongest edges shown</h3>" + _table(shown))
    return "".join(out)


def _why(why: Explanation | None) -> str:
    """Why the perturbation moves one gene (:func:`~grape_core.serving.explain.explain`): parts
    that add up to its predicted shift, and the strongest paths with member agreement."""
    if why is None:
        return ""
    parts = pd.DataFrame({"part": why.parts["label"], "shift": why.parts["value"],
                          "share of the prediction": why.parts["share"]})
    out = [f"<h2>Why does perturbing {esc(label(why.perturbed))} move {esc(why.gene)}?</h2>",
           "<p>" + " ".join(esc(s) for s in why.sentences()) + "</p>",
           _table(parts, digits=4)]
    if len(why.paths):
        paths = pd.DataFrame({
            "path": why.paths["path"], "steps": why.paths["length"],
            "contribution": why.paths["contribution"], "share of the prediction": why.paths["share"],
            "members with this sign": [f"{int(k)} of {why.n_members}"
                                       for k in why.paths["members_same_sign"]],
            "spread across members": why.paths["spread"]})
        out.append(f"<h3>The {len(why.paths)} strongest of {why.n_walks:,} paths</h3>"
                   + _table(paths, digits=4))
    out.append("<p class='caption'>The model's prediction of this gene split exactly (in each "
               "ensemble member, then averaged): the shared response, the perturbed gene's own "
               "change, every walk of up to the model's propagation steps from the perturbed "
               "gene(s) through the learned network (its edge weights times the message gains "
               "at the states the model passes through) and, for a pair, what composing it from "
               "its singles adds. The parts add up to the predicted shift; a negative share "
               "pushes the other way. Reproduce: python -m grape_core why --model "
               f"{esc(why.model)} --perturbation {esc('+'.join(why.perturbed))} --gene "
               f"{esc(why.gene)}</p>")
    return "".join(out)


def prediction_report(model: Model, pred: Prediction, *, parts: ReportParts = ReportParts(),
                      edges: pd.DataFrame | None = None, top: int = 20,
                      command: str = "", why: Explanation | None = None) -> str:
    """One perturbation's report as a self-contained HTML page.

    Parameters
    ----------
    model, pred
        The model and its :func:`~grape_core.serving.predict.predict` result (with baselines).
    parts
        Charts, network page and scripts drawn by the caller (:mod:`.report_charts`).
    edges
        The neighbourhood shown (:func:`grape_core.serving.network.neighbourhood`), as a table.
    top
        Genes in the table (largest predicted shift first).
    command
        How to make this report again (shown in the footer).
    why
        Why the perturbation moves one gene (:func:`grape_core.serving.explain.explain`), shown
        after the interaction.

    Returns
    -------
    str
        The HTML page (every data-derived string escaped).
    """
    trust = prediction_trust(model, pred)
    title = f"Predicted response to {pred.label}"
    body = _header("prediction report", title, model)
    body.append(f"<p><b>{esc(pred.label)}</b> ({esc(pred.condition)}) "
                f"{esc(PART_SENTENCES.get(pred.part, ''))}.</p>")
    body += [f"<p class='warn'>&#9888; {esc(w)}</p>" for w in pred.warnings]
    body.append(_trust_box(trust))
    body.append("<h2>Predicted shifts</h2>")
    body.append(_figures(parts))
    body.append(f"<h3>The {top} genes with the largest predicted shift</h3>")
    body.append(_table(_gene_table(pred, top)))
    body.append("<p class='caption'>Predicted shift: the ensemble's mean; spread: the standard "
                "deviation of its members"
                + ("; interval: the half width of the interval that should hold the measured "
                   "shift (how often it did is in the box above)" if pred.interval is not None
                   else "")
                + ". Baselines: what simple methods predict (train mean: the average shift of "
                "all training perturbations).</p>")
    body.append(_interaction(pred))
    body.append(_why(why))
    body.append(_network(parts, edges, pred.perturbed))
    body.append("<h2>Model card</h2>" + model_card(model.bundle.manifest))
    body.append(_footer(command or f"python -m grape_core predict --model {model_argument(model)} "
                        f"--perturbation {'+'.join(pred.perturbed)} --report report.html"))
    return _page(title, body, parts)


# ----------------------------------------------------------------------------- screen
def screen_report(model: Model, result: ScreenResult, *, parts: ReportParts = ReportParts(),
                  check: pd.DataFrame | None = None, command: str = "") -> str:
    """A screen's ranking as a self-contained HTML page: targets, how far to trust the
    ranking (:func:`~grape_core.serving.trust.screen_trust`, with the screen check when
    given), the charts, the ranking table and the model card."""
    trust = screen_trust(model, result, check)
    verb = "raise" if result.direction == "up" else "lower"
    title = f"In-silico screen: what would {verb} {', '.join(result.targets)}"
    body = _header("screen report", title, model)
    weights = ", ".join(f"{t} ({w:+.2f})" for t, w in zip(result.targets, result.weights))
    body.append(f"<p>Every perturbation the model knows was scored by the mean predicted shift of "
                f"the targets, signed so that higher is better: {esc(weights)}. A typical "
                f"perturbation scores {result.typical_effect:.3f}"
                + (f", a typical pair {result.typical_pair_effect:.3f}"
                   if result.typical_pair_effect is not None else "")
                + "; <i>vs typical</i> is what is specific to a candidate (pairs against pairs) "
                "and orders the ranking; <i>members agree</i>: in how many of the "
                f"{result.n_members} ensemble members it beats a typical perturbation.</p>")
    body += [f"<p class='warn'>&#9888; {esc(note)}</p>" for note in result.notes]
    body.append(_trust_box(trust))
    body.append("<h2>Candidates</h2>" + _figures(parts))
    table = result.table.drop(columns=["perturbation"]).rename(columns={
        "genes": "perturbation", "effect_std": "effect spread", "vs_typical": "vs typical",
        "members_agree": "members agree",
        "off_target": "off-target", "additive_effect": "additive effect",
        "measured_effect": "measured effect", "measured": "measured in screen"})
    body.append(_table(table))
    if check is not None and len(check):
        shown = check.reset_index(names="model")
        shown["model"] = [model_label(m) for m in shown["model"]]
        body.append("<h3>Screen check</h3><p>Does the model rank held-out perturbations the way "
                    "the measurements do? Spearman correlation per target gene, averaged (higher "
                    "is better).</p>" + _table(shown))
    body.append("<h2>Model card</h2>" + model_card(model.bundle.manifest))
    body.append(_footer(command or f"python -m grape_core screen --model {model_argument(model)} "
                        f"--target {','.join(result.targets)} --direction {result.direction} "
                        "--report report.html"))
    return _page(title, body, parts)
