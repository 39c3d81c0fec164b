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

import dataclasses
import json
import logging
import os
import platform
import shutil
import tempfile
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from . import __version__
from .config import ModelConfig, TrainConfig
from .data.conditions import genes_of
from .data.pseudobulk import PseudoBulk
from .data.splits import Split
from .errors import BundleError
from .io import read_safetensors_numpy, sha256_file, write_json, write_safetensors, write_table

if TYPE_CHECKING:  # torch and the model are imported where used: listing and verifying
    # bundles (the app's first page) must not pay for importing torch
    from .model.grape import GRAPE, GraphInputs

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
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


# ----------------------------------------------------------------------------- manifest
def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict or tp is dict:
        return "an object"
    if dataclasses.is_dataclass(tp):
        return "an object"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _checked(value: Any, tp: Any, key: str, source: str) -> Any:
    """``value`` as type ``tp``, or a one-line :class:`BundleError` naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _checked(value, arg, key, source)
                except BundleError:
                    pass
    elif tp is Any:
        return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            inner = typing.get_args(tp)[0]
            return tuple(_checked(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value))
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return _section(tp, value, key, source)
    shown = json.dumps(value, default=str)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise BundleError(f"{source}: manifest key {key!r} must be {_type_name(tp)}, not {shown}; "
                      "restore the model folder or retrain it")


def _section(cls: type, data: dict[str, Any], where: str, source: str):
    """A manifest section dataclass from its JSON object; unknown keys are kept in ``extra``."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    extra = dict(data)
    for f in dataclasses.fields(cls):
        if f.name == "extra":
            continue
        key = f"{where}.{f.name}" if where else f.name
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise BundleError(f"{source}: manifest key {key!r} is missing; restore the model "
                                  "folder or retrain it")
            continue
        kwargs[f.name] = _checked(extra.pop(f.name), hints[f.name], key, source)
    return cls(**kwargs, extra=extra)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Section:
    """Dict round trip of a manifest section: fields in order, then unknown keys."""

    OPTIONAL: tuple[str, ...] = ()
    """Fields written only when set (not ``None`` and not empty)."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name in self.OPTIONAL and (value is None or value == () or value == {}):
                continue
            out[f.name] = _plain(value)
        out.update(getattr(self, "extra", {}))
        return out


@dataclass(frozen=True)
class DatasetInfo(_Section):
    """The screen a model was trained on."""

    name: str = ""
    file: str = ""
    """The file's name (never its path on the training machine)."""
    sha256: str = ""
    subset: tuple[str, ...] = ()
    condition_key: str = ""
    control_label: str = ""
    cells: int = 0
    genes: int = 0
    """Measured genes."""
    conditions: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class SplitInfo(_Section):
    """Which split, and how many conditions each part had."""

    name: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    train: int = 0
    val: int = 0
    test: int = 0
    val_carved_from_train: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ConfigsInfo(_Section):
    """Every config, as written by its ``to_dict()`` (read back with :attr:`model_config`...)."""

    model: dict[str, Any]
    train: dict[str, Any]
    feature: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    @property
    def train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.train)


