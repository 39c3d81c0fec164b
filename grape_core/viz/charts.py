"""Figures for the app: plotly figures and display tables of library results.

No analysis here (it lives in :mod:`grape_core.serving.network`, :mod:`grape_core.evaluation` and
the typed results of :mod:`grape_core.serving.predict` / :mod:`grape_core.serving.screen`), no ``st.*``
calls and no file writes. One colour code everywhere: coding genes blue, non-coding genes
orange; GRAPE purple.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..evaluation.calibration import COVERAGE_KEYS
from ..evaluation.metrics import pearson
from ..serving.trust import interval_sentences, ranking_is_noise  # noqa: F401 (pages)
from ..evaluation.verdicts import (METRIC_LABELS, REFERENCES, compare, metric_label,
                                            metrics_overview, model_label, subgroup_table)
from ..serving.network import CODING, NONCODING, biotype_class
from ..serving.results import Prediction, ScreenResult

BIOTYPE_COLORS = {CODING: "#2b6cb0", NONCODING: "#dd6b20"}
GRAPE_COLOR = "#6a3d9a"
MEASURED_COLOR = "#4a5568"
MODEL_COLORS = {"grape": GRAPE_COLOR, "control": "#a0aec0", "train_mean": "#2f855a",
                "linear": "#319795", "additive": "#c53030", "propagation": "#b7791f",
                "replicate": "#1a202c"}
BASELINE_SYMBOLS = {"train_mean": "diamond", "linear": "triangle-up", "additive": "star",
                    "propagation": "square", "replicate": "line-ew-open"}
EDGE_STATUS_COLORS = {"both": "#4a5568", "learned only": GRAPE_COLOR, "prior only": "#b8c2cc"}
SHIFT_AXIS = "shift vs control (log-expression)"
_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=40, b=10),
               legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0, xanchor="left"),
               font=dict(size=13))


def esc(value: Any) -> Any:
    """Text from data (a gene, condition or model name) made safe for plotly, which reads
    ``<b>``, ``<a href>``... in every label, tick and hover text: ``&``, ``<`` and ``>`` become
    entities that plotly shows as typed. Lists, arrays and Series are escaped element-wise."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if isinstance(value, pd.Series):
        return value.astype(str).map(esc)
    if isinstance(value, (list, tuple, np.ndarray, pd.Index)):
        return [esc(str(v)) for v in value]
    return esc(str(value))


def unesc(value: str) -> str:
    """The text :func:`esc` escaped."""
    return value.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _figure(*, title: str = "", **layout: Any) -> go.Figure:
    """An empty figure in the app's style; the title (plain text) sits above the legend."""
    fig = go.Figure()
    top = 20 + (34 if title else 0) + (30 if layout.get("showlegend", True) else 0)
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=top, b=10), **layout})
    if title:
        fig.update_layout(title=dict(text=esc(title), x=0, xanchor="left", y=1, yanchor="top",
                                     pad=dict(t=8, l=4), font=dict(size=16)))
    return fig


# ----------------------------------------------------------------------------- Predict
def _baseline_columns(frame: pd.DataFrame) -> list[str]:
    return [c[: -len("_shift")] for c in frame.columns
            if c.endswith("_shift") and c not in ("measured_shift",)]


def error_bar_words(pred: Prediction) -> str:
    """What the shift chart's error bars are, for its caption."""
    if pred.interval is None:
        return "the ensemble's spread (standard deviation)"
    return (f"the {100 * pred.interval_level:.0f} % interval for the measured shift, set on "
            "perturbations the model did not train on")


def shift_chart_caption(model, pred: Prediction) -> str:
    """The shift chart's caption: what each mark is, and how often the error bars held the
    measurement on held-out perturbations."""
    bars = "" if pred.interval is not None else f" Error bars: {error_bar_words(pred)}."
    trained = (" This perturbation was used in training, so its intervals are wider than they "
               "need to be." if pred.interval is not None
               and pred.part in ("train", "val") else "")
    return ("Bars: the model's predicted shift (blue = coding gene, orange = non-coding); grey "
            "bars: what the screen measured; markers: what the simple baselines predict."
            f"{bars} {error_bar_record(model.bundle.manifest)}{trained}").strip()


