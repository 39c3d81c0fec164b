"""Figures and display tables for the app: plotly figures, pyvis HTML, tidy DataFrames.

Pure functions of library outputs (:func:`grape_core.predict.predict`, bundle tables,
manifest metrics). No ``st.*`` calls and no file writes; :mod:`grape_core.ui` caches them.
One colour code everywhere: coding genes blue, non-coding genes orange; GRAPE purple.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

CODING, NONCODING = "coding", "non-coding"
BIOTYPE_COLORS = {CODING: "#2b6cb0", NONCODING: "#dd6b20"}
GRAPE_COLOR = "#6a3d9a"
MEASURED_COLOR = "#4a5568"
MODEL_COLORS = {"grape": GRAPE_COLOR, "control": "#a0aec0", "train_mean": "#2f855a",
                "linear": "#319795", "additive": "#c53030"}
MODEL_LABELS = {"grape": "GRAPE", "control": "control (no change)", "train_mean": "train mean",
                "linear": "linear (PCA + ridge)", "additive": "additive (A + B)"}
BASELINE_SYMBOLS = {"train_mean": "diamond", "linear": "triangle-up", "additive": "star"}
METRIC_LABELS = {
    "pearson_delta": "Pearson of shifts, all genes",
    "pearson_delta_de": "Pearson of shifts, top-20 DE genes",
    "mse": "MSE, all genes",
    "rmse": "RMSE, all genes",
    "mse_de": "MSE, top-20 DE genes",
    "pearson": "Pearson of expression, all genes",
    "pearson_de": "Pearson of expression, top-20 DE genes",
    "frac_correct_direction_all": "right direction, all genes",
    "frac_correct_direction_20": "right direction, top-20 DE genes",
}
LOWER_IS_BETTER = {"mse", "rmse", "mse_de"}
EDGE_STATUS_COLORS = {"both": "#4a5568", "learned only": GRAPE_COLOR, "prior only": "#b8c2cc"}
SHIFT_AXIS = "shift vs control (log-expression)"
_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=40, b=10),
               legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0, xanchor="left"),
               font=dict(size=13))


def biotype_class(is_coding: bool) -> str:
    """``coding`` or ``non-coding`` (the two node types of the graph)."""
    return CODING if bool(is_coding) else NONCODING


def model_label(name: str) -> str:
    return MODEL_LABELS.get(name, name.replace("_", " "))


def metric_label(metric: str) -> str:
    arrow = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
    return f"{METRIC_LABELS.get(metric, metric)} ({arrow})"


def _figure(*, title: str = "", **layout: Any) -> go.Figure:
    """An empty figure in the app's style; the title sits above the legend."""
    fig = go.Figure()
    top = 20 + (34 if title else 0) + (30 if layout.get("showlegend", True) else 0)
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=top, b=10), **layout})
    if title:
        fig.update_layout(title=dict(text=title, x=0, xanchor="left", y=1, yanchor="top",
                                     pad=dict(t=8, l=4), font=dict(size=16)))
    return fig


# ----------------------------------------------------------------------------- Predict
def with_baselines(frame: pd.DataFrame, baselines: Mapping[str, np.ndarray],
                   measured: Sequence[str], control: np.ndarray) -> pd.DataFrame:
    """Add ``<baseline>_shift`` columns (aligned by gene) to a :func:`predict` frame.

    ``baselines``: ``{name: (1, n_measured) expression}`` of
    :func:`~grape_core.predict.baseline_predictions`; all-NaN baselines (``additive`` for a
    single) and ``control`` (zero shift by definition) are left out.
    """
    out = frame.copy()
    position = {g: i for i, g in enumerate(measured)}
    rows = np.array([position[g] for g in out["gene"]])
    for name, values in baselines.items():
        shift = np.asarray(values, dtype=float).reshape(-1) - np.asarray(control, dtype=float)
        if name == "control" or np.isnan(shift).all():
            continue
        out[f"{name}_shift"] = shift[rows]
    out.attrs = dict(frame.attrs)
    return out


