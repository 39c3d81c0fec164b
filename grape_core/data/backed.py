"""A screen's expression matrix read in chunks, in memory or from an ``.h5ad`` on disk.

A screen too large for memory is read with ``read_perturbseq(path, backed=True)`` (or
automatically when its X would take more than :func:`stream_threshold` bytes): obs, var and
the stored DE genes are read, every check of X streams over the file, and the AnnData
returned has no ``X`` (``adata.X is None``). Instead it carries

``uns['grape_backed']``  where X lies (:class:`DiskMatrix` as a dict): file, layout, shape,
                         dtype, and the file's size and modification time
``obs['grape_row']``     the row of each cell in that file (subsetting the AnnData keeps it
                         right)

What needs expression values reads them through :func:`cell_matrix`, in chunks of about
:data:`CHUNK_VALUES` stored values, whether X is in memory or on disk: the pseudo-bulk and DE
genes (:func:`~grape_core.data.pseudobulk.pseudobulk`), the value checks of the reader, and
:func:`control_cells` (a bounded, seeded sample of control cells, for the co-expression
prior). Memory is then a few chunks plus what the result needs, whatever the number of cells.

Values read from disk are rounded to float32 first, as :func:`~grape_core.data.read.
read_perturbseq` stores X in memory: a backed screen gives the same numbers as the same
screen read into memory.

Layouts: CSR and dense X are read by blocks of cells, CSC X by blocks of genes (anndata's
``csr_matrix`` / ``csc_matrix`` groups, the legacy ``h5sparse_format`` ones, or a 2-D
dataset).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from .. import keys
from ..errors import DataFormatError

log = logging.getLogger(__name__)

STREAM_ENV = "GRAPE_STREAM_ABOVE_GB"
"""Read X in chunks from the file when it would take more than this many GB (2**30 bytes)
in memory; ``0``: always. Default: a quarter of the memory available when a file is read."""
CHUNK_VALUES = 4_000_000
"""Stored values per chunk (about 100 MB of working memory for the pseudo-bulk)."""


def stream_threshold() -> float:
    """Bytes of X in memory above which :func:`~grape_core.data.read.read_perturbseq` reads X
    in chunks (``backed=None``): ``GRAPE_STREAM_ABOVE_GB`` GB, else a quarter of the memory
    available now (reading a matrix into memory takes about three times its size at peak).

    Raises
    ------
    GrapeError
        ``GRAPE_STREAM_ABOVE_GB`` is not a number >= 0.
    """
    from ..settings import settings

    size = settings.stream_above
    if size is not None:
        return size
    import psutil

    return psutil.virtual_memory().available / 4


# ----------------------------------------------------------------------------------------
# X on disk
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiskMatrix:
    """Where and how a screen's X is stored in an ``.h5ad`` file.

    Attributes
    ----------
    path
        The file.
    layout
        ``csr``, ``csc`` or ``dense``.
    shape
        ``(n_cells, n_genes)`` of the file (before any subset).
    dtype
        Stored value type (``float32``, ``float64``, ...).
    nnz
        Stored values (``n_cells * n_genes`` when dense).
    file_size, file_mtime_ns
        The file when it was read: a changed file is refused (:meth:`open`).
    """

    path: str
    layout: Literal["csr", "csc", "dense"]
    shape: tuple[int, int]
    dtype: str
    nnz: int
    file_size: int
    file_mtime_ns: int

    @classmethod
    def inspect(cls, path: str | Path, handle=None) -> "DiskMatrix | None":
        """The X of ``path`` (``None`` when the file has none); reads only metadata.

        ``handle``: an open ``h5py.File`` of ``path`` (else the file is opened here).

        Raises
        ------
        ValueError
            X is stored in a form that is not a dense or CSR/CSC matrix.
        """
        import h5py

        if handle is None:
            with h5py.File(path, "r") as fh:
                return cls.inspect(path, fh)
        stat = Path(path).stat()
        node = handle.get("X")
        if node is None:
            return None
        if isinstance(node, h5py.Dataset):
            if node.ndim != 2:
                raise ValueError(f"X is a {node.ndim}-D array, not cells x genes")
            layout, shape, dtype, nnz = "dense", tuple(node.shape), node.dtype, int(node.size)
        else:
            attrs = node.attrs
            kind = attrs.get("encoding-type", attrs.get("h5sparse_format", ""))
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            layout = {"csr_matrix": "csr", "csc_matrix": "csc", "csr": "csr", "csc": "csc"}.get(kind)
            shape = attrs.get("shape", attrs.get("h5sparse_shape"))
            if layout is None or shape is None or not {"data", "indices", "indptr"} <= set(node):
                raise ValueError(f"X is stored as {kind or 'an unknown group'}, not a dense, "
                                 "CSR or CSC matrix")
            shape = tuple(int(s) for s in shape)
            dtype, nnz = node["data"].dtype, int(node["data"].shape[0])
        return cls(path=str(Path(path).resolve()), layout=layout, shape=(int(shape[0]), int(shape[1])),
                   dtype=str(dtype), nnz=nnz, file_size=int(stat.st_size),
                   file_mtime_ns=int(stat.st_mtime_ns))

    @property
    def memory_bytes(self) -> int:
        """Bytes X takes once read into memory as float32 (values, plus indices when sparse)."""
        if self.layout == "dense":
            return 4 * self.nnz
        index = 4 if max(self.shape) < 2**31 and self.nnz < 2**31 else 8
        return (4 + index) * self.nnz + index * (self.shape[0 if self.layout == "csr" else 1] + 1)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "DiskMatrix":
        values = dict(values)
        values["shape"] = tuple(int(s) for s in values["shape"])
        return cls(**{k: (v.item() if isinstance(v, np.generic) else v) for k, v in values.items()})

    @contextmanager
    def open(self) -> Iterator["CellMatrix"]:
        """The matrix, readable in chunks while the context lasts.

        Raises
        ------
        DataFormatError
            The file is gone or changed since it was read.
        """
        import h5py

        path = Path(self.path)
        try:
            stat = path.stat()
        except OSError:
            raise DataFormatError(f"{path} is gone since it was read; the screen's expression "
                                  "values are read from it: put it back or read another file") from None
        if (stat.st_size, stat.st_mtime_ns) != (self.file_size, self.file_mtime_ns):
            raise DataFormatError(f"{path} changed since it was read; read it again")
        with h5py.File(path, "r") as fh:
            yield _DiskCells(self, fh["X"])


# ----------------------------------------------------------------------------------------
# chunks of a matrix, in memory or on disk
# ----------------------------------------------------------------------------------------
class CellMatrix:
    """A matrix ``(n_cells, n_genes)`` read in chunks.

    ``axis`` 0: chunks are blocks of cells (CSR or dense rows); ``axis`` 1: blocks of genes
    (CSC columns, every cell). ``dtype``: the value type of the screen in memory (float32 for
    a file read by :func:`~grape_core.data.read.read_perturbseq`); ``raw_dtype``: as stored.
    """

    shape: tuple[int, int]
    axis: int
    dtype: np.dtype
    raw_dtype: np.dtype

    # ---- to implement
    def _offsets(self) -> np.ndarray | None:
        """``indptr`` along ``axis`` (sparse) or ``None`` (dense)."""
        raise NotImplementedError

    def block(self, start: int, stop: int):
        """Rows (``axis`` 0) or columns (``axis`` 1) ``start:stop``: CSR, CSC or a dense
        array, in the stored dtype."""
        raise NotImplementedError

    def _values(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Stored values of ``block(start, stop)`` in storage order, and the row of each
        (``None`` for axis 0: rows follow from the offsets)."""
        raise NotImplementedError

    # ---- shared
    @property
    def is_sparse(self) -> bool:
        return self._offsets() is not None

    def spans(self, chunk_size: int | None = None) -> list[tuple[int, int]]:
        """``(start, stop)`` along ``axis``: ``chunk_size`` rows (or columns) each, or about
        :data:`CHUNK_VALUES` stored values each (at least one row or column)."""
        n = self.shape[self.axis]
        if chunk_size is not None:
            if chunk_size < 1:
                raise ValueError(f"chunk_size={chunk_size}: must be >= 1")
            return [(a, min(a + chunk_size, n)) for a in range(0, n, chunk_size)]
        offsets = self._offsets()
        if offsets is None:
            step = max(1, CHUNK_VALUES // max(self.shape[1 - self.axis], 1))
            return [(a, min(a + step, n)) for a in range(0, n, step)]
        out, start = [], 0
        while start < n:
            end = int(offsets[start]) + CHUNK_VALUES  # a Python int: no int32 overflow
            stop = int(np.searchsorted(offsets, end, side="right")) - 1
            stop = min(max(stop, start + 1), n)
            out.append((start, stop))
            start = stop
        return out

    def values(self, start: int, stop: int, keep: np.ndarray | None = None) -> np.ndarray:
        """Stored values of the chunk ``start:stop`` in storage order, only those of the cells
        where ``keep`` (``(n_cells,)`` bool; ``None``: all), in the stored dtype."""
        values, rows = self._values(start, stop)
        if keep is None:
            return values
        if self.axis == 1:
            return values[keep[rows]]
        offsets = self._offsets()
        if offsets is None:
            return values.reshape(stop - start, -1)[keep[start:stop]].ravel()
        lengths = np.diff(offsets[start:stop + 1])
        return values[np.repeat(keep[start:stop], lengths)]

    def take_rows(self, rows: np.ndarray):
        """Cells ``rows`` (increasing), as CSR (sparse) or a dense array, in :attr:`dtype`."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and np.any(np.diff(rows) <= 0):
            raise ValueError("rows must be increasing")
        pieces = []
        if self.axis == 1:
            for start, stop in self.spans():
                pieces.append(sp.csc_matrix(self.block(start, stop))[rows])
            out = sp.hstack(pieces, format="csr") if pieces else sp.csr_matrix((len(rows), 0))
        else:
            for start, stop in self.spans():
                lo, hi = np.searchsorted(rows, [start, stop])
                if lo == hi:
                    continue
                pieces.append(self._rows(start, stop, rows[lo:hi]))
            if self.is_sparse:
                out = (sp.vstack(pieces, format="csr") if pieces
                       else sp.csr_matrix((0, self.shape[1]), dtype=self.raw_dtype))
            else:
                out = np.concatenate(pieces) if pieces else np.zeros((0, self.shape[1]), self.raw_dtype)
        return out.astype(self.dtype, copy=False)

    def _rows(self, start: int, stop: int, rows: np.ndarray):
        """Rows ``rows`` (absolute, inside ``start:stop``) of an axis-0 chunk."""
        block = self.block(start, stop)
        return block[rows - start]


class _MemoryCells(CellMatrix):
    """A matrix already in memory (``numpy`` or ``scipy.sparse``)."""

    def __init__(self, X) -> None:
        if sp.issparse(X):
            X = X if X.format in ("csr", "csc") else X.tocsr()
        else:
            X = np.asarray(X)
        self.X = X
        self.shape = (int(X.shape[0]), int(X.shape[1]))
        self.axis = 1 if sp.issparse(X) and X.format == "csc" else 0
        self.dtype = self.raw_dtype = np.dtype(X.dtype)

    def _offsets(self):
        return self.X.indptr if sp.issparse(self.X) else None

    def block(self, start, stop):
        return self.X[:, start:stop] if self.axis == 1 else self.X[start:stop]

    def _values(self, start, stop):
        if not sp.issparse(self.X):
            return self.X[start:stop].ravel(), None
        lo, hi = self.X.indptr[start], self.X.indptr[stop]
        return self.X.data[lo:hi], (self.X.indices[lo:hi] if self.axis == 1 else None)

    def take_rows(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        out = self.X[rows]
        return out.tocsr() if sp.issparse(out) else out


class _DiskCells(CellMatrix):
    """X of an open ``.h5ad`` (a 2-D dataset or a CSR / CSC group)."""

    def __init__(self, matrix: DiskMatrix, node) -> None:
        self.matrix = matrix
        self.node = node
        self.shape = matrix.shape
        self.axis = 1 if matrix.layout == "csc" else 0
        self.raw_dtype = np.dtype(matrix.dtype)
        self.dtype = np.dtype(np.float32)
        self._indptr = (np.asarray(node["indptr"][:], dtype=np.int64)
                        if matrix.layout != "dense" else None)

    def _offsets(self):
        return self._indptr

    def block(self, start, stop):
        if self._indptr is None:
            return self.node[start:stop]
        lo, hi = int(self._indptr[start]), int(self._indptr[stop])
        data = self.node["data"][lo:hi]
        indices = self.node["indices"][lo:hi]
        indptr = self._indptr[start:stop + 1] - lo
        if self.axis == 1:
            return sp.csc_matrix((data, indices, indptr), shape=(self.shape[0], stop - start))
        return sp.csr_matrix((data, indices, indptr), shape=(stop - start, self.shape[1]))

    def _values(self, start, stop):
        if self._indptr is None:
            return self.node[start:stop].ravel(), None
        lo, hi = int(self._indptr[start]), int(self._indptr[stop])
        rows = self.node["indices"][lo:hi] if self.axis == 1 else None
        return self.node["data"][lo:hi], rows

    def _rows(self, start, stop, rows):
        if len(rows) * 8 >= stop - start:  # many of the chunk's cells: read it whole
            return super()._rows(start, stop, rows)
        # a few cells: read each run of consecutive cells on its own
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        pieces = [self.block(int(run[0]), int(run[-1]) + 1) for run in np.split(rows, breaks)]
        return sp.vstack(pieces, format="csr") if self._indptr is not None else np.concatenate(pieces)


# ----------------------------------------------------------------------------------------
# the matrix of an AnnData
# ----------------------------------------------------------------------------------------
def is_backed(adata) -> bool:
    """Whether ``adata``'s X is read from a file: a screen read with ``backed=True``, or an
    AnnData opened by anndata in backed mode."""
    return keys.UNS_BACKED in adata.uns or bool(getattr(adata, "isbacked", False))


@contextmanager
def cell_matrix(adata) -> Iterator[tuple[CellMatrix, np.ndarray | None]]:
    """The expression matrix of ``adata`` readable in chunks, and the matrix row of each of
    its cells (``None``: row ``i`` is cell ``i``).

    Works for X in memory, for a screen read with ``read_perturbseq(..., backed=True)`` and
    for an AnnData opened by anndata in backed mode (``anndata.read_h5ad(path,
    backed="r")``, not a view of one).

    Raises
    ------
    ValueError
        ``adata`` has no X, or is a view of an anndata-backed AnnData.
    DataFormatError
        The file behind a backed screen is gone or changed.
    """
    record = adata.uns.get(keys.UNS_BACKED)
    if record is not None:
        if keys.FILE_ROW not in adata.obs:
            raise ValueError(f"adata.uns[{keys.UNS_BACKED!r}] without obs[{keys.FILE_ROW!r}]: "
                             "read the screen again with read_perturbseq(..., backed=True)")
        rows = adata.obs[keys.FILE_ROW].to_numpy(dtype=np.int64)
        with DiskMatrix.from_dict(record).open() as cells:
            yield cells, rows
        return
    if getattr(adata, "isbacked", False):
        if adata.is_view:
            raise ValueError("a view of an AnnData opened in backed mode: read the file with "
                             "grape_core.read_perturbseq(path, backed=True) and subset that")
        matrix = DiskMatrix.inspect(adata.filename)
        if matrix is None:
            raise ValueError(f"{adata.filename} has no expression matrix X")
        with matrix.open() as cells:
            cells.dtype = cells.raw_dtype  # anndata's own AnnData: values as stored
            yield cells, None
        return
    if adata.X is None:
        raise ValueError("adata has no expression matrix X; read the screen with "
                         "grape_core.read_perturbseq")
    yield _MemoryCells(adata.X), None


def matrix_codes(codes: np.ndarray, rows: np.ndarray | None, n_rows: int) -> np.ndarray:
    """Per-cell integer labels moved to matrix rows: ``out[rows[i]] = codes[i]``, -1 for rows
    of no cell. ``rows`` ``None``: ``codes`` as they are.

    Raises
    ------
    ValueError
        A matrix row that holds two cells (an AnnData subset with repeated cells).
    """
    codes = np.asarray(codes, dtype=np.int64)
    if rows is None:
        return codes
    out = np.full(n_rows, -1, dtype=np.int64)
    out[rows] = codes
    if len(rows) != len(np.unique(rows)):
        raise ValueError("some cells appear twice in the AnnData; subset it without repeats")
    return out


def progress_bar(total: int, *, desc: str, unit: str, progress: bool):
    """A tqdm bar on stderr (off unless ``progress``; ``TQDM_DISABLE`` is respected)."""
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not progress,
                file=sys.stderr, mininterval=0.5, leave=False)


# ----------------------------------------------------------------------------------------
# control cells for the co-expression prior
# ----------------------------------------------------------------------------------------
def sample_rows(n: int, max_rows: int, seed: int) -> np.ndarray:
    """Positions of at most ``max_rows`` of ``n`` rows: all of them, or a seeded sample
    without replacement, in their original order."""
    if n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def control_cells(adata, *, max_cells: int | None = None, seed: int = 0):
    """Expression of the control cells (``obs['condition'] == 'ctrl'``), at most
    ``max_cells`` of them (a seeded sample, in cell order), read in chunks when X is on disk.

    The sample is :func:`sample_rows`, which :func:`~grape_core.knowledge.build.build_gene_knowledge`
    draws too, so the gene knowledge of a screen is the same whether it is in memory or on
    disk.

    Returns
    -------
    ``(n_sampled, n_genes)`` CSR (sparse X) or array (dense X), float32 when read from
    disk; ``None`` when there are no control cells.
    """
    ctrl = np.flatnonzero((adata.obs[keys.CONDITION].astype(str) == keys.CTRL).to_numpy())
    if len(ctrl) == 0:
        return None
    if max_cells is not None:
        ctrl = ctrl[sample_rows(len(ctrl), max_cells, seed)]
    with cell_matrix(adata) as (cells, rows):
        if rows is None:
            return cells.take_rows(ctrl)
        wanted = rows[ctrl]
        order = np.argsort(wanted, kind="stable")
        out = cells.take_rows(wanted[order])
        return out[np.argsort(order, kind="stable")] if np.any(np.diff(order) < 0) else out
