"""Read and validate Perturb-seq ``.h5ad`` files; pseudo-bulk and DE genes.

The "setup" step of the project (as ``setup_anndata`` is in scvi-tools): whatever the
source layout (GEARS, PerturBench / scPerturb), :func:`read_perturbseq` returns an AnnData
in one standard form, or raises a :class:`~grape_core.errors.DataFormatError` that names the
file, the column or the value and says what to do. Local files only: no torch and no
network here (a registry name is resolved, and downloaded, by :mod:`.datasets`).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import keys
from ..config import DataConfig
from ..settings import GB
from ..errors import ConditionError, DataFormatError, GrapeError
from ..io import sha256_file
from .backed import STREAM_ENV, DiskMatrix, stream_threshold
from .conditions import canonical_map, genes_of
from .values import _check_values, _check_values_on_disk

log = logging.getLogger(__name__)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def read(source: str | Path, **kwargs):
    """Read a Perturb-seq screen from a local file: a ``.h5ad`` or a GEARS dataset folder.
    Reading never downloads: a public dataset is downloaded by
    :func:`~grape_core.data.datasets.download` (the only network access), then read.

    Parameters
    ----------
    source
        The file or folder.
    **kwargs
        As :func:`read_perturbseq` (``condition_key``, ``control_label``, ``subset``,
        ``backed``...).

    Returns
    -------
    AnnData
        ``n_cells × n_genes`` in the standard form (:func:`read_perturbseq`).

    Raises
    ------
    DataFormatError
        Nothing there (a public dataset's name says how to download it), or a file that
        fails the checks.

    Examples
    --------
    >>> import grape_core as gc
    >>> adata = gc.read(gc.download("adamson"))  # doctest: +SKIP
    """
    path = Path(source).expanduser()
    text = str(source)
    if not path.exists() and not any(sep in text for sep in ("/", "\\")) and not path.suffix:
        raise DataFormatError(f"file not found: {text}; reading never downloads: for a public "
                              f"dataset, download it first (grape_core.download({text!r}) "
                              "returns the file to read), or give the path of a .h5ad file")
    return read_perturbseq(path, **kwargs)


def local_file(source: str | Path) -> Path:
    """The ``.h5ad`` file of ``source``: the file itself, or ``perturb_processed.h5ad`` in a
    GEARS dataset folder.

    Raises
    ------
    DataFormatError
        Nothing there, or a folder without that file.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        candidate = path / keys.GEARS_H5AD
        if candidate.exists():
            return candidate
        raise DataFormatError(f"{path} is a folder; give the .h5ad file inside it")
    if not path.exists():
        raise DataFormatError(f"file not found: {source}; give the path of a .h5ad file")
    return path


def _check_hdf5(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head[:8] == HDF5_SIGNATURE:
        return
    hint = ""
    if head[:2] == b"PK":
        hint = " (it looks like a zip archive; unpack it first)"
    elif head[:2] == b"\x1f\x8b":
        hint = " (it is gzip-compressed; decompress it first)"
    elif head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:200]):
        hint = " (it looks like a text/CSV file)"
    raise DataFormatError(
        f"{path} is not an AnnData .h5ad file{hint}; give a .h5ad written by anndata "
        "(e.g. GEARS' perturb_processed.h5ad)"
    )


def _read_anndata(path: Path):
    import anndata

    _check_hdf5(path)
    try:
        return anndata.read_h5ad(path)
    except Exception as exc:  # h5py/anndata raise many types for damaged files
        if _out_of_memory(exc):
            raise GrapeError(
                f"not enough memory to read {path} ({_reason(exc)}); pass --backed (Python: "
                "backed=True) to leave X in the file and read it in chunks"
            ) from exc
        raise _unreadable(path, exc) from exc


