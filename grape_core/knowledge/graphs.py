"""Prior gene graphs as weighted sparse edge lists, and their split by biotype pair.

An edge list is a DataFrame with one row per directed edge:

``src`` (int64)  node index the message comes from
``dst`` (int64)  node index that receives it (PyG convention: messages flow src -> dst)
``weight`` (float32)
``source`` (str)  similarity | go | coexpression | union
``relation`` (str)  ``"coding->noncoding"`` etc. (``''`` until :func:`type_edges`)

Node indices are rows of the gene table. Every prior selects, **per destination**, the
genes it listens to (the top-k rule of GEARS is "the k most similar genes of each target").
There are no self-loops (the model adds them). No learnable parameters here.

Priors
------
similarity
    GRAPE's: the mean of the cosine-similarity matrices of the text, DNA and fused
    embeddings, entries below ``threshold`` (0.6) zeroed, each row (destination)
    normalised to sum 1, weights below ``min_weight`` (0.015) dropped.
go
    GEARS': Jaccard index of the genes' GO term sets, at least ``min_jaccard``, top ``k``
    per destination.
coexpression
    GEARS': |Pearson r| over control cells above ``threshold`` (0.4), top ``k`` per
    destination.
union
    Their weighted union (:func:`union_prior`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import keys

log = logging.getLogger(__name__)

SOURCES = ("similarity", "go", "coexpression", "union")
_CHUNK = 1024


def relation_name(src_type: str, dst_type: str) -> str:
    """``"coding->noncoding"``: the ``relation`` value of an edge between two node types."""
    return f"{src_type}->{dst_type}"


RELATION_NAMES = tuple(relation_name(s, d) for s in keys.NODE_TYPES for d in keys.NODE_TYPES)


def empty_edges(source: str = "") -> pd.DataFrame:
    """An edge list with no rows and the standard columns and dtypes."""
    return edge_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), source)


def edge_frame(src, dst, weight, source: str, relation: str | Sequence[str] = "") -> pd.DataFrame:
    """Standard edge list from arrays (sorted by dst, then src)."""
    frame = pd.DataFrame({
        "src": np.asarray(src, dtype=np.int64),
        "dst": np.asarray(dst, dtype=np.int64),
        "weight": np.asarray(weight, dtype=np.float32),
        "source": source,
        "relation": relation,
    })
    frame["source"] = frame["source"].astype(str)
    frame["relation"] = frame["relation"].astype(str)
    return frame.sort_values(["dst", "src"], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------
def _unit_rows(x: np.ndarray, *, center: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if center and len(x):
        x = x - x.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def _top_k_dense(block: np.ndarray, k: int, minimum: float, row_offset: int):
    """Per row of a dense block, the ``k`` largest entries ``>= minimum``; ties go to the
    lower column (exactly: the key ``value - column * 1e-12`` orders them). Returns
    ``(row, col, value)`` with rows offset by ``row_offset``."""
    n_rows, n_cols = block.shape
    k = min(k, n_cols)
    if k <= 0 or n_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    key = block.astype(np.float64) - np.arange(n_cols, dtype=np.float64)[None, :] * 1e-12
    top = np.argpartition(-key, k - 1, axis=1)[:, :k] if k < n_cols else \
        np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    order = np.argsort(-np.take_along_axis(key, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    vals = np.take_along_axis(block, top, axis=1)
    keep = vals >= minimum
    rows = np.broadcast_to(np.arange(n_rows)[:, None], top.shape)
    return ((rows[keep] + row_offset).astype(np.int64), top[keep].astype(np.int64),
            vals[keep].astype(np.float32))


# ----------------------------------------------------------------------------------------
# similarity (the paper's prior)
# ----------------------------------------------------------------------------------------
def similarity_matrix_block(views: Sequence[np.ndarray], rows: slice,
                            valid: Sequence[np.ndarray | None]) -> np.ndarray:
    """Mean cosine over the views for rows ``rows`` against all genes, ``(len(rows), n)``.
    A view whose ``valid`` mask is given counts for a pair only when both genes are valid."""
    n = views[0].shape[0]
    total = np.zeros((rows.stop - rows.start, n), dtype=np.float32)
    count = np.zeros_like(total)
    for x, ok in zip(views, valid):
        cos = x[rows] @ x.T
        if ok is None:
            total += cos
            count += 1.0
        else:
            pair = ok[rows, None] & ok[None, :]
            total += np.where(pair, cos, 0.0)
            count += pair
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def similarity_prior(
    text: np.ndarray | None,
    dna: np.ndarray | None,
    fused: np.ndarray | None,
    *,
    threshold: float = 0.6,
    min_weight: float = 0.015,
    dna_missing: np.ndarray | None = None,
    center: bool = False,
) -> pd.DataFrame:
    r"""GRAPE's prior: thresholded, row-normalised mean cosine similarity of embeddings.

    .. math::
        S = \tfrac{1}{|V|}\textstyle\sum_{v \in V} \cos(X_v), \quad
        A_{ij} = S_{ij}\,[S_{ij} \ge \theta]\,[i \ne j], \quad
        W_{ij} = \frac{A_{ij}}{\sum_k A_{ik}}, \quad W_{ij} < w_{\min} \to 0

    Row :math:`i` is the destination: edge ``src=j -> dst=i`` with weight :math:`W_{ij}`, so
    each gene's incoming weights sum to at most 1. The pattern :math:`A` is symmetric; the
    weights are not (each row is normalised on its own).

    Parameters
    ----------
    text, dna, fused
        Views ``(n_genes, d)``; ``None`` skips a view (at least one is needed).
    threshold, min_weight
        Paper: 0.6 and 0.015.
    dna_missing
        ``(n_genes,)`` bool: pairs involving a gene without sequence average the other
        views only (its DNA row carries no information).
    center
        Subtract each view's mean embedding before the cosine. ``False`` (default)
        reproduces the paper; turn on for anisotropic embeddings (BERT CLS vectors share a
        large common direction, so all their raw cosines exceed 0.6).

    Returns
    -------
    Edge list, ``source == "similarity"``.
    """
    views_in = [v for v in (text, dna, fused) if v is not None]
    if not views_in:
        raise ValueError("similarity_prior needs at least one of text, dna, fused")
    n = views_in[0].shape[0]
    if any(v.shape[0] != n for v in views_in):
        raise ValueError("text, dna and fused must have one row per gene")
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}: must be in [-1, 1]")
    if not 0.0 <= min_weight < 1.0:
        raise ValueError(f"min_weight={min_weight}: must be in [0, 1)")
    ok_dna = None if dna_missing is None else ~np.asarray(dna_missing, dtype=bool)
    views, valid = [], []
    for v, mask in ((text, None), (dna, ok_dna), (fused, None)):
        if v is None:
            continue
        v = np.asarray(v, dtype=np.float32)
        if mask is None:
            views.append(_unit_rows(v, center=center))
        else:
            if center and mask.any():
                v = v - v[mask].mean(axis=0, keepdims=True)
            views.append(_unit_rows(np.where(mask[:, None], v, 0.0), center=False))
        valid.append(mask)
    srcs, dsts, ws = [], [], []
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        s = similarity_matrix_block(views, rows, valid)
        s[np.arange(s.shape[0]), np.arange(rows.start, rows.stop)] = 0.0
        s = np.where(s >= threshold, s, 0.0)
        row_sum = s.sum(axis=1, keepdims=True)
        w = np.divide(s, row_sum, out=np.zeros_like(s), where=row_sum > 0)
        r, c = np.nonzero((w >= min_weight) & (w > 0))
        dsts.append(r + start)
        srcs.append(c)
        ws.append(w[r, c])
    return edge_frame(np.concatenate(srcs), np.concatenate(dsts), np.concatenate(ws),
                      "similarity")


# ----------------------------------------------------------------------------------------
# GO Jaccard (GEARS)
# ----------------------------------------------------------------------------------------
def go_membership(table: pd.DataFrame, *, propagate: bool = True) -> tuple[sp.csr_matrix, list[str]]:
    """Binary gene x GO-term matrix ``(n_genes, n_terms)`` and the term ids.

    With ``propagate`` each gene's direct terms are closed under the GO DAG (every GO.db
    relation: is_a, part_of, regulates...), which reproduces Bioconductor's ``go_*_all``.
    """
    from .genes import go_terms, load_annotation

    direct = go_terms(table)
    if propagate:
        parents = load_annotation().parents
        vocab = pd.Index(pd.unique(np.concatenate([parents["go_id"].to_numpy(),
                                                   parents["parent_id"].to_numpy(),
                                                   np.array([t for ts in direct for t in ts],
                                                            dtype=object)])))
    else:
        vocab = pd.Index(pd.unique(np.array([t for ts in direct for t in ts], dtype=object)))
    rows = np.repeat(np.arange(len(direct)), [len(ts) for ts in direct])
    cols = vocab.get_indexer([t for ts in direct for t in ts])
    member = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                           shape=(len(direct), len(vocab)))
    member.data[:] = 1.0
    if propagate and member.nnz:
        up = sp.csr_matrix((np.ones(len(parents), dtype=np.float32),
                            (vocab.get_indexer(parents["go_id"]),
                             vocab.get_indexer(parents["parent_id"]))),
                           shape=(len(vocab), len(vocab)))
        frontier = member
        for _ in range(64):  # the GO DAG is about 20 levels deep
            nxt = (frontier @ up)
            nxt.data[:] = 1.0
            new = nxt - nxt.multiply(member)
            new.eliminate_zeros()
            if new.nnz == 0:
                break
            member = member + new
            member.data[:] = 1.0
            frontier = new
    member = member.tocsr()
    member.sum_duplicates()
    used = np.unique(member.indices)
    return member[:, used].tocsr(), vocab[used].tolist()


def _jaccard_blocks(table: pd.DataFrame, propagate: bool):
    """Yield ``(start, block)``: Jaccard rows ``start:start+len(block)`` against all genes,
    dense float32, diagonal zero."""
    member, _ = go_membership(table, propagate=propagate)
    n = member.shape[0]
    sizes = np.asarray(member.sum(axis=1)).ravel().astype(np.float32)
    # terms of a single gene add to its size but never to an intersection
    shared = np.asarray(member.sum(axis=0)).ravel() > 1
    member = member[:, shared].tocsr()
    member_t = member.T.tocsr()
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        inter = (member[start:stop] @ member_t).toarray().astype(np.float32)
        union = sizes[start:stop, None] + sizes[None, :] - inter
        jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        jac[np.arange(stop - start), np.arange(start, stop)] = 0.0
        yield start, jac


def go_jaccard(table: pd.DataFrame, *, propagate: bool = True, min_jaccard: float = 0.0) -> sp.csr_matrix:
    r"""Jaccard index of the genes' GO term sets, ``(n_genes, n_genes)`` sparse, symmetric.

    .. math:: J_{ij} = \frac{|G_i \cap G_j|}{|G_i \cup G_j|}, \qquad J_{ii} = 0

    Entries below ``min_jaccard`` (and genes without GO terms) are left out.
    """
    n = len(table)
    rows_all, cols_all, vals_all = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros(0, np.float32)]
    for start, jac in _jaccard_blocks(table, propagate):
        r, c = np.nonzero(jac >= max(min_jaccard, np.finfo(np.float32).tiny))
        rows_all.append(r + start)
        cols_all.append(c)
        vals_all.append(jac[r, c])
    return sp.csr_matrix((np.concatenate(vals_all), (np.concatenate(rows_all),
                                                      np.concatenate(cols_all))), shape=(n, n))


def go_prior(table: pd.DataFrame, *, top_k: int = 20, min_jaccard: float = 0.1,
             propagate: bool = True) -> pd.DataFrame:
    """GEARS' GO graph: for each gene (destination) the ``top_k`` genes with the highest GO
    Jaccard index (at least ``min_jaccard``; ties broken by node index), weight = Jaccard.

    The Jaccard matrix is symmetric (:func:`go_jaccard`); the top-k selection makes the edge
    list directed. Genes without GO terms have no edges.

    Returns
    -------
    Edge list, ``source == "go"``.
    """
    if top_k < 1:
        raise ValueError(f"top_k={top_k}: must be >= 1")
    if not 0.0 <= min_jaccard <= 1.0:
        raise ValueError(f"min_jaccard={min_jaccard}: must be in [0, 1]")
    minimum = max(min_jaccard, float(np.finfo(np.float32).tiny))
    parts = [_top_k_dense(jac, top_k, minimum, start)
             for start, jac in _jaccard_blocks(table, propagate)]
    if not parts:
        return empty_edges("go")
    dst, src, w = (np.concatenate(x) for x in zip(*parts))
    return edge_frame(src, dst, w, "go")


# ----------------------------------------------------------------------------------------
# co-expression (GEARS, on control cells)
# ----------------------------------------------------------------------------------------
_DENSE_LIMIT = 100_000_000
"""Control matrices up to this many entries are standardised densely (float32)."""


def _moments(X) -> tuple[np.ndarray, np.ndarray]:
    if sp.issparse(X):
        mean = np.asarray(X.mean(axis=0, dtype=np.float64)).ravel()
        sq = np.asarray(X.multiply(X).mean(axis=0, dtype=np.float64)).ravel()
    else:
        mean = X.mean(axis=0, dtype=np.float64)
        sq = np.einsum("ij,ij->j", X, X, dtype=np.float64) / X.shape[0]
    return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))


def pearson_block(X, cols: slice, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Pearson r of genes ``cols`` against all genes, ``(len(cols), n_genes)``, from raw
    moments (for large sparse matrices); genes with zero variance give 0."""
    n = X.shape[0]
    block = X[:, cols].T @ X
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    cov = block / n - mean[cols, None] * mean[None, :]
    denom = std[cols, None] * std[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    return np.clip(r, -1.0, 1.0).astype(np.float32)


def _pearson_blocks(X):
    """Yield ``(start, r)``: Pearson rows ``start:start+len(r)`` against all genes."""
    n_cells, n_genes = X.shape
    if n_cells * n_genes <= _DENSE_LIMIT:
        Z = X.toarray() if sp.issparse(X) else np.array(X, dtype=np.float32, copy=True)
        Z = Z.astype(np.float32, copy=False)
        mean = Z.mean(axis=0, dtype=np.float64)
        Z -= mean.astype(np.float32)
        std = np.sqrt(np.einsum("ij,ij->j", Z, Z, dtype=np.float64) / n_cells)
        ok = std > 0
        Z[:, ok] /= std[ok].astype(np.float32)
        Z[:, ~ok] = 0.0
        for start in range(0, n_genes, _CHUNK):
            stop = min(start + _CHUNK, n_genes)
            yield start, np.clip(Z[:, start:stop].T @ Z / n_cells, -1.0, 1.0)
        return
    X = X.tocsc() if sp.issparse(X) else np.asarray(X, dtype=np.float32)
    mean, std = _moments(X)
    for start in range(0, n_genes, _CHUNK):
        yield start, pearson_block(X, slice(start, min(start + _CHUNK, n_genes)), mean, std)


def coexpression_prior(
    control_X,
    measured_index: Sequence[int] | np.ndarray,
    n_nodes: int,
    *,
    threshold: float = 0.4,
    top_k: int = 20,
) -> pd.DataFrame:
    """GEARS' co-expression graph from control cells.

    For each measured gene (destination) the ``top_k`` measured genes with the highest
    :math:`|r|` (Pearson over control cells), kept when :math:`|r| > threshold`;
    weight = :math:`|r|`. Unmeasured genes (e.g. perturbed genes not in the panel) have no
    co-expression edges.

    Parameters
    ----------
    control_X
        ``(n_control_cells, n_measured)`` log-expression, dense or sparse.
    measured_index
        ``(n_measured,)`` node index of each column.
    n_nodes
        Number of graph nodes (indices must be below it).

    Returns
    -------
    Edge list in node indices, ``source == "coexpression"``.
    """
    measured_index = np.asarray(measured_index, dtype=np.int64)
    n_cells, n_genes = control_X.shape
    if len(measured_index) != n_genes:
        raise ValueError(f"measured_index has {len(measured_index)} entries for "
                         f"{n_genes} columns of control_X")
    if n_genes and (measured_index.min() < 0 or measured_index.max() >= n_nodes):
        raise ValueError(f"measured_index must lie in [0, {n_nodes})")
    if len(np.unique(measured_index)) != len(measured_index):
        raise ValueError("measured_index has duplicates")
    if top_k < 1:
        raise ValueError(f"top_k={top_k}: must be >= 1")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold={threshold}: must be in [0, 1)")
    if n_cells < 3:
        log.warning("%d control cells: no co-expression edges", n_cells)
        return empty_edges("coexpression")
    minimum = float(np.nextafter(np.float32(threshold), np.float32(1)))
    parts = []
    for start, r in _pearson_blocks(control_X):
        r = np.abs(r)
        r[np.arange(r.shape[0]), np.arange(start, start + r.shape[0])] = 0.0
        parts.append(_top_k_dense(r, top_k, minimum, start))
    dst, src, w = (np.concatenate(x) for x in zip(*parts))
    return edge_frame(measured_index[src], measured_index[dst], w, "coexpression")


# ----------------------------------------------------------------------------------------
# union, typing, tensors
# ----------------------------------------------------------------------------------------
def union_prior(edge_frames: Mapping[str, pd.DataFrame] | Sequence[pd.DataFrame]) -> pd.DataFrame:
    r"""Weighted union of several priors.

    Each prior's weights are first normalised per destination (its incoming weights sum to
    1, so priors with different scales count equally), then averaged over the priors that
    reach that destination:

    .. math::
        W_{ij} = \frac{1}{|S_i|}\sum_{s \in S_i} \frac{w^s_{ij}}{\sum_k w^s_{ik}}

    where :math:`S_i` is the set of priors with at least one edge into :math:`i`. Every
    gene with an incoming edge thus has incoming weights summing to 1.

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
        totals = f.groupby("dst")["weight"].transform("sum")
        f["weight"] = np.where(totals > 0, f["weight"] / totals, 0.0)
        f["prior"] = i
        parts.append(f)
    if not parts:
        return empty_edges("union")
    allp = pd.concat(parts, ignore_index=True)
    n_priors = allp.groupby("dst")["prior"].nunique()
    merged = allp.groupby(["src", "dst"], as_index=False)["weight"].sum()
    merged["weight"] = merged["weight"] / merged["dst"].map(n_priors).to_numpy()
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
    ``keys.NONCODING``."""
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


# ----------------------------------------------------------------------------------------
# user priors: edge-list files or DataFrames
# ----------------------------------------------------------------------------------------
PRIOR_COLUMNS = ("source", "target")
"""Required columns of a user prior (gene symbols; ``source`` regulates ``target``), plus an
optional numeric ``weight`` (> 0; the sign of a regulation is learned)."""


def read_prior_table(path: str | Path) -> pd.DataFrame:
    """A prior edge list from a CSV, TSV (``.tsv``/``.txt``) or Parquet file.

    Raises
    ------
    GrapeError
        The file is missing, a folder, not a regular file (a FIFO, a device), unreadable or
        empty (one line naming the file).
    """
    from ..errors import GrapeError
    from ..io import check_input_file

    # a FIFO would block the read forever and a device never ends: refused before opening
    path = check_input_file(path, what="prior", fix="give a CSV, TSV or Parquet edge list")
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet"):
            table = pd.read_parquet(path)
        else:
            sep = "\t" if any(suffix.endswith(s) for s in (".tsv", ".txt", ".tsv.gz")) else ","
            table = pd.read_csv(path, sep=sep, dtype={"source": str, "target": str},
                                keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise GrapeError(f"prior {path} is empty; it needs columns source,target[,weight]") from exc
    except (UnicodeDecodeError, ValueError, OSError) as exc:
        raise GrapeError(f"prior {path} cannot be read as a CSV, TSV or Parquet table "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from exc
    table.attrs["name"] = path.name
    return table


def _examples(items, n: int = 3) -> str:
    items = list(items)
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(str(i) for i in items[:n]) + more


def prior_from_table(table: pd.DataFrame, genes: Sequence[str], *, name: str = "user prior"
                     ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate a user prior and map it onto the model's nodes.

    Parameters
    ----------
    table
        Columns ``source``, ``target`` (gene symbols; ``source`` regulates ``target``) and
        optionally ``weight`` (finite, > 0; default 1).
    genes
        The model's node symbols. Symbols match exactly, else case-insensitively when that
        is unambiguous.
    name
        How errors and the manifest name this prior (a file name).

    Returns
    -------
    edges, report
        Standard edge list (``source`` = ``name``) over the known genes, and a summary:
        ``edges`` kept, ``unknown_genes`` (count) and ``unknown_examples``.

    Raises
    ------
    GrapeError
        Missing columns, an empty table, non-numeric, non-finite or non-positive weights,
        self-loops, duplicated edges, or no edge between the model's genes; each message
        names the prior, the rows or genes and what to do.
    """
    from ..errors import GrapeError

    columns = {str(c).strip().lower(): c for c in table.columns}
    missing = [c for c in PRIOR_COLUMNS if c not in columns]
    if missing:
        raise GrapeError(f"prior {name!r} has no column {', '.join(repr(m) for m in missing)} "
                         f"(found: {_examples(map(str, table.columns), 6) or 'none'}); it needs "
                         "source,target[,weight] with gene symbols, source regulating target")
    for column in PRIOR_COLUMNS:
        absent = np.flatnonzero(table[columns[column]].isna().to_numpy())
        if absent.size:
            raise GrapeError(f"prior {name!r}: row {absent[0] + 2} has no {column} gene (an "
                             "empty cell); every edge needs a source and a target")
    src = table[columns["source"]].astype(str).str.strip().to_numpy()
    dst = table[columns["target"]].astype(str).str.strip().to_numpy()
    if len(src) == 0:
        raise GrapeError(f"prior {name!r} has no edges; it needs rows source,target[,weight]")
    if "weight" in columns:
        weight = _prior_weights(table[columns["weight"]], name)
    else:
        weight = np.ones(len(src))
    empty = np.flatnonzero((src == "") | (dst == ""))
    if empty.size:
        raise GrapeError(f"prior {name!r}: row {empty[0] + 2} has an empty gene name")
    index = {g: i for i, g in enumerate(genes)}
    upper: dict[str, list[int]] = {}
    for g, i in index.items():
        upper.setdefault(g.casefold(), []).append(i)

    def node(symbol: str) -> int:
        if symbol in index:
            return index[symbol]
        hits = upper.get(symbol.casefold(), [])
        return hits[0] if len(hits) == 1 else -1

    # the rules apply to what the names mean: the model's gene where a name is one (exactly,
    # or ignoring case when that is unambiguous), else the name ignoring case, so A->b and
    # A->B are one edge twice and A->a is a self-loop
    def key(symbol: str) -> str:
        i = node(symbol)
        return f"#{i}" if i >= 0 else symbol.casefold()

    src_key = np.array([key(g) for g in src], dtype=object)
    dst_key = np.array([key(g) for g in dst], dtype=object)
    loops = np.flatnonzero(src_key == dst_key)
    if loops.size:
        raise GrapeError(f"prior {name!r} has {loops.size} self-loop(s) "
                         f"({_examples(f'{src[i]}->{dst[i]}' for i in loops)}); remove them (a "
                         "perturbed gene's effect on itself is learned separately; names are "
                         f"compared ignoring case: row {loops[0] + 2})")
    pairs = pd.Series(list(zip(src_key, dst_key)))
    dup = np.flatnonzero(pairs.duplicated(keep="first").to_numpy())
    if dup.size:
        earlier = {p: i for i, p in reversed(list(enumerate(pairs)))}
        i = dup[0]
        raise GrapeError(f"prior {name!r} lists {dup.size} edge(s) twice "
                         f"({_examples(f'{src[j]}->{dst[j]}' for j in dup)}); keep one row per "
                         f"edge (names are compared ignoring case: row {i + 2}, "
                         f"{src[i]}->{dst[i]}, repeats row {earlier[pairs[i]] + 2})")
    s_idx = np.array([node(g) for g in src], dtype=np.int64)
    d_idx = np.array([node(g) for g in dst], dtype=np.int64)
    unknown = sorted({g for g, i in zip(src, s_idx) if i < 0} | {g for g, i in zip(dst, d_idx) if i < 0})
    keep = (s_idx >= 0) & (d_idx >= 0)
    if not keep.any():
        raise GrapeError(f"prior {name!r}: none of its {len(src)} edges joins two genes of the "
                         f"model ({len(unknown)} unknown genes, e.g. {_examples(unknown)}); use "
                         "the screen's gene symbols")
    if unknown:
        log.warning("prior %r: %d of %d edges dropped, their %d genes are not in the model (e.g. %s)",
                    name, int((~keep).sum()), len(src), len(unknown), _examples(unknown))
    edges = edge_frame(s_idx[keep], d_idx[keep], weight[keep], name)
    report = {"name": name, "edges": int(keep.sum()), "dropped_edges": int((~keep).sum()),
              "unknown_genes": len(unknown), "unknown_examples": unknown[:10]}
    return edges, report


WEIGHT_FLOOR = float(np.finfo(np.float32).tiny)
"""The smallest weight a prior can store (weights are float32): about 1.2e-38."""


def _prior_weights(raw: pd.Series, name: str) -> np.ndarray:
    """A user prior's weights, checked in the width they are stored in (float32): numbers,
    finite, > 0. Weights are relative confidences: when the largest is above 1 they are all
    divided by it (so 1e39 is stored as 1, not as infinity), and a weight that would then be
    below :data:`WEIGHT_FLOOR` (stored as 0) is refused."""
    from ..errors import GrapeError

    if pd.api.types.is_bool_dtype(raw):
        raise GrapeError(f"prior {name!r}: the weight column holds true/false, not numbers; "
                         "give numbers > 0 or drop the weight column")
    weight = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(weight))
    if bad.size:
        shown = _examples(f"row {i + 2}: {raw.iloc[i]!r}" for i in bad)
        raise GrapeError(f"prior {name!r}: {bad.size} weight(s) are not finite numbers "
                         f"({shown}); give numbers or drop the weight column")
    bad = np.flatnonzero(weight <= 0)
    if bad.size:
        raise GrapeError(f"prior {name!r}: {bad.size} weight(s) are <= 0 (e.g. row "
                         f"{bad[0] + 2}: {weight[bad[0]]:g}); weights are confidences > 0 "
                         "(the model learns each edge's sign)")
    largest = float(weight.max())
    if largest > 1:
        weight = weight / largest
    stored = weight.astype(np.float32)
    bad = np.flatnonzero(~(stored >= WEIGHT_FLOOR))
    if bad.size:
        i = bad[0]
        beside = f" beside the largest, {largest:g}" if largest > 1 else ""
        raise GrapeError(f"prior {name!r}: {bad.size} weight(s) are too small to store{beside} "
                         f"(e.g. row {i + 2}: {weight[i] * max(largest, 1):g}; weights are "
                         "stored as float32, "
                         f"which makes anything below {WEIGHT_FLOOR:.2g} times the largest "
                         "weight a 0); raise them or drop those edges")
    return stored.astype(np.float64)


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
    from ..errors import GrapeError
    from ..io import sha256_file

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
