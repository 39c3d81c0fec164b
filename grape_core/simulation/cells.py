"""The cells of a planted screen, drawn around each condition's mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import keys
from .config import SimulationConfig
from .dynamics import Guides, _Propagator

_CELL_BLOCK = 1 << 22  # values per chunk of generated cells (16 MiB of float32)


def _cells(config: SimulationConfig, W: sp.csr_matrix, mu: np.ndarray, unit_shifts: np.ndarray,
           escaped_shifts: np.ndarray, guides: Guides, conditions: tuple[str, ...],
           names: np.ndarray, rng: np.random.Generator, *, progress: bool = False):
    """AnnData ``(n_cells, n_genes)``: control cells, then each condition's cells: its
    units' (guide combinations') in turn, then those in which it failed
    (``escape_fraction``).

    ``unit_shifts`` ``(n_units, n_genes)``: each unit's mean change on the log scale;
    ``escaped_shifts`` ``(n_conditions, n_genes)``: the change of a cell where the
    perturbation failed (the shared response). Cells are drawn by ``config.cell_model``
    (:func:`_draw_block`). Generated in chunks of about 4 M values; X is dense float32, or
    CSR when more than half the values are 0."""
    import anndata
    from tqdm.auto import tqdm

    n = len(mu)
    # groups of cells: 0 = control, then per condition its units and its escaped cells;
    # row[k] is the row of group k + 1 in the stacked table of shifts
    sizes, rows, labels, guide_labels, escaped = [config.n_control_cells], [], [keys.CTRL], [""], [False]
    n_units = len(guides.condition)
    units_of = np.split(np.arange(n_units), np.flatnonzero(np.diff(guides.condition)) + 1)
    for c, units in enumerate(units_of):
        n_escape = int(round(config.escape_fraction * config.cells_per_condition))
        per_unit = np.array_split(np.arange(config.cells_per_condition - n_escape), len(units))
        for u, cells in zip(units, per_unit):
            sizes.append(len(cells))
            rows.append(u)
            labels.append(conditions[c])
            guide_labels.append(str(guides.label[u]))
            escaped.append(False)
        if n_escape:
            sizes.append(n_escape)
            rows.append(n_units + c)
            labels.append(conditions[c])
            guide_labels.append("")
            escaped.append(True)
    table = unit_shifts if config.escape_fraction == 0 else np.vstack([unit_shifts, escaped_shifts])
    rows = np.asarray(rows, dtype=np.int64)
    counts = np.asarray(sizes)
    group = np.repeat(np.arange(len(counts)), counts)
    total = int(counts.sum())
    X = np.empty((total, n), dtype=np.float32)
    spread = _Propagator(W) if config.network_noise > 0 else None
    mu32 = mu.astype(np.float32)
    step = max(1, _CELL_BLOCK // n)
    zeros = 0
    for start in tqdm(range(0, total, step), desc="cells", unit="chunk", disable=not progress,
                      leave=False):
        g = group[start:start + step]
        block = rng.standard_normal((len(g), n), dtype=np.float32)
        block *= np.float32(config.cell_noise)
        block += mu32
        perturbed = g > 0
        block[perturbed] += table[rows[g[perturbed] - 1]]
        if spread is not None:  # cell-to-cell variation that spreads through the network
            eta = rng.standard_normal((len(g), n)) * config.network_noise
            block += spread.solve(eta.T).T.astype(np.float32)
        if config.cell_model == "counts":
            block = _counts(block, mu, config, rng)
        else:
            np.maximum(block, 0.0, out=block)
        zeros += int(total and np.count_nonzero(block == 0))
        X[start:start + step] = block
    sparse_x = zeros > 0.5 * X.size
    matrix = sp.csr_matrix(X) if sparse_x else X
    obs = pd.DataFrame({
        keys.CONDITION: pd.Categorical(np.asarray(labels, dtype=object)[group],
                                       categories=[keys.CTRL, *conditions]),
        keys.CELL_TYPE: pd.Categorical([config.cell_type] * total),
    }, index=pd.Index([f"cell{i}" for i in range(total)]))
    if config.guides_per_gene > 1:
        obs["guide"] = pd.Categorical(np.asarray(guide_labels, dtype=object)[group])
    if config.escape_fraction > 0:
        obs["escaped"] = np.asarray(escaped)[group]
    var = pd.DataFrame({keys.GENE_NAME: names.astype(str)}, index=pd.Index(names.astype(str)))
    return anndata.AnnData(X=matrix, obs=obs, var=var), bool(sparse_x)


def _counts(log_level: np.ndarray, mu: np.ndarray, config: SimulationConfig,
            rng: np.random.Generator) -> np.ndarray:
    """Cells ``(n_cells, n_genes)`` drawn as UMI counts from their log expression levels, then
    normalised and log1p'd as GEARS files are (``log1p(counts / total * target)``).

    Each cell's library size is ``library_size * exp(library_size_sd * N(0, 1))``; gene g's
    expected count is the library size times ``exp(level_g) / sum_h exp(mu_h)`` (the share of
    the control cells' expression: a knock-down of a highly expressed gene leaves a cell
    fewer counts), drawn as Poisson or, with ``dispersion`` theta > 0, negative binomial
    (gamma-Poisson). The target sum is the control cells' total ``sum_h exp(mu_h)``, so a
    control cell's values sit near ``log1p(exp(mu))``."""
    total = float(np.exp(mu).sum())
    library = config.library_size * np.exp(
        config.library_size_sd * rng.standard_normal((log_level.shape[0], 1)))
    expected = library * np.exp(np.minimum(log_level.astype(np.float64), 30.0)) / total
    if config.dispersion > 0:
        expected = rng.gamma(config.dispersion, expected / config.dispersion)
    umis = rng.poisson(expected).astype(np.float64)
    depth = np.maximum(umis.sum(axis=1, keepdims=True), 1.0)
    return np.log1p(umis / depth * total).astype(np.float32)
