"""Statistics of prior graphs: edges per relation, degrees, weights (what ``genes`` prints)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ... import keys
from .combine import type_edges
from .edges import RELATION_NAMES


def _summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"min": 0.0, "median": 0.0, "mean": 0.0, "max": 0.0}
    return {"min": float(values.min()), "median": float(np.median(values)),
            "mean": float(values.mean()), "max": float(values.max())}


def graph_stats(edges: pd.DataFrame, table: pd.DataFrame) -> dict[str, Any]:
    """Statistics of one prior or of several stacked (grouped by ``source``).

    Parameters
    ----------
    edges
        Edge list(s); ``relation`` is recomputed from ``table.is_coding``.
    table
        Gene table (``biotype``, ``is_coding``), rows = nodes.

    Returns
    -------
    dict ``{source: stats}`` where ``stats`` holds ``edges``; ``relations`` (edges per
    ``coding->noncoding``...); ``in_degree`` / ``out_degree`` (min, median, mean, max);
    ``degree_histogram`` (genes by in-degree bin); ``weight`` (min, median, mean, max);
    ``reciprocal`` (share of edges whose reverse exists); ``isolated`` (genes with no edge,
    ``total``, ``by_node_type``, ``by_biotype``).
    """
    n = len(table)
    is_coding = table["is_coding"].to_numpy(dtype=bool)
    biotype = table["biotype"].astype(str).to_numpy()
    out: dict[str, Any] = {}
    sources = sorted(edges["source"].unique()) if len(edges) else []
    for source in sources or ["none"]:
        e = edges[edges["source"] == source] if sources else edges
        e = type_edges(e, is_coding)
        src = e["src"].to_numpy(np.int64)
        dst = e["dst"].to_numpy(np.int64)
        indeg = np.bincount(dst, minlength=n)
        outdeg = np.bincount(src, minlength=n)
        isolated = (indeg == 0) & (outdeg == 0)
        code = np.unique(src * n + dst)
        reciprocal = float(np.isin((code % n) * n + code // n, code).mean()) if len(code) else 0.0
        labels = ["0", "1-4", "5-9", "10-19", "20-49", "50+"]
        hist = pd.cut(indeg, bins=[-0.5, 0.5, 4.5, 9.5, 19.5, 49.5, np.inf], labels=labels)
        out[str(source)] = {
            "edges": int(len(e)),
            "relations": {r: int((e["relation"] == r).sum()) for r in RELATION_NAMES},
            "in_degree": _summary(indeg.astype(float)),
            "out_degree": _summary(outdeg.astype(float)),
            "degree_histogram": {k: int(v) for k, v in
                                 pd.Series(hist).value_counts().reindex(labels, fill_value=0).items()},
            "weight": _summary(e["weight"].to_numpy(np.float64)),
            "reciprocal": float(reciprocal),
            "isolated": {
                "total": int(isolated.sum()),
                "by_node_type": {keys.CODING: int((isolated & is_coding).sum()),
                                 keys.NONCODING: int((isolated & ~is_coding).sum())},
                "by_biotype": {str(k): int(v) for k, v in
                               pd.Series(biotype[isolated]).value_counts().items()},
            },
        }
    return out


def format_graph_stats(stats: dict[str, Any]) -> str:
    """Plain-text table of :func:`graph_stats` (what ``python -m grape_core genes`` prints)."""
    rels = list(RELATION_NAMES)
    short = {r: r.replace("noncoding", "nc").replace("coding", "c") for r in rels}
    head = (f"{'prior':<13}{'edges':>9}" + "".join(f"{short[r]:>9}" for r in rels)
            + f"{'in-deg med/max':>16}{'isolated (c/nc)':>18}{'recipr.':>9}")
    lines = [head]
    for source, s in stats.items():
        iso = s["isolated"]
        lines.append(
            f"{source:<13}{s['edges']:>9,}" + "".join(f"{s['relations'][r]:>9,}" for r in rels)
            + f"{s['in_degree']['median']:>10.0f}/{s['in_degree']['max']:<5.0f}"
            + (f"{iso['total']:>8,} ({iso['by_node_type'][keys.CODING]}/"
               f"{iso['by_node_type'][keys.NONCODING]})").rjust(18)
            + f"{s['reciprocal']:>9.2f}"
        )
    for source, s in stats.items():
        by = s["isolated"]["by_biotype"]
        if by:
            lines.append(f"isolated in {source}: " + ", ".join(f"{k} {v}" for k, v in list(by.items())[:8]))
    return "\n".join(lines)
