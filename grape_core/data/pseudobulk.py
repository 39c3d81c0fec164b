r"""Pseudo-bulk of a screen: per-condition mean expression, control mean and DE genes.

.. math::
    \bar x_{c,g} = \frac{1}{n_c} \sum_{i \in c} x_{i,g}, \qquad
    \Delta_{c,g} = \bar x_{c,g} - \bar x_{\mathrm{ctrl},g}

Shapes: ``means`` ``(n_perts, n_genes)``, ``control_mean`` ``(n_genes,)``, ``de_idx``
``(n_perts, n_de)``. DE genes are GEARS' stored ranking when the file has one, else the
top ``n_de`` genes by |Welch t| against control (scanpy's ``t-test``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import keys
from .conditions import find_condition, genes_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PseudoBulk:
    """Per-condition mean expression of a screen.

    Attributes
    ----------
    genes
        Measured gene symbols, ``(n_genes,)``; column order of every array.
    conditions
        Canonical perturbation labels (control excluded), sorted, ``(n_conds,)``.
    means
        Mean log-expression per condition, ``(n_conds, n_genes)``.
    control_mean
        Mean log-expression of control cells, ``(n_genes,)``.
    n_cells
        Cells per condition, ``(n_conds,)``; ``n_control`` control cells.
    de_idx
        Indices of the top ``n_de`` DE genes per condition, ``(n_conds, n_de)``.
    """

    genes: tuple[str, ...]
    conditions: tuple[str, ...]
    means: np.ndarray
    control_mean: np.ndarray
    n_cells: np.ndarray
    n_control: int
    de_idx: np.ndarray
    dataset: str = ""
    sha256: str = ""
    de_source: str = "computed"
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _by_genes: dict[frozenset[str], str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.conditions)})
        object.__setattr__(self, "_by_genes", {frozenset(genes_of(c)): c for c in self.conditions})

    def find(self, condition: str) -> str | None:
        """The measured condition that perturbs the same genes as ``condition`` (pair order
        and ``ctrl+A`` / ``A+ctrl`` do not matter), or ``None``.

        Parameters
        ----------
        condition
            A canonical condition (``A+ctrl``, ``A+B``).

        Returns
        -------
        str or None
            The screen's own label of it.
        """
        return self._by_genes.get(frozenset(genes_of(condition)))

    @property
    def shifts(self) -> np.ndarray:
        """``means - control_mean``, ``(n_conds, n_genes)``: computed at each read (for some
        conditions, :meth:`shifts_of`)."""
        return self.means - self.control_mean[None, :]

    def shifts_of(self, conditions) -> np.ndarray:
        """The shifts of ``conditions`` only, ``(len(conditions), n_genes)``.

        Parameters
        ----------
        conditions
            Measured conditions' labels.

        Returns
        -------
        np.ndarray
            Their mean shift from the control mean, float32.
        """
        return self.means[self.rows(conditions)] - self.control_mean[None, :]

    def index(self, condition: str) -> int:
        """The row of ``condition`` in :attr:`means`.

        Parameters
        ----------
        condition
            A measured condition's label.

        Returns
        -------
        int

        Raises
        ------
        KeyError
            Not measured.
        """
        return self._index[condition]

    def rows(self, conditions) -> np.ndarray:
        """The rows of ``conditions`` in :attr:`means`.

        Parameters
        ----------
        conditions
            Measured conditions' labels.

        Returns
        -------
        np.ndarray
            ``(len(conditions),)`` int.
        """
        return np.array([self._index[c] for c in conditions], dtype=int)

    def __contains__(self, condition: str) -> bool:
        return condition in self._index

    @property
    def perturbed_genes(self) -> tuple[str, ...]:
        return tuple(sorted({g for c in self.conditions for g in genes_of(c)}))

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and JSON-able metadata, for safetensors + manifest storage.

        Returns
        -------
        arrays, meta
            ``means`` ``(n_conditions, n_genes)``, ``control_mean`` ``(n_genes,)``, ``n_cells``,
            ``de_idx`` ``(n_conditions, n_de)``; and genes, conditions, control cells, dataset.
        """
        arrays = {
            "means": self.means.astype(np.float32),
            "control_mean": self.control_mean.astype(np.float32),
            "n_cells": self.n_cells.astype(np.int64),
            "de_idx": self.de_idx.astype(np.int64),
        }
        meta = {
            "genes": list(self.genes),
            "conditions": list(self.conditions),
            "n_control": int(self.n_control),
            "dataset": self.dataset,
            "sha256": self.sha256,
            "de_source": self.de_source,
        }
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> "PseudoBulk":
        return cls(
            genes=tuple(meta["genes"]),
            conditions=tuple(meta["conditions"]),
            means=np.asarray(arrays["means"], dtype=np.float32),
            control_mean=np.asarray(arrays["control_mean"], dtype=np.float32),
            n_cells=np.asarray(arrays["n_cells"], dtype=np.int64),
            n_control=int(meta["n_control"]),
            de_idx=np.asarray(arrays["de_idx"], dtype=np.int64),
            dataset=meta.get("dataset", ""),
            sha256=meta.get("sha256", ""),
            de_source=meta.get("de_source", "computed"),
        )


