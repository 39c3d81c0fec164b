"""The genes of a planted screen: real symbols, protein-coding or lncRNA, with their GO terms."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import keys
from ..config import Paths
from ..errors import GrapeError
from .config import SimulationConfig

_GO_ROOTS = frozenset({"GO:0008150", "GO:0003674", "GO:0005575"})  # "no data" annotations
_SYMBOL_OK = r"^[A-Za-z0-9][A-Za-z0-9.\-]*$"  # no '+', '_', spaces: safe in condition labels


@lru_cache(maxsize=2)
def _gene_pool(gene_sources: str) -> pd.DataFrame:
    """Symbols the project's gene table resolves exactly, as protein-coding or lncRNA.

    Read-only, cached per process. Columns: gene, biotype, is_coding, biotype_source,
    go (direct GO ids without the root terms, ``;``), has_go. Order: the annotation's.
    """
    from ..knowledge.genes import gene_table, load_annotation

    ann = load_annotation()
    symbols = ann.genes["symbol"].astype(str)
    controls = {c.lower() for c in keys.CONTROL_CANDIDATES}
    ok = (symbols.str.match(_SYMBOL_OK) & ~symbols.duplicated(keep=False)
          & ann.genes["gene_type"].isin(["protein-coding", "ncRNA"])
          & ~symbols.str.lower().isin(controls))
    table = gene_table(symbols[ok].tolist(), paths=Paths(gene_sources=gene_sources),
                       sequences="none")
    keep = ((table["match"] == "symbol") & (table["note"] == "")
            & table["biotype"].isin(["protein_coding", "lncRNA"])).to_numpy()
    table = table[keep]
    go = [";".join(t for col in (bp, mf, cc) for t in (col.split(";") if col else [])
                   if t not in _GO_ROOTS)
          for bp, mf, cc in zip(table["go_bp"], table["go_mf"], table["go_cc"])]
    return pd.DataFrame({
        "gene": table["symbol"].to_numpy(object),
        "biotype": table["biotype"].to_numpy(object),
        "is_coding": table["is_coding"].to_numpy(bool),
        "biotype_source": table["biotype_source"].to_numpy(object),
        "go": go,
        "has_go": np.array([bool(g) for g in go]),
    })


def _draw_genes(config: SimulationConfig, rng: np.random.Generator, paths: Paths | None):
    """Genes sorted by symbol, and their gene x specific-GO-term incidence (CSR, 0/1)."""
    from ..knowledge.genes import load_annotation

    paths = paths or Paths.from_env()
    pool = _gene_pool(str(paths.gene_sources or ""))
    picks = []
    for coding, wanted in ((True, config.n_genes - config.n_noncoding), (False, config.n_noncoding)):
        sub = pool[pool["is_coding"] == coding]
        if wanted > len(sub):
            kind = "protein-coding" if coding else "lncRNA"
            raise GrapeError(f"{wanted} {kind} genes asked but the annotation resolves "
                             f"{len(sub)}; lower --genes or change --noncoding")
        order = rng.permutation(len(sub))
        if config.prefer_go:  # GO-annotated first, each group in random order
            order = order[np.argsort(~sub["has_go"].to_numpy()[order], kind="stable")]
        picks.append(sub.iloc[order[:wanted]])
    genes = pd.concat(picks).sort_values("gene", kind="stable").reset_index(drop=True)
    sources = genes["biotype_source"].value_counts()
    biotype_sources = {str(k): int(v) for k, v in sorted(sources.items())}

    # shared GO terms: specific ones only (general terms such as "nucleus" link everything)
    terms = load_annotation().terms
    specific = set(terms.index[terms["n_genes"] <= config.go_max_term_genes])
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for text in genes["go"]:
        ids = sorted({vocab.setdefault(t, len(vocab)) for t in (text.split(";") if text else [])
                      if t in specific})
        indices.extend(ids)
        indptr.append(len(indices))
    go_matrix = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                              shape=(len(genes), max(len(vocab), 1)))
    return genes, go_matrix, biotype_sources