def _out_of_memory(exc: BaseException | None) -> bool:
    """A MemoryError, or an error raised while handling one."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, MemoryError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _apply_subset(adata, subset: tuple[str, ...], path: Path):
    """``(adata restricted to the cells that match every subset, their mask)``."""
    mask = np.ones(adata.n_obs, dtype=bool)
    for item in subset:
        if "=" not in item:
            raise DataFormatError(f"subset {item!r} must be written column=value, e.g. dataset=norman19")
        column, value = (s.strip() for s in item.split("=", 1))
        if column not in adata.obs:
            raise DataFormatError(
                f"subset column {column!r} is not in obs of {path}; columns: "
                f"{', '.join(map(str, adata.obs.columns))}"
            )
        values = adata.obs[column].astype(str)
        if not (values == value).any():
            choices = ", ".join(sorted(values.unique())[:20])
            raise DataFormatError(
                f"no cell has {column}={value!r} in {path}; values of {column!r}: {choices}"
            )
        mask &= (values == value).to_numpy()
    return (adata[mask].copy() if not mask.all() else adata), mask


def _detect_condition_key(adata, requested: str | None, path: Path) -> str:
    if requested:
        if requested not in adata.obs:
            raise DataFormatError(
                f"condition column {requested!r} is not in obs of {path}; columns: "
                f"{', '.join(map(str, adata.obs.columns))}"
            )
        return requested
    for key in keys.CONDITION_CANDIDATES:
        if key in adata.obs:
            return key
    raise DataFormatError(
        f"no condition column in {path}: expected obs['condition'] (GEARS) or one of "
        f"{', '.join(keys.CONDITION_CANDIDATES)}; found {', '.join(map(str, adata.obs.columns)) or 'none'}. "
        "Name the column with --condition-key"
    )


def _detect_control(labels: pd.Series, requested: str | None, path: Path, key: str) -> str:
    present = set(labels.unique())
    if requested:
        if requested not in present:
            raise DataFormatError(
                f"no control cells labelled {requested!r} in obs[{key!r}] of {path}; most "
                f"frequent labels: {_frequent(labels)}"
            )
        return requested
    lower = {str(v).lower(): v for v in present}
    for cand in keys.CONTROL_CANDIDATES:
        if cand.lower() in lower:
            return lower[cand.lower()]
    raise DataFormatError(
        f"no control cells in {path}: obs[{key!r}] has none of "
        f"{', '.join(keys.CONTROL_CANDIDATES)}; most frequent labels: {_frequent(labels)}. "
        "Name the control label with --control-label"
    )


def _frequent(labels: pd.Series, n: int = 5) -> str:
    counts = labels.value_counts().head(n)
    return ", ".join(f"{k!r} ({v} cells)" for k, v in counts.items())


def _detect_gene_names(adata, requested: str | None, path: Path) -> tuple[np.ndarray, str]:
    if requested:
        if requested == "index":
            return adata.var_names.to_numpy(dtype=str), "index"
        if requested not in adata.var:
            raise DataFormatError(
                f"gene name column {requested!r} is not in var of {path}; columns: "
                f"{', '.join(map(str, adata.var.columns)) or 'none'} (or 'index')"
            )
        return adata.var[requested].astype(str).to_numpy(), requested
    for key in keys.GENE_NAME_CANDIDATES:
        if key in adata.var:
            return adata.var[key].astype(str).to_numpy(), key
    return adata.var_names.to_numpy(dtype=str), "index"


def _case_clashes(symbols) -> list[tuple[str, ...]]:
    """Groups of gene names that differ only in case (``HSPA5``, ``hspa5``)."""
    groups: dict[str, list[str]] = {}
    for s in map(str, symbols):
        groups.setdefault(s.lower(), []).append(s)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def _read_without_x(path: Path):
    """obs, var and the stored DE genes of ``path`` as an AnnData without X, and where X
    lies (``None``: no X)."""
    import anndata
    import h5py

    _check_hdf5(path)
    try:
        with h5py.File(path, "r") as fh:
            missing = [k for k in ("obs", "var") if k not in fh]
            if missing:
                raise ValueError(f"no {' or '.join(missing)} in the file")
            legacy = any("encoding-type" not in fh[k].attrs for k in ("obs", "var"))
            uns: dict[str, Any] = {}
            if not legacy:
                from anndata.io import read_elem

                obs, var = read_elem(fh["obs"]), read_elem(fh["var"])
                if "uns" in fh and keys.DE_KEY in fh["uns"]:
                    uns[keys.DE_KEY] = read_elem(fh["uns"][keys.DE_KEY])
            matrix = DiskMatrix.inspect(path, fh)
        if legacy:  # written by anndata < 0.7: let anndata read its old layout (X stays)
            old = anndata.read_h5ad(path, backed="r")
            obs, var = old.obs.copy(), old.var.copy()
            if keys.DE_KEY in old.uns:
                uns[keys.DE_KEY] = old.uns[keys.DE_KEY]
            old.file.close()
        if matrix is not None and matrix.shape != (len(obs), len(var)):
            raise ValueError(f"X is {matrix.shape[0]} x {matrix.shape[1]} but obs and var "
                             f"hold {len(obs)} cells and {len(var)} genes")
    except Exception as exc:  # h5py/anndata raise many types for damaged files
        raise _unreadable(path, exc) from exc
    return anndata.AnnData(obs=obs, var=var, uns=uns), matrix


def _unreadable(path: Path, exc: BaseException) -> DataFormatError:
    return DataFormatError(
        f"could not read {path} as AnnData ({_reason(exc)}); the file may be truncated or "
        "corrupted: download or export it again"
    )


def _stream_by_default(path: Path) -> bool:
    """``backed=None``: read X in chunks when it would take more than
    :func:`~grape_core.data.backed.stream_threshold` bytes in memory."""
    _check_hdf5(path)
    threshold = stream_threshold()  # a bad setting is reported even for a small file
    try:
        matrix = DiskMatrix.inspect(path)
    except Exception:  # noqa: BLE001 - the full read reports what is wrong with the file
        return False
    if matrix is None or matrix.memory_bytes <= threshold:
        return False
    log.info("%s: X takes about %.1f GB in memory, above %s (%.1f GB): read in chunks from "
             "the file", path, matrix.memory_bytes / GB, STREAM_ENV, threshold / GB)
    return True


IN_MEMORY = Path("the AnnData given")
"""How errors name an AnnData given in memory rather than a file."""


def read_perturbseq(
    path: "str | Path | anndata.AnnData",  # noqa: F821
    *,
    config: DataConfig | None = None,
    condition_key: str | None = None,
    control_label: str | None = None,
    gene_name_key: str | None = None,
    subset: tuple[str, ...] | list[str] | None = None,
    checksum: bool = True,
    backed: bool | None = None,
    progress: bool = False,
):
    """Read a Perturb-seq ``.h5ad`` into the project's standard form.

    Parameters
    ----------
    path
        A local ``.h5ad`` file or GEARS dataset folder (for a registry name such as
        ``adamson``, see :func:`grape_core.data.datasets.read`), or an AnnData already in
        memory (pertpy's layout, ``obs['perturbation']`` with ``control``, is recognised; it
        is not changed, and the result shares its X).
    config
        Reading settings; the keyword arguments override its fields.
    condition_key, control_label, gene_name_key
        Column of ``obs`` holding the perturbation, the control label, column of ``var``
        holding gene symbols (or ``"index"``). ``None``: auto-detect.
    subset
        ``("column=value", ...)``: keep only these cells (e.g. ``("dataset=norman19",)``).
    checksum
        Record the file's SHA-256 in ``uns`` (a bundle stores it).
    backed
        ``True``: leave X in the file (a screen larger than memory): obs and var are read,
        X is checked by streaming over it in chunks, and the AnnData returned has no X
        (:mod:`grape_core.data.backed`; :func:`~grape_core.data.pseudobulk.pseudobulk` and
        the gene knowledge read X from the file in chunks). ``False``: read X into memory.
        ``None``: backed when X would take more than ``GRAPE_STREAM_ABOVE_GB`` GB in memory
        (default: a quarter of the memory available).
    progress
        A tqdm bar on stderr while a backed X is checked.

    Returns
    -------
    AnnData ``n_cells × n_genes`` with
        ``X``: log-normalised expression, float32 (sparse stays sparse);
        ``obs['condition']``: canonical labels (``ctrl``, ``A+ctrl``, ``A+B``), categorical;
        ``obs['condition_raw']``: the label as in the file; ``obs['cell_type']``;
        ``var_names`` and ``var['gene_name']``: unique gene symbols; ``var['gene_id']``:
        the source index; ``uns['grape_source']``: path, sha256, detected keys, warnings,
        ``backed``. When backed: ``X`` is ``None``, ``uns['grape_backed']`` says where X
        lies and ``obs['grape_row']`` holds each cell's row in the file.

    Raises
    ------
    DataFormatError
        Missing or unreadable file, no condition column, no control cells, only control
        cells, bad condition labels, duplicated genes, non-finite values, raw counts.
    """
    config = config or DataConfig()
    condition_key = condition_key or config.condition_key
    control_label = control_label or config.control_label
    gene_name_key = gene_name_key or config.gene_name_key
    subset = tuple(subset) if subset else tuple(config.subset)

    given = None if isinstance(path, (str, Path)) else path
    matrix = None
    if given is not None:  # already in memory: the same checks, no file
        if not hasattr(given, "obs") or not hasattr(given, "var"):
            raise DataFormatError(f"expected a file path or an AnnData, got {type(given).__name__}")
        if getattr(given, "isbacked", False):
            raise DataFormatError("an AnnData opened in backed mode: give its file path (and "
                                  "backed=True) instead")
        path, adata, backed = IN_MEMORY, given, False
    else:
        path = local_file(path)
        if backed is None:
            backed = _stream_by_default(path)
        if backed:
            adata, matrix = _read_without_x(path)
        else:
            adata = _read_anndata(path)
    warnings: list[str] = []

    rows = np.arange(adata.n_obs, dtype=np.int64)  # each cell's row in the file's X
    if subset:
        adata, kept = _apply_subset(adata, subset, path)
        rows = rows[kept]
    # checked after subsetting: a subset on another column (e.g. cell_type) may keep both
    for column in keys.STUDY_COLUMNS:
        if column in adata.obs and adata.obs[column].nunique() > 1:
            studies = ", ".join(map(str, sorted(adata.obs[column].astype(str).unique())))
            raise DataFormatError(
                f"{path} mixes several studies in obs[{column!r}] ({studies}); pick one "
                f"with --subset {column}=<name>"
            )
    if adata.n_obs == 0:
        if subset:
            raise DataFormatError(f"no cells left in {path} after subsetting with "
                                  f"{', '.join(subset)}; check the --subset values")
        raise DataFormatError(f"{path} holds no cells (0 rows in obs); give a screen with cells")

    key = _detect_condition_key(adata, condition_key, path)
    unlabelled = adata.obs[key].isna().to_numpy()
    if unlabelled.all():
        raise DataFormatError(f"obs[{key!r}] of {path} is empty (no cell has a label)")
    if unlabelled.any():  # astype(str) would turn them into a perturbation of gene 'nan'
        adata = adata[~unlabelled].copy()
        rows = rows[~unlabelled]
        warnings.append(f"{int(unlabelled.sum())} cell(s) without a label in obs[{key!r}] left out")
    symbols, gene_key = _detect_gene_names(adata, gene_name_key, path)
    dup = pd.Series(symbols)[pd.Series(symbols).duplicated()].unique()
    if len(dup):
        raise DataFormatError(
            f"{path}: {len(dup)} duplicated gene name(s) in var[{gene_key!r}] (e.g. "
            f"{', '.join(map(str, dup[:5]))}); make them unique (adata.var_names_make_unique()) "
            "or choose another column with --gene-name-key"
        )
    clashes = _case_clashes(symbols)
    if clashes:
        warnings.append(
            f"{len(clashes)} gene name(s) in var[{gene_key!r}] differ only in case (e.g. "
            f"{' and '.join(clashes[0])}); they stay separate genes: type their exact symbols"
        )

    raw = adata.obs[key].astype(str).str.strip()
    control = _detect_control(raw, control_label, path, key)
    try:
        mapping = canonical_map(raw.unique(), control_label=control, known=set(symbols))
    except ConditionError as exc:
        raise DataFormatError(f"{path}, obs[{key!r}]: {exc}") from exc
    condition = raw.map(mapping)
    n_ctrl = int((condition == keys.CTRL).sum())
    if n_ctrl == len(condition):
        raise DataFormatError(
            f"{path} holds only control cells ({n_ctrl}); a perturbation screen needs perturbed cells"
        )
    merged = sorted({c for r, c in mapping.items() if c != keys.CTRL and r != c and r.strip() != c})
    controls = sorted(r for r, c in mapping.items() if c == keys.CTRL)
    if len(controls) > 1:
        shown = ", ".join(map(repr, controls[:4]))
        warnings.append(f"control cells are labelled in {len(controls)} ways in obs[{key!r}] "
                        f"({shown}); all of them are used as control")
    written: dict[str, set[str]] = {}  # ignoring spaces and case, as parse_condition does
    for r, c in mapping.items():
        if c != keys.CTRL:
            written.setdefault(c, set()).add("".join(r.split()).lower())
    orders = [c for c, forms in written.items() if len(forms) > 1]
    if orders:
        example = " and ".join(sorted(r for r, c in mapping.items() if c == orders[0])[:2])
        warnings.append(f"{len(orders)} condition(s) are written in two orders (e.g. {example}); "
                        "merged")

    X = matrix if backed else adata.X
    if X is None:
        raise DataFormatError(f"{path} has no expression matrix X")
    # before float32: a finite 1e39 in float64 is not "non-finite"
    if backed:
        _check_values_on_disk(matrix, rows, path, progress=progress)
        X = None
    else:
        _check_values(X, path)
        if sp.issparse(X):
            X = sp.csr_matrix(X, dtype=np.float32)
        else:
            X = np.asarray(X, dtype=np.float32)

    import anndata

    obs = adata.obs.copy()
    obs[keys.CONDITION_RAW] = raw.to_numpy()
    obs[keys.CONDITION] = pd.Categorical(condition.to_numpy())
    if keys.CELL_TYPE not in obs:
        obs[keys.CELL_TYPE] = "unknown"
    if backed:
        obs[keys.FILE_ROW] = rows
    if obs[keys.CELL_TYPE].nunique() > 1:
        warnings.append(
            f"{obs[keys.CELL_TYPE].nunique()} cell types mixed; control means pool them "
            "(select one with --subset cell_type=<name>)"
        )
    var = pd.DataFrame(
        {keys.GENE_NAME: symbols, "gene_id": adata.var_names.to_numpy(dtype=str)},
        index=pd.Index(symbols, name=None),
    )
    uns: dict[str, Any] = {}
    if keys.DE_KEY in adata.uns:
        uns[keys.DE_KEY] = adata.uns[keys.DE_KEY]
    if backed:
        uns[keys.UNS_BACKED] = matrix.to_dict()
    out = anndata.AnnData(X=X, obs=obs, var=var, uns=uns)

    measured = set(symbols)
    perturbed = sorted({g for c in out.obs[keys.CONDITION].cat.categories for g in genes_of(c)})
    missing = [g for g in perturbed if g not in measured]
    if missing:
        warnings.append(
            f"{len(missing)} of {len(perturbed)} perturbed genes are not measured "
            f"(e.g. {', '.join(missing[:5])}); they still get graph nodes"
        )
    counts = out.obs[keys.CONDITION].value_counts()
    few = counts[(counts < 10) & (counts.index != keys.CTRL)]
    if len(few):
        warnings.append(f"{len(few)} condition(s) have fewer than 10 cells; their means are noisy")
    out.uns[keys.UNS_SOURCE] = {
        "path": "" if given is not None else str(path),
        # GEARS layout (and the download cache): <name>/perturb_processed.h5ad
        "name": ("" if given is not None else Path(path).parent.name
                 if Path(path).name == keys.GEARS_H5AD else Path(path).stem),
        "sha256": sha256_file(path) if checksum and given is None else "",
        "condition_key": key,
        "control_label": str(control),
        "gene_name_key": gene_key,
        "subset": list(subset),
        "warnings": warnings,
        "reordered_labels": len(merged),
        "backed": bool(backed),
    }
    for w in warnings:
        log.warning("%s: %s", path, w)
    return out


def describe(adata) -> dict[str, Any]:
    """Summary of a screen read by :func:`read_perturbseq` (what ``describe`` prints).

    Parameters
    ----------
    adata
        ``n_cells × n_genes``, as :func:`read_perturbseq` returns it.

    Returns
    -------
    dict
        ``path``, ``sha256``, ``cells``, ``genes``, ``control_cells``, ``control_label``,
        ``condition_key``, ``conditions`` (``singles``, ``pairs``), ``perturbed_genes`` (and
        ``perturbed_genes_not_measured``), ``cells_per_condition`` (min, median, max),
        ``cells_by_condition``, ``cell_types``, ``gene_name_key``, ``de_genes``, ``backed``
        and ``warnings``.
    """
    labels = adata.obs[keys.CONDITION].astype(str)
    counts = labels.value_counts()
    perts = counts.drop(keys.CTRL, errors="ignore")
    n_genes_in = Counter(len(genes_of(c)) for c in perts.index)
    measured = set(adata.var_names)
    perturbed = sorted({g for c in perts.index for g in genes_of(c)})
    source = adata.uns.get(keys.UNS_SOURCE, {})
    return {
        "path": source.get("path", ""),
        "sha256": source.get("sha256", ""),
        "cells": int(adata.n_obs),
        "genes": int(adata.n_vars),
        "control_cells": int(counts.get(keys.CTRL, 0)),
        "conditions": int(len(perts)),
        "singles": int(n_genes_in.get(1, 0)),
        "pairs": int(n_genes_in.get(2, 0)),
        "perturbed_genes": len(perturbed),
        "perturbed_genes_not_measured": [g for g in perturbed if g not in measured],
        "cells_per_condition": {
            "min": int(perts.min()), "median": float(perts.median()), "max": int(perts.max()),
        },
        "cell_types": sorted(map(str, adata.obs[keys.CELL_TYPE].astype(str).unique())),
        "condition_key": source.get("condition_key", ""),
        "control_label": source.get("control_label", ""),
        "gene_name_key": source.get("gene_name_key", ""),
        "de_genes": "stored (GEARS)" if keys.DE_KEY in adata.uns else "computed (t-test)",
        "backed": bool(source.get("backed", False)),
        "warnings": list(source.get("warnings", [])),
        "cells_by_condition": {str(k): int(v) for k, v in counts.items()},
    }
