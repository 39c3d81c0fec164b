"""The collaborator report's charts: the app's own plotly figures and pyvis network view,
inlined into :mod:`grape_core.report`'s self-contained HTML (no CDN, no outside request).

Used by the Predict and Screen pages' "Download report" buttons and by
``python -m grape_core predict --report``. Imports no Streamlit, so the command line can use
it without starting the app.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .report import Figure, ReportParts, prediction_report, screen_report

from . import charts

_TEXT_FIELDS = ("x", "y", "text", "hovertext", "customdata", "ids", "labels")
_CONFIG = {"displaylogo": False, "responsive": True,
           "modeBarButtonsToRemove": ["sendDataToCloud"]}


def _escaped(values: Any) -> Any:
    """Strings in a trace's data escaped for plotly's own markup (``<b>``, ``<a href>``...):
    a gene named like HTML shows as text. Plotly turns ``&lt;`` back into ``<`` on screen.

    Idempotent: the app's charts already escape their labels (:func:`charts.esc`), and text
    escaped twice would show ``&lt;`` instead of ``<``; so what :func:`charts.esc` made is
    unescaped first, and everything is escaped once."""
    if isinstance(values, str):
        return charts.esc(charts.unesc(values))
    if isinstance(values, (list, tuple)):
        return type(values)(_escaped(v) for v in values)
    if isinstance(values, np.ndarray) and values.dtype.kind in "OUS":
        return np.vectorize(_escaped, otypes=[object])(values) if values.size else values
    if isinstance(values, pd.Series | pd.Index) and values.dtype == object:
        return values.map(_escaped)
    return values


def safe_figure(fig: go.Figure) -> go.Figure:
    """A copy of ``fig`` whose data-derived strings (trace data, category orders) are
    escaped; titles and templates are left alone (callers pass escaped titles)."""
    out = go.Figure(fig)
    for trace in out.data:
        for name in _TEXT_FIELDS:
            if name in trace and trace[name] is not None:
                trace[name] = _escaped(trace[name])
    for axis in ("xaxis", "yaxis"):
        layout_axis = out.layout[axis]
        if layout_axis.categoryarray is not None:
            layout_axis.categoryarray = _escaped(list(layout_axis.categoryarray))
    return out


def figure_html(fig: go.Figure, *, div_id: str) -> str:
    """A figure as a ``<div>`` and its ``<script>`` (plotly.js is inlined once, elsewhere)."""
    import plotly.io as pio

    return pio.to_html(safe_figure(fig), full_html=False, include_plotlyjs=False,
                       div_id=div_id, config=_CONFIG, default_height="460px")


def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (inlined: no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def prediction_report_html(model, pred, *, top: int = 20, hops: int = 1, edges: int = 40,
                           command: str = "", why_gene: str | None = None) -> str:
    """The whole report of one prediction (:func:`grape_core.report.prediction_report`)
    with the shift chart, the predicted-vs-measured scatter (when measured), why the
    perturbation moves ``why_gene`` (default: its most shifted gene,
    :func:`grape_core.serving.explain.responding_gene`) and the network neighbourhood of the
    perturbed genes with the members' agreement."""
    from ..errors import GrapeError
    from ..serving.explain import explain, responding_gene
    from ..serving.network import learned_network

    from .network_view import network_html

    title = f"Top {top} predicted shifts: {pred.label}"  # the chart escapes its title
    figures = [Figure(figure_html(charts.shift_chart(pred, top=top, title=title), div_id="shift-chart"),
                      "Bars: the model's predicted shift (blue: coding gene, orange: non-coding), "
                      f"error bars: {charts.error_bar_words(pred)}; grey bars: what the screen "
                      "measured; markers: what the simple baselines predict.")]
    if pred.measured_shift is not None:
        figures.append(Figure(figure_html(charts.scatter_measured(pred), div_id="scatter"),
                              "Each dot is a gene: on the dashed line the prediction equals the "
                              "measurement."))
    bundle = model.bundle
    found = learned_network(model).neighbourhood(pred.perturbed, hops=hops, top_k=edges)
    network = network_html(found, bundle.table, list(pred.perturbed), height=560)
    parts = ReportParts(figures=tuple(figures), network=network, scripts=(plotly_js(),))
    gene = responding_gene(pred) if why_gene is None else why_gene
    try:
        why = explain(model, pred.condition, gene) if gene is not None else None
    except GrapeError:  # a prediction that is not this model's own (its genes are unknown)
        why = None
    return prediction_report(model, pred, parts=parts, edges=found, top=top, command=command,
                             why=why)


def screen_report_html(model, result, *, check: pd.DataFrame | None = None, command: str = "") -> str:
    """The report of a screen's ranking (:func:`grape_core.report.screen_report`) with its
    effect vs off-target chart."""
    fig = Figure(figure_html(charts.screen_figure(result), div_id="screen-chart"),
                 "Top left is best: a strong effect on the targets and little else changed. "
                 "Error bars: the ensemble's spread, a lower bound on the uncertainty.")
    parts = ReportParts(figures=(fig,), scripts=(plotly_js(),))
    return screen_report(model, result, parts=parts, check=check, command=command)


def check_or_none(model) -> pd.DataFrame | None:
    """The screen check, or ``None`` when the model held out too few perturbations."""
    from ..errors import GrapeError
    from ..serving.evaluate import screen_check

    try:
        return screen_check(model)
    except GrapeError:
        return None

