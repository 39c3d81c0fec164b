"""Prior edge lists of a planted screen: part of the truth plus false edges, and a random one;
unsigned, or signed with some of the true edges' signs wrong."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import GrapeError
from .config import SimulationConfig


def _false_edges(n: int, true_codes: np.ndarray, count: int, rng: np.random.Generator,
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """``count`` distinct ordered pairs ``source * n + target`` (no self-loop, not in
    ``true_codes``), uniform, in draw order."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    possible = n * (n - 1) - len(true_codes)
    if count * 4 > possible and n <= 5000:  # dense request: enumerate the non-edges
        codes = np.arange(n * n, dtype=np.int64)
        codes = codes[(codes // n != codes % n) & ~np.isin(codes, true_codes)]
        return rng.choice(codes, count, replace=False)
    have = np.zeros(0, dtype=np.int64)
    while len(have) < count:
        draw = rng.integers(0, n * n, size=2 * (count - len(have)) + 16, dtype=np.int64)
        draw = draw[(draw // n != draw % n) & ~np.isin(draw, true_codes) & ~np.isin(draw, have)]
        _, first = np.unique(draw, return_index=True)
        draw = draw[np.sort(first)]
        have = np.concatenate([have, draw[:count - len(have)]])
    return have


def _priors(config: SimulationConfig, W: sp.csr_matrix, names: np.ndarray,
            rng: np.random.Generator) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    n = W.shape[0]
    coo = W.tocoo()
    true_codes = np.sort(coo.col.astype(np.int64) * n + coo.row)  # source * n + target
    m = len(true_codes)
    k = int(round(config.prior_true_fraction * m))
    n_false = k if config.prior_false_edges is None else int(config.prior_false_edges)
    possible = n * (n - 1) - m
    if n_false > possible or k + n_false > possible:
        raise GrapeError(f"the priors ask for {max(n_false, k + n_false)} false edges but only "
                         f"{possible} non-edges exist among {n} genes; lower "
                         "--prior-false-edges")
    true_pick = true_codes[np.sort(rng.choice(m, k, replace=False))]
    informative = np.concatenate([true_pick, _false_edges(n, true_codes, n_false, rng)])
    informative = informative[rng.permutation(len(informative))]  # order says nothing
    random = _false_edges(n, true_codes, len(informative), rng)
    weights = {"informative": np.ones(len(informative)), "random": np.ones(len(random))}
    wrong = 0
    if config.prior_signed:  # drawn after the edges: an unsigned screen's priors never change
        true_sign = dict(zip(coo.col.astype(np.int64) * n + coo.row, np.sign(coo.data)))
        is_true = np.isin(informative, true_codes)
        signs = rng.choice([-1.0, 1.0], len(informative))  # a false edge: a fair coin
        signs[is_true] = [true_sign[c] for c in informative[is_true]]
        wrong = int(round(config.prior_wrong_signs * k))
        signs[rng.choice(np.flatnonzero(is_true), wrong, replace=False)] *= -1.0
        weights = {"informative": signs, "random": rng.choice([-1.0, 1.0], len(random))}

    def frame(codes: np.ndarray, weight: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"source": names[codes // n].astype(object),
                             "target": names[codes % n].astype(object), "weight": weight})

    summary = {
        "informative": {"edges": int(len(informative)), "true": k, "false": n_false,
                        "precision": round(k / max(len(informative), 1), 4),
                        "recall": round(k / max(m, 1), 4)},
        "random": {"edges": int(len(random)), "true": 0, "false": int(len(random))},
    }
    if config.prior_signed:
        summary["informative"]["wrong_signs"] = wrong
    return {name: frame(codes, weights[name])
            for name, codes in (("informative", informative), ("random", random))}, summary