@dataclass(frozen=True)
class MemberInfo(_Section):
    """How one ensemble member was trained, in optimisation steps."""

    OPTIONAL = ("refit_steps",)

    seed: int
    best_step: int
    """Step of the checkpoint kept (the best validation MSE)."""
    steps: int
    """Steps run before early stopping."""
    refit_steps: int | None = None
    """Steps of the final fit on every training condition, when validation conditions were
    carved from training."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TrainingInfo(_Section):
    """Training time, the conditions used, and each member's record."""

    OPTIONAL = ("total_seconds",)

    seconds: float
    train_conditions: tuple[str, ...]
    """The conditions the final members were fitted on (the baselines' too)."""
    val_conditions: tuple[str, ...]
    members: tuple[MemberInfo, ...]
    total_seconds: float | None = None
    """Gene knowledge, training and evaluation together."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class GraphInfo(_Section):
    """The prior the model started from and the graph it learned."""

    prior: tuple[str, ...] = ()
    """Names of the priors (built-in names, or file names)."""
    prior_sources: tuple[dict[str, Any], ...] = ()
    """One record per prior: name, kind (builtin, file, table), edges, and for user priors
    the SHA-256 of the file and the genes it named that the model does not have."""
    prior_edges: int = 0
    learned_edges: int = 0
    learned_in_prior: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class MetricsInfo(_Section):
    """Held-out metrics: ``test[model][metric]``, ``subgroups[model][group][metric]``."""

    test: dict[str, Any] = field(default_factory=dict)
    subgroups: dict[str, Any] = field(default_factory=dict)
    verdict: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class GenesInfo(_Section):
    nodes: tuple[str, ...]
    """Graph nodes in order (measured genes first)."""
    n_nodes: int
    n_measured: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Manifest(_Section):
    """``manifest.json``, typed and validated when read (:meth:`read`).

    A wrong type or a missing key is one :class:`~grape_core.errors.BundleError` line that
    names the key and the file. Keys this version does not know are kept (``extra``) and
    written back unchanged. Sections written at save time (``genes``, ``pseudobulk``,
    ``versions``, ``files``) are empty on a model that was never saved.
    """

    OPTIONAL = ("metrics", "uncertainty", "genes", "created")
    REQUIRED_ON_DISK = ("dataset", "split", "configs", "encoder_args", "model_sizes", "ensemble",
                        "training", "genes", "pseudobulk", "files")

    name: str = ""
    command: str = ""
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    split: SplitInfo = field(default_factory=lambda: SplitInfo(name="", seed=-1))
    configs: ConfigsInfo = field(default_factory=lambda: ConfigsInfo(model={}, train={}))
    encoder_args: dict[str, Any] = field(default_factory=dict)
    model_sizes: dict[str, int] = field(default_factory=dict)
    """:class:`~grape_core.model.grape.ModelSizes`: what each member is built from."""
    ensemble: int = 0
    training: TrainingInfo = field(default_factory=lambda: TrainingInfo(0.0, (), (), ()))
    graph: GraphInfo = field(default_factory=GraphInfo)
    metrics: MetricsInfo | None = None
    """Held-out metrics; ``None`` when the split held nothing out."""
    uncertainty: dict[str, Any] = field(default_factory=dict)
    """Does the ensemble's spread go with the error (:func:`~grape_core.evaluation.evaluate.uncertainty_check`)."""
    format_version: int = FORMAT_VERSION
    grape_core_version: str = __version__
    model_class: str = "GRAPE"
    genes: GenesInfo | None = None
    pseudobulk: dict[str, Any] = field(default_factory=dict)
    """:meth:`PseudoBulk.to_arrays` metadata."""
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    files: dict[str, str] = field(default_factory=dict)
    """SHA-256 of every file of the folder, by key of :data:`FILES`."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "manifest.json") -> "Manifest":
        """Validate and type a manifest dict; ``source`` names the file in errors."""
        if not isinstance(data, dict):
            raise BundleError(f"{source}: the manifest must be a JSON object; restore the model "
                              "folder or retrain it")
        return _section(cls, data, "", source)

    @classmethod
    def read(cls, path: str | Path) -> "Manifest":
        """Read and validate ``manifest.json`` (the file, or a model folder)."""
        path = Path(path)
        file = path / FILES["manifest"] if path.is_dir() else path
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{file} is corrupted (not valid JSON: {exc})") from exc
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{file.parent} uses bundle format {version!r}, this grape_core reads format "
                f"{FORMAT_VERSION}; retrain the model with this version"
            )
        for key in cls.REQUIRED_ON_DISK:
            if key not in data:
                raise BundleError(f"{file}: manifest key {key!r} is missing; restore the model "
                                  "folder or retrain it")
        return cls.from_dict(data, source=str(file))

    def replace(self, **changes: Any) -> "Manifest":
        return dataclasses.replace(self, **changes)



@dataclass(frozen=True)
class Bundle:
    """A loaded (or freshly trained) GRAPE model with its data summary and graphs.

    Read-only: nothing changes after construction (the app shares one loaded bundle between
    sessions). The caches of using a model live beside it, in
    :class:`grape_core.predict.Model`.
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
    ablations: pd.DataFrame | None = None
    """Held-out metrics of retrained variants (see :data:`grape_core.train.ABLATIONS`)."""
    path: Path | None = None

    # ------------------------------------------------------------------ accessors
    @property
    def name(self) -> str:
        return str(self.manifest.name or (self.path.name if self.path else "model"))

    @property
    def model_config(self) -> ModelConfig:
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
        """A copy with some fields changed (the bundle itself never changes)."""
        return dataclasses.replace(self, **changes)

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
        written = {**FILES, **OPTIONAL_FILES}
        files = {key: sha256_file(folder / name) for key, name in written.items()
                 if key != "manifest" and (folder / name).exists()}
        manifest = self.manifest.replace(
            format_version=FORMAT_VERSION,
            grape_core_version=__version__,
            model_class="GRAPE",
            genes=GenesInfo(nodes=tuple(self.genes), n_nodes=len(self.genes),
                            n_measured=len(self.measured)),
            pseudobulk=meta,
            versions={"torch": torch.__version__, "python": platform.python_version(),
                      **_optional_versions()},
            created=self.manifest.created
            or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            files=files,
        )
        write_json(folder / FILES["manifest"], manifest.to_dict())

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
    def _read(cls, path: Path, manifest: Manifest) -> "Bundle":
        import torch
        from safetensors.torch import load_file

        from .model.grape import GRAPE, GraphInputs, ModelSizes

        graph_t = load_file(str(path / FILES["graph"]))
        graph = GraphInputs(**{k: graph_t[k] for k in GRAPH_KEYS})
        weights = load_file(str(path / FILES["weights"]))
        config = manifest.configs.model_config
        n_members = manifest.ensemble
        members = []
        for i in range(n_members):
            state = {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(f"member{i}.")}
            model = GRAPE(config, ModelSizes(**manifest.model_sizes),
                          encoder_args=manifest.encoder_args)
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
                                    manifest.pseudobulk)
        if manifest.genes is None:
            raise BundleError(f"model {path.name!r}: the manifest lists no genes; retrain the model")
        genes = manifest.genes.nodes
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
                       if "ablations" in manifest.files else None),
        )


def verify_bundle(path: str | Path) -> Manifest:
    """Check a model folder without loading it (no torch): manifest (validated, see
    :meth:`Manifest.read`), format, every file's SHA-256. Returns the manifest.

    Raises
    ------
    BundleError
        Not a folder, no or unreadable manifest, another format version, a manifest key
        missing or of the wrong type, a missing file or a checksum mismatch (corrupted or
        edited file).
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model folder not found: {path}")
    if not (path / FILES["manifest"]).exists():
        raise BundleError(f"{path} is not a GRAPE model: {FILES['manifest']} is missing")
    manifest = Manifest.read(path)
    if manifest.grape_core_version != __version__:
        log.warning("%s was written by grape_core %s (this is %s)", path,
                    manifest.grape_core_version, __version__)
    files = manifest.files
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