def baseline_columns(frame: pd.DataFrame) -> list[str]:
    return [c[: -len("_shift")] for c in frame.columns
            if c.endswith("_shift") and c not in ("measured_shift",)]


def shift_chart(frame: pd.DataFrame, *, top: int = 20, title: str = "") -> go.Figure:
    """Bars of the ``top`` largest predicted shifts (ensemble mean ± s.d., coloured by
    biotype), measured shifts beside them, baselines as markers.

    Traces carry ``meta``: ``predicted`` (two traces, coding / non-coding), ``measured``,
    ``baseline:<name>``, so tests and readers can find the numbers behind the bars.
    """
    rows = frame.head(top)
    genes = rows["gene"].tolist()
    fig = _figure(title=title, barmode="group", height=460, bargap=0.25,
                  yaxis_title=SHIFT_AXIS, hovermode="closest")
    for coding in (True, False):
        part = rows[rows["is_coding"].astype(bool) == coding]
        if not len(part):
            continue
        kind = biotype_class(coding)
        fig.add_bar(
            x=part["gene"], y=part["shift"], name=f"GRAPE · {kind} gene",
            marker_color=BIOTYPE_COLORS[kind], offsetgroup="predicted", meta="predicted",
            error_y=dict(type="data", array=part["std"].to_numpy(), visible=True,
                         color="#1a202c", thickness=1.2, width=3),
            customdata=np.stack([part["biotype"].astype(str), part["std"]], axis=-1),
            hovertemplate="%{x} (%{customdata[0]})<br>predicted shift %{y:.3f}"
                          " ± %{customdata[1]:.3f}<extra></extra>",
        )
    if "measured_shift" in rows:
        fig.add_bar(x=genes, y=rows["measured_shift"], name="measured",
                    marker_color=MEASURED_COLOR, opacity=0.75, offsetgroup="measured",
                    meta="measured",
                    hovertemplate="%{x}<br>measured shift %{y:.3f}<extra></extra>")
    for name in baseline_columns(rows):
        label = rows.attrs.get("additive_label", model_label(name)) if name == "additive" \
            else model_label(name)
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
    ``field="error_y"`` gives the error bars."""
    data = fig["data"] if isinstance(fig, Mapping) else fig.to_plotly_json()["data"]
    out: dict[str, float] = {}
    for trace in data:
        if trace.get("meta") == meta:
            values = trace["error_y"]["array"] if field == "error_y" else trace[field]
            out.update(zip(array(trace["x"]).tolist(), array(values).astype(float).tolist()))
    return out


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    from .metrics import pearson

    return float(pearson(np.asarray(x, dtype=float), np.asarray(y, dtype=float)))


def scatter_measured(frame: pd.DataFrame, *, highlight: int = 10) -> go.Figure:
    """Predicted vs measured shift of every measured gene, Pearson r in the title."""
    r = pearson_r(frame["shift"], frame["measured_shift"])
    fig = _figure(title=f"Predicted vs measured shift, all {len(frame)} genes: Pearson r = {r:.2f}",
                  height=460, xaxis_title="measured shift", yaxis_title="predicted shift")
    for coding in (True, False):
        part = frame[frame["is_coding"].astype(bool) == coding]
        if not len(part):
            continue
        kind = biotype_class(coding)
        fig.add_scatter(x=part["measured_shift"], y=part["shift"], mode="markers",
                        name=f"{kind} gene", meta=f"scatter:{kind}", text=part["gene"],
                        marker=dict(color=BIOTYPE_COLORS[kind], size=7, opacity=0.7),
                        hovertemplate="%{text}<br>measured %{x:.3f}<br>predicted %{y:.3f}<extra></extra>")
    lo = float(np.nanmin([frame["shift"].min(), frame["measured_shift"].min()]))
    hi = float(np.nanmax([frame["shift"].max(), frame["measured_shift"].max()]))
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect prediction",
                    line=dict(color="#a0aec0", dash="dash"), hoverinfo="skip")
    top = frame.head(highlight)
    fig.add_scatter(x=top["measured_shift"], y=top["shift"], mode="text", text=top["gene"],
                    textposition="top center", showlegend=False, hoverinfo="skip",
                    textfont=dict(size=11, color="#2d3748"))
    fig.layout.meta = {"pearson": r}
    return fig


def prediction_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The prediction as a plain table (what the CSV download holds)."""
    cols = ["gene", "biotype", "is_coding", "control", "predicted", "shift", "std"]
    cols += [c for c in ("measured", "measured_shift") if c in frame]
    cols += [f"{b}_shift" for b in baseline_columns(frame)]
    out = frame[cols].rename(columns={"std": "ensemble_sd", "is_coding": "coding"})
    return out.reset_index(drop=True)


