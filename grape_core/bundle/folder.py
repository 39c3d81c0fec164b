"""A trained model as a folder: weights, a readable manifest, and everything to use it
(:class:`Bundle`; the layout is in :mod:`.schema`).

:meth:`Bundle.load` checks every file against the manifest's SHA-256 (:func:`.verify_bundle`)
and every tensor against the model the manifest describes (:mod:`.tensors`), and stops with
one :class:`~grape_core.errors.BundleError` line that names what is missing or wrong.
:meth:`Bundle.save` writes the folder through the project's folder store.
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._version import __version__
from ..config import ArchitectureConfig, TrainConfig
from ..data.conditions import genes_of
from ..data.pseudobulk import PseudoBulk
from ..data.splits import Split
from ..errors import BundleError, GrapeError
from ..io import read_safetensors_numpy, tensor_bytes, write_folder, write_safetensors, write_table
from .checks import manifest_digest
from .manifest import Manifest
from .schema import (FILES, FORMAT_VERSION, GRAPH_KEYS, MODEL_FOLDER, OPTIONAL_FILES,
                     SINGLES_FLOAT16_ABOVE, GenesInfo)
from .tensors import TensorChecker, load_torch
from .verify import verify_bundle

if TYPE_CHECKING:  # torch and the model are imported where used: listing and verifying
    # bundles (the app's first page) must not pay for importing torch
    from ..nn.grape import GRAPE, GraphInputs


@dataclass(frozen=True)
class Bundle:
    """A loaded (or freshly trained) GRAPE model with its data summary and graphs.

    Read-only: nothing changes after construction (the app shares one loaded bundle between
    sessions). The caches of using a model live beside it, in
    :class:`grape_core.serving.model.Model`.
    """

    manifest: Manifest
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
    singles: np.ndarray | None
    """Every member's predicted shift of every single perturbation (each node on its own),
    ``(n_members, n_nodes, n_measured)``: computed once at training time, so a screen is a
    lookup (:meth:`grape_core.serving.singles.SinglesStore.shifts`). ``None`` for genome-scale models
    (more than :data:`SINGLES_MAX_VALUES` values)."""
    ablations: pd.DataFrame | None = None
    """Held-out metrics of retrained variants (see :data:`grape_core.training.ablations.ABLATIONS`)."""
    path: Path | None = None

    # ------------------------------------------------------------------ accessors
    @property
    def name(self) -> str:
        return str(self.manifest.name or (self.path.name if self.path else "model"))

    @property
    def model_config(self) -> ArchitectureConfig:
        return self.manifest.configs.model_config

    @property
    def train_config(self) -> TrainConfig:
        return self.manifest.configs.train_config

    @property
    def measured(self) -> tuple[str, ...]:
        return self.pseudobulk.genes

    @cached_property
    def node_index(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.genes)}

    @cached_property
    def trained_genes(self) -> frozenset[str]:
        """Genes perturbed in at least one training condition."""
        return frozenset(g for c in self.split.train for g in genes_of(c))

    def check_genes(self, measured: tuple[str, ...] | list[str], *, source: str = "the data") -> None:
        """Refuse data whose measured genes differ from the model's.

        Raises
        ------
        BundleError
            With counts and examples of genes missing on either side.

        Parameters
        ----------
        measured
            The data's measured genes, in order.
        source
            How messages name the data.
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

    def replace(self, **changes: Any) -> "Bundle":
        """A copy with some fields changed (the bundle itself never changes).

        Parameters
        ----------
        **changes
            Fields and their new values.

        Returns
        -------
        Bundle
        """
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ save
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the bundle folder atomically (:func:`grape_core.io.write_folder`): a
        temporary folder beside ``path``, renamed into place.

        Safe when several processes save to the same ``path`` at once (the last one wins;
        none fails half-way), and what a killed save left beside ``path`` is removed by the
        next one.

        Parameters
        ----------
        path
            The model folder.
        overwrite
            Replace a model folder (or an empty folder) already there.

        Returns
        -------
        Path
            ``path``.

        Raises
        ------
        BundleError
            ``path`` exists and ``overwrite`` is False, or is not a model folder.
        GrapeError
            ``path`` cannot be written (a parent is a file, a read-only folder, a full disk).
        """
        path = Path(path)
        write_folder(path, kind=MODEL_FOLDER, write=self._write_files, manifest=self._manifest,
                     overwrite=overwrite, needed=self._bytes(), what="model folder",
                     error=BundleError)
        return path

    def _bytes(self) -> int:
        """About how many bytes the folder takes (its tensors; tables are small)."""
        total = sum(tensor_bytes(v) for m in self.members for v in m.state_dict().values())
        total += sum(tensor_bytes(getattr(self.graph, k)) for k in GRAPH_KEYS)
        total += tensor_bytes(np.asarray(self.fused))
        total += tensor_bytes(np.asarray(self.pseudobulk.means)) * 2
        if self.singles is not None:
            size = int(np.asarray(self.singles).size)
            total += size * (2 if size > SINGLES_FLOAT16_ABOVE else 4)
        return total

    def _write_files(self, folder: Path) -> None:
        """Every file but the manifest."""
        import torch

        weights = {f"member{i}.{k}": v for i, m in enumerate(self.members)
                   for k, v in m.state_dict().items()}
        write_safetensors(folder / FILES["weights"], weights)
        graph = {k: getattr(self.graph, k) for k in GRAPH_KEYS}
        graph["fused"] = torch.as_tensor(self.fused)
        write_safetensors(folder / FILES["graph"], graph)
        arrays, _ = self.pseudobulk.to_arrays()
        write_safetensors(folder / FILES["pseudobulk"], arrays)
        write_table(folder / FILES["genes"], self.table.reset_index(drop=True))
        self.split.save(folder / FILES["split"])
        write_table(folder / FILES["prior"], self.prior_edges)
        write_table(folder / FILES["learned"], self.learned_edges)
        write_table(folder / FILES["history"], self.history)
        write_table(folder / FILES["metrics"], self.metrics)
        if self.singles is not None:
            singles = np.asarray(self.singles)
            dtype = np.float16 if singles.size > SINGLES_FLOAT16_ABOVE else np.float32
            write_safetensors(folder / OPTIONAL_FILES["singles"],
                              {"shift": singles.astype(dtype, copy=False)})
        if self.ablations is not None:
            write_table(folder / OPTIONAL_FILES["ablations"], self.ablations.reset_index(names="variant"))

    def _manifest(self, digests: dict[str, str]) -> dict[str, Any]:
        """The manifest's JSON object, with the checksum of every file (``digests``) and of
        itself."""
        import torch

        names = {**FILES, **OPTIONAL_FILES}
        files = {key: digests[name] for key, name in names.items() if name in digests}
        manifest = self.manifest.replace(
            format_version=FORMAT_VERSION,
            grape_core_version=__version__,
            model_class="GRAPE",
            genes=GenesInfo(nodes=tuple(self.genes), n_nodes=len(self.genes),
                            n_measured=len(self.measured)),
            pseudobulk=self.pseudobulk.to_arrays()[1],
            versions={"torch": torch.__version__, "python": platform.python_version(),
                      **_optional_versions()},
            created=self.manifest.created
            or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            files=files,
            manifest_sha256=None,
        )
        data = manifest.to_dict()
        data["manifest_sha256"] = manifest_digest(data)
        return data

    # ------------------------------------------------------------------ load
    @classmethod
    def load(cls, path: str | Path, *, unverified: bool = False) -> "Bundle":
        """Load and verify a bundle folder.

        Every file is checked against the manifest's SHA-256, and every tensor against the
        model the manifest describes (shapes, dtypes, index ranges, finite values): nothing
        is resized to fit.

        Parameters
        ----------
        unverified
            Also load a folder whose manifest has no checksums (``files`` missing or
            empty, or files without one). Checksums that are there are still checked, and
            so is every tensor.

        Raises
        ------
        BundleError
            Not a folder, a missing file, a checksum mismatch (corrupted or edited file),
            no checksums (unless ``unverified``), another format version, or tensors that
            do not fit the manifest.
        """
        path = Path(path)
        manifest = verify_bundle(path, unverified=unverified)
        try:
            return cls._read(path, manifest)
        except GrapeError:
            raise
        except Exception as exc:  # safetensors/parquet raise various types on bad content
            reason = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise BundleError(f"model {path.name!r} cannot be read ({type(exc).__name__}: "
                              f"{reason}); restore the model folder or retrain it") from exc

    @classmethod
    def _read(cls, path: Path, manifest: Manifest) -> "Bundle":
        from ..nn.grape import GraphInputs

        check = TensorChecker(path.name)
        if manifest.genes is None:
            raise BundleError(f"model {path.name!r}: the manifest lists no genes; retrain the model")
        genes = manifest.genes.nodes
        table = pd.read_csv(path / FILES["genes"], keep_default_na=False, dtype={"symbol": str})
        missing = [c for c in ("symbol", "biotype", "is_coding") if c not in table]
        if missing:
            raise BundleError(f"model {path.name!r}: {FILES['genes']} has no {missing[0]!r} "
                              "column; restore the model folder or retrain it")
        table.index = pd.Index(table["symbol"].astype(str))
        if tuple(table.index) != genes:
            raise BundleError(f"model {path.name!r}: {FILES['genes']} does not list the "
                              "manifest's genes in order; restore the model folder or retrain it")
        pb = check.pseudobulk(read_safetensors_numpy(path / FILES["pseudobulk"]), manifest)
        graph_t = check.graph(load_torch(path / FILES["graph"]), manifest)
        graph = GraphInputs(**{k: graph_t[k] for k in GRAPH_KEYS})
        if tuple(genes[i] for i in graph.measured.tolist()) != pb.genes:
            raise BundleError(f"model {path.name!r}: the measured genes of {FILES['graph']} and "
                              f"{FILES['pseudobulk']} differ; restore the model folder or "
                              "retrain it")
        members = check.members(load_torch(path / FILES["weights"]), manifest, graph, pb)
        stored = path / OPTIONAL_FILES["singles"]
        singles = (check.singles(read_safetensors_numpy(stored), manifest) if stored.is_file()
                   else None)
        ablations = path / OPTIONAL_FILES["ablations"]
        nodes = set(genes)
        prior = check.edges(pd.read_parquet(path / FILES["prior"]), FILES["prior"], nodes)
        learned = check.edges(pd.read_parquet(path / FILES["learned"]), FILES["learned"], nodes,
                              extra={"in_prior": "bool"})
        history = check.numbers(pd.read_csv(path / FILES["history"]), FILES["history"])
        # round_trip: the stored replicate rows stand in for a fresh evaluation, bit for bit
        metrics = check.numbers(pd.read_csv(path / FILES["metrics"], dtype={"condition": str},
                                            float_precision="round_trip"), FILES["metrics"])
        return cls(
            manifest=manifest, members=members, graph=graph, genes=genes, table=table,
            pseudobulk=pb, split=Split.load(path / FILES["split"]),
            prior_edges=prior, learned_edges=learned, history=history, metrics=metrics,
            fused=graph_t["fused"].numpy(), singles=singles, path=path,
            ablations=(check.numbers(pd.read_csv(ablations, index_col="variant"),
                                     OPTIONAL_FILES["ablations"])
                       if ablations.is_file() else None),
        )



def _optional_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch_geometric", "numpy", "anndata"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


