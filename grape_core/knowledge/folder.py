"""Gene knowledge as an object (:class:`GeneKnowledge`) and as a folder: ``genes.csv``,
``sequences.fa.gz``, ``features.safetensors``, ``encoder.safetensors``, ``priors/*.parquet``
and ``knowledge.json`` (the manifest, with the SHA-256 of every file), written by the
project's folder store; no pickle anywhere."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import FeatureConfig, GraphConfig
from ..errors import BundleError, GrapeError
from ..io import (FolderKind, is_empty_folder, json_marker, read_safetensors_numpy, sha256_file,
                  write_bytes, write_folder, write_safetensors, write_table)


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
        Gene table (:func:`~grape_core.knowledge.genes.gene_table`) plus ``description``, index =
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
        :mod:`grape_core.knowledge.graphs`), with ``relation`` set.
    stats
        ``coverage`` (:func:`~grape_core.knowledge.genes.coverage`), ``graphs``
        (:func:`~grape_core.knowledge.graphs.graph_stats`), ``pretrain_losses``, ``timings`` (s),
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
        """Node indices of ``symbols`` (input symbols as in :attr:`genes`).

        Parameters
        ----------
        symbols
            Gene symbols.

        Returns
        -------
        np.ndarray
            ``(len(symbols),)`` int64.

        Raises
        ------
        UnknownGeneError
            A symbol without a node.
        """
        lookup = {g: i for i, g in enumerate(self.genes)}
        missing = [s for s in symbols if s not in lookup]
        if missing:
            from ..errors import UnknownGeneError

            raise UnknownGeneError(f"gene(s) not in the gene knowledge: {', '.join(missing[:5])}",
                                   gene=missing[0])
        return np.array([lookup[s] for s in symbols], dtype=np.int64)

    def encoder(self):
        """The pre-trained :class:`~grape_core.knowledge.encoder.GeneEncoder` (eval mode).

        Returns
        -------
        GeneEncoder
        """
        from .encoder import GeneEncoder

        enc = GeneEncoder(**self.encoder_sizes)
        enc.load_state_dict(self.encoder_state, strict=True)
        return enc.eval()

    def edge_index_dict(self, prior: str = "union"):
        """:class:`~grape_core.knowledge.graphs.HeteroEdges` of a prior (per biotype pair, local
        indices, with the global <-> local maps).

        Parameters
        ----------
        prior
            A prior's name (``union``, ``similarity``, ``go``, ``coexpression``).

        Returns
        -------
        HeteroEdges
        """
        from .graphs import to_edge_index_dict

        if prior not in self.priors:
            raise GrapeError(f"no prior {prior!r}; available: {', '.join(self.priors)}")
        return to_edge_index_dict(self.priors[prior], self.is_coding)

    # ------------------------------------------------------------------ save / load
    def manifest(self) -> dict[str, Any]:
        """The manifest of the folder (``knowledge.json``, without the files' checksums).

        Returns
        -------
        dict
            Format, key, genes, configs, encoder sizes, dimensions, priors' sizes, statistics.
        """
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
        empty = is_empty_folder(root)  # an empty folder made for it is used as it is
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
        from .sequences import parse_fasta

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