def interaction_summary(report: Mapping[str, Any]) -> pd.DataFrame:
    """Genetic-interaction scores of a pair report as a small two-column table."""
    rows = [("interaction type", str(report.get("gi_type", ""))),
            ("magnitude vs additive (1 = additive)", f"{report.get('rel_mag', np.nan):.2f}"),
            ("weight of gene A (c1)", f"{report.get('c1', np.nan):.2f}"),
            ("weight of gene B (c2)", f"{report.get('c2', np.nan):.2f}"),
            ("fit of the additive model (r)", f"{report.get('corr_fit', np.nan):.2f}"),
            ("dominance (|log10 c1/c2|)", f"{report.get('dominance', np.nan):.2f}")]
    return pd.DataFrame(rows, columns=["score", "value"])


# ----------------------------------------------------------------------------- Network
def _edge_frame(edges: pd.DataFrame, weight_name: str) -> pd.DataFrame:
    cols = ["source", "target", "weight", "relation"]
    out = edges[cols].rename(columns={"weight": weight_name, "relation": f"relation_{weight_name}"})
    return out.groupby(["source", "target"], as_index=False).first()


def merged_edges(prior: pd.DataFrame, learned: pd.DataFrame) -> pd.DataFrame:
    """Prior and learned edges side by side: ``source, target, prior_weight, learned_weight,
    status`` (``both``, ``learned only``, ``prior only``), ``relation``, ``weight``."""
    e = _edge_frame(prior, "prior_weight").merge(_edge_frame(learned, "learned_weight"),
                                                on=["source", "target"], how="outer")
    has_p, has_l = e["prior_weight"].notna(), e["learned_weight"].notna()
    e["status"] = np.where(has_p & has_l, "both", np.where(has_l, "learned only", "prior only"))
    e["relation"] = e["relation_learned_weight"].fillna(e["relation_prior_weight"])
    e["weight"] = e["learned_weight"].fillna(e["prior_weight"]).astype(float)
    return e[["source", "target", "relation", "status", "weight", "prior_weight", "learned_weight"]]


def neighbourhood(prior: pd.DataFrame, learned: pd.DataFrame, focus: Iterable[str], *,
                  hops: int = 1, top_k: int = 60) -> pd.DataFrame:
    """Edges of the ``hops``-hop neighbourhood of ``focus`` in prior ∪ learned graph, the
    ``top_k`` strongest kept (edges touching a focus gene first)."""
    focus = list(dict.fromkeys(focus))
    e = merged_edges(prior, learned)
    nodes, frontier = set(focus), set(focus)
    for _ in range(max(int(hops), 0)):
        out = e.loc[e["source"].isin(frontier), "target"]
        inc = e.loc[e["target"].isin(frontier), "source"]
        frontier = (set(out) | set(inc)) - nodes
        nodes |= frontier
        if not frontier:
            break
    sub = e[e["source"].isin(nodes) & e["target"].isin(nodes)].copy()
    sub["touches_focus"] = sub["source"].isin(focus) | sub["target"].isin(focus)
    sub = sub.sort_values(["touches_focus", "weight"], ascending=[False, False], kind="stable")
    return sub.head(int(top_k)).drop(columns="touches_focus").reset_index(drop=True)