def interval_coverage(manifest) -> list[tuple[str, str, str]]:
    """``(label, share, help)`` for each set of held-out measured shifts the calibrated
    intervals were checked on; empty for a model without intervals."""
    unc, calibration = manifest.uncertainty or {}, manifest.calibration
    if calibration is None or unc.get("within_interval_top") is None:
        return []
    top = calibration.top
    sets = [(f"shown genes (top {top})",
             f"each held-out perturbation's {top} largest predicted shifts (the genes its chart "
             "shows)"),
            ("other expressed genes",
             f"the genes expressed above the median control level (outside those {top})"),
            ("genes that moved most",
             "each held-out perturbation's 20 most changed genes as measured (lower where the "
             "model did not predict a gene to move)")]
    out = []
    for key, (label, words) in zip(COVERAGE_KEYS, sets):
        share = unc.get(key)
        shown = number(None if share is None else 100 * share, 0)
        out.append((label, shown if shown == "n/a" else f"{shown} %",
                    f"Of {words}, the share whose measured shift fell inside the "
                    f"{100 * calibration.level:.0f} % interval."))
    return out


def error_bar_record(manifest) -> str:
    """How often the model's error bars held the measurement on held-out perturbations
    (:func:`~grape_core.serving.trust.interval_sentences`)."""
    return " ".join(interval_sentences(manifest))


def shift_chart(pred: Prediction, *, top: int = 20, title: str = "") -> go.Figure:
    """Bars of the ``top`` largest predicted shifts (ensemble mean, coloured by biotype, with
    the calibrated interval as error bars, or the ensemble's spread for a model without
    one), measured shifts beside them, baselines as markers.

    Traces carry ``meta``: ``predicted`` (two traces, coding / non-coding), ``measured``,
    ``baseline:<name>``, so tests and readers can find the numbers behind the bars.
    """
    rows = pred.to_frame(top=top, baselines=True)
    genes = esc(rows["gene"].tolist())
    bar, bar_name = (("std", "spread") if pred.interval is None else
                     ("interval", f"{100 * pred.interval_level:.0f} % interval"))
    fig = _figure(title=title, barmode="group", height=460, bargap=0.25,
                  yaxis_title=SHIFT_AXIS, hovermode="closest")
    for coding in (True, False):
        part = rows[rows["is_coding"].astype(bool) == coding]
        if not len(part):
            continue
        kind = biotype_class(coding)
        fig.add_bar(
            x=esc(part["gene"]), y=part["shift"], name=f"GRAPE · {kind} gene",
            marker_color=BIOTYPE_COLORS[kind], offsetgroup="predicted", meta="predicted",
            error_y=dict(type="data", array=part[bar].to_numpy(), visible=True,
                         color="#1a202c", thickness=1.2, width=3),
            customdata=np.stack([esc(part["biotype"]), part[bar]], axis=-1),
            hovertemplate="%{x} (%{customdata[0]})<br>predicted shift %{y:.3f}"
                          " ± %{customdata[1]:.3f} (" + bar_name + ")<extra></extra>",
        )
    if "measured_shift" in rows:
        fig.add_bar(x=genes, y=rows["measured_shift"], name="measured",
                    marker_color=MEASURED_COLOR, opacity=0.75, offsetgroup="measured",
                    meta="measured",
                    hovertemplate="%{x}<br>measured shift %{y:.3f}<extra></extra>")
    for name in _baseline_columns(rows):
        label = pred.additive_label if name == "additive" else model_label(name)
        fig.add_scatter(x=genes, y=rows[f"{name}_shift"], mode="markers", name=label,
                        meta=f"baseline:{name}",
                        marker=dict(symbol=BASELINE_SYMBOLS.get(name, "circle"), size=10,
                                    color=MODEL_COLORS.get(name, "#718096"),
                                    line=dict(width=1, color="white")),
                        hovertemplate="%{x}<br>" + label + " %{y:.3f}<extra></extra>")
    fig.update_xaxes(categoryorder="array", categoryarray=genes, tickangle=-45)
    fig.add_hline(y=0, line_width=1, line_color="#718096")
    return fig


def array(values: Any) -> np.ndarray:
    """A trace's values as an array, also when plotly wrote them as a typed array
    (``{"dtype": "f8", "bdata": <base64>}`` in the figure's JSON)."""
    if isinstance(values, Mapping) and "bdata" in values:
        import base64

        out = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
        return out.reshape(values["shape"]) if values.get("shape") else out
    return np.asarray(values)


