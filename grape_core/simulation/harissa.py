"""Screens from a simulator the project did not write: harissa's bursting gene-network model
(Herbach et al., BMC Systems Biology 2017; the ``harissa`` package).

In harissa every gene switches its promoter on and off; an "on" promoter makes mRNA in
bursts, mRNA makes protein, and a gene's switching-on rate is a sigmoid of its basal level
and of its regulators' proteins:

.. math::
    k_{on,j} = \\frac{K_{0,j} + K_{1,j} \\Phi_j}{1 + \\Phi_j}, \\qquad
    \\Phi_j = \\exp\\Big(\\beta_j + \\sum_i \\theta_{ij} P_i\\Big),

simulated exactly, cell by cell, as a piecewise-deterministic Markov process (PDMP). Nothing
of it is GRAPE's: regulation saturates through the sigmoid, expression is bursty, and a
cell's state is a draw from a stochastic process, not a steady state plus noise.

What this module adds around it, and nothing else:

- the network is the planted one (:func:`~grape_core.simulation.network._draw_network`),
  ``theta[source, target] = interaction * W[target, source] / max|W|``, basal levels
  ``beta ~ U(basal_range)``;
- a CRISPRi knock-down of efficiency ``e`` lowers the gene's basal level by
  ``knockdown_strength * e``, so its promoter switches on less often (harissa normalises
  protein levels by the gene's maximal rate, so a change of its kinetic rates would not
  reach its targets);
- proteins live twice as long as mRNA (harissa's default is five times: the same steady
  state, reached sooner);
- each cell is simulated from an empty state for ``hours`` hours and its mRNA levels are
  drawn as UMI counts (a Poisson draw with a capture rate set so that the median control
  cell has ``library_size`` UMIs), normalised to the control cells' mean total and log1p'd,
  as GEARS files are.

The truth (``shifts``) is the mean-field limit of the same model (harissa's ODE
approximation), log1p-normalised like the cells: a deterministic reference, not the mean of
the stochastic cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import keys
from ..errors import GrapeError
from .config import SimulationConfig


_NUMBA_SEED = None


def _seed_numba(seed: int) -> None:
    """harissa's fast simulator draws from numba's own generator, which numpy's seed does
    not reach: seed it from inside a compiled function (compiled once per process)."""
    global _NUMBA_SEED
    if _NUMBA_SEED is None:
        from numba import njit

        @njit
        def _seed(value):  # pragma: no cover - compiled
            np.random.seed(value)

        _NUMBA_SEED = _seed
    _NUMBA_SEED(seed)


def harissa_screen(config: SimulationConfig, W: sp.csr_matrix, members: list[tuple[int, ...]],
                   efficiency: np.ndarray, conditions: tuple[str, ...], names: np.ndarray,
                   rng: np.random.Generator, *, progress: bool = False):
    """Cells and mean-field truth of a knock-down screen under harissa's model.

    Parameters
    ----------
    W
        ``(n_genes, n_genes)`` planted network, ``W[target, source]``.
    members, efficiency
        Each condition's perturbed genes, and each gene's knock-down efficiency.

    Returns
    -------
    adata, shifts ``(n_conditions, n_genes)`` float32 (mean field), and the control cells'
    mean-field level ``(n_genes,)`` (log1p-normalised).
    """
    try:
        from harissa import NetworkModel
    except ImportError as exc:  # pragma: no cover - a pinned requirement
        raise GrapeError("the harissa simulator needs the 'harissa' package; install the "
                         "project's requirements") from exc
    import anndata
    from tqdm.auto import tqdm

    n = W.shape[0]
    model = NetworkModel(n)
    # proteins live twice as long as mRNA (harissa's default: five times); the steady state
    # is the same, reached in fewer simulated events
    model.d[1] = model.d[0] / 2.0
    biggest = float(np.abs(W.data).max()) if W.nnz else 1.0
    inter = np.zeros((n + 1, n + 1))
    coo = W.tocoo()
    inter[coo.col + 1, coo.row + 1] = config.harissa_interaction * coo.data / biggest
    model.inter = inter
    basal = np.zeros(n + 1)
    basal[1:] = rng.uniform(*config.harissa_basal_range, size=n)
    hours = np.array([config.harissa_hours - 1.0, config.harissa_hours])

    def with_knockdown(genes: tuple[int, ...]) -> np.ndarray:
        b = basal.copy()
        for g in genes:
            b[g + 1] -= config.knockdown_strength * efficiency[g]
        return b

    # every cell from an empty state; numba's generator seeded from the screen's seed
    _seed_numba(int(rng.integers(2**31 - 1)))
    groups = [((), config.n_control_cells)] + [(m, config.cells_per_condition) for m in members]
    total = sum(count for _, count in groups)
    mrna = np.empty((total, n), dtype=np.float64)
    mean_field = np.empty((len(groups), n), dtype=np.float64)
    row = 0
    bar = tqdm(total=total, desc="cells (harissa)", unit="cell", disable=not progress,
               leave=False)
    for k, (genes, count) in enumerate(groups):
        model.basal = with_knockdown(genes)
        mean_field[k] = model.simulate_ode(hours).m[-1]
        for _ in range(count):
            mrna[row] = model.simulate(hours, use_numba=True).m[-1]
            row += 1
            bar.update()
    bar.close()
    if not np.isfinite(mrna).all():
        raise GrapeError("the harissa simulation gave non-finite mRNA levels; lower the "
                         "harissa_interaction setting (in a --config file)")
    control_total = float(np.median(mrna[: config.n_control_cells].sum(axis=1)))
    if control_total <= 0:
        raise GrapeError("the harissa control cells express nothing; raise the "
                         "harissa_basal_range setting (in a --config file)")
    capture = config.library_size / control_total
    umis = rng.poisson(mrna * capture).astype(np.float64)
    target = float(umis[: config.n_control_cells].sum(axis=1).mean())
    depth = np.maximum(umis.sum(axis=1, keepdims=True), 1.0)
    X = np.log1p(umis / depth * target).astype(np.float32)

    field = np.log1p(mean_field * capture / np.maximum(
        mean_field.sum(axis=1, keepdims=True) * capture, 1e-12) * target)
    shifts = (field[1:] - field[0]).astype(np.float32)

    labels = np.repeat(np.asarray([keys.CTRL, *conditions], dtype=object),
                       [count for _, count in groups])
    sparse_x = np.count_nonzero(X == 0) > 0.5 * X.size
    obs = pd.DataFrame({
        keys.CONDITION: pd.Categorical(labels, categories=[keys.CTRL, *conditions]),
        keys.CELL_TYPE: pd.Categorical([config.cell_type] * total),
    }, index=pd.Index([f"cell{i}" for i in range(total)]))
    var = pd.DataFrame({keys.GENE_NAME: names.astype(str)}, index=pd.Index(names.astype(str)))
    adata = anndata.AnnData(X=sp.csr_matrix(X) if sparse_x else X, obs=obs, var=var)
    return adata, bool(sparse_x), shifts, field[0].astype(np.float32)