_CDN_TAG = re.compile(
    r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>"
    r"|<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>",
    re.IGNORECASE | re.DOTALL,
)
_EMPTY_HEADING = re.compile(r"<center>\s*<h1>\s*</h1>\s*</center>", re.IGNORECASE)


def inline_only(page: str) -> str:
    """Remove every ``<link>``/``<script src>`` that points to another server (pyvis' template
    pulls bootstrap from a CDN) so the page works offline and calls nobody."""
    return _EMPTY_HEADING.sub("", _CDN_TAG.sub("", page))


def _legend_html(focus: Sequence[str]) -> str:
    def swatch(color: str, text: str, *, line: bool = False, dashed: bool = False) -> str:
        style = (f"display:inline-block;width:22px;height:0;border-top:3px {'dashed' if dashed else 'solid'} {color};"
                 "vertical-align:middle;margin-right:4px" if line else
                 f"display:inline-block;width:11px;height:11px;border-radius:50%;background:{color};"
                 "vertical-align:middle;margin-right:4px")
        return f"<span style='margin-right:14px'><span style=\"{style}\"></span>{html.escape(text)}</span>"

    items = [swatch(BIOTYPE_COLORS[CODING], "coding gene"),
             swatch(BIOTYPE_COLORS[NONCODING], "non-coding gene"),
             swatch(EDGE_STATUS_COLORS["both"], "in prior and learned", line=True),
             swatch(EDGE_STATUS_COLORS["learned only"], "learned only (new)", line=True),
             swatch(EDGE_STATUS_COLORS["prior only"], "prior only (dropped)", line=True, dashed=True)]
    chosen = ", ".join(html.escape(g) for g in focus)
    return ("<div id='grape-legend' style=\"font:13px sans-serif;color:#2d3748;padding:6px 4px\">"
            + "".join(items) + f"<span>&#9733; perturbed: {chosen}</span></div>")


def network_html(edges: pd.DataFrame, genes: pd.DataFrame, focus: Sequence[str], *,
                 height: int = 600) -> str:
    """A self-contained interactive pyvis page of a :func:`neighbourhood` (no CDN, every
    label and tooltip HTML-escaped).

    ``genes``: the bundle's gene table (index symbol; ``biotype``, ``is_coding``,
    ``full_name``).
    """
    from pyvis.network import Network

    net = Network(height=f"{height}px", width="100%", directed=True, cdn_resources="in_line",
                  bgcolor="#ffffff", font_color="#1a202c")
    nodes = list(dict.fromkeys([*focus, *edges["source"], *edges["target"]]))
    degree = pd.concat([edges["source"], edges["target"]]).value_counts()
    for gene in nodes:
        info = genes.loc[gene] if gene in genes.index else None
        coding = bool(info["is_coding"]) if info is not None else True
        biotype = str(info["biotype"]) if info is not None else "unknown"
        name = str(info.get("full_name", "")) if info is not None else ""
        label = html.escape(str(gene))
        title = html.escape(f"{gene} · {biotype}" + (f" · {name}" if name else ""))
        is_focus = gene in focus
        net.add_node(label, label=label, title=title,
                     color={"background": BIOTYPE_COLORS[biotype_class(coding)],
                            "border": "#1a202c" if is_focus else "#ffffff"},
                     shape="star" if is_focus else "dot",
                     size=30 if is_focus else 10 + 2 * min(int(degree.get(gene, 0)), 8),
                     borderWidth=3 if is_focus else 1,
                     font={"size": 20 if is_focus else 14, "strokeWidth": 3, "strokeColor": "#ffffff"})
    wmax = float(edges["weight"].max()) if len(edges) else 1.0
    for row in edges.itertuples(index=False):
        title = html.escape(f"{row.source} → {row.target} · {row.status} · weight {row.weight:.3f}")
        net.add_edge(html.escape(str(row.source)), html.escape(str(row.target)), title=title,
                     width=1 + 7 * float(row.weight) / max(wmax, 1e-12),
                     color=EDGE_STATUS_COLORS[row.status], dashes=row.status == "prior only")
    net.set_options(json.dumps({
        "physics": {"barnesHut": {"gravitationalConstant": -9000, "springLength": 140,
                                  "springConstant": 0.03, "avoidOverlap": 0.3},
                    "stabilization": {"iterations": 300, "fit": True}},
        "edges": {"smooth": {"type": "continuous"},
                  "arrows": {"to": {"enabled": True, "scaleFactor": 0.4}}},
        "interaction": {"hover": True, "tooltipDelay": 80, "navigationButtons": False},
    }))
    page = net.generate_html(notebook=False)
    page = inline_only(page)
    return page.replace("<body>", "<body>" + _legend_html(list(focus)), 1)


