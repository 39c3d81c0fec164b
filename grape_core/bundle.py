"""A trained model as a folder: weights, a readable manifest, and everything to use it.

Layout (scvi-tools style, without pickle)::

    manifest.json           versions, configs, data sha256, split, metrics, file checksums
    weights.safetensors     every ensemble member's weights (``member{i}.<param>``)
    graph.safetensors       gene views, node types, prior graph, fused embeddings
    pseudobulk.safetensors  measured means per condition, control mean, DE genes
    genes.csv               gene table in node order (symbol, biotype, is_coding, ...)
    split.json              the split the model was trained and evaluated on
    prior_edges.parquet     the prior graph the model started from
    learned_edges.parquet   the learned graph (ensemble mean)
    history.csv             training curve
    metrics.csv             per-condition held-out metrics of the model and the baselines

:meth:`Bundle.load` checks every file against the manifest's SHA-256 and stops with one
:class:`~grape_core.errors.BundleError` line that names what is missing or wrong.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import __version__
from .config import ModelConfig, TrainConfig
from .data import PseudoBulk, sha256_file
from .errors import BundleError
from .io import read_safetensors_numpy, write_json, write_safetensors, write_table
from .splits import Split

if TYPE_CHECKING:  # torch and the model are imported where used: listing and verifying
    # bundles (the app's first page) must not pay for importing torch
    from .model.grape import GRAPE, GraphInputs

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FILES = {
    "manifest": "manifest.json",
    "weights": "weights.safetensors",
    "graph": "graph.safetensors",
    "pseudobulk": "pseudobulk.safetensors",
    "genes": "genes.csv",
    "split": "split.json",
    "prior": "prior_edges.parquet",
    "learned": "learned_edges.parquet",
    "history": "history.csv",
    "metrics": "metrics.csv",
}
OPTIONAL_FILES = {"ablations": "ablations.csv"}
GRAPH_KEYS = ("text", "dna", "dna_missing", "is_coding", "prior_index", "prior_weight", "measured")


@dataclass
class Bundle:
    """A loaded (or freshly trained) GRAPE model with its data summary and graphs."""

    manifest: dict[str, Any]
    members: list[GRAPE]
    graph: GraphInputs
    genes: tuple[str, ...]
    """Node order: measured genes first, then perturbed genes that are not measured."""
    table: pd.DataFrame
    pseudobulk: PseudoBulk
    split: Split
    prior_edges: pd.DataFrame
    learned_edges: pd.DataFrame
    history: pd.DataFrame
    metrics: pd.DataFrame
    fused: np.ndarray
    ablations: pd.DataFrame | None = None
    """Held-out metrics of retrained variants (see :data:`grape_core.workflow.ABLATIONS`)."""
    path: Path | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ accessors
    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or (self.path.name if self.path else "model"))

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.manifest["configs"]["model"])

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.manifest["configs"]["train"])

    @property
    def measured(self) -> tuple[str, ...]:
        return self.pseudobulk.genes

    @cached_property
    def node_index(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.genes)}

    @cached_property
    def trained_genes(self) -> set[str]:
        """Genes perturbed in at least one training condition."""
        from .conditions import genes_of

        return {g for c in self.split.train for g in genes_of(c)}

    def check_genes(self, measured: tuple[str, ...] | list[str], *, source: str = "the data") -> None:
        """Refuse data whose measured genes differ from the model's.

        Raises
        ------
        BundleError
            With counts and examples of genes missing on either side.
        """
        mine, theirs = list(self.measured), list(measured)
        if mine == theirs:
            return
        only_model = [g for g in mine if g not in set(theirs)]
        only_data = [g for g in theirs if g not in set(mine)]
        if not only_model and not only_data:
            raise BundleError(
                f"model {self.name!r} and {source} measure the same {len(mine)} genes in a "
                "different order; reorder the data's genes (adata[:, model_genes])"
            )
        raise BundleError(
            f"model {self.name!r} was trained on other genes than {source}: "
            f"{len(only_model)} of its {len(mine)} genes are missing there "
            f"(e.g. {', '.join(only_model[:3]) or '-'}) and {len(only_data)} genes there are "
            f"unknown to it (e.g. {', '.join(only_data[:3]) or '-'}); train a model on this "
            "data with `python -m grape_core train`"
        )

    # ------------------------------------------------------------------ save
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the bundle folder atomically (a temporary folder renamed into place)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise BundleError(f"{path} already exists; pass overwrite=True (--overwrite) to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            self._write(tmp)
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.path = path
        return path

    def _write(self, folder: Path) -> None:
        import torch

        weights = {f"member{i}.{k}": v for i, m in enumerate(self.members)
                   for k, v in m.state_dict().items()}
        write_safetensors(folder / FILES["weights"], weights)
        graph = {k: getattr(self.graph, k) for k in GRAPH_KEYS}
        graph["fused"] = torch.as_tensor(self.fused)
        write_safetensors(folder / FILES["graph"], graph)
        arrays, meta = self.pseudobulk.to_arrays()
        write_safetensors(folder / FILES["pseudobulk"], arrays)
        write_table(folder / FILES["genes"], self.table.reset_index(drop=True))
        self.split.save(folder / FILES["split"])
        write_table(folder / FILES["prior"], self.prior_edges)
        write_table(folder / FILES["learned"], self.learned_edges)
        write_table(folder / FILES["history"], self.history)
        write_table(folder / FILES["metrics"], self.metrics)
        if self.ablations is not None:
            write_table(folder / OPTIONAL_FILES["ablations"], self.ablations.reset_index(names="variant"))
        manifest = dict(self.manifest)
        manifest.update({
            "format_version": FORMAT_VERSION,
            "grape_core_version": __version__,
            "model_class": "GRAPE",
            "genes": {"nodes": list(self.genes), "n_nodes": len(self.genes),
                      "n_measured": len(self.measured)},
            "pseudobulk": meta,
            "versions": {"torch": torch.__version__, "python": platform.python_version(),
                         **_optional_versions()},
        })
        manifest.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        written = {**FILES, **OPTIONAL_FILES}
        manifest["files"] = {key: sha256_file(folder / name) for key, name in written.items()
                             if key != "manifest" and (folder / name).exists()}
        write_json(folder / FILES["manifest"], manifest)
        self.manifest = manifest

    # ------------------------------------------------------------------ load
    @classmethod
    def load(cls, path: str | Path) -> "Bundle":
        """Load and verify a bundle folder.

        Raises
        ------
        BundleError
            Not a folder, a missing file, a checksum mismatch (corrupted or edited file),
            another format version, or weights that do not fit the manifest.
        """
        path = Path(path)
        manifest = verify_bundle(path)
        try:
            return cls._read(path, manifest)
        except BundleError:
            raise
        except Exception as exc:  # safetensors/parquet raise various types on bad content
            raise BundleError(f"model {path.name!r} cannot be read ({type(exc).__name__}: {exc})") from exc

    @classmethod
    def _read(cls, path: Path, manifest: dict[str, Any]) -> "Bundle":
        import torch
        from safetensors.torch import load_file

        from .model.grape import GRAPE, GraphInputs

        graph_t = load_file(str(path / FILES["graph"]))
        graph = GraphInputs(**{k: graph_t[k] for k in GRAPH_KEYS})
        weights = load_file(str(path / FILES["weights"]))
        config = ModelConfig.from_dict(manifest["configs"]["model"])
        n_members = int(manifest["ensemble"])
        members = []
        for i in range(n_members):
            state = {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(f"member{i}.")}
            model = GRAPE(config, n_nodes=graph.n_nodes, n_measured=graph.measured.numel(),
                          encoder_args=manifest["encoder_args"])
            model.known_shift = torch.zeros_like(state["known_shift"])
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise BundleError(
                    f"model {path.name!r}: weights of member {i} do not fit the manifest's "
                    f"architecture ({str(exc).splitlines()[0]})"
                ) from exc
            model.eval()
            members.append(model)
        pb = PseudoBulk.from_arrays(read_safetensors_numpy(path / FILES["pseudobulk"]),
                                    manifest["pseudobulk"])
        genes = tuple(manifest["genes"]["nodes"])
        table = pd.read_csv(path / FILES["genes"], keep_default_na=False)
        table.index = pd.Index(table["symbol"].astype(str))
        if tuple(table.index) != genes:
            raise BundleError(f"model {path.name!r}: genes.csv does not list the manifest's genes in order")
        if tuple(genes[i] for i in graph.measured.tolist()) != pb.genes:
            raise BundleError(f"model {path.name!r}: measured genes do not match the graph")
        return cls(
            manifest=manifest, members=members, graph=graph, genes=genes, table=table,
            pseudobulk=pb, split=Split.load(path / FILES["split"]),
            prior_edges=pd.read_parquet(path / FILES["prior"]),
            learned_edges=pd.read_parquet(path / FILES["learned"]),
            history=pd.read_csv(path / FILES["history"]),
            metrics=pd.read_csv(path / FILES["metrics"]),
            fused=graph_t["fused"].numpy(), path=path,
            ablations=(pd.read_csv(path / OPTIONAL_FILES["ablations"], index_col="variant")
                       if "ablations" in manifest.get("files", {}) else None),
        )


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Check a model folder without loading it (no torch): manifest, format, every file's
    SHA-256. Returns the manifest.

    Raises
    ------
    BundleError
        Not a folder, no or unreadable manifest, another format version, a missing file or
        a checksum mismatch (corrupted or edited file).
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model folder not found: {path}")
    manifest_file = path / FILES["manifest"]
    if not manifest_file.exists():
        raise BundleError(f"{path} is not a GRAPE model: {FILES['manifest']} is missing")
    try:
        manifest = json.loads(manifest_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_file} is corrupted (not valid JSON: {exc})") from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path} uses bundle format {version!r}, this grape_core reads format "
            f"{FORMAT_VERSION}; retrain the model with this version"
        )
    if manifest.get("grape_core_version") != __version__:
        log.warning("%s was written by grape_core %s (this is %s)", path,
                    manifest.get("grape_core_version"), __version__)
    files = manifest.get("files", {})
    for key, name in {**FILES, **OPTIONAL_FILES}.items():
        if key == "manifest" or (key in OPTIONAL_FILES and key not in files):
            continue
        file = path / name
        if not file.exists():
            raise BundleError(f"model {path.name!r} is missing {name}; copy the whole folder or retrain")
        if files.get(key) and sha256_file(file) != files[key]:
            raise BundleError(
                f"model {path.name!r}: {name} is corrupted (its SHA-256 does not match the "
                "manifest); restore the folder or retrain"
            )
    return manifest


def _optional_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch_geometric", "numpy", "anndata"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def list_bundles(*folders: str | Path) -> dict[str, Path]:
    """Model folders (those holding a manifest) found directly under ``folders``."""
    found: dict[str, Path] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for sub in sorted(folder.iterdir()):
            if (sub / FILES["manifest"]).exists() and not sub.name.startswith("."):
                found.setdefault(sub.name, sub)
    return found
