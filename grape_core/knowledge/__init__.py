"""Gene knowledge: the gene table, text and DNA views, the fused encoder and prior graphs.

``genes``  gene table (biotype, names, GO, sequences) from the bundled annotation
``features``  text and DNA features of each gene (language models or k-mers)
``encoder``, ``pretrain``  the fused gene encoder (a torch module) and its contrastive
pre-training (torch; imported when used)
``graphs``  prior gene graphs (similarity, GO, co-expression, their union)
``sequences``  DNA sequences of genes (EPD promoters or a FASTA file)
``folder``  :class:`GeneKnowledge` and its folder (the folder store)
``build``  all of the above for a screen, cached by a hash of its inputs
"""

from __future__ import annotations

from .build import build_gene_knowledge, knowledge_for_adata
from .folder import GeneKnowledge
from .features import describe_genes, dna_features, kmer_features, text_features
from .genes import coverage, gene_table
from .graphs import (coexpression_prior, go_prior, graph_stats, similarity_prior,
                     to_edge_index_dict, union_prior)

__all__ = [
    "GeneKnowledge", "build_gene_knowledge", "knowledge_for_adata",
    "gene_table", "coverage", "describe_genes", "text_features", "kmer_features",
    "dna_features", "similarity_prior", "go_prior", "coexpression_prior", "union_prior",
    "to_edge_index_dict", "graph_stats",
]
