"""The built-in priors: GRAPE's similarity prior and GEARS' GO and co-expression priors
(see :mod:`grape_core.knowledge.graphs`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .edges import edge_frame, empty_edges

log = logging.getLogger(__name__)


_CHUNK = 1024


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
    from ..genes import go_terms, load_annotation

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

    Parameters
    ----------
    table
        The gene table (GO columns), one row per node.
    top_k
        Sources kept per destination.
    min_jaccard
        The smallest Jaccard index kept.
    propagate
        Compare GO sets closed under the ontology (GEARS' ``gene2go_all``); else direct
        terms.

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
