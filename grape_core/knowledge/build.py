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

import gzip
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import keys
from ..config import FeatureConfig, GraphConfig, Paths
from ..data.backed import control_cells, sample_rows
from ..io import sha256_file
from ..errors import BundleError, GrapeError
from ..io import (FolderKind, json_marker, read_safetensors_numpy, write_bytes, write_folder,
                  write_safetensors, write_table)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FILES = ("genes.csv", "sequences.fa.gz", "features.safetensors", "encoder.safetensors")
KNOWLEDGE_FOLDER = FolderKind(name="gene-knowledge folder", marker="knowledge.json",
                              entries=frozenset({*_FILES, "priors", "knowledge.json"}),
                              is_ours=json_marker("kind", "grape_gene_knowledge"))
"""What ``genes --overwrite`` may write over: gene knowledge holding nothing else, or an
empty folder (the files of a folder of the user's are never replaced)."""


@dataclass
class GeneKnowledge:
    """Everything GRAPE knows about the genes of a screen (one node per gene).

    Attributes
    ----------
    genes
        Node order: gene symbols ``(n_genes,)``; every array below follows it.
    table
        Gene table (:func:`~grape_core.genes.gene_table`) plus ``description``, index =
        ``genes``.
    text
        Text view ``(n_genes, d_text)`` float32.
    dna
        DNA view ``(n_genes, d_dna)`` float32 (zeros where missing).
    dna_missing
        ``(n_genes,)`` bool.
    fused
        Pre-trained fused embedding ``(n_genes, out_dim)`` float32.
    encoder_state
        Pre-trained :class:`~grape_core.knowledge.encoder.GeneEncoder` weights (name -> tensor).
    encoder_sizes
        Its constructor arguments (``text_dim``, ``dna_dim``, ``out_dim``, ``hidden``,
        ``dropout``, ``use_text``, ``use_dna``).
    priors
        ``{"similarity", "go", "coexpression", "union"} -> edge list`` (see
        :mod:`grape_core.graphs`), with ``relation`` set.
    stats
        ``coverage`` (:func:`~grape_core.genes.coverage`), ``graphs``
        (:func:`~grape_core.graphs.graph_stats`), ``pretrain_losses``, ``timings`` (s),
        ``models`` (identities of the text/DNA models).
    feature_config, graph_config
        The settings used.
    measured
        Genes with expression columns (the first ones of ``genes``).
    key
        Hash of the inputs and settings (the cache name).
    from_cache
        True when read back from the cache by :func:`build_gene_knowledge`.
    """

    genes: tuple[str, ...]
    table: pd.DataFrame
    text: np.ndarray
    dna: np.ndarray
    dna_missing: np.ndarray
    fused: np.ndarray
    encoder_state: dict[str, Any]
    encoder_sizes: dict[str, Any]
    priors: dict[str, pd.DataFrame]
    stats: dict[str, Any] = field(default_factory=dict)
    feature_config: FeatureConfig = field(default_factory=FeatureConfig)
    graph_config: GraphConfig = field(default_factory=GraphConfig)
    measured: tuple[str, ...] = ()
    key: str = ""
    from_cache: bool = field(default=False, compare=False)
    """Read back from the cache (``stats['timings']`` are then those of the first build)."""

    # ------------------------------------------------------------------ views
    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def encoder_args(self) -> dict[str, Any]:
        """Constructor arguments of the pre-trained encoder (``GeneEncoder(**encoder_args)``)."""
        return dict(self.encoder_sizes)

    @property
    def configs(self) -> dict[str, dict[str, Any]]:
        """``{"feature": FeatureConfig dict, "graph": GraphConfig dict}``."""
        return {"feature": self.feature_config.to_dict(), "graph": self.graph_config.to_dict()}

    @property
    def is_coding(self) -> np.ndarray:
        """``(n_genes,)`` bool node type (True: ``keys.CODING``)."""
        return self.table["is_coding"].to_numpy(dtype=bool)

    def index(self, symbols: Sequence[str]) -> np.ndarray:
        """Node indices of ``symbols`` (input symbols as in :attr:`genes`)."""
        lookup = {g: i for i, g in enumerate(self.genes)}
        missing = [s for s in symbols if s not in lookup]
        if missing:
            from ..errors import UnknownGeneError

            raise UnknownGeneError(f"gene(s) not in the gene knowledge: {', '.join(missing[:5])}",
                                   gene=missing[0])
        return np.array([lookup[s] for s in symbols], dtype=np.int64)

    def encoder(self):
        """The pre-trained :class:`~grape_core.knowledge.encoder.GeneEncoder` (eval mode)."""
        from .encoder import GeneEncoder

        enc = GeneEncoder(**self.encoder_sizes)
        enc.load_state_dict(self.encoder_state, strict=True)
        return enc.eval()

    def edge_index_dict(self, prior: str = "union"):
        """:class:`~grape_core.graphs.HeteroEdges` of a prior (per biotype pair, local
        indices, with the global <-> local maps)."""
        from .graphs import to_edge_index_dict

        if prior not in self.priors:
            raise GrapeError(f"no prior {prior!r}; available: {', '.join(self.priors)}")
        return to_edge_index_dict(self.priors[prior], self.is_coding)

    # ------------------------------------------------------------------ save / load
    def manifest(self) -> dict[str, Any]:
        from .._version import __version__

        return {
            "format": FORMAT_VERSION,
            "kind": "grape_gene_knowledge",
            "grape_core_version": __version__,
            "key": self.key,
            "n_genes": self.n_genes,
            "genes": list(self.genes),
            "measured": list(self.measured),
            "feature_config": self.feature_config.to_dict(),
            "graph_config": self.graph_config.to_dict(),
            "encoder": dict(self.encoder_sizes),
            "dims": {"text": int(self.text.shape[1]), "dna": int(self.dna.shape[1]),
                     "fused": int(self.fused.shape[1])},
            "priors": {name: int(len(frame)) for name, frame in self.priors.items()},
            "stats": self.stats,
        }

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the knowledge to a folder, atomically (:func:`grape_core.io.write_folder`).

        Files: ``genes.csv`` (table without sequences, plus ``description``),
        ``sequences.fa.gz``, ``features.safetensors`` (text, dna, dna_missing, fused),
        ``encoder.safetensors``, ``priors/<name>.parquet``, ``knowledge.json`` (manifest
        with configs, sizes, statistics and the SHA-256 of every file).

        Parameters
        ----------
        path
            The folder; an empty folder is used as it is.
        overwrite
            Replace gene knowledge already there.

        Returns
        -------
        Path
            ``path``.

        Raises
        ------
        GrapeError
            The folder exists (not empty) and ``overwrite`` is False, is a link or a file,
            or holds files that are not gene knowledge.
        """
        root = Path(path)
        try:  # an empty folder made for it is used as it is
            empty = root.is_dir() and not root.is_symlink() and not any(root.iterdir())
        except OSError:
            empty = False
        files = list(_FILES) + [f"priors/{n}.parquet" for n in self.priors]

        def manifest(digests: dict[str, str]) -> dict[str, Any]:
            return {**self.manifest(), "sha256": {f: digests[f] for f in files}}

        needed = sum(int(np.asarray(a).nbytes) for a in (self.text, self.dna, self.fused))
        write_folder(root, kind=KNOWLEDGE_FOLDER, write=self._write_files, manifest=manifest,
                     overwrite=overwrite or empty, needed=needed, what="gene-knowledge folder")
        return root

    def _write_files(self, root: Path) -> None:
        table = self.table.drop(columns=["sequence"], errors="ignore")
        write_table(root / "genes.csv", table)
        fasta = "".join(f">{g}\n{s}\n" for g, s, h in
                        zip(self.genes, self.table["sequence"], self.table["has_sequence"]) if h)
        write_bytes(root / "sequences.fa.gz", gzip.compress(fasta.encode(), mtime=0))
        write_safetensors(root / "features.safetensors", {
            "text": np.asarray(self.text, np.float32), "dna": np.asarray(self.dna, np.float32),
            "dna_missing": np.asarray(self.dna_missing, np.uint8),
            "fused": np.asarray(self.fused, np.float32)})
        write_safetensors(root / "encoder.safetensors", dict(self.encoder_state))
        for name, frame in self.priors.items():
            write_table(root / "priors" / f"{name}.parquet", frame)

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> "GeneKnowledge":
        """Read a folder written by :meth:`save`.

        Raises
        ------
        BundleError
            Missing folder or file, another format version, a checksum mismatch
            (``verify``), or arrays that do not match the gene list.
        """
        from safetensors.torch import load_file

        root = Path(path)
        manifest_path = root / "knowledge.json"
        if not manifest_path.is_file():
            raise BundleError(f"no gene knowledge in {root} (knowledge.json missing); build it "
                              "with `python -m grape_core genes`")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT_VERSION or manifest.get("kind") != "grape_gene_knowledge":
            raise BundleError(f"{manifest_path}: format {manifest.get('format')!r} is not "
                              f"{FORMAT_VERSION}; rebuild the gene knowledge")
        for name, digest in manifest.get("sha256", {}).items():
            file = root / name
            if not file.is_file():
                raise BundleError(f"{file} is missing; rebuild the gene knowledge")
            if verify and sha256_file(file) != digest:
                raise BundleError(f"{file} does not match its checksum in knowledge.json; "
                                  "the folder was modified or damaged, rebuild it")
        genes = tuple(manifest["genes"])
        table = pd.read_csv(root / "genes.csv", dtype=str, keep_default_na=False)
        for col in ("is_coding", "has_sequence"):
            table[col] = table[col].map({"True": True, "False": False}).astype(bool)
        table.index = pd.Index(table["symbol"].tolist())
        from .genes import parse_fasta

        text = gzip.decompress((root / "sequences.fa.gz").read_bytes()).decode()
        seqs = dict(parse_fasta(text.splitlines()))
        table["sequence"] = [seqs.get(g, "") for g in table["symbol"]]
        if tuple(table["symbol"]) != genes:
            raise BundleError(f"{root}/genes.csv does not list the genes of knowledge.json")
        arrays = read_safetensors_numpy(root / "features.safetensors")
        for name in ("text", "dna", "dna_missing", "fused"):
            if arrays[name].shape[0] != len(genes):
                raise BundleError(f"{root}/features.safetensors: {name} has "
                                  f"{arrays[name].shape[0]} rows for {len(genes)} genes")
        priors = {}
        for name in manifest.get("priors", {}):
            frame = pd.read_parquet(root / "priors" / f"{name}.parquet")
            frame["weight"] = frame["weight"].astype(np.float32)
            priors[name] = frame
        state = dict(load_file(str(root / "encoder.safetensors")))
        return cls(
            genes=genes, table=table, text=arrays["text"], dna=arrays["dna"],
            dna_missing=arrays["dna_missing"].astype(bool), fused=arrays["fused"],
            encoder_state=state, encoder_sizes=dict(manifest["encoder"]), priors=priors,
            stats=manifest.get("stats", {}),
            feature_config=FeatureConfig.from_dict(manifest["feature_config"]),
            graph_config=GraphConfig.from_dict(manifest["graph_config"]),
            measured=tuple(manifest.get("measured", ())), key=manifest.get("key", ""),
        )


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
    from .genes import EPD_ENSEMBL, EPD_SEQUENCES, GENCODE_FILE, annotation_version

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

    Returns
    -------
    :class:`GeneKnowledge` with ``measured == tuple(adata.var_names)``.
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
