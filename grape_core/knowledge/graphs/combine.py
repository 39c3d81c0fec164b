"""Priors combined: the weighted union of edge lists, the relation of every edge and the
split by relation (:func:`to_edge_index_dict`), and the prior(s) a model uses
(:func:`resolve_priors`: built-in names, files and tables, merged)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ... import keys
from .edges import edge_frame, empty_edges, relation_name
from .files import prior_from_table, read_prior_table


# ----------------------------------------------------------------------------------------
# union, typing, tensors
# ----------------------------------------------------------------------------------------
def union_prior(edge_frames: Mapping[str, pd.DataFrame] | Sequence[pd.DataFrame]) -> pd.DataFrame:
    r"""Weighted union of several priors.

    Each prior's weights are first normalised per destination (the sizes of its incoming
    weights sum to 1, so priors with different scales count equally), then averaged over the
    priors that reach that destination:

    .. math::
        W_{ij} = \frac{1}{|S_i|}\sum_{s \in S_i} \frac{w^s_{ij}}{\sum_k |w^s_{ik}|}

    where :math:`S_i` is the set of priors with at least one edge into :math:`i`. Every
    gene with an incoming edge thus has incoming weights whose sizes sum to at most 1 (to 1
    unless signed priors disagree on an edge's sign; an edge whose signs cancel exactly is
    dropped).

    Parameters
    ----------
    edge_frames
        The priors' edge lists (by name, or a list).

    Returns
    -------
    Edge list, ``source == "union"``, one row per distinct ``(src, dst)``.
    """
    frames = list(edge_frames.values()) if isinstance(edge_frames, Mapping) else list(edge_frames)
    parts = []
    for i, frame in enumerate(frames):
        if len(frame) == 0:
            continue
        f = frame[["src", "dst", "weight"]].copy()
        f["weight"] = f["weight"].astype(np.float64)
        f = f.groupby(["src", "dst"], as_index=False, sort=False)["weight"].sum()
        totals = f["weight"].abs().groupby(f["dst"]).transform("sum")
        f["weight"] = np.where(totals > 0, f["weight"] / totals, 0.0)
        f["prior"] = i
        parts.append(f)
    if not parts:
        return empty_edges("union")
    allp = pd.concat(parts, ignore_index=True)
    n_priors = allp.groupby("dst")["prior"].nunique()
    merged = allp.groupby(["src", "dst"], as_index=False)["weight"].sum()
    merged["weight"] = merged["weight"] / merged["dst"].map(n_priors).to_numpy()
    merged = merged[merged["weight"] != 0]
    return edge_frame(merged["src"], merged["dst"], merged["weight"], "union")


def _types_of(is_coding) -> np.ndarray:
    is_coding = np.asarray(is_coding, dtype=bool)
    return np.where(is_coding, keys.CODING, keys.NONCODING)


def type_edges(edges: pd.DataFrame, is_coding: Sequence[bool] | np.ndarray) -> pd.DataFrame:
    """A copy of ``edges`` with ``relation`` set from the node types of src and dst
    (``"coding->coding"``, ``"coding->noncoding"``, ``"noncoding->coding"``,
    ``"noncoding->noncoding"``; :data:`keys.CODING` / :data:`keys.NONCODING` names)."""
    types = _types_of(is_coding)
    out = edges.copy()
    if len(out):
        if out["src"].max() >= len(types) or out["dst"].max() >= len(types):
            raise ValueError(f"edge index beyond the {len(types)} genes of is_coding")
        out["relation"] = [relation_name(s, d) for s, d in
                           zip(types[out["src"].to_numpy()], types[out["dst"].to_numpy()])]
    else:
        out["relation"] = out["relation"].astype(str)
    return out


class HeteroEdges(NamedTuple):
    """Edges split by relation for PyG ``HeteroConv``.

    edge_index_dict
        ``{(src_type, "to", dst_type): (edge_index, weight)}`` for every triple of
        :data:`keys.RELATIONS`: ``edge_index`` LongTensor ``(2, n_edges)`` in **local**
        indices of each node type (row 0 source, row 1 destination), ``weight``
        FloatTensor ``(n_edges,)``. Relations without edges get empty tensors.
    node_index
        ``{node_type: LongTensor (n_type,)}``: global index of each node of a type, in order
        (local -> global).
    local_index
        LongTensor ``(n_genes,)``: position of each gene within its own type
        (global -> local).
    """

    edge_index_dict: dict[tuple[str, str, str], tuple[Any, Any]]
    node_index: dict[str, Any]
    local_index: Any


def to_edge_index_dict(edges: pd.DataFrame, is_coding: Sequence[bool] | np.ndarray) -> HeteroEdges:
    """Split an edge list by biotype pair, in per-type local indices (see
    :class:`HeteroEdges`). Node types: ``keys.CODING`` where ``is_coding``, else
    ``keys.NONCODING``.

    Parameters
    ----------
    edges
        An edge list (``src``, ``dst``, ``weight``) over the nodes.
    is_coding
        ``(n_nodes,)`` node types.

    Returns
    -------
    HeteroEdges
        Per relation ``(src_type, relation, dst_type)``: ``edge_index`` ``(2, n_edges)`` in
        local indices, ``edge_weight`` ``(n_edges,)``, and the global <-> local maps.
    """
    import torch

    is_coding = np.asarray(is_coding, dtype=bool)
    types = _types_of(is_coding)
    local = np.zeros(len(types), dtype=np.int64)
    node_index = {}
    for t in keys.NODE_TYPES:
        idx = np.flatnonzero(types == t)
        local[idx] = np.arange(len(idx))
        node_index[t] = torch.as_tensor(idx, dtype=torch.long)
    src = edges["src"].to_numpy(dtype=np.int64)
    dst = edges["dst"].to_numpy(dtype=np.int64)
    w = edges["weight"].to_numpy(dtype=np.float32)
    if len(src) and (max(src.max(), dst.max()) >= len(types) or min(src.min(), dst.min()) < 0):
        raise ValueError(f"edge index outside [0, {len(types)})")
    out = {}
    for rel in keys.RELATIONS:
        s_type, _, d_type = rel
        m = (types[src] == s_type) & (types[dst] == d_type) if len(src) else np.zeros(0, bool)
        index = np.stack([local[src[m]], local[dst[m]]]) if m.any() else np.zeros((2, 0), np.int64)
        out[rel] = (torch.as_tensor(index, dtype=torch.long),
                    torch.as_tensor(w[m] if m.any() else np.zeros(0, np.float32)))
    return HeteroEdges(out, node_index, torch.as_tensor(local, dtype=torch.long))


def resolve_priors(specs: Sequence[Any], builtin: Mapping[str, pd.DataFrame],
                   genes: Sequence[str]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One prior edge list from built-in names, files and DataFrames (several are merged by
    :func:`union_prior`).

    Parameters
    ----------
    specs
        Each a built-in prior name (a key of ``builtin``), a path to an edge-list file, or
        a DataFrame with columns ``source,target[,weight]``.
    builtin
        The gene knowledge's priors (``GeneKnowledge.priors``).
    genes
        The model's node symbols.

    Returns
    -------
    edges, sources
        The merged edge list and one record per prior: ``name``, ``kind`` (builtin, file or
        table), ``edges`` and, for user priors, ``sha256`` (files), ``unknown_genes``.
    """
    from ...errors import GrapeError
    from ...io import sha256_file

    if not len(specs):
        raise GrapeError("no prior given; name a built-in prior "
                         f"({', '.join(builtin)}) or an edge-list file")
    frames, sources = [], []
    for spec in specs:
        if isinstance(spec, pd.DataFrame):
            name = str(spec.attrs.get("name", "table"))
            edges, report = prior_from_table(spec, genes, name=name)
            sources.append({**report, "kind": "table"})
        elif isinstance(spec, str) and spec in builtin:
            edges = builtin[spec]
            sources.append({"name": spec, "kind": "builtin", "edges": int(len(edges))})
        elif isinstance(spec, (str, Path)) and (Path(spec).suffix or Path(spec).exists()):
            edges, report = prior_from_table(read_prior_table(spec), genes, name=Path(spec).name)
            sources.append({**report, "kind": "file", "sha256": sha256_file(spec)})
        else:
            raise GrapeError(f"unknown prior {str(spec)!r}: give a built-in prior "
                             f"({', '.join(builtin)}) or a CSV/TSV/Parquet edge-list file")
        frames.append(edges)
    merged = frames[0] if len(frames) == 1 else union_prior(frames)
    return merged, sources
