"""The interactive network view: a self-contained pyvis page of a neighbourhood.

Offline (no CDN: every ``<link>``/``<script src>`` to another server is removed) and safe:
labels and tooltips are data (vis-network draws them as text; the page holds them as JSON
with ``<``, ``>``, ``&`` and quotes escaped), the legend is HTML-escaped. The neighbourhood
itself comes from :func:`grape_core.serving.network.neighbourhood` or
:meth:`grape_core.serving.network.LearnedNetwork.neighbourhood` (which adds the members' agreement).

Width is the learned weight's strength, scaled on the learned edges; a prior edge that
learning dropped is drawn thin and dashed (its prior weight says nothing about what the
model uses), and a learned edge on whose sign the members disagree is dotted.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence

import pandas as pd

from ..serving.network import CODING, NONCODING, biotype_class, edge_effect, relation_label
# the Network page's tables and labels (pages import only the app package)
from ..serving.network import prior_label  # noqa: F401

from .charts import BIOTYPE_COLORS, EDGE_STATUS_COLORS

NUMBER_COLUMNS = ("weight", "prior weight", "prior rescaled", "beyond the prior",
                  "spread across members", "strength")
"""The numeric columns of the edge tables (shown to 4 decimals)."""


def _agreement(edges: pd.DataFrame, n_members: int) -> list[str]:
    return [f"{int(k)} of {n_members}" for k in edges["members_same_sign"]]


def strongest_edges(net, *, new_only: bool = False, n: int = 200) -> pd.DataFrame:
    """The ``n`` strongest learned edges of a :class:`~grape_core.serving.network.LearnedNetwork`
    (``new_only``: those absent from the prior), with how far the members agree on each."""
    e = net.edges[net.edges["learned"]]
    if new_only:
        e = e[~e["in_prior"]]
    e = e.reindex(e["weight"].abs().sort_values(ascending=False, kind="stable").index).head(n)
    return pd.DataFrame({
        "source": e["source"], "target": e["target"], "weight": e["weight"],
        "strength": e["weight"].abs(), "effect": e["effect"],
        "members with this sign": _agreement(e, net.n_members),
        "spread across members": e["spread"],
        "relation": e["relation"].map(relation_label), "also in prior": e["in_prior"],
    }).reset_index(drop=True)


def changed_table(net, n: int = 50) -> pd.DataFrame:
    """What learning changed most beyond rescaling the prior
    (:meth:`~grape_core.serving.network.LearnedNetwork.changed_most`), as shown."""
    e = net.changed_most(n)
    return pd.DataFrame({
        "source": e["source"], "target": e["target"], "status": e["status"],
        "prior weight": e["prior_weight"], "prior rescaled": e["rescaled_prior"],
        "weight": e["weight"], "beyond the prior": e["beyond_prior"],
        "members with this sign": _agreement(e, net.n_members),
        "spread across members": e["spread"], "relation": e["relation"].map(relation_label)})

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


def _member_columns(edges: pd.DataFrame) -> list[str]:
    return [c for c in edges.columns if str(c).startswith("weight_member_")]


def _legend_html(focus: Sequence[str]) -> str:
    def swatch(color: str, text: str, *, line: bool = False, dashed: bool = False,
               dotted: bool = False) -> str:
        kind = "dotted" if dotted else "dashed" if dashed else "solid"
        style = (f"display:inline-block;width:22px;height:0;border-top:3px {kind} {color};"
                 "vertical-align:middle;margin-right:4px" if line else
                 f"display:inline-block;width:11px;height:11px;border-radius:50%;background:{color};"
                 "vertical-align:middle;margin-right:4px")
        return f"<span style='margin-right:14px'><span style=\"{style}\"></span>{html.escape(text)}</span>"

    items = [swatch(BIOTYPE_COLORS[CODING], "coding gene"),
             swatch(BIOTYPE_COLORS[NONCODING], "non-coding gene"),
             swatch(EDGE_STATUS_COLORS["both"], "in prior and learned", line=True),
             swatch(EDGE_STATUS_COLORS["learned only"], "learned only (new)", line=True),
             swatch(EDGE_STATUS_COLORS["prior only"], "prior only (dropped)", line=True, dashed=True),
             swatch(EDGE_STATUS_COLORS["both"], "members disagree on the sign", line=True,
                    dotted=True)]
    chosen = ", ".join(html.escape(g) for g in focus)
    return ("<div id='grape-legend' style=\"font:13px sans-serif;color:#2d3748;padding:6px 4px\">"
            + "".join(items) + f"<span>&#9733; perturbed: {chosen}</span></div>")


def network_html(edges: pd.DataFrame, genes: pd.DataFrame, focus: Sequence[str], *,
                 height: int = 600) -> str:
    """A self-contained interactive pyvis page of a :func:`neighbourhood` (no CDN; names
    shown as typed, never as HTML).

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
        # vis-network draws labels on a canvas and shows tooltips as text (never HTML), and
        # the page embeds them as JSON with <, > and & escaped: names are shown as typed
        label = str(gene)
        title = f"{gene} · {biotype}" + (f" · {name}" if name else "")
        is_focus = gene in focus
        net.add_node(label, label=label, title=title,
                     color={"background": BIOTYPE_COLORS[biotype_class(coding)],
                            "border": "#1a202c" if is_focus else "#ffffff"},
                     shape="star" if is_focus else "dot",
                     size=30 if is_focus else 10 + 2 * min(int(degree.get(gene, 0)), 8),
                     borderWidth=3 if is_focus else 1,
                     font={"size": 20 if is_focus else 14, "strokeWidth": 3, "strokeColor": "#ffffff"})
    learned = edges[edges["status"] != "prior only"]
    wmax = float(learned["weight"].abs().max()) if len(learned) else 1.0
    has_agreement = "members_same_sign" in edges.columns
    n_members = len(_member_columns(edges))
    for row in edges.itertuples(index=False):
        weight = float(row.weight)
        title = f"{row.source} {edge_effect(weight)} {row.target} · {row.status} · weight {weight:.3f}"
        disagree = False
        if has_agreement:  # counted as in the tables: members with the mean weight's sign
            title += (f" · {int(row.members_same_sign)} of {n_members} members with this sign, "
                      f"spread {float(row.spread):.3f}")
            disagree = row.status != "prior only" and float(row.sign_agreement) < 1.0
        dropped = row.status == "prior only"
        width = 1.0 if dropped else 1.5 + 6.5 * abs(weight) / max(wmax, 1e-12)
        net.add_edge(str(row.source), str(row.target), title=title, width=width,
                     color=EDGE_STATUS_COLORS.get(row.status, EDGE_STATUS_COLORS["learned only"]),
                     dashes=True if dropped else ([2, 5] if disagree else False))
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