def _relation_label(relation: str) -> str:
    return relation.replace("noncoding", NONCODING).replace("->", " → ")


def structure_changes(prior: pd.DataFrame, learned: pd.DataFrame) -> pd.DataFrame:
    """Per biotype relation: edges in the prior, learned, kept, added and removed."""
    e = merged_edges(prior, learned)
    rows = []
    for relation, part in e.groupby("relation", sort=True):
        counts = part["status"].value_counts()
        rows.append({"relation": _relation_label(str(relation)),
                     "prior edges": int(part["prior_weight"].notna().sum()),
                     "learned edges": int(part["learned_weight"].notna().sum()),
                     "kept": int(counts.get("both", 0)),
                     "added by learning": int(counts.get("learned only", 0)),
                     "removed by learning": int(counts.get("prior only", 0))})
    return pd.DataFrame(rows)


def structure_figure(changes: pd.DataFrame) -> go.Figure:
    fig = _figure(title="What structure learning changed, per biotype relation",
                  barmode="group", height=380, yaxis_title="edges")
    for col, color in (("kept", EDGE_STATUS_COLORS["both"]),
                       ("added by learning", EDGE_STATUS_COLORS["learned only"]),
                       ("removed by learning", EDGE_STATUS_COLORS["prior only"])):
        fig.add_bar(x=changes["relation"], y=changes[col], name=col, marker_color=color)
    return fig


def degrees(prior: pd.DataFrame, learned: pd.DataFrame, genes: Sequence[str]) -> pd.DataFrame:
    """Number of edges (in + out) of every gene in the prior and in the learned graph."""
    def count(edges: pd.DataFrame) -> pd.Series:
        return pd.concat([edges["source"], edges["target"]]).value_counts()

    p, l_ = count(prior), count(learned)
    return pd.DataFrame({"gene": list(genes),
                         "prior_degree": [int(p.get(g, 0)) for g in genes],
                         "learned_degree": [int(l_.get(g, 0)) for g in genes]})


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
                        name=f"{kind} gene", text=part["gene"],
                        marker=dict(color=BIOTYPE_COLORS[kind], size=7, opacity=0.65),
                        hovertemplate="%{text}<br>prior %{x} · learned %{y}<extra></extra>")
    top = float(max(deg["prior_degree"].max(), deg["learned_degree"].max(), 1))
    fig.add_scatter(x=[0, top], y=[0, top], mode="lines", name="unchanged",
                    line=dict(color="#a0aec0", dash="dash"), hoverinfo="skip")
    return fig


def strongest_learned(learned: pd.DataFrame, *, new_only: bool = False, n: int = 200) -> pd.DataFrame:
    """The strongest learned edges (``new_only``: those absent from the prior)."""
    e = learned if not new_only else learned[~learned["in_prior"].astype(bool)]
    e = e.sort_values("weight", ascending=False, kind="stable").head(n)
    out = e[["source", "target", "weight", "relation", "in_prior"]].copy()
    out["relation"] = out["relation"].map(_relation_label)
    return out.rename(columns={"in_prior": "also in prior"}).reset_index(drop=True)


