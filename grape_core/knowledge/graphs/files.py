"""The user's own prior: an edge-list file (CSV, TSV or Parquet; ``source,target[,weight]``)
read and mapped onto the model's genes, with one line for each problem."""

from __future__ import annotations

import logging

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .edges import edge_frame

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------
# user priors: edge-list files or DataFrames
# ----------------------------------------------------------------------------------------
PRIOR_COLUMNS = ("source", "target")
"""Required columns of a user prior (gene symbols; ``source`` regulates ``target``), plus an
optional numeric ``weight``: a confidence, negative where the prior says the source represses
the target (a signed prior, as TRRUST or CollecTRI give). Without signs the model learns them;
with them it starts from them and can still flip an edge the data contradict."""


def read_prior_table(path: str | Path) -> pd.DataFrame:
    """A prior edge list from a CSV, TSV (``.tsv``/``.txt``) or Parquet file.

    Raises
    ------
    GrapeError
        The file is missing, a folder, not a regular file (a FIFO, a device), unreadable or
        empty (one line naming the file).

    Parameters
    ----------
    path
        The file; columns ``source``, ``target`` and optionally ``weight`` (gene symbols,
        ``source`` regulates ``target``).

    Returns
    -------
    pd.DataFrame
        The table as read (mapped onto a model's genes by :func:`prior_from_table`).
    """
    from ...errors import GrapeError
    from ...io import check_input_file

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
        optionally ``weight`` (finite, not 0; negative: a repression; default 1).
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
        Missing columns, an empty table, non-numeric, non-finite or zero weights,
        self-loops, duplicated edges, or no edge between the model's genes; each message
        names the prior, the rows or genes and what to do.
    """
    from ...errors import GrapeError

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
    finite, not 0 (a negative weight: a repression). Weights are relative confidences: when
    the largest size is above 1 they are all divided by it (so 1e39 is stored as 1, not as
    infinity), and a weight whose size would then be below :data:`WEIGHT_FLOOR` (stored as
    0) is refused."""
    from ...errors import GrapeError

    if pd.api.types.is_bool_dtype(raw):
        raise GrapeError(f"prior {name!r}: the weight column holds true/false, not numbers; "
                         "give numbers (negative for a repression) or drop the weight column")
    weight = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(weight))
    if bad.size:
        shown = _examples(f"row {i + 2}: {raw.iloc[i]!r}" for i in bad)
        raise GrapeError(f"prior {name!r}: {bad.size} weight(s) are not finite numbers "
                         f"({shown}); give numbers or drop the weight column")
    bad = np.flatnonzero(weight == 0)
    if bad.size:
        raise GrapeError(f"prior {name!r}: {bad.size} weight(s) are 0 (e.g. row {bad[0] + 2}); "
                         "a weight of 0 is no edge: drop those rows (weights are confidences, "
                         "negative for a repression)")
    largest = float(np.abs(weight).max())
    if largest > 1:
        weight = weight / largest
    stored = weight.astype(np.float32)
    bad = np.flatnonzero(~(np.abs(stored) >= WEIGHT_FLOOR))
    if bad.size:
        i = bad[0]
        beside = f" beside the largest, {largest:g}" if largest > 1 else ""
        raise GrapeError(f"prior {name!r}: {bad.size} weight(s) are too small to store{beside} "
                         f"(e.g. row {i + 2}: {weight[i] * max(largest, 1):g}; weights are "
                         "stored as float32, "
                         f"which makes anything below {WEIGHT_FLOOR:.2g} times the largest "
                         "weight a 0); raise them or drop those edges")
    return stored.astype(np.float64)
