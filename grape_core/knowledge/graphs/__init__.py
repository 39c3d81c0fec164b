"""Prior gene graphs as weighted sparse edge lists, and their split by biotype pair.

An edge list is a DataFrame with one row per directed edge:

``src`` (int64)  node index the message comes from
``dst`` (int64)  node index that receives it (PyG convention: messages flow src -> dst)
``weight`` (float32)
``source`` (str)  similarity | go | coexpression | union
``relation`` (str)  ``"coding->noncoding"`` etc. (``''`` until :func:`type_edges`)

Node indices are rows of the gene table. Every prior selects, **per destination**, the
genes it listens to (the top-k rule of GEARS is "the k most similar genes of each target").
There are no self-loops (the model adds them). No learnable parameters here.

Priors
------
similarity
    GRAPE's: the mean of the cosine-similarity matrices of the text, DNA and fused
    embeddings, entries below ``threshold`` (0.6) zeroed, each row (destination)
    normalised to sum 1, weights below ``min_weight`` (0.015) dropped.
go
    GEARS': Jaccard index of the genes' GO term sets, at least ``min_jaccard``, top ``k``
    per destination.
coexpression
    GEARS': |Pearson r| over control cells above ``threshold`` (0.4), top ``k`` per
    destination.
union
    Their weighted union (:func:`union_prior`).

Modules: ``edges`` (the columns and relations of an edge list), ``builtin`` (the three
built-in priors), ``files`` (the user's own edge-list files), ``combine`` (the union, the
split by relation, the prior(s) a model uses), ``stats`` (what ``genes`` prints).
"""

from .builtin import (coexpression_prior, go_jaccard, go_membership, go_prior, pearson_block,
                      similarity_matrix_block, similarity_prior)
from .combine import HeteroEdges, resolve_priors, to_edge_index_dict, type_edges, union_prior
from .edges import RELATION_NAMES, SOURCES, edge_frame, empty_edges, relation_name
from .files import PRIOR_COLUMNS, prior_from_table, read_prior_table
from .stats import format_graph_stats, graph_stats

__all__ = ["coexpression_prior", "go_jaccard", "go_membership", "go_prior", "pearson_block",
           "similarity_matrix_block", "similarity_prior", "RELATION_NAMES", "SOURCES",
           "HeteroEdges", "edge_frame", "empty_edges", "relation_name", "resolve_priors",
           "to_edge_index_dict", "type_edges", "union_prior", "PRIOR_COLUMNS",
           "prior_from_table", "read_prior_table", "format_graph_stats", "graph_stats"]