# ----------------------------------------------------------------------------- Benchmark
def metrics_overview(test_metrics: Mapping[str, Mapping[str, float]],
                     metrics: Sequence[str] = ("pearson_delta", "pearson_delta_de", "mse",
                                               "frac_correct_direction_20")) -> pd.DataFrame:
    """Held-out metrics from a manifest (``metrics.test``): rows models, ``n`` conditions."""
    rows = []
    for name, values in test_metrics.items():
        rows.append({"model": model_label(name), "key": name,
                     "held-out conditions": int(values.get("n_conditions", 0)),
                     **{m: float(values.get(m, np.nan)) for m in metrics}})
    return pd.DataFrame(rows)


def metric_bars(overview: pd.DataFrame, metric: str) -> go.Figure:
    fig = _figure(title=metric_label(metric), height=360, showlegend=False)
    fig.add_bar(x=overview["model"], y=overview[metric], meta=f"metric:{metric}",
                marker_color=[MODEL_COLORS.get(k, "#718096") for k in overview["key"]],
                text=[f"{v:.3f}<br>n={n}" for v, n in zip(overview[metric], overview["held-out conditions"])],
                textposition="outside", cliponaxis=False)
    return fig


def per_condition_figure(metrics: pd.DataFrame, metric: str) -> go.Figure:
    """One dot per held-out condition and model (``bundle.metrics``)."""
    conds = list(dict.fromkeys(metrics.loc[metrics["model"] == "grape", "condition"]))
    fig = _figure(title=f"Per held-out perturbation: {metric_label(metric)}", height=420,
                  xaxis_title="held-out perturbation", yaxis_title=METRIC_LABELS.get(metric, metric))
    for name, part in metrics.groupby("model", sort=False):
        fig.add_scatter(x=part["condition"], y=part[metric], mode="markers", name=model_label(str(name)),
                        marker=dict(color=MODEL_COLORS.get(str(name), "#718096"),
                                    size=13 if name == "grape" else 9,
                                    symbol="circle" if name == "grape" else
                                    BASELINE_SYMBOLS.get(str(name), "circle-open")))
    fig.update_xaxes(categoryorder="array", categoryarray=conds, tickangle=-45)
    return fig


def subgroup_table(subgroups: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str) -> pd.DataFrame:
    """Rows subgroups (``unseen_single``, ``combo_seen0``...), columns models."""
    table = {model_label(m): {g: v.get(metric, np.nan) for g, v in groups.items()}
             for m, groups in subgroups.items()}
    return pd.DataFrame(table)


def subgroup_figure(table: pd.DataFrame, metric: str) -> go.Figure:
    fig = _figure(title=f"Per subgroup: {metric_label(metric)}", barmode="group", height=380)
    keys = {model_label(k): k for k in MODEL_COLORS}
    for col in table.columns:
        fig.add_bar(x=table.index, y=table[col], name=col,
                    marker_color=MODEL_COLORS.get(keys.get(col, ""), "#718096"))
    return fig