def chart_values(fig: go.Figure | Mapping[str, Any], meta: str, field: str = "y") -> dict[str, float]:
    """``{x: y}`` of the traces whose ``meta`` is ``meta`` (a figure or its JSON dict);
    ``field="error_y"`` gives the error bars. Names are given as typed (see :func:`esc`)."""
    data = fig["data"] if isinstance(fig, Mapping) else fig.to_plotly_json()["data"]
    out: dict[str, float] = {}
    for trace in data:
        if trace.get("meta") == meta:
            values = trace["error_y"]["array"] if field == "error_y" else trace[field]
            xs = [unesc(x) if isinstance(x, str) else x for x in array(trace["x"]).tolist()]
            out.update(zip(xs, array(values).astype(float).tolist()))
    return out


def scatter_measured(pred: Prediction, *, highlight: int = 10) -> go.Figure:
    """Predicted vs measured shift of every measured gene, Pearson r in the title."""
    frame = pred.to_frame()
    r = float(pearson(frame["shift"].to_numpy(dtype=float), frame["measured_shift"].to_numpy(dtype=float)))
    fig = _figure(title=f"Predicted vs measured shift, all {len(frame)} genes: Pearson r = {r:.2f}",
                  height=460, xaxis_title="measured shift", yaxis_title="predicted shift")
    for coding in (True, False):
        part = frame[frame["is_coding"].astype(bool) == coding]
        if not len(part):
            continue
        kind = biotype_class(coding)
        fig.add_scatter(x=part["measured_shift"], y=part["shift"], mode="markers",
                        name=f"{kind} gene", meta=f"scatter:{kind}", text=esc(part["gene"]),
                        marker=dict(color=BIOTYPE_COLORS[kind], size=7, opacity=0.7),
                        hovertemplate="%{text}<br>measured %{x:.3f}<br>predicted %{y:.3f}<extra></extra>")
    lo = float(np.nanmin([frame["shift"].min(), frame["measured_shift"].min()]))
    hi = float(np.nanmax([frame["shift"].max(), frame["measured_shift"].max()]))
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect prediction",
                    line=dict(color="#a0aec0", dash="dash"), hoverinfo="skip")
    top = frame.head(highlight)
    fig.add_scatter(x=top["measured_shift"], y=top["shift"], mode="text", text=esc(top["gene"]),
                    textposition="top center", showlegend=False, hoverinfo="skip",
                    textfont=dict(size=11, color="#2d3748"))
    fig.layout.meta = {"pearson": r}
    return fig


def prediction_table(pred: Prediction) -> pd.DataFrame:
    """The prediction as a plain table (what the CSV download holds)."""
    frame = pred.to_frame(baselines=True)
    cols = ["gene", "biotype", "is_coding", "control", "predicted", "shift", "std"]
    cols += [c for c in ("interval", "measured", "measured_shift") if c in frame]
    cols += [f"{b}_shift" for b in _baseline_columns(frame)]
    names = {"std": "ensemble_sd", "is_coding": "coding"}
    if pred.interval is not None:
        names["interval"] = f"interval_{100 * pred.interval_level:.0f}_half_width"  # shift ±
    out = frame[cols].rename(columns=names)
    return out.reset_index(drop=True)


PLANTED_GROUPS = ("all", "unseen_single", "combo_seen0", "combo_seen1", "combo_seen2")


def group_label(group: str) -> str:
    return {"all": "all", "unseen_single": "unseen singles",
            "combo_seen0": "pairs, 0 seen", "combo_seen1": "pairs, 1 seen",
            "combo_seen2": "pairs, 2 seen"}.get(group, group)


def planted_caption(planted) -> str:
    seeds = sorted({int(r.get("seed", 0)) for r in planted.screens})
    return ("Generated screens (not biology), one row per setting of the simulator family, the "
            f"mean over seeds {', '.join(map(str, seeds))}, GRAPE an ensemble of "
            f"{planted.ensemble}, every baseline on the same split in the same run. Settings: "
            "linear (the model's own form), saturating, bounded and Hill dynamics, UMI counts, "
            "several guides per gene, cells that escape the perturbation, weak and rich priors, "
            "a signed prior with a quarter of its signs wrong (wrong_signs), and harissa's "
            "bursting model, a simulator the project did not write. Checks: "
            "GRAPE at least propagation overall and on pairs with one or two seen singles, "
            "better than additive and additive_mean on pairs of seen singles and than "
            "embedding_ridge everywhere, on both metrics.")