def _group_moments(adata, groups: list[str], *, chunk_size: int | None = None,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group count ``(n_groups,)``, mean and unbiased variance ``(n_groups, n_genes)``.

    One pass over X in chunks (:func:`~grape_core.data.backed.cell_matrix`: in memory or on
    disk). Sums of ``x`` and ``x**2`` are float64 and taken in cell order (``np.add.at``), so
    the result does not depend on the chunks: the same, bit for bit, for any ``chunk_size``
    and for a screen in memory or on disk.
    """
    from .backed import cell_matrix, matrix_codes, progress_bar

    codes = pd.Categorical(adata.obs[keys.CONDITION].astype(str), categories=groups).codes
    n_groups, n_genes = len(groups), adata.n_vars
    s1 = np.zeros(n_groups * n_genes)
    s2 = np.zeros(n_groups * n_genes)
    with cell_matrix(adata) as (cells, rows):
        codes = matrix_codes(codes, rows, cells.shape[0])
        spans = cells.spans(chunk_size)
        unit = "cells" if cells.axis == 0 else "genes"
        with progress_bar(cells.shape[cells.axis], desc="pseudo-bulk", unit=unit,
                          progress=progress) as bar:
            for start, stop in spans:
                _accumulate(s1, s2, codes, cells.block(start, stop), start, n_genes=n_genes,
                            axis=cells.axis, dtype=cells.dtype)
                bar.update(stop - start)
    n = np.bincount(codes[codes >= 0], minlength=n_groups).astype(np.float64)
    s1 = s1.reshape(n_groups, n_genes)
    s2 = s2.reshape(n_groups, n_genes)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n[:, None]
        var = (s2 - n[:, None] * mean**2) / (n[:, None] - 1)
    var = np.where(np.isfinite(var), np.maximum(var, 0.0), 0.0)
    return n, mean, var


def _accumulate(s1: np.ndarray, s2: np.ndarray, codes: np.ndarray, block, start: int, *,
                n_genes: int, axis: int, dtype) -> None:
    """Add one chunk's ``x`` and ``x**2`` into the flat ``(n_groups * n_genes)`` sums.

    ``codes``: group of each matrix row (-1: none). ``block``: rows ``start:`` (``axis`` 0,
    CSR or dense) or columns ``start:`` (``axis`` 1, CSC) of X. Values are cast to ``dtype``
    (the screen's in-memory type), then to float64.
    """
    if sp.issparse(block):
        lengths = np.diff(block.indptr)
        if axis == 0:
            group = np.repeat(codes[start:start + block.shape[0]], lengths)
            column = block.indices.astype(np.int64)
        else:
            group = codes[block.indices]
            column = np.repeat(np.arange(start, start + block.shape[1], dtype=np.int64), lengths)
        values = block.data
        keep = group >= 0
        if not keep.all():
            group, column, values = group[keep], column[keep], values[keep]
        flat = group * n_genes + column
        x = values.astype(dtype, copy=False).astype(np.float64)
        np.add.at(s1, flat, x)
        np.add.at(s2, flat, x * x)
        return
    group = codes[start:start + block.shape[0]]
    keep = group >= 0
    x = np.asarray(block)[keep].astype(dtype, copy=False).astype(np.float64)
    np.add.at(s1.reshape(-1, n_genes), group[keep], x)
    np.add.at(s2.reshape(-1, n_genes), group[keep], x * x)


def rank_de_genes(
    mean: np.ndarray, var: np.ndarray, n: np.ndarray, ctrl_mean: np.ndarray,
    ctrl_var: np.ndarray, n_ctrl: int, *, n_de: int = 20,
) -> np.ndarray:
    """Top DE genes per group by |Welch t| against control (scanpy ``t-test``, ``rankby_abs``).

    The t statistics are :func:`scipy.stats.ttest_ind_from_stats` (``equal_var=False``),
    vectorised over groups and genes: the Welch test of ``scipy.stats.ttest_ind`` computed
    from the group moments, so the cells are read once. An undefined t (both variances
    zero) counts as 0. Groups are ranked in blocks, so memory stays small with thousands
    of groups.

    Parameters are per-group moments ``(n_groups, n_genes)`` (``var`` unbiased) and control
    moments ``(n_genes,)``. Returns indices ``(n_groups, min(n_de, n_genes))``, strongest
    first.
    """
    from scipy.stats import ttest_ind_from_stats

    k = min(n_de, mean.shape[1])
    n = np.asarray(n)
    out = np.zeros((mean.shape[0], k), dtype=np.int64)
    step = max(1, _DE_BLOCK // max(mean.shape[1], 1))
    for a in range(0, mean.shape[0], step):
        b = a + step
        with np.errstate(invalid="ignore", divide="ignore"):
            t, _ = ttest_ind_from_stats(mean[a:b], np.sqrt(var[a:b]), n[a:b, None],
                                        ctrl_mean[None, :], np.sqrt(ctrl_var)[None, :], n_ctrl,
                                        equal_var=False)
        t = np.asarray(t, dtype=np.float64)
        t[~np.isfinite(t)] = 0.0
        out[a:b] = np.argsort(-np.abs(t), axis=1, kind="stable")[:, :k]
    return out


_DE_BLOCK = 2_000_000
"""Group x gene t statistics computed at once by :func:`rank_de_genes`."""


def _condition_from_de_key(name: str, cell_types: list[str], raw_to_condition: dict[str, str]) -> str | None:
    """``K562(?)_HSPA5+ctrl_1+1`` -> ``HSPA5+ctrl``; cell types may contain ``_``; a pair
    stored in the other order than in ``obs`` is still found."""
    for ct in cell_types:
        if name.startswith(ct + "_"):
            name = name[len(ct) + 1:]
            break
    else:
        name = name.split("_", 1)[-1]
    raw = name.rsplit("_", 1)[0] if "_" in name else name
    if raw in raw_to_condition:
        return raw_to_condition[raw]
    try:
        return find_condition(raw, set(raw_to_condition.values()))
    except Exception:  # noqa: BLE001 - an unparseable key is simply not ours
        return None


def _de_from_uns(adata, conditions: list[str], n_de: int) -> dict[str, np.ndarray]:
    """DE indices stored by GEARS in ``uns['rank_genes_groups_cov_all']``, keyed by condition."""
    stored = adata.uns.get(keys.DE_KEY)
    if not isinstance(stored, dict) or not stored:
        return {}
    lookup: dict[str, int] = {}
    var = adata.var  # an AnnData not read by read_perturbseq: its index stands in
    ids = var["gene_id"] if "gene_id" in var else var.index
    symbols = var[keys.GENE_NAME] if keys.GENE_NAME in var else var.index
    for i, (gid, sym) in enumerate(zip(ids, symbols)):
        lookup.setdefault(str(gid), i)
        lookup.setdefault(str(sym), i)
    name_to_condition: dict[str, str] = {}
    if keys.CONDITION_NAME in adata.obs:
        pairs = adata.obs[[keys.CONDITION_NAME, keys.CONDITION]].astype(str).drop_duplicates()
        name_to_condition = dict(zip(pairs[keys.CONDITION_NAME], pairs[keys.CONDITION]))
    raw = keys.CONDITION_RAW if keys.CONDITION_RAW in adata.obs else keys.CONDITION
    raw_to_condition = dict(
        adata.obs[[raw, keys.CONDITION]].astype(str).drop_duplicates().to_numpy()
    )
    cell_types = (sorted(map(str, adata.obs[keys.CELL_TYPE].astype(str).unique()), key=len, reverse=True)
                  if keys.CELL_TYPE in adata.obs else [])
    out: dict[str, np.ndarray] = {}
    for name, genes in stored.items():
        cond = name_to_condition.get(name)
        if cond is None:  # GEARS form: f"{cell_type}_{condition}_{dose}"
            cond = _condition_from_de_key(str(name), cell_types, raw_to_condition)
        if cond is None or cond not in conditions:
            continue
        idx = [lookup[str(g)] for g in list(genes) if str(g) in lookup][:n_de]
        if len(idx) == min(n_de, adata.n_vars):
            out[cond] = np.asarray(idx, dtype=np.int64)
    return out


def pseudobulk(adata, *, n_de: int = 20, chunk_size: int | None = None,
               progress: bool = False) -> PseudoBulk:
    """Per-condition mean expression, control mean, cell counts and DE genes.

    X is read once, in chunks: from memory, or from the file for a screen read with
    ``read_perturbseq(path, backed=True)`` (a file larger than memory); the result is the
    same either way (:mod:`grape_core.data.backed`).

    Parameters
    ----------
    adata
        Output of :func:`read_perturbseq` (``n_cells × n_genes``), X in memory or on disk;
        or any AnnData whose ``obs['condition']`` holds canonical labels (GEARS' files),
        also one opened by anndata in backed mode (``anndata.read_h5ad(path, backed="r")``).
    n_de
        DE genes per condition (GEARS: 20). Taken from ``uns['rank_genes_groups_cov_all']``
        when present, otherwise ranked by |Welch t| against control as scanpy's default.
    chunk_size
        Cells per chunk (genes per chunk for X stored by column); ``None``: about
        :data:`~grape_core.data.backed.CHUNK_VALUES` stored values per chunk.
    progress
        A tqdm bar on stderr while X is read.

    Returns
    -------
    :class:`PseudoBulk` with ``means`` ``(n_conds, n_genes)`` and ``de_idx`` ``(n_conds, n_de)``.
    """
    labels = adata.obs[keys.CONDITION].astype(str)
    conditions = sorted(set(labels.unique()) - {keys.CTRL})
    groups = [keys.CTRL, *conditions]
    n, mean, var = _group_moments(adata, groups, chunk_size=chunk_size, progress=progress)
    de_idx = rank_de_genes(mean[1:], var[1:], n[1:], mean[0], var[0], int(n[0]), n_de=n_de)
    stored = _de_from_uns(adata, conditions, n_de)
    for i, cond in enumerate(conditions):
        if cond in stored:
            de_idx[i] = stored[cond]
    source = adata.uns.get(keys.UNS_SOURCE, {})
    return PseudoBulk(
        genes=tuple(adata.var_names.astype(str)),
        conditions=tuple(conditions),
        means=mean[1:].astype(np.float32),
        control_mean=mean[0].astype(np.float32),
        n_cells=n[1:].astype(np.int64),
        n_control=int(n[0]),
        de_idx=de_idx.astype(np.int64),
        dataset=str(source.get("name", "")),
        sha256=str(source.get("sha256", "")),
        de_source="stored" if len(stored) == len(conditions) else ("mixed" if stored else "computed"),
    )

