"""The learned network as files other tools read: GraphML (Cytoscape, networkx, Gephi), CSV
and Cytoscape's CX2 (NDEx).

Every edge of :func:`grape_core.serving.network.learned_network` is written with the same
attributes in every format (:data:`grape_core.serving.network.EDGE_COLUMNS` plus each member's
weight): weight and sign, prior or learned status, the prior weight and what learning
changed, agreement across ensemble members (sign agreement, spread), relation and the two
genes' biotypes. Nodes carry ``gene``, ``biotype``, ``coding`` and ``measured``.

No value is ever missing (a learned-only edge has prior weight 0 and prior source ``""``),
and every GraphML ``<key>`` declares its type as ``double``, ``string`` or ``boolean``: the
types Cytoscape's GraphML reader maps to columns (a count such as ``members_same_sign`` is
written as a double there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import GrapeError
from .network import LearnedNetwork

FORMATS = {".graphml": "graphml", ".csv": "csv", ".cx2": "cx2"}
"""File suffix -> format."""
Format = Literal["graphml", "csv", "cx2"]

DESCRIPTION = ("Gene network learned by a GRAPE ensemble. weight: the members' mean signed "
               "weight (negative: the source represses the target); status: both (prior edge "
               "kept), learned only (new) or prior only (dropped by learning); sign_agreement: "
               "share of members with the majority sign; spread: standard deviation of the "
               "members' weights; beyond_prior: the weight minus the prior times the "
               "relation's factor.")


def network_format(path: str | Path, fmt: str | None = None) -> Format:
    """The format of ``path`` (from ``fmt``, else its suffix).

    Raises
    ------
    GrapeError
        An unknown format or suffix, naming the ones known.
    """
    known = ", ".join(FORMATS)
    if fmt is not None:
        if fmt not in FORMATS.values():
            raise GrapeError(f"network format {fmt!r} is not one of graphml, csv, cx2")
        return fmt  # type: ignore[return-value]
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise GrapeError(f"cannot tell the network format of {Path(path).name!r} from its "
                         f"suffix; name the file {known} (e.g. network.graphml)")
    return FORMATS[suffix]  # type: ignore[return-value]


def _native(value):
    """A numpy scalar as the Python value writers type by (``bool``, ``float``, ``str``)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return str(value)


def _records(frame: pd.DataFrame) -> list[dict]:
    cols = list(frame.columns)
    return [{c: _native(v) for c, v in zip(cols, row)}
            for row in frame.itertuples(index=False, name=None)]


def to_networkx(net: LearnedNetwork):
    """A :class:`networkx.DiGraph`: one node per gene of an edge (``gene``, ``biotype``,
    ``coding``, ``measured``), one edge per row of :attr:`LearnedNetwork.edges` with every
    other column as an attribute (numbers as ``float``, flags as ``bool``, text as
    ``str``), and the model's name, member count and a description as graph attributes."""
    import networkx as nx

    graph = nx.DiGraph(model=str(net.model), n_members=float(net.n_members),
                       keep_fraction=float(net.keep_fraction), description=DESCRIPTION)
    edges = net.edges
    used = pd.unique(pd.concat([edges["source"], edges["target"]]))
    nodes = net.genes.reindex(used)
    for gene, row in zip(used, _records(nodes.reset_index(drop=True))):
        graph.add_node(str(gene), gene=str(gene), biotype=row["biotype"],
                       coding=bool(row["coding"]), measured=bool(row["measured"]))
    attributes = edges.drop(columns=["source", "target"])
    for source, target, attrs in zip(edges["source"], edges["target"], _records(attributes)):
        graph.add_edge(str(source), str(target), **attrs)
    return graph


def _xsd_booleans(text: str) -> str:
    """networkx writes a boolean as ``True``/``False``; GraphML's schema (and strict readers)
    want ``true``/``false``. Only the values of keys declared boolean are changed."""
    import re

    ids = re.findall(r'<key id="([^"]+)"[^>]*attr\.type="boolean"', text)
    if not ids:
        return text
    pattern = re.compile(r'(<data key="(?:%s)">)(True|False)(</data>)'
                         % "|".join(re.escape(i) for i in ids))
    return pattern.sub(lambda m: m.group(1) + m.group(2).lower() + m.group(3), text)


def to_cx2(net: LearnedNetwork) -> list:
    """The network as CX2 (Cytoscape Exchange 2, what NDEx and Cytoscape Web read), built
    with the NDEx client library's CX2 model (``ndex2.cx2.CX2Network``), which declares each
    attribute's type."""
    try:
        from ndex2.cx2 import CX2Network
    except ImportError as exc:
        raise GrapeError(f"writing CX2 needs the ndex2 package ({exc}); pip install -r "
                         "requirements.txt, or write GraphML instead") from exc
    cx = CX2Network()
    cx.add_network_attribute("name", f"GRAPE learned network: {net.model}")
    cx.add_network_attribute("description", DESCRIPTION)
    cx.add_network_attribute("n_members", float(net.n_members))
    edges = net.edges
    used = pd.unique(pd.concat([edges["source"], edges["target"]]))
    nodes = net.genes.reindex(used).reset_index(drop=True)
    ids = {}
    for gene, row in zip(used, _records(nodes)):
        ids[gene] = cx.add_node(attributes={"name": str(gene), "biotype": row["biotype"],
                                            "coding": bool(row["coding"]),
                                            "measured": bool(row["measured"])})
    attributes = edges.drop(columns=["source", "target"])
    for source, target, attrs in zip(edges["source"], edges["target"], _records(attributes)):
        attrs["interaction"] = attrs["effect"]  # the edge label Cytoscape shows by default
        cx.add_edge(source=ids[source], target=ids[target], attributes=attrs)
    return cx.to_cx2()


def network_bytes(net: LearnedNetwork, fmt: Format) -> bytes:
    """The file content of ``fmt``: GraphML (:func:`to_networkx`, directed, every key typed
    ``double``, ``string`` or ``boolean``), CSV (one row per edge, the columns of
    :attr:`LearnedNetwork.edges`) or CX2 JSON (:func:`to_cx2`)."""
    import json

    if fmt == "csv":
        return net.edges.to_csv(index=False).encode("utf-8")
    if fmt == "cx2":
        return json.dumps(to_cx2(net)).encode("utf-8")
    if fmt == "graphml":
        import networkx as nx

        text = "\n".join(nx.generate_graphml(to_networkx(net), encoding="utf-8",
                                             prettyprint=True)) + "\n"
        return _xsd_booleans(text).encode("utf-8")
    raise GrapeError(f"network format {fmt!r} is not one of graphml, csv, cx2")


def write_network(net: LearnedNetwork, path: str | Path, *, fmt: str | None = None) -> Path:
    """Write ``net`` to ``path`` as GraphML, CSV or CX2 (``fmt``, else from the suffix:
    ``.graphml``, ``.csv``, ``.cx2``), atomically. Returns ``path``.

    Raises
    ------
    GrapeError
        Unknown format, or ``path`` cannot be written.
    """
    from ..io import check_writable, write_bytes

    kind = network_format(path, fmt)
    check_writable(path, what="network file")
    write_bytes(path, network_bytes(net, kind))
    return Path(path)