def decomposition_caption(parts: pd.DataFrame) -> str:
    """What the decomposition table shows, and what the graph added to the held-out metrics."""
    lines = ["Each held-out prediction split into the parts the model adds up (they sum to it "
             "exactly): the response every perturbation shares, the perturbed gene's own "
             "change, what the learned network carries to other genes, what composing a pair "
             "from its singles changes, and the floor at zero expression. Share: the part's "
             "size against the prediction's."]
    if "pearson_delta added" in parts:
        added, mse = parts.loc["graph", "pearson_delta added"], parts.loc["graph", "mse added"]
        if abs(added) < 0.001:
            lines.append(f"Here the graph moves the Pearson of shifts by less than 0.001 (MSE "
                         f"{mse:+.4f}): nothing measurable.")
        else:
            lines.append(f"Here the graph {'adds' if added > 0 else 'costs'} {abs(added):.3f} in "
                         f"Pearson of shifts (MSE {mse:+.4f}).")
    return " ".join(lines)


def interaction_summary(report: Mapping[str, Any]) -> pd.DataFrame:
    """Genetic-interaction scores of a pair report as a small two-column table."""
    rows = [("interaction type", str(report.get("gi_type", ""))),
            ("magnitude vs additive (1 = additive)", number(report.get("rel_mag"))),
            ("weight of gene A (c1)", number(report.get("c1"))),
            ("weight of gene B (c2)", number(report.get("c2"))),
            ("fit of the additive model (r)", number(report.get("corr_fit"))),
            ("dominance (|log10 c1/c2|)", number(report.get("dominance")))]
    if report.get("singles"):
        rows.append(("compared with the singles", " + ".join(str(s) for s in report["singles"])))
    return pd.DataFrame(rows, columns=["score", "value"])


def number(value: Any, digits: int = 2) -> str:
    """``value`` to ``digits`` decimals, ``n/a`` when it is missing or not finite (never
    ``nan``)."""
    if isinstance(value, bool):
        return "n/a"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{value:.{digits}f}" if np.isfinite(value) else "n/a"


# ----------------------------------------------------------------------------- Network
def structure_figure(changes: pd.DataFrame) -> go.Figure:
    fig = _figure(title="What structure learning changed, per biotype relation",
                  barmode="group", height=380, yaxis_title="edges")
    for col, color in (("kept", EDGE_STATUS_COLORS["both"]),
                       ("added by learning", EDGE_STATUS_COLORS["learned only"]),
                       ("removed by learning", EDGE_STATUS_COLORS["prior only"])):
        fig.add_bar(x=changes["relation"], y=changes[col], name=col, marker_color=color)
    return fig


def degree_figure(deg: pd.DataFrame, table: pd.DataFrame) -> go.Figure:
    """Degree of each gene before (prior) and after structure learning, by biotype."""
    fig = _figure(title="Connections per gene: prior vs learned graph", height=380,
                  xaxis_title="edges in the prior", yaxis_title="edges in the learned graph")
    coding = table.reindex(deg["gene"])["is_coding"].fillna(True).astype(bool).to_numpy()
    for flag in (True, False):
        part = deg[coding == flag]
        if not len(part):
            continue
        kind = biotype_class(flag)
        fig.add_scatter(x=part["prior_degree"], y=part["learned_degree"], mode="markers",
                        name=f"{kind} gene", text=esc(part["gene"]),
                        marker=dict(color=BIOTYPE_COLORS[kind], size=7, opacity=0.65),
                        hovertemplate="%{text}<br>prior %{x} · learned %{y}<extra></extra>")
    top = float(max(deg["prior_degree"].max(), deg["learned_degree"].max(), 1))
    fig.add_scatter(x=[0, top], y=[0, top], mode="lines", name="unchanged",
                    line=dict(color="#a0aec0", dash="dash"), hoverinfo="skip")
    return fig


