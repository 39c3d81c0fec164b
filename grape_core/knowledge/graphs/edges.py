"""Edge lists: their columns (``src``, ``dst``, ``weight``, ``source``, ``relation``) and
relations, the biotype pair of an edge (``coding->noncoding``...)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ... import keys


SOURCES = ("similarity", "go", "coexpression", "union")


def relation_name(src_type: str, dst_type: str) -> str:
    """``"coding->noncoding"``: the ``relation`` value of an edge between two node types."""
    return f"{src_type}->{dst_type}"


RELATION_NAMES = tuple(relation_name(s, d) for s in keys.NODE_TYPES for d in keys.NODE_TYPES)


def empty_edges(source: str = "") -> pd.DataFrame:
    """An edge list with no rows and the standard columns and dtypes."""
    return edge_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), source)


def edge_frame(src, dst, weight, source: str, relation: str | Sequence[str] = "") -> pd.DataFrame:
    """Standard edge list from arrays (sorted by dst, then src)."""
    frame = pd.DataFrame({
        "src": np.asarray(src, dtype=np.int64),
        "dst": np.asarray(dst, dtype=np.int64),
        "weight": np.asarray(weight, dtype=np.float32),
        "source": source,
        "relation": relation,
    })
    frame["source"] = frame["source"].astype(str)
    frame["relation"] = frame["relation"].astype(str)
    return frame.sort_values(["dst", "src"], kind="stable").reset_index(drop=True)