def history_figure(history: pd.DataFrame) -> go.Figure:
    """Training loss and validation Pearson of shifts per epoch, one line per member."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation: Pearson of shifts"))
    for member, part in history.groupby("member"):
        show = member == history["member"].min()
        fig.add_scatter(x=part["epoch"], y=part["train_loss"], mode="lines", name=f"member {member}",
                        line=dict(color=GRAPE_COLOR, width=2), opacity=0.5 + 0.5 * show,
                        legendgroup=str(member), row=1, col=1)
        if "val_pearson_delta" in part:
            fig.add_scatter(x=part["epoch"], y=part["val_pearson_delta"], mode="lines",
                            name=f"member {member}", line=dict(color="#2f855a", width=2),
                            opacity=0.5 + 0.5 * show, legendgroup=str(member), showlegend=False,
                            row=1, col=2)
    fig.update_layout(**{**_LAYOUT, "height": 340, "showlegend": False})
    fig.update_xaxes(title_text="epoch")
    return fig


def ablation_figure(ablations: pd.DataFrame, metric: str) -> go.Figure:
    frame = ablations.reset_index().rename(columns={"index": "variant"})
    if "variant" not in frame:
        frame = frame.rename(columns={frame.columns[0]: "variant"})
    fig = _figure(title=f"Ablations (one seed each): {metric_label(metric)}", height=380, showlegend=False)
    fig.add_bar(x=frame["variant"].str.replace("_", " "), y=frame[metric],
                marker_color=[GRAPE_COLOR if v == "grape" else "#a0aec0" for v in frame["variant"]],
                text=[f"{v:.3f}" for v in frame[metric]], textposition="outside", cliponaxis=False)
    fig.update_xaxes(tickangle=-30)
    return fig


def honest_sentences(metrics: pd.DataFrame, metric: str, *, model: str = "grape") -> list[str]:
    """Plain sentences comparing ``model`` with each baseline on the held-out conditions
    both were evaluated on (``bundle.metrics``, long format)."""
    if metrics is None or not len(metrics) or metric not in metrics:
        return []
    wide = metrics.pivot_table(index="condition", columns="model", values=metric, aggfunc="mean")
    if model not in wide:
        return []
    lower = metric in LOWER_IS_BETTER
    out = []
    for name in wide.columns:
        if name in (model, "control"):
            continue
        common = wide[[model, name]].dropna()
        if not len(common):
            continue
        ours, theirs = common[model].mean(), common[name].mean()
        n = len(common)
        where = f"On {n} held-out perturbation{'s' if n > 1 else ''}"
        if name == "additive":
            where += f" (pair{'s' if n > 1 else ''} whose singles were measured in training)"
        if (theirs < ours) if lower else (theirs > ours):
            out.append(f"{where}, the {model_label(name)} baseline beats {model_label(model)} "
                       f"({theirs:.3f} vs {ours:.3f}).")
        else:
            out.append(f"{where}, {model_label(model)} beats the {model_label(name)} baseline "
                       f"({ours:.3f} vs {theirs:.3f}).")
    return sorted(out, key=lambda sentence: "baseline beats" not in sentence)


def screen_check_figure(check: pd.DataFrame) -> go.Figure:
    fig = _figure(title="Does the screen rank held-out perturbations right? (Spearman, higher is better)",
                  height=340, showlegend=False)
    fig.add_bar(x=[model_label(m) for m in check.index], y=check["spearman"],
                marker_color=[MODEL_COLORS.get(m, "#718096") for m in check.index],
                text=[f"{v:.2f}" for v in check["spearman"]], textposition="outside", cliponaxis=False)
    return fig


# ----------------------------------------------------------------------------- Genes
def go_names(table: pd.DataFrame, terms: pd.DataFrame | None, *, n: int = 3) -> list[str]:
    """The ``n`` most specific GO term names of each gene (ids when no term table)."""
    out = []
    for row in table.itertuples(index=False):
        ids = [t for col in ("go_bp", "go_mf", "go_cc") for t in str(getattr(row, col, "") or "").split(";") if t]
        if terms is not None and len(ids):
            known = [t for t in ids if t in terms.index]
            known.sort(key=lambda t: (terms.at[t, "n_genes"], t))
            out.append("; ".join(str(terms.at[t, "term"]) for t in known[:n]))
        else:
            out.append("; ".join(ids[:n]))
    return out


def gene_overview(table: pd.DataFrame, prior: pd.DataFrame, learned: pd.DataFrame,
                  measured: Sequence[str], parts: Mapping[str, str],
                  terms: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per gene of the model: biotype, name, GO, sequence, degrees, role in the screen.

    ``parts``: gene -> where it was perturbed (``train``/``val``/``test``), else empty.
    """
    genes = list(table.index)
    deg = degrees(prior, learned, genes).set_index("gene")
    measured_set = set(measured)
    return pd.DataFrame({
        "gene": genes,
        "biotype": table["biotype"].astype(str).to_numpy(),
        "coding": table["is_coding"].astype(bool).to_numpy(),
        "name": table.get("full_name", pd.Series([""] * len(genes))).astype(str).to_numpy(),
        "GO (most specific)": go_names(table, terms),
        "sequence known": table.get("has_sequence", pd.Series([False] * len(genes))).astype(bool).to_numpy(),
        "prior degree": deg["prior_degree"].to_numpy(),
        "learned degree": deg["learned_degree"].to_numpy(),
        "measured": [g in measured_set for g in genes],
        "perturbed in screen": [parts.get(g, "") for g in genes],
    })