# ----------------------------------------------------------------------------- Benchmark
def metric_bars(overview: pd.DataFrame, metric: str) -> go.Figure:
    """One bar per model and baseline; a bar over fewer held-out perturbations than the
    model's (``additive``: only pairs) is hatched and says so, and the replicate (the data's
    own ceiling, not a model) is a dashed line."""
    fig = _figure(title=metric_label(metric), height=380, showlegend=False)
    models = overview[~overview["key"].isin(list(REFERENCES))]
    full = int(overview["held-out conditions"].max()) if len(overview) else 0
    partial = models["held-out conditions"] < full
    fig.add_bar(x=esc(models["model"]), y=models[metric], meta=f"metric:{metric}",
                marker_color=[MODEL_COLORS.get(k, "#718096") for k in models["key"]],
                marker_pattern_shape=["/" if p else "" for p in partial],
                marker_opacity=[0.45 if p else 1.0 for p in partial],
                text=[f"{number(v, 3)}<br>n={n}" + (f" of {full} (only these)" if p else "")
                      for v, n, p in zip(models[metric], models["held-out conditions"], partial)],
                textposition="outside", cliponaxis=False)
    for _, row in overview[overview["key"].isin(list(REFERENCES))].iterrows():
        if np.isfinite(row[metric]):
            fig.add_hline(y=float(row[metric]), line_dash="dash", line_color=MODEL_COLORS["replicate"],
                          annotation_text=esc(f"replicate (the data's ceiling): {number(row[metric], 3)}"),
                          annotation_position="top left")
    return fig


def scaled_table(metrics: pd.DataFrame | None, metric: str) -> pd.DataFrame:
    """How close each model came to repeating the experiment on ``metric`` (0: the train
    mean baseline, 1: the replicate), overall and per held-out perturbation; empty for a
    model that stores no replicate."""
    from ..evaluation.replicate import scaled_from_metrics

    found = scaled_from_metrics(metrics, metric)
    if found.empty:
        return found
    shown = pd.DataFrame({"model": [model_label(m) for m in found.index],
                          "scaled (0 = train mean, 1 = replicate)": found["scaled"].to_numpy(dtype=float),
                          "held-out perturbations": found["n"].astype(int).to_numpy(),
                          "why undefined": found["why"].fillna("").to_numpy()})
    per = found.drop(columns=["scaled", "n", "why"]).astype(float)
    per.index = shown["model"]
    return shown.join(per, on="model")


