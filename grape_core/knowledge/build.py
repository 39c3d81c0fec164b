"""Gene knowledge for a screen: table, views, pre-trained encoder and prior graphs.

:func:`build_gene_knowledge` chains the layer, and caches the whole result in
``Paths.cache_dir/knowledge/<hash>/`` (the hash covers the genes, the control cells, both
configs, the model files, the annotation and the gene-source files), so a second build of
the same inputs only reads the folder back::

    gene_table -> describe_genes -> text_features --+
               -> dna_features -------------------+--> pretrain_encoder -> fused
    text, dna, fused, GO terms, control cells -> similarity / go / coexpression -> union

A :class:`GeneKnowledge` is saved as a folder (``genes.csv``, ``sequences.fa.gz``,
``features.safetensors``, ``encoder.safetensors``, ``priors/*.parquet``,
``knowledge.json``); no pickle anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import keys
from ..config import FeatureConfig, GraphConfig, Paths
from ..data.backed import control_cells, sample_rows
from ..errors import BundleError, GrapeError
from .folder import FORMAT_VERSION, GeneKnowledge

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------
# cache key
# ----------------------------------------------------------------------------------------
def _array_digest(x) -> str:
    digest = hashlib.sha256()
    if x is None:
        return "none"
    if sp.issparse(x):
        x = x.tocsr()
        x.sort_indices()
        for part in (x.data.astype(np.float32), x.indices.astype(np.int64), x.indptr.astype(np.int64)):
            digest.update(np.ascontiguousarray(part).tobytes())
        digest.update(str(x.shape).encode())
    else:
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        digest.update(x.tobytes())
        digest.update(str(x.shape).encode())
    return digest.hexdigest()


def _file_stamp(path: Path) -> str:
    return f"{path.name}:{path.stat().st_size}" if path.is_file() else f"{path.name}:absent"


def knowledge_key(symbols, ensembl_ids, measured, control_X, feature_config: FeatureConfig,
                  graph_config: GraphConfig, paths: Paths) -> str:
    """Hash naming a build: inputs, settings, model files, annotation and gene sources."""
    from .._version import __version__
    from .features import dna_view_kind, model_identity, sha256_json, sha256_strings, text_model_dir
    from .genes import GENCODE_FILE, annotation_version
    from .sequences import EPD_ENSEMBL, EPD_SEQUENCES

    sources = Path(paths.gene_sources) if paths.gene_sources else None
    seq = feature_config.sequence_source
    seq_stamp = seq
    if seq not in ("epd", "none"):
        p = Path(seq).expanduser()
        seq_stamp = f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" if p.is_file() else seq
    return sha256_json({
        "format": FORMAT_VERSION,
        "version": __version__,
        "symbols": sha256_strings(list(symbols)),
        "ensembl": sha256_strings([str(e or "") for e in (ensembl_ids or [])]),
        "measured": sha256_strings(list(measured or [])),
        "control": _array_digest(control_X),
        "features": feature_config.to_dict(),
        "graphs": graph_config.to_dict(),
        "text_model": model_identity(str(text_model_dir(paths))) if feature_config.use_text else "",
        "dna_model": (model_identity(str(Path(paths.dna_model).expanduser()))
                      if dna_view_kind(feature_config, paths) == "lm" else "kmer"),
        "annotation": annotation_version(),
        "gene_sources": [_file_stamp(sources / f) for f in (GENCODE_FILE, EPD_SEQUENCES, EPD_ENSEMBL)]
        if sources else [],
        "sequences": seq_stamp,
    })[:32]


# ----------------------------------------------------------------------------------------
# builder
# ----------------------------------------------------------------------------------------
def check_graph_config(config: GraphConfig) -> None:
    """Raise ``ValueError`` naming the first out-of-range setting."""
    unknown = sorted(set(config.priors) - {"similarity", "go", "coexpression"})
    if unknown:
        raise ValueError(f"priors={config.priors!r}: unknown {', '.join(unknown)}; "
                         "choose among similarity, go, coexpression")
    if config.go_top_k < 1 or config.coexpression_top_k < 1:
        raise ValueError("go_top_k and coexpression_top_k must be >= 1")
    if not 0 <= config.coexpression_threshold < 1:
        raise ValueError(f"coexpression_threshold={config.coexpression_threshold}: must be in [0, 1)")
    if not 0 <= config.go_min_jaccard <= 1:
        raise ValueError(f"go_min_jaccard={config.go_min_jaccard}: must be in [0, 1]")
    if not -1 <= config.similarity_threshold <= 1:
        raise ValueError(f"similarity_threshold={config.similarity_threshold}: must be in [-1, 1]")
    if not 0 <= config.similarity_min_weight < 1:
        raise ValueError(f"similarity_min_weight={config.similarity_min_weight}: must be in [0, 1)")
    if config.max_control_cells < 3:
        raise ValueError(f"max_control_cells={config.max_control_cells}: must be >= 3")


def build_gene_knowledge(
    symbols: Sequence[str],
    *,
    control_X=None,
    measured: Sequence[str] | None = None,
    ensembl_ids: Sequence[str] | None = None,
    feature_config: FeatureConfig | None = None,
    graph_config: GraphConfig | None = None,
    paths: Paths | None = None,
    progress: bool = True,
    cache: bool = True,
    device: str = "cpu",
) -> GeneKnowledge:
    """Build (or read from the cache) the gene knowledge of a set of genes.

    Parameters
    ----------
    symbols
        Node order: gene symbols, unique.
    control_X
        ``(n_control_cells, len(measured))`` log-expression of control cells (dense or
        sparse), for the co-expression prior; ``None``: no co-expression edges.
    measured
        Symbols of the columns of ``control_X`` (each must be in ``symbols``).
    ensembl_ids
        Optional Ensembl ids aligned with ``symbols`` (help resolve renamed symbols).
    feature_config, graph_config
        Settings (defaults: the paper's).
    paths
        Gene sources, model folders and ``cache_dir`` (default: :meth:`Paths.from_env`).
    progress
        tqdm bars on stderr.
    cache
        Read and write ``cache_dir/knowledge/<key>/``.
    device
        Torch device for the language models and pre-training.

    Returns
    -------
    :class:`GeneKnowledge`; identical for identical inputs (seeded).

    Raises
    ------
    ValueError
        Bad settings, duplicated symbols, ``measured`` not matching ``control_X``.
    GrapeError
        Missing model folders or annotation files.
    """
    from .features import (check_feature_config, describe_genes, dna_features, dna_view_kind, model_identity, text_features, text_model_dir)
    from .genes import coverage, gene_table
    from .graphs import (coexpression_prior, empty_edges, go_prior, graph_stats, similarity_prior, type_edges, union_prior)
    from .pretrain import encode_genes, pretrain_encoder

    feature_config = feature_config or FeatureConfig()
    graph_config = graph_config or GraphConfig()
    check_feature_config(feature_config)
    check_graph_config(graph_config)
    paths = paths or Paths.from_env()
    symbols = [str(s) for s in symbols]
    if len(set(symbols)) != len(symbols):
        raise ValueError("symbols: duplicated genes; give each gene once")
    measured = [str(s) for s in measured] if measured is not None else []
    position = {s: i for i, s in enumerate(symbols)}
    absent = [s for s in measured if s not in position]
    if absent:
        raise ValueError(f"measured genes not in symbols: {', '.join(absent[:5])}")
    if control_X is not None:
        if not measured:
            raise ValueError("control_X given without measured (the symbols of its columns)")
        if control_X.shape[1] != len(measured):
            raise ValueError(f"control_X has {control_X.shape[1]} columns but measured lists "
                             f"{len(measured)} genes")
        if control_X.shape[0] > graph_config.max_control_cells:
            control_X = control_X[sample_rows(control_X.shape[0], graph_config.max_control_cells,
                                              feature_config.seed)]

    key = knowledge_key(symbols, ensembl_ids, measured, control_X, feature_config,
                        graph_config, paths)
    cache_root = Path(paths.cache_dir) / "knowledge" / key if (cache and paths.cache_dir) else None
    if cache_root is not None and (cache_root / "knowledge.json").is_file():
        try:
            know = GeneKnowledge.load(cache_root, verify=False)
            know.from_cache = True
            log.info("gene knowledge from cache %s", cache_root)
            return know
        except BundleError as exc:
            log.warning("ignoring damaged cache %s (%s)", cache_root, exc)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    table = gene_table(symbols, ensembl_ids=ensembl_ids, paths=paths,
                       sequences=feature_config.sequence_source)
    timings["gene_table"] = time.perf_counter() - t0

    t = time.perf_counter()
    texts = describe_genes(table, feature_config)
    table = table.assign(description=texts)
    text = text_features(texts, config=feature_config, paths=paths, progress=progress,
                         device=device)
    timings["text"] = time.perf_counter() - t

    t = time.perf_counter()
    dna, missing = dna_features(table, config=feature_config, paths=paths, progress=progress,
                                device=device)
    timings["dna"] = time.perf_counter() - t

    t = time.perf_counter()
    encoder, losses = pretrain_encoder(text, dna, missing, config=feature_config,
                                       progress=progress, device=device)
    fused = encode_genes(encoder, text, dna, missing)
    timings["pretrain"] = time.perf_counter() - t

    is_coding = table["is_coding"].to_numpy(dtype=bool)
    priors: dict[str, pd.DataFrame] = {}
    if "similarity" in graph_config.priors:
        t = time.perf_counter()
        priors["similarity"] = similarity_prior(
            text if feature_config.use_text else None,
            dna if feature_config.use_dna else None, fused,
            threshold=graph_config.similarity_threshold,
            min_weight=graph_config.similarity_min_weight, dna_missing=missing,
            center=graph_config.similarity_center)
        timings["prior_similarity"] = time.perf_counter() - t
    if "go" in graph_config.priors:
        t = time.perf_counter()
        priors["go"] = go_prior(table, top_k=graph_config.go_top_k,
                                min_jaccard=graph_config.go_min_jaccard,
                                propagate=graph_config.go_propagate)
        timings["prior_go"] = time.perf_counter() - t
    if "coexpression" in graph_config.priors:
        t = time.perf_counter()
        if control_X is None:
            log.warning("no control cells given: the co-expression prior is empty")
            priors["coexpression"] = empty_edges("coexpression")
        else:
            priors["coexpression"] = coexpression_prior(
                control_X, [position[s] for s in measured], len(symbols),
                threshold=graph_config.coexpression_threshold,
                top_k=graph_config.coexpression_top_k)
        timings["prior_coexpression"] = time.perf_counter() - t
    t = time.perf_counter()
    priors["union"] = union_prior([priors[n] for n in ("similarity", "go", "coexpression")
                                   if n in priors])
    priors = {name: type_edges(frame, is_coding) for name, frame in priors.items()}
    timings["prior_union"] = time.perf_counter() - t

    stats_edges = pd.concat(list(priors.values()), ignore_index=True)
    text_dir = text_model_dir(paths)
    dna_dir = Path(paths.dna_model).expanduser()
    models = {"text": (f"{text_dir.name}:{model_identity(str(text_dir))}"
                       if feature_config.use_text else ""),
              "dna": (f"{dna_dir.name}:{model_identity(str(dna_dir))}"
                      if dna_view_kind(feature_config, paths) == "lm" else "kmer")}
    timings["total"] = time.perf_counter() - t0
    stats = {
        "coverage": coverage(table),
        "graphs": graph_stats(stats_edges, table),
        "pretrain_losses": [float(x) for x in losses],
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "models": models,
        "control_cells": int(control_X.shape[0]) if control_X is not None else 0,
    }
    know = GeneKnowledge(
        genes=tuple(symbols), table=table, text=text, dna=dna, dna_missing=missing,
        fused=fused, encoder_state={k: v.detach().clone() for k, v in encoder.state_dict().items()},
        encoder_sizes=encoder.init_args(), priors=priors, stats=stats,
        feature_config=feature_config, graph_config=graph_config,
        measured=tuple(measured), key=key,
    )
    if cache_root is not None:
        _write_cache(know, cache_root)
    return know


def _write_cache(know: GeneKnowledge, root: Path) -> None:
    """The cache folder, written by the folder store (a temporary folder renamed into
    place); a failure is a warning: the next build computes it again."""
    try:
        know.save(root, overwrite=True)
    except (OSError, GrapeError) as exc:
        log.warning("could not write the gene-knowledge cache %s (%s)", root, exc)


def genes_of_adata(adata) -> tuple[list[str], list[str], list[str]]:
    """Node order for a screen: ``(symbols, measured, ensembl_ids)``.

    Measured genes first in ``var`` order, then perturbed genes that are not measured,
    sorted. ``ensembl_ids`` come from ``var['gene_id']`` where it holds ENSG ids.
    """
    from ..data.conditions import genes_of

    measured = [str(g) for g in adata.var_names]
    conds = adata.obs[keys.CONDITION].astype(str).unique()
    perturbed = sorted({g for c in conds for g in genes_of(c)} - set(measured))
    ids = adata.var["gene_id"].astype(str).tolist() if "gene_id" in adata.var else [""] * len(measured)
    ids = [i if i.startswith("ENSG") else "" for i in ids]
    return measured + perturbed, measured, ids + [""] * len(perturbed)


def knowledge_for_adata(
    adata,
    *,
    feature_config: FeatureConfig | None = None,
    graph_config: GraphConfig | None = None,
    paths: Paths | None = None,
    progress: bool = True,
    cache: bool = True,
    device: str = "cpu",
) -> GeneKnowledge:
    """Gene knowledge for a screen read by :func:`grape_core.read_perturbseq`.

    Nodes: the measured genes in ``var`` order, then the perturbed genes that are not
    measured (sorted); the co-expression prior uses the control cells
    (``obs['condition'] == 'ctrl'``), at most ``graph_config.max_control_cells`` of them (a
    sample seeded by ``feature_config.seed``). Only those cells are read from X: a screen
    read with ``backed=True`` stays on disk.

    Parameters
    ----------
    adata
        ``n_cells × n_genes`` (:func:`grape_core.read_perturbseq`).
    feature_config, graph_config
        How the views, the encoder and the priors are built (defaults: the paper's).
    paths
        Gene sources, model folders and the cache (default: the ``GRAPE_*`` settings).
    progress
        Progress bars on stderr.
    cache
        Read and write the cache (named by a hash of every input).
    device
        Torch device of the language models and pre-training.

    Returns
    -------
    GeneKnowledge
        With ``measured == tuple(adata.var_names)``.
    """
    feature_config = feature_config or FeatureConfig()
    graph_config = graph_config or GraphConfig()
    symbols, measured, ids = genes_of_adata(adata)
    # the sample build_gene_knowledge would draw, read without loading the rest of X
    control_X = control_cells(adata, max_cells=graph_config.max_control_cells,
                              seed=feature_config.seed)
    return build_gene_knowledge(symbols, control_X=control_X,
                                measured=measured,
                                ensembl_ids=ids, feature_config=feature_config,
                                graph_config=graph_config, paths=paths, progress=progress,
                                cache=cache, device=device)


def data_priors(adata, *, graph_config: GraphConfig | None = None,
                paths: Paths | None = None, seed: int | None = None) -> tuple[list[str], dict[str, pd.DataFrame]]:
    """The priors that need no embeddings, for a screen: GO (from the gene annotation) and
    co-expression (control cells), and their union. Cheap: what ``benchmark`` uses for the
    ``propagation`` baseline when no prior is given.

    Co-expression uses at most ``graph_config.max_control_cells`` control cells, sampled
    with ``seed`` as :func:`knowledge_for_adata` does (default: ``FeatureConfig().seed``),
    read in chunks when X is on disk.

    Returns
    -------
    symbols, priors
        The node order (:func:`genes_of_adata`) and ``{"go", "coexpression", "union"}`` edge
        lists over it.
    """
    from .genes import gene_table
    from .graphs import coexpression_prior, go_prior, union_prior

    graph_config = graph_config or GraphConfig()
    paths = paths or Paths.from_env()
    symbols, measured, ids = genes_of_adata(adata)
    table = gene_table(symbols, ensembl_ids=ids, paths=paths, sequences="none")
    priors = {"go": go_prior(table, top_k=graph_config.go_top_k,
                             min_jaccard=graph_config.go_min_jaccard,
                             propagate=graph_config.go_propagate)}
    seed = FeatureConfig().seed if seed is None else seed
    control_X = control_cells(adata, max_cells=graph_config.max_control_cells, seed=seed)
    if control_X is None:  # no control cells: an empty (0, n_genes) matrix
        control_X = sp.csr_matrix((0, len(measured)), dtype=np.float32)
    position = {s: i for i, s in enumerate(symbols)}
    priors["coexpression"] = coexpression_prior(
        control_X, [position[s] for s in measured], len(symbols),
        threshold=graph_config.coexpression_threshold, top_k=graph_config.coexpression_top_k)
    priors["union"] = union_prior([priors["go"], priors["coexpression"]])
    return symbols, priors