def embedding_coords(fused: np.ndarray) -> np.ndarray:
    """First two principal components of the fused gene embeddings ``(n_nodes, 2)``."""
    x = np.asarray(fused, dtype=np.float64)
    x = x - x.mean(0, keepdims=True)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    coords = x @ vt[:2].T
    return coords if coords.shape[1] == 2 else np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


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
                        customdata=part["gene"], text=part["biotype"],
                        marker=dict(color=BIOTYPE_COLORS[kind], size=8, opacity=0.75,
                                    line=dict(width=0.5, color="white")),
                        hovertemplate="%{customdata} (%{text})<extra></extra>")
    if highlight is not None and highlight in set(overview["gene"]):
        i = int(np.flatnonzero(overview["gene"].to_numpy() == highlight)[0])
        fig.add_scatter(x=[coords[i, 0]], y=[coords[i, 1]], mode="markers+text", text=[highlight],
                        textposition="top center", name="chosen gene", hoverinfo="skip",
                        marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(width=3, color="#1a202c")))
    return fig


# ----------------------------------------------------------------------------- Screen
def screen_figure(frame: pd.DataFrame, coding_genes: Iterable[str], *, label_top: int = 6) -> go.Figure:
    """Effect on the targets vs off-target cost of each candidate, ± ensemble s.d.; colour:
    all perturbed genes coding (blue) or at least one non-coding (orange)."""
    coding_genes = set(coding_genes)
    fig = _figure(title="Candidates: effect on your targets vs how much everything else moves",
                  height=480, xaxis_title="off-target cost (RMS shift of all other genes)",
                  yaxis_title="effect on targets (higher = better)")
    coding = np.array([all(g.strip() in coding_genes for g in str(genes).split("+"))
                       for genes in frame["genes"]], dtype=bool)
    for flag in (True, False):
        part = frame[coding == flag]
        if not len(part):
            continue
        kind = biotype_class(flag)
        label = "coding gene(s) perturbed" if flag else "a non-coding gene perturbed"
        fig.add_scatter(x=part["off_target"], y=part["effect"], mode="markers+text", name=label,
                        meta=f"screen:{kind}", text=[g if r <= label_top else "" for g, r in
                                                     zip(part["genes"], part["rank"])],
                        textposition="top center",
                        customdata=np.stack([part["rank"], part["effect_std"]], axis=-1),
                        error_y=dict(type="data", array=part["effect_std"].to_numpy(), visible=True,
                                     color="#718096", thickness=1),
                        marker=dict(color=BIOTYPE_COLORS[kind], size=11,
                                    symbol=["diamond" if k == "pair" else "circle" for k in part["kind"]]),
                        textfont=dict(size=11),
                        hovertext=part["genes"],
                        hovertemplate="#%{customdata[0]} %{hovertext}<br>effect %{y:.3f} ± "
                                      "%{customdata[1]:.3f}<br>off-target %{x:.3f}<extra></extra>")
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