def cell_eval_overview(metrics) -> pd.DataFrame:
    """cell-eval's headline metrics (its own names) per model, from a manifest's ``metrics``
    (``extra['cell_eval']``); empty for a model evaluated before they existed."""
    from ..evaluation.celleval import HEADLINE

    found = (getattr(metrics, "extra", None) or {}).get("cell_eval") or {}
    rows = {model_label(m): {name: (np.nan if v.get(name) is None else v.get(name))
                             for name in HEADLINE} for m, v in found.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index").astype(float)
    return frame.dropna(how="all") if len(frame) else frame


def per_condition_figure(metrics: pd.DataFrame, metric: str) -> go.Figure:
    """One dot per held-out condition and model (``bundle.metrics``)."""
    conds = list(dict.fromkeys(metrics.loc[metrics["model"] == "grape", "condition"]))
    fig = _figure(title=f"Per held-out perturbation: {metric_label(metric)}", height=420,
                  xaxis_title="held-out perturbation", yaxis_title=METRIC_LABELS.get(metric, metric))
    for name, part in metrics.groupby("model", sort=False):
        fig.add_scatter(x=esc(part["condition"]), y=part[metric], mode="markers",
                        name=esc(model_label(str(name))),
                        marker=dict(color=MODEL_COLORS.get(str(name), "#718096"),
                                    size=13 if name == "grape" else 9,
                                    symbol="circle" if name == "grape" else
                                    BASELINE_SYMBOLS.get(str(name), "circle-open")))
    fig.update_xaxes(categoryorder="array", categoryarray=esc(conds), tickangle=-45)
    return fig


def subgroup_figure(table: pd.DataFrame, metric: str) -> go.Figure:
    fig = _figure(title=f"Per subgroup: {metric_label(metric)}", barmode="group", height=380)
    names = {model_label(k): k for k in MODEL_COLORS}
    for col in table.columns:
        fig.add_bar(x=esc(table.index), y=table[col], name=esc(col),
                    marker_color=MODEL_COLORS.get(names.get(col, ""), "#718096"))
    return fig


def history_figure(history: pd.DataFrame) -> go.Figure:
    """Training loss and validation Pearson of shifts per optimisation step, one line per member."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation: Pearson of shifts"))
    for member, part in history.groupby("member"):
        show = member == history["member"].min()
        fig.add_scatter(x=part["step"], y=part["train_loss"], mode="lines", name=f"member {member}",
                        line=dict(color=GRAPE_COLOR, width=2), opacity=0.5 + 0.5 * show,
                        legendgroup=str(member), row=1, col=1)
        if "val_pearson_delta" in part:
            fig.add_scatter(x=part["step"], y=part["val_pearson_delta"], mode="lines",
                            name=f"member {member}", line=dict(color="#2f855a", width=2),
                            opacity=0.5 + 0.5 * show, legendgroup=str(member), showlegend=False,
                            row=1, col=2)
    fig.update_layout(**{**_LAYOUT, "height": 340, "showlegend": False})
    fig.update_xaxes(title_text="optimisation step")
    return fig


def ablation_figure(ablations: pd.DataFrame, metric: str) -> go.Figure:
    frame = ablations.reset_index().rename(columns={"index": "variant"})
    if "variant" not in frame:
        frame = frame.rename(columns={frame.columns[0]: "variant"})
    fig = _figure(title=f"Ablations (one seed each): {metric_label(metric)}", height=380, showlegend=False)
    fig.add_bar(x=esc(frame["variant"].astype(str).str.replace("_", " ")), y=frame[metric],
                marker_color=[GRAPE_COLOR if v == "grape" else "#a0aec0" for v in frame["variant"]],
                text=[number(v, 3) for v in frame[metric]], textposition="outside",
                cliponaxis=False)
    fig.update_xaxes(tickangle=-30)
    return fig


def screen_check_figure(check: pd.DataFrame) -> go.Figure:
    fig = _figure(title="Does the screen rank held-out perturbations right? (Spearman, higher is better)",
                  height=340, showlegend=False)
    fig.add_bar(x=esc([model_label(m) for m in check.index]), y=check["spearman"],
                marker_color=[MODEL_COLORS.get(m, "#718096") for m in check.index],
                text=[number(v) for v in check["spearman"]], textposition="outside",
                cliponaxis=False)
    return fig


# ----------------------------------------------------------------------------- Genes
def embedding_figure(overview: pd.DataFrame, coords: np.ndarray, *, highlight: str | None = None) -> go.Figure:
    """2-D map of the gene embeddings (PCA), one dot per gene coloured by biotype."""
    fig = _figure(title="Gene embeddings (text + DNA views fused), first two principal components",
                  height=480, xaxis_title="PC 1", yaxis_title="PC 2", dragmode="pan")
    for flag in (True, False):
        mask = overview["coding"].to_numpy() == flag
        if not mask.any():
            continue
        kind = biotype_class(flag)
        part = overview[mask]
        fig.add_scatter(x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=f"{kind} gene",
                        customdata=part["gene"], hovertext=esc(part["gene"]),
                        text=esc(part["biotype"]),
                        marker=dict(color=BIOTYPE_COLORS[kind], size=8, opacity=0.75,
                                    line=dict(width=0.5, color="white")),
                        hovertemplate="%{hovertext} (%{text})<extra></extra>")
    if highlight is not None and highlight in set(overview["gene"]):
        i = int(np.flatnonzero(overview["gene"].to_numpy() == highlight)[0])
        fig.add_scatter(x=[coords[i, 0]], y=[coords[i, 1]], mode="markers+text",
                        text=[esc(highlight)],
                        textposition="top center", name="chosen gene", hoverinfo="skip",
                        marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=3, color="#1a202c")))
    return fig


# ----------------------------------------------------------------------------- Screen
def screen_figure(result: ScreenResult, *, label_top: int = 6) -> go.Figure:
    """What each candidate does to the targets beyond the typical perturbation of its kind
    (``vs_typical``, the quantity the screen ranks by, so the labelled best candidates are the
    highest points) vs its off-target cost, ± ensemble s.d.; the raw effect is in the hover.
    Colour: all perturbed genes coding (blue) or at least one non-coding (orange)."""
    frame = result.table
    fig = _figure(title="Candidates: effect on your targets beyond the typical perturbation, "
                        "vs how much everything else moves",
                  height=480, xaxis_title="off-target cost (RMS shift of all other genes)",
                  yaxis_title="effect beyond the typical one (higher = better)")
    fig.add_hline(y=0, line_dash="dot", line_color="#a0aec0",
                  annotation_text="the typical perturbation", annotation_position="bottom right")
    coding = result.all_coding
    for flag in (True, False):
        part = frame[coding == flag]
        if not len(part):
            continue
        kind = biotype_class(flag)
        label = "coding gene(s) perturbed" if flag else "a non-coding gene perturbed"
        fig.add_scatter(x=part["off_target"], y=part["vs_typical"], mode="markers+text", name=label,
                        meta=f"screen:{kind}", text=[esc(g) if r <= label_top else "" for g, r in
                                                     zip(part["genes"], part["rank"])],
                        textposition="top center",
                        customdata=np.stack([part["rank"], part["effect_std"], part["effect"]], axis=-1),
                        error_y=dict(type="data", array=part["effect_std"].to_numpy(), visible=True,
                                     color="#718096", thickness=1),
                        marker=dict(color=BIOTYPE_COLORS[kind], size=11,
                                    symbol=["diamond" if k == "pair" else "circle" for k in part["kind"]]),
                        textfont=dict(size=11),
                        hovertext=esc(part["genes"]),
                        hovertemplate="#%{customdata[0]} %{hovertext}<br>beyond the typical %{y:.3f} "
                                      "± %{customdata[1]:.3f}<br>effect %{customdata[2]:.3f}"
                                      "<br>off-target %{x:.3f}<extra></extra>")
    return fig


# ----------------------------------------------------------------------------- Home
_BOX = {"plain": ("#f7fafc", "#cbd5e0"), "model": ("#efe7f6", GRAPE_COLOR),
        "input": ("#fefcbf", "#d69e2e"), "output": ("#e6fffa", "#319795")}
_PIPELINE = {  # name: (x, y, style, line 1, line 2)
    "know": (10, 10, "plain", "gene knowledge", "descriptions + DNA"),
    "emb": (235, 10, "plain", "gene embedding", "(contrastive fusion)"),
    "prior": (235, 95, "plain", "prior gene graph", "GO · co-expression · similarity"),
    "gsl": (460, 95, "model", "structure learning", "(learned gene network)"),
    "gnn": (685, 95, "model", "graph network", "coding / non-coding genes"),
    "pert": (460, 180, "input", "your perturbation", "one gene or a pair"),
    "out": (910, 95, "output", "predicted shift", "of every measured gene"),
}
_PIPELINE_EDGES = (("know", "emb"), ("emb", "gsl"), ("prior", "gsl"), ("gsl", "gnn"), ("pert", "gnn"),
                   ("gnn", "out"))


def pipeline_svg(*, width: int = 200, height: int = 52) -> str:
    """The model in one picture, as a small static SVG (no JavaScript, no fonts to fetch)."""
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1120 245" '
             'font-family="Helvetica, Arial, sans-serif" font-size="15">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
             'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
             'fill="#718096"/></marker></defs>']
    for a, b in _PIPELINE_EDGES:
        xa, ya = _PIPELINE[a][:2]
        xb, yb = _PIPELINE[b][:2]
        x1, y1 = xa + width, ya + height / 2
        x2, y2 = (xb, yb + height / 2) if xb > xa else (xb + width / 2, yb + height)
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2 - 2}" y2="{y2}" stroke="#718096" '
                     'stroke-width="1.6" marker-end="url(#arrow)"/>')
    for x, y, style, line1, line2 in _PIPELINE.values():
        fill, stroke = _BOX[style]
        parts.append(f'<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="12" fill="{fill}" '
                     f'stroke="{stroke}" stroke-width="1.5"/>')
        cx = x + width / 2
        parts.append(f'<text x="{cx}" y="{y + 22}" text-anchor="middle" fill="#1a202c" '
                     f'font-weight="600">{html.escape(line1)}</text>')
        parts.append(f'<text x="{cx}" y="{y + 41}" text-anchor="middle" fill="#4a5568" '
                     f'font-size="13">{html.escape(line2)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def planted_ablation_figure(ablations: pd.DataFrame) -> go.Figure:
    """pearson_delta of each ablation on each planted screen (grouped bars)."""
    fig = _figure(title="Ablations on planted screens (one member each): Pearson of shifts",
                  height=400)
    for column in ablations.columns:
        fig.add_bar(name=esc(str(column)), x=esc(ablations.index.astype(str).str.replace("_", " ")),
                    y=ablations[column])
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=1.08))
    fig.update_xaxes(tickangle=-30)
    fig.update_yaxes(range=[max(0.0, float(ablations.min().min()) - 0.05), 1.0])
    return fig
