"""The values a screen must hold: finite, non-negative log-expression, checked in chunks
(also when X stays in the file), with one line naming the file and the first bad value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import DataFormatError
from .backed import DiskMatrix, progress_bar


class _ValueScan:
    """What the value checks need, gathered chunk by chunk: count, non-finite count, min and
    max, and the first :attr:`SAMPLE` values (whole numbers are judged on those)."""

    SAMPLE = 200_000

    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.numeric = np.issubdtype(self.dtype, np.number) or self.dtype == bool
        self.size = 0
        self.n_bad = 0
        self.vmin, self.vmax = np.inf, -np.inf
        self.sample: list[np.ndarray] = []
        self.n_sample = 0

    def add(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        self.size += values.size
        if not self.numeric:
            return
        lo, hi = float(values.min()), float(values.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN or inf somewhere: count them
            self.n_bad += int(values.size - np.count_nonzero(np.isfinite(values)))
        self.vmin, self.vmax = min(self.vmin, lo), max(self.vmax, hi)
        if self.n_sample < self.SAMPLE:
            part = values[: self.SAMPLE - self.n_sample]
            self.sample.append(part)
            self.n_sample += part.size

    def check(self, path: Path) -> None:
        """Raise the first problem found, as :func:`read_perturbseq` documents."""
        if self.size == 0:
            raise DataFormatError(f"expression matrix X of {path} is empty")
        if not self.numeric:
            raise DataFormatError(f"X of {path} holds {self.dtype} values, not numbers; give "
                                  "log-normalised expression")
        if self.n_bad:
            raise DataFormatError(
                f"X of {path} holds {self.n_bad} non-finite value(s) (NaN or infinite); remove "
                "or impute them before use"
            )
        vmin, vmax = self.vmin, self.vmax
        if vmin < 0:
            raise DataFormatError(
                f"X of {path} has negative values (min {vmin:.3g}): it looks scaled or centred; "
                "give log-normalised expression (sc.pp.normalize_total then sc.pp.log1p)"
            )
        sample = np.concatenate(self.sample)
        integral = np.mean(np.equal(np.mod(sample, 1), 0))
        if vmax > 50 or (integral > 0.999 and vmax > 1):
            raise DataFormatError(
                f"X of {path} looks like raw counts or unlogged values (max {vmax:.4g}, "
                f"{100 * integral:.0f}% whole numbers), not log-normalised expression; run "
                "sc.pp.normalize_total(adata) and sc.pp.log1p(adata) first"
            )


def _check_values(X, path: Path) -> None:
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    scan = _ValueScan(values.dtype)
    scan.add(values)
    scan.check(path)


def _check_values_on_disk(matrix: DiskMatrix, rows: np.ndarray, path: Path, *,
                          progress: bool) -> None:
    """:func:`_check_values` of the cells ``rows`` of X on disk, read in chunks."""
    scan = _ValueScan(matrix.dtype)
    keep = None
    if len(rows) != matrix.shape[0] or np.any(rows != np.arange(matrix.shape[0])):
        keep = np.zeros(matrix.shape[0], dtype=bool)
        keep[rows] = True
    with matrix.open() as cells:
        with progress_bar(cells.shape[cells.axis], desc="checking X",
                          unit="cells" if cells.axis == 0 else "genes", progress=progress) as bar:
            for start, stop in cells.spans():
                scan.add(cells.values(start, stop, keep))
                bar.update(stop - start)
    scan.check(path)
