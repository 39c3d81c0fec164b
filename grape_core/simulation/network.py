"""The planted network: regulators, their targets and signed weights, scaled to a spectral
radius."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import GrapeError
from .config import RELATIONS, SimulationConfig


def _draw_network(config: SimulationConfig, is_coding: np.ndarray, go_matrix: sp.csr_matrix,
                  rng: np.random.Generator):
    """Regulators, their targets and weights; W scaled to the spectral radius.

    Returns
    -------
    W (CSR ``(n_genes, n_genes)``, ``W[target, source]``), an edge frame with
    source_idx, target_idx, weight, relation, and a summary dict.
    """
    n = len(is_coding)
    node = np.where(is_coding, 0, 1)  # 0 coding, 1 noncoding: index of RELATIONS = 2*src + tgt
    propensity = np.asarray(config.relation_propensity, float).reshape(2, 2)
    regulators = np.sort(rng.choice(n, config.n_regulators, replace=False))
    degree = rng.integers(config.targets[0], config.targets[1] + 1, size=len(regulators))
    go_t = go_matrix.T.tocsr()
    sources, targets = [], []
    shared_pairs = 0
    for start in range(0, len(regulators), 512):
        block = regulators[start:start + 512]
        share = (go_matrix[block] @ go_t).tocsr()  # (block, n) counts of shared terms
        for row, i in enumerate(block):
            odds = propensity[node[i]][node].astype(float)
            hit = share.indices[share.indptr[row]:share.indptr[row + 1]]
            hit = hit[hit != i]
            shared_pairs += len(hit)
            odds[hit] *= 1.0 + config.go_bias
            odds[i] = 0.0
            k = int(min(degree[start + row], np.count_nonzero(odds)))
            if k == 0:
                continue
            # weighted sampling without replacement (Efraimidis-Spirakis): top-k of log(u)/w
            with np.errstate(divide="ignore"):
                score = np.log(rng.random(n)) / odds
            chosen = np.sort(np.argpartition(-score, k - 1)[:k])
            sources.append(np.full(k, i))
            targets.append(chosen)
    src = np.concatenate(sources) if sources else np.zeros(0, int)
    tgt = np.concatenate(targets) if targets else np.zeros(0, int)
    rel = 2 * node[src] + node[tgt]
    strength = np.asarray(config.relation_strength, float)[rel]
    activating = rng.random(len(src)) < np.asarray(config.relation_activating, float)[rel]
    magnitude = rng.uniform(*config.weight_range, size=len(src)) * strength
    weight = np.where(activating, 1.0, -1.0) * magnitude
    W = sp.csr_matrix((weight, (tgt, src)), shape=(n, n))
    W.sort_indices()
    raw = _spectral_radius(W)
    # a network without cycles has spectral radius 0: nothing to scale, it is already stable
    scale = config.spectral_radius / raw if raw > 1e-9 else 1.0
    W = (W * scale).tocsr()
    coo = W.tocoo()
    edges = pd.DataFrame({"source_idx": coo.col, "target_idx": coo.row, "weight": coo.data})
    rel_all = 2 * node[coo.col] + node[coo.row]
    edges["relation"] = np.asarray(RELATIONS, dtype=object)[rel_all]

    edge_shares = 0
    if len(edges):
        s = go_matrix[coo.col].multiply(go_matrix[coo.row])
        edge_shares = int(np.count_nonzero(np.asarray(s.sum(axis=1)).ravel()))
    background = shared_pairs / max(len(regulators) * (n - 1), 1)
    relations = {}
    for r, name in enumerate(RELATIONS):
        mask = rel_all == r
        w = coo.data[mask]
        relations[name] = {
            "edges": int(mask.sum()),
            "activating": round(float((w > 0).mean()), 4) if len(w) else None,
            "mean_abs_weight": round(float(np.abs(w).mean()), 4) if len(w) else None,
        }
    summary = {
        "edges": int(len(edges)),
        "activating_fraction": round(float((coo.data > 0).mean()), 4) if len(edges) else None,
        "spectral_radius_raw": round(float(raw), 6),
        "scale": round(float(scale), 6),
        "spectral_radius": round(float(raw * scale), 6),
        "relations": relations,
        "go_shared_fraction_edges": round(edge_shares / max(len(edges), 1), 4),
        "go_shared_fraction_background": round(float(background), 4),
    }
    return W, edges, summary


def _spectral_radius(W: sp.csr_matrix) -> float:
    """Largest |eigenvalue| of a sparse matrix: computed per strongly connected component
    (a node on no cycle adds only a zero eigenvalue), dense when small, ARPACK when large."""
    from scipy.sparse.csgraph import connected_components

    if W.nnz == 0:
        return 0.0
    n_comp, label = connected_components(W, directed=True, connection="strong")
    sizes = np.bincount(label, minlength=n_comp)
    radius = 0.0
    for comp in np.flatnonzero(sizes > 1):
        idx = np.flatnonzero(label == comp)
        sub = W[idx][:, idx]
        if len(idx) <= 1500:
            value = np.abs(np.linalg.eigvals(sub.toarray())).max()
        else:
            from scipy.sparse.linalg import ArpackNoConvergence, eigs

            try:
                vals = eigs(sub.astype(np.float64), k=1, which="LM", v0=np.ones(len(idx)),
                            ncv=min(len(idx) - 1, 64), maxiter=len(idx) * 20, tol=1e-10,
                            return_eigenvectors=False)
            except ArpackNoConvergence as exc:
                raise GrapeError("the spectral radius of the network did not converge; try "
                                 "another --seed") from exc
            value = np.abs(vals).max()
        radius = max(radius, float(value))
    return radius
